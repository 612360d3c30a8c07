#include "engine/thread_pool.h"

#include <gtest/gtest.h>

#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

namespace infera::engine {
namespace {

TEST(ThreadPool, PinnedPoolRunsEveryTaskOnItsCpu) {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  ASSERT_EQ(sched_getaffinity(0, sizeof mask, &mask), 0);
  int cpu = -1;
  for (int i = 0; i < CPU_SETSIZE; ++i) {
    if (CPU_ISSET(i, &mask)) cpu = i;  // the last CPU this process may use
  }
  ASSERT_GE(cpu, 0);
  // The caller is pinned too: run it on a thread of its own, so this one is left alone.
  std::thread caller([&] {
    ThreadPool pool(3, 50, {cpu});
    std::vector<std::atomic<int>> where(64);
    for (int round = 0; round < 3; ++round) {
      pool.parallel_for(64, [&](int task, int) { where[static_cast<size_t>(task)] = sched_getcpu(); });
      for (size_t i = 0; i < where.size(); ++i) ASSERT_EQ(where[i].load(), cpu) << "task " << i;
    }
  });
  caller.join();
}

TEST(ThreadPool, RunsEveryTaskExactlyOnceOnEveryPoolSize) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int n : {0, 1, 2, 3, 7, 64, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.parallel_for(n, [&](int task, int thread) {
        ASSERT_GE(thread, 0);
        ASSERT_LT(thread, threads);
        hits[static_cast<size_t>(task)].fetch_add(1);
      });
      for (int i = 0; i < n; ++i)
        ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << threads << " " << n;
    }
  }
}

TEST(ThreadPool, TheCallerTakesPartAsThreadZero) {
  ThreadPool pool(3);
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<bool> caller_ran{false};
  std::atomic<bool> caller_not_zero{false};
  // Enough slow tasks that the caller surely takes some.
  pool.parallel_for(30, [&](int, int thread) {
    if (std::this_thread::get_id() == caller) {
      caller_ran = true;
      if (thread != 0) caller_not_zero = true;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  });
  EXPECT_TRUE(caller_ran.load());
  EXPECT_FALSE(caller_not_zero.load());
}

TEST(ThreadPool, ResultsAreVisibleToTheCallerAfterReturn) {
  ThreadPool pool(4);
  std::vector<int> out(4096, 0);  // plain ints: the join must publish them
  for (int round = 1; round <= 200; ++round) {
    pool.parallel_for(64, [&](int task, int) {
      for (int j = 0; j < 64; ++j) out[static_cast<size_t>(task * 64 + j)] = round + j;
    });
    for (int task = 0; task < 64; ++task) {
      for (int j = 0; j < 64; ++j) ASSERT_EQ(out[static_cast<size_t>(task * 64 + j)], round + j);
    }
  }
}

// Many back-to-back loops with workers that sleep at once (futex path) and with
// workers that spin: no lost wake-up, no hang.
TEST(ThreadPool, BackToBackLoopsNeverLoseAWakeUp) {
  for (int spin_us : {0, 50}) {
    ThreadPool pool(3, spin_us);
    std::atomic<long> sum{0};
    const int loops = spin_us == 0 ? 2000 : 5000;
    for (int i = 0; i < loops; ++i) {
      pool.parallel_for(4,
                        [&](int task, int) { sum.fetch_add(task + 1, std::memory_order_relaxed); });
    }
    EXPECT_EQ(sum.load(), 10L * loops) << "spin_us " << spin_us;
  }
}

TEST(ThreadPool, WorkersSleepingForAWhileStillWakeUp) {
  ThreadPool pool(2, 10);
  std::atomic<int> n{0};
  pool.parallel_for(2, [&](int, int) { n++; });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // workers now asleep on the futex
  pool.parallel_for(2, [&](int, int) { n++; });
  EXPECT_EQ(n.load(), 4);
}

}  // namespace
}  // namespace infera::engine
