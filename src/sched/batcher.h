// The dynamic batcher for predictors (tabular and tensor models): requests of a few
// rows each wait briefly in a queue and run together through one call of the
// model, each caller getting back exactly its own rows.
//
//   DynamicBatcher batcher(config, {{"features", 12}}, run_model, &obs::Registry::global());
//   Status warmed = batcher.warm_up();          // before traffic
//   batcher.submit({.inputs = {std::move(features)}, .rows = 3}, [](auto result) { ... });
//
// A batch goes to the runner when
//   - the queued rows reach the largest preferred batch size (or max_batch_size), or
//   - max_queue_delay has passed since the arrival of the oldest waiting request
//     (newcomers never extend it; 0 = run whatever is queued at once).
// A batch holds at most max_batch_size rows; requests are never split. Requests
// are taken by priority (0 = highest), first come first served within a level, and
// taking stops at the first request that does not fit, so a large request is not
// starved by small ones behind it. When the delay expires and the rows on hand can
// form a preferred size exactly, that size goes; otherwise all that fit go.
// Lower priorities may wait for as long as higher ones keep the batcher full.
//
// Deadlines: a request whose deadline passes while it waits is answered with
// DeadlineExceeded and never run; the idle worker wakes at the deadline, a busy one
// answers it as soon as the batch in progress returns. Nothing is run after its
// deadline.
//
// Threads: one worker thread per batcher ("batcher <model>") runs every batch,
// warm-up included, so the runner is never called concurrently and needs no
// locking. submit(), warm_up() and stats() may be called from any thread. `Done`
// runs on the worker thread for results, expiry and shutdown, and on the caller's
// thread, inside submit(), for immediate refusals; it must return quickly (the next
// batch waits for it) and must not destroy the batcher.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace infera::obs {
class Registry;
}

namespace infera::sched {

// A named float tensor of shape [rows, width], row-major: data.size() == rows * width.
struct Tensor {
  std::string name;
  int64_t width = 0;
  std::vector<float> data;
};

// A declared input of the model: its name and the floats per row.
struct TensorSpec {
  std::string name;
  int64_t width = 0;
};

struct BatcherConfig {
  std::string model;                                // metrics label and thread name
  int max_batch_size = 32;                          // rows per batch (BATCH_SIZE); >= 1
  std::vector<int> preferred_batch_sizes;           // rows, ascending, each <= max_batch_size
  std::chrono::microseconds max_queue_delay{2000};  // BATCH_TIMEOUT; from the oldest arrival
  size_t max_queue_size = 1024;                     // waiting requests before 429; 0 = unbounded
};

// Runs the model on `rows` rows. `inputs` follow the declared order, each of shape
// [rows, width]. Returns the outputs, each of shape [rows, out_width] with
// out_width >= 1, or the Status every request of the batch is answered with.
// Called on the batcher's worker thread only.
using BatchRunner =
    std::function<Result<std::vector<Tensor>>(const std::vector<Tensor>& inputs, int rows)>;

class DynamicBatcher {
 public:
  struct Request {
    std::vector<Tensor> inputs;  // every declared input exactly once, in any order
    int rows = 1;                // 1..max_batch_size
    int priority = 1;            // 0 = highest; larger numbers are taken later
    std::optional<std::chrono::steady_clock::time_point> deadline;  // none: waits as needed
  };
  // The request's own rows of every output, or why there are none:
  // InvalidArgument (malformed request, naming the tensor), ResourceExhausted (queue
  // full: answer 429), DeadlineExceeded (expired in the queue), Unavailable (the
  // batcher shut down first), or the runner's own Status. Called exactly once.
  using Done = std::function<void(Result<std::vector<Tensor>>)>;

  struct Stats {
    uint64_t batches = 0;    // runner calls for traffic (warm-up excluded)
    uint64_t rows = 0;       // rows in those batches
    uint64_t completed = 0;  // requests answered with their outputs
    uint64_t failed = 0;     // requests answered with their batch's runner error
    uint64_t expired = 0;    // requests whose deadline passed before they ran
    uint64_t rejected = 0;   // requests refused because the queue was full
    size_t queued = 0;       // requests waiting now
  };

  // Starts the worker. `metrics` may be null; otherwise it must outlive the batcher.
  // A config failing check() is clamped into range (max_batch_size >= 1, preferred
  // sizes within 1..max_batch_size, sorted), so callers should check() first.
  DynamicBatcher(BatcherConfig config, std::vector<TensorSpec> inputs, BatchRunner run,
                 obs::Registry* metrics);
  // Answers the queued requests with Unavailable and joins the worker after the batch
  // in progress (if any) returns. REQUIRES: the runner returns.
  ~DynamicBatcher();
  DynamicBatcher(const DynamicBatcher&) = delete;
  DynamicBatcher& operator=(const DynamicBatcher&) = delete;

  // InvalidArgument naming the field when the config or the declared inputs are out of
  // range (sizes, duplicate names, widths < 1).
  static Status check(const BatcherConfig& config, const std::vector<TensorSpec>& inputs);

  // Queues the request; `done` is called exactly once (see Done).
  void submit(Request request, Done done);

  // Runs the runner once with zero inputs for every batch size 1..max_batch_size, or,
  // when max_batch_size > 64, for each preferred size, power of two and
  // max_batch_size; blocks until done. Returns the first failure, naming the size.
  Status warm_up();

  Stats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace infera::sched
