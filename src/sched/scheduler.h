// The scheduler: one engine loop that runs continuous batching over a ModelRunner.
// Each step it admits waiting requests by priority then arrival (up to max_seqs
// and while KV blocks last), mixes chunked prompt prefill with one decode token
// for every running sequence, samples, streams text out, and ends sequences on
// EOS, stop sequences, max_tokens, deadline or client cancellation — freeing their
// KV blocks at once.
//
// Threads: submit() and stats() may be called from any thread; the callbacks of a
// Job run on the engine-loop thread and must not block.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "sched/model_runner.h"

namespace infera::obs {
class Registry;
}

namespace infera::sched {

using Clock = std::chrono::steady_clock;

struct SchedulerConfig {
  int max_seqs = 8;             // BATCH_SIZE / --max-seqs: sequences decoded together
  int batch_timeout_ms = 0;     // BATCH_TIMEOUT: an idle engine waits this long for
                                // more requests so their prompts prefill together
  int max_queue = 256;          // --max-queue: waiting requests before 429
  int max_batch_tokens = 256;   // tokens evaluated per step (prefill chunking)
  int tenant_max_queue = 0;     // --tenant-max-queue: one tenant's waiting requests
                                // before 429 (0 = only max_queue)
  std::string model_name;       // value of the "model" label on this scheduler's metrics
                                // (empty: unlabelled)
};

enum class FinishReason { kStop, kLength, kTimeout, kCancelled, kError };
const char* to_string(FinishReason reason);

struct Completion {
  FinishReason reason = FinishReason::kStop;
  int32_t prompt_tokens = 0;
  int32_t cached_prompt_tokens = 0;  // reused from the prefix cache
  int32_t completion_tokens = 0;
  double queue_ms = 0;
  double ttft_ms = 0;   // from submit to the first generated token
  double total_ms = 0;
  std::string error;    // for kError
};

struct Job {
  std::vector<int32_t> prompt;  // REQUIRES: not empty
  int32_t max_tokens = 256;
  SamplingParams sampling;
  std::vector<std::string> stop;
  int priority = 0;                            // higher first
  // Who asked (API key, else client address): within a priority level, admission
  // interleaves tenants, so one flooding another's requests cannot starve them.
  std::string tenant;
  Clock::time_point deadline = Clock::time_point::max();
  std::function<bool()> is_cancelled;          // polled every step; may be empty
  std::function<void(std::string_view text)> on_text;  // streamed UTF-8 text
  std::function<void(const Completion&)> on_done;      // exactly once, last
};

struct SchedulerStats {
  int64_t running = 0;
  int64_t waiting = 0;
  KvUsage kv;
  int64_t prefix_hits = 0;         // sequences that reused cached prompt blocks
  int64_t prefix_tokens_reused = 0;
  int64_t steps_completed = 0;     // engine steps that evaluated a batch (watchdog progress)
  int max_seqs = 0;                // limits in force (set_limits may lower them)
  int max_batch_tokens = 0;
  // Estimated time until the work queued now leaves a sequence slot free (the
  // measured service time of a request, times the requests ahead per slot); 0 before
  // anything was measured or when a slot is free.
  double queue_delay_s = 0;
};

class Scheduler {
 public:
  // Starts the engine-loop thread. REQUIRES: `runner` outlives the scheduler.
  Scheduler(SchedulerConfig config, ModelRunner& runner, obs::Registry& metrics);
  ~Scheduler();  // ends running jobs with kCancelled, then joins the loop
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a job. ResourceExhausted when the queue (or the tenant's share of it) is
  // full (answer 429); InvalidArgument when the prompt cannot fit the model's context;
  // DeadlineExceeded when, by the measured prefill and decode costs and the work queued
  // ahead of it, the job cannot finish before its deadline (answer 503): refused now
  // rather than timed out later. `retry_after_s`, when given, receives how long the
  // work ahead should take (for Retry-After) on refusals.
  Status submit(std::unique_ptr<Job> job, double* retry_after_s = nullptr);

  SchedulerStats stats() const;

  // Changes the sequences admitted together and the tokens per step at run time
  // (self-healing lowers them while time to first token breaks its objective);
  // running sequences beyond a lowered max_seqs finish, none is cut. Values are
  // clamped to at least 1.
  void set_limits(int max_seqs, int max_batch_tokens);

  // Drops the prefix-cache blocks no sequence holds, on the engine loop (memory
  // pressure). Waits at most `timeout` for the loop; returns the bytes released,
  // 0 when the loop did not get to it in time (it still does later).
  uint64_t drop_cached_prefixes(std::chrono::milliseconds timeout);

  // Fault injection for tests of the watchdog and the anomaly detector: for the
  // next `duration`, every engine step first sleeps `per_step` (per_step ==
  // duration: one stall). Only reachable through --test-hooks routes.
  void inject_delay(std::chrono::milliseconds per_step, std::chrono::milliseconds duration);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace infera::sched
