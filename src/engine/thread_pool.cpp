#include "engine/thread_pool.h"

#include <chrono>
#include <string>
#include <thread>
#include <utility>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

namespace infera::engine {
namespace {

// Tells the core we are spinning (frees resources for the sibling hyperthread).
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

using Clock = std::chrono::steady_clock;

// Spins until pred() or spin_us have passed; returns pred().
template <typename Pred>
bool spin_until(Pred pred, int spin_us) {
  if (pred()) return true;
  if (spin_us <= 0) return false;
  const auto deadline = Clock::now() + std::chrono::microseconds(spin_us);
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (pred()) return true;
      cpu_relax();
    }
    if (Clock::now() >= deadline) return pred();
    // Lets a descheduled thread of this pool run when the cores are oversubscribed
    // (more threads than free cores), where pure spinning would stall the loop.
    std::this_thread::yield();
  }
}

void pin_to(int cpu) {
#if defined(__linux__)
  if (cpu < 0 || cpu >= CPU_SETSIZE) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  (void)sched_setaffinity(0, sizeof set, &set);  // refused (e.g. a cpuset): runs unpinned
#else
  (void)cpu;
#endif
}

}  // namespace

ThreadPool::ThreadPool(int n_threads, int spin_us, std::vector<int> cpus)
    : spin_us_(spin_us), cpus_(std::move(cpus)) {
  const int n_workers = n_threads > 1 ? n_threads - 1 : 0;
  workers_.reserve(static_cast<size_t>(n_workers));
  for (int t = 1; t <= n_workers; ++t) {
    workers_.emplace_back([this, t] { worker_main(t); });
#if defined(__linux__)
    const std::string name = "infera-compute" + std::to_string(t);
    pthread_setname_np(workers_.back().native_handle(), name.substr(0, 15).c_str());
#endif
  }
}

ThreadPool::~ThreadPool() {
  if (workers_.empty()) return;
  stop_ = true;
  unfinished_workers_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::do_tasks(int thread) {
  for (;;) {
    const int task = next_task_.fetch_add(1, std::memory_order_relaxed);
    if (task >= n_tasks_) return;
    fn_(context_, task, thread);
  }
}

void ThreadPool::run(int n_tasks, TaskFn fn, void* context) {
  if (n_tasks <= 0) return;
  if (!cpus_.empty() && pinned_caller_ != std::this_thread::get_id()) {
    pin_to(cpus_.front());
    pinned_caller_ = std::this_thread::get_id();
  }
  if (workers_.empty() || n_tasks == 1) {
    for (int task = 0; task < n_tasks; ++task) fn(context, task, 0);
    return;
  }
  fn_ = fn;
  context_ = context;
  n_tasks_ = n_tasks;
  next_task_.store(0, std::memory_order_relaxed);
  unfinished_workers_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  // Release: the loop's fields above happen-before a worker's acquire of the new value.
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  do_tasks(0);
  // Every worker joins every loop (so none still reads fn_ when the next one is set).
  auto all_done = [this] { return unfinished_workers_.load(std::memory_order_acquire) == 0; };
  if (!spin_until(all_done, spin_us_)) {
    for (int left = unfinished_workers_.load(std::memory_order_acquire); left != 0;
         left = unfinished_workers_.load(std::memory_order_acquire)) {
      unfinished_workers_.wait(left, std::memory_order_acquire);
    }
  }
}

void ThreadPool::worker_main(int thread) {
  if (!cpus_.empty()) pin_to(cpus_[static_cast<size_t>(thread) % cpus_.size()]);
  uint32_t seen = 0;
  for (;;) {
    auto changed = [&] { return generation_.load(std::memory_order_acquire) != seen; };
    if (!spin_until(changed, spin_us_)) {
      generation_.wait(seen, std::memory_order_acquire);
      continue;  // re-check (spurious wake-ups are possible)
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_) return;
    do_tasks(thread);
    if (unfinished_workers_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      unfinished_workers_.notify_one();
    }
  }
}

}  // namespace infera::engine
