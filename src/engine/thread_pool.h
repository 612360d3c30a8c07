// The engine's compute pool (MAX_WORKERS / --threads): persistent threads running
// fork-join loops for the model forward.
//
// parallel_for(n, fn) runs fn(task, thread) for every task in [0, n) and returns when
// all are done. The calling thread takes part (as thread 0), so a pool of N threads
// starts N - 1 workers. Tasks are handed out one at a time from an atomic counter, so
// uneven tasks balance themselves. Waking and joining cost a few hundred nanoseconds
// while workers are spinning: after each loop they spin on an atomic for `spin_us`,
// then sleep on a futex (std::atomic::wait) until the next loop. A call allocates
// nothing.
//
// Pinning: with `cpus` (core/cpu_topology.h: the big cores of a big.LITTLE CPU, or
// --cpu-affinity), worker t runs on cpus[t % size] and the calling thread, thread 0,
// on cpus[0] (pinned at its first loop: the pool is made on another thread).
//
// Thread: one caller at a time (the engine loop thread); parallel_for is not
// reentrant (fn must not call it). fn must not throw.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace infera::engine {

class ThreadPool {
 public:
  // n_threads >= 1 counts the caller. spin_us: how long idle threads (and the caller
  // waiting for stragglers) spin before sleeping; 0 sleeps at once.
  explicit ThreadPool(int n_threads, int spin_us = 50, std::vector<int> cpus = {});
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  using TaskFn = void (*)(void* context, int task, int thread);
  // Runs fn(context, task, thread) for task in [0, n_tasks); thread in [0, size()).
  void run(int n_tasks, TaskFn fn, void* context);

  // fn(int task, int thread), e.g. a lambda capturing by reference.
  template <typename Fn>
  void parallel_for(int n_tasks, Fn&& fn) {
    run(
        n_tasks, [](void* c, int task, int thread) { (*static_cast<Fn*>(c))(task, thread); },
        const_cast<void*>(static_cast<const void*>(&fn)));
  }

 private:
  void worker_main(int thread);
  void do_tasks(int thread);

  // The current loop, written by the caller before bumping generation_.
  TaskFn fn_ = nullptr;
  void* context_ = nullptr;
  int n_tasks_ = 0;
  bool stop_ = false;
  const int spin_us_;
  const std::vector<int> cpus_;
  std::thread::id pinned_caller_{};

  alignas(64) std::atomic<uint32_t> generation_{0};  // bumped once per loop
  alignas(64) std::atomic<int> next_task_{0};
  alignas(64) std::atomic<int> unfinished_workers_{0};
  std::vector<std::thread> workers_;
};

}  // namespace infera::engine
