#include "sched/batcher.h"

#include <fmt/format.h>
#include <pthread.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include "obs/metrics.h"

namespace infera::sched {

namespace {

using Clock = std::chrono::steady_clock;

// Up to this max_batch_size warm-up runs every size; beyond it, a sample (batcher.h).
constexpr int kWarmUpEverySizeUpTo = 64;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

int64_t whole_ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

BatcherConfig clamped(BatcherConfig c) {
  c.max_batch_size = std::max(1, c.max_batch_size);
  auto& preferred = c.preferred_batch_sizes;
  std::erase_if(preferred, [&](int p) { return p < 1 || p > c.max_batch_size; });
  std::sort(preferred.begin(), preferred.end());
  preferred.erase(std::unique(preferred.begin(), preferred.end()), preferred.end());
  c.max_queue_delay = std::max(c.max_queue_delay, std::chrono::microseconds{0});
  return c;
}

std::vector<int> warm_up_sizes(const BatcherConfig& c) {
  std::vector<int> sizes;
  if (c.max_batch_size <= kWarmUpEverySizeUpTo) {
    for (int rows = 1; rows <= c.max_batch_size; ++rows) sizes.push_back(rows);
    return sizes;
  }
  sizes = c.preferred_batch_sizes;
  for (int rows = 1; rows < c.max_batch_size; rows *= 2) sizes.push_back(rows);
  sizes.push_back(c.max_batch_size);
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  return sizes;
}

// A queued request. Its inputs are already in the declared order.
struct Pending {
  std::vector<Tensor> inputs;
  int rows = 0;
  std::optional<Clock::time_point> deadline;
  Clock::time_point arrival;
  DynamicBatcher::Done done;
};

// The registry's metrics of one batcher; all null without a registry.
struct Metrics {
  obs::Histogram* batch_rows = nullptr;
  obs::Histogram* batch_requests = nullptr;
  obs::Histogram* queue_seconds = nullptr;
  obs::Histogram* run_seconds = nullptr;
  obs::Counter* ok = nullptr;
  obs::Counter* queue_full = nullptr;
  obs::Counter* expired = nullptr;
  obs::Counter* error = nullptr;
  obs::Counter* invalid = nullptr;
  obs::Counter* unavailable = nullptr;
  obs::Gauge* queued = nullptr;

  Metrics(obs::Registry* registry, const std::string& model) {
    if (registry == nullptr) return;
    obs::Labels l;
    if (!model.empty()) l.emplace_back("model", model);
    auto outcome = [&](const char* name) {
      obs::Labels with = l;
      with.emplace_back("outcome", name);
      return &registry->counter("infera_batcher_requests_total",
                                "Predictor requests by outcome of the dynamic batcher", with);
    };
    batch_rows = &registry->histogram("infera_batcher_batch_rows", "Rows per batch run", l);
    batch_requests =
        &registry->histogram("infera_batcher_batch_requests", "Requests per batch run", l);
    queue_seconds = &registry->histogram("infera_batcher_queue_seconds",
                                         "Submit to the start of the request's batch", l);
    run_seconds = &registry->histogram("infera_batcher_run_seconds", "Duration of one batch", l);
    ok = outcome("ok");
    queue_full = outcome("queue_full");
    expired = outcome("expired");
    error = outcome("error");
    invalid = outcome("invalid");
    unavailable = outcome("unavailable");
    queued = &registry->gauge("infera_batcher_queued_requests", "Requests waiting for a batch", l);
  }

  static void count(obs::Counter* c, uint64_t n = 1) {
    if (c != nullptr) c->inc(n);
  }
};

}  // namespace

struct DynamicBatcher::Impl {
  Impl(BatcherConfig c, std::vector<TensorSpec> i, BatchRunner r, obs::Registry* registry)
      : config(clamped(std::move(c))),
        specs(std::move(i)),
        run(std::move(r)),
        metrics(registry, config.model),
        warm_up_rows(warm_up_sizes(config)),
        dispatch_rows(config.preferred_batch_sizes.empty() ? config.max_batch_size
                                                           : config.preferred_batch_sizes.back()) {
    batch_inputs.resize(specs.size());
    for (size_t k = 0; k < specs.size(); ++k) {
      batch_inputs[k].name = specs[k].name;
      batch_inputs[k].width = specs[k].width;
    }
    thread = std::thread([this] { loop(); });
    std::string name = "batcher " + config.model;
    pthread_setname_np(thread.native_handle(), name.substr(0, 15).c_str());
  }

  const BatcherConfig config;
  const std::vector<TensorSpec> specs;
  const BatchRunner run;
  Metrics metrics;
  const std::vector<int> warm_up_rows;
  const int dispatch_rows;  // queued rows that start a batch without waiting

  mutable std::mutex mu;
  std::condition_variable wake;
  // Guarded by mu.
  bool stopping = false;
  std::map<int, std::deque<Pending>> levels;   // by priority, 0 first; never an empty deque
  std::multiset<Clock::time_point> deadlines;  // of the queued requests that have one
  size_t queued_requests = 0;
  int64_t queued_rows = 0;
  std::deque<std::promise<Status>> warm_ups;
  Stats counters;

  // Worker thread only.
  std::vector<Tensor> batch_inputs;  // concatenation buffers, reused across batches
  std::vector<int> prefix_rows;
  std::thread thread;

  std::string model_prefix() const {
    return config.model.empty() ? std::string() : fmt::format("model {}: ", config.model);
  }

  // Puts the request's inputs in the declared order and checks their shapes.
  Status validate(Request& r) const {
    const std::string at = model_prefix();
    if (r.rows < 1) {
      return Status::InvalidArgument(fmt::format("{}request has {} rows", at, r.rows));
    }
    if (r.rows > config.max_batch_size) {
      return Status::InvalidArgument(
          fmt::format("{}request has {} rows; at most {} fit in a batch (max_batch_size)", at,
                      r.rows, config.max_batch_size));
    }
    if (r.priority < 0) {
      return Status::InvalidArgument(
          fmt::format("{}priority {}: 0 is the highest, larger numbers are lower", at, r.priority));
    }
    auto& in = r.inputs;
    for (size_t k = 0; k < specs.size(); ++k) {
      const TensorSpec& spec = specs[k];
      auto found = std::find_if(in.begin() + static_cast<std::ptrdiff_t>(std::min(k, in.size())),
                                in.end(), [&](const Tensor& t) { return t.name == spec.name; });
      if (found == in.end()) {
        return Status::InvalidArgument(fmt::format("{}input '{}' is missing", at, spec.name));
      }
      std::swap(*found, in[k]);
      const Tensor& t = in[k];
      if (t.width != spec.width) {
        return Status::InvalidArgument(fmt::format("{}input '{}' has width {}, expected {}", at,
                                                   spec.name, t.width, spec.width));
      }
      if (static_cast<int64_t>(t.data.size()) != r.rows * spec.width) {
        return Status::InvalidArgument(
            fmt::format("{}input '{}' has {} values, expected rows x width = {} x {} = {}", at,
                        spec.name, t.data.size(), r.rows, spec.width, r.rows * spec.width));
      }
    }
    if (in.size() > specs.size()) {
      const std::string& extra = in[specs.size()].name;
      bool declared = std::any_of(specs.begin(), specs.end(),
                                  [&](const TensorSpec& s) { return s.name == extra; });
      return Status::InvalidArgument(fmt::format(
          "{}input '{}' {}", at, extra, declared ? "is given more than once" : "is not declared"));
    }
    return Status::Ok();
  }

  void submit(Request r, Done done) {
    Status refused = validate(r);
    if (!refused.ok()) {
      Metrics::count(metrics.invalid);
      done(std::move(refused));
      return;
    }
    {
      std::lock_guard lock(mu);
      const Clock::time_point now = Clock::now();
      if (stopping) {
        refused = Status::Unavailable(model_prefix() + "batcher is shutting down");
        Metrics::count(metrics.unavailable);
      } else if (r.deadline && *r.deadline <= now) {
        refused = Status::DeadlineExceeded(model_prefix() + "deadline passed before queueing");
        ++counters.expired;
        Metrics::count(metrics.expired);
      } else if (config.max_queue_size != 0 && queued_requests >= config.max_queue_size) {
        refused = Status::ResourceExhausted(fmt::format(
            "{}queue full ({} requests waiting); retry later", model_prefix(), queued_requests));
        ++counters.rejected;
        Metrics::count(metrics.queue_full);
      } else {
        if (r.deadline) deadlines.insert(*r.deadline);
        queued_rows += r.rows;
        ++queued_requests;
        publish_queued();
        levels[r.priority].push_back(
            Pending{std::move(r.inputs), r.rows, r.deadline, now, std::move(done)});
      }
    }
    if (!refused.ok()) {
      done(std::move(refused));
      return;
    }
    wake.notify_one();
  }

  Status warm_up() {
    std::future<Status> finished;
    {
      std::lock_guard lock(mu);
      if (stopping) return Status::Unavailable(model_prefix() + "batcher is shutting down");
      warm_ups.emplace_back();
      finished = warm_ups.back().get_future();
    }
    wake.notify_one();
    return finished.get();
  }

  void publish_queued() {
    if (metrics.queued != nullptr) metrics.queued->set(static_cast<double>(queued_requests));
  }

  void forget(const Pending& p) {
    if (p.deadline) deadlines.erase(deadlines.find(*p.deadline));
    queued_rows -= p.rows;
    --queued_requests;
  }

  // Moves the requests whose deadline is at or before `now` into `expired`. Holds mu.
  void take_expired(Clock::time_point now, std::vector<Pending>& expired) {
    if (deadlines.empty() || *deadlines.begin() > now) return;
    for (auto level = levels.begin(); level != levels.end();) {
      auto& queue = level->second;
      auto kept = queue.begin();
      for (auto it = queue.begin(); it != queue.end(); ++it) {
        if (it->deadline && *it->deadline <= now) {
          forget(*it);
          expired.push_back(std::move(*it));
        } else {
          if (kept != it) *kept = std::move(*it);
          ++kept;
        }
      }
      queue.erase(kept, queue.end());
      level = queue.empty() ? levels.erase(level) : std::next(level);
    }
    publish_queued();
  }

  Clock::time_point oldest_arrival() const {
    Clock::time_point oldest = Clock::time_point::max();
    for (const auto& [priority, queue] : levels) oldest = std::min(oldest, queue.front().arrival);
    return oldest;
  }

  // Takes the next batch: requests in priority then arrival order while they fit in
  // max_batch_size rows, cut back to the largest preferred size among the prefixes
  // unless all of them fill max_batch_size or make a preferred size. Holds mu.
  void take_batch(std::vector<Pending>& batch) {
    prefix_rows.clear();
    int rows = 0;
    bool full = false;
    for (auto level = levels.begin(); level != levels.end() && !full; ++level) {
      for (const Pending& p : level->second) {
        full = rows + p.rows > config.max_batch_size;
        if (full) break;
        rows += p.rows;
        prefix_rows.push_back(rows);
      }
    }
    const auto& preferred = config.preferred_batch_sizes;
    auto is_preferred = [&](int n) {
      return std::binary_search(preferred.begin(), preferred.end(), n);
    };
    size_t take = prefix_rows.size();
    if (rows != config.max_batch_size && !is_preferred(rows)) {
      for (size_t k = prefix_rows.size(); k-- > 0;) {
        if (is_preferred(prefix_rows[k])) {
          take = k + 1;
          break;
        }
      }
    }
    while (batch.size() < take) {
      auto level = levels.begin();
      forget(level->second.front());
      batch.push_back(std::move(level->second.front()));
      level->second.pop_front();
      if (level->second.empty()) levels.erase(level);
    }
    publish_queued();
  }

  void loop() {
    std::vector<Pending> expired;
    std::vector<Pending> batch;
    std::unique_lock lock(mu);
    while (!stopping) {
      if (!warm_ups.empty()) {
        std::promise<Status> finished = std::move(warm_ups.front());
        warm_ups.pop_front();
        lock.unlock();
        finished.set_value(run_warm_up());
        lock.lock();
        continue;
      }
      const Clock::time_point now = Clock::now();
      take_expired(now, expired);
      if (!expired.empty()) {
        lock.unlock();
        answer_expired(expired, now);
        lock.lock();
        continue;
      }
      if (queued_requests == 0) {
        wake.wait(lock);
        continue;
      }
      const Clock::time_point window_end = oldest_arrival() + config.max_queue_delay;
      if (queued_rows >= dispatch_rows || now >= window_end) {
        take_batch(batch);
        lock.unlock();
        run_batch(batch);
        lock.lock();
        continue;
      }
      Clock::time_point until = window_end;
      if (!deadlines.empty()) until = std::min(until, *deadlines.begin());
      wake.wait_until(lock, until);
    }
    // Shutting down: answer everything still waiting.
    std::vector<Pending> left;
    for (auto& [priority, queue] : levels) {
      for (Pending& p : queue) left.push_back(std::move(p));
    }
    levels.clear();
    deadlines.clear();
    queued_requests = 0;
    queued_rows = 0;
    publish_queued();
    std::deque<std::promise<Status>> unstarted = std::move(warm_ups);
    warm_ups.clear();
    lock.unlock();
    const std::string why = model_prefix() + "batcher shut down before the request ran";
    for (auto& w : unstarted) w.set_value(Status::Unavailable(why));
    Metrics::count(metrics.unavailable, left.size());
    for (Pending& p : left) p.done(Status::Unavailable(why));
  }

  void answer_expired(std::vector<Pending>& expired, Clock::time_point now) {
    {
      std::lock_guard lock(mu);
      counters.expired += expired.size();
    }
    Metrics::count(metrics.expired, expired.size());
    for (Pending& p : expired) {
      p.done(Status::DeadlineExceeded(fmt::format("{}expired in queue after {} ms", model_prefix(),
                                                  whole_ms_between(p.arrival, now))));
    }
    expired.clear();
  }

  Result<std::vector<Tensor>> call_runner(const std::vector<Tensor>& inputs, int rows) const {
    Result<std::vector<Tensor>> out = [&]() -> Result<std::vector<Tensor>> {
      try {
        return run(inputs, rows);
      } catch (const std::exception& e) {
        return Status::Internal(fmt::format("{}runner threw: {}", model_prefix(), e.what()));
      }
    }();
    if (!out.ok()) return out;
    for (const Tensor& t : *out) {
      if (t.width < 1 || static_cast<int64_t>(t.data.size()) != rows * t.width) {
        return Status::Internal(
            fmt::format("{}runner returned output '{}' with {} values of width {} for {} rows",
                        model_prefix(), t.name, t.data.size(), t.width, rows));
      }
    }
    return out;
  }

  void run_batch(std::vector<Pending>& batch) {
    const Clock::time_point start = Clock::now();
    int rows = 0;
    for (const Pending& p : batch) {
      rows += p.rows;
      if (metrics.queue_seconds != nullptr) {
        metrics.queue_seconds->observe(seconds_between(p.arrival, start));
      }
    }
    const std::vector<Tensor>* inputs = &batch.front().inputs;
    if (batch.size() > 1) {
      for (size_t k = 0; k < specs.size(); ++k) {
        std::vector<float>& joined = batch_inputs[k].data;
        joined.clear();
        for (const Pending& p : batch) {
          joined.insert(joined.end(), p.inputs[k].data.begin(), p.inputs[k].data.end());
        }
      }
      inputs = &batch_inputs;
    }
    Result<std::vector<Tensor>> out = call_runner(*inputs, rows);
    if (metrics.run_seconds != nullptr) {
      metrics.run_seconds->observe(seconds_between(start, Clock::now()));
      metrics.batch_rows->observe(rows);
      metrics.batch_requests->observe(static_cast<double>(batch.size()));
    }
    {
      std::lock_guard lock(mu);
      ++counters.batches;
      counters.rows += static_cast<uint64_t>(rows);
      (out.ok() ? counters.completed : counters.failed) += batch.size();
    }
    Metrics::count(out.ok() ? metrics.ok : metrics.error, batch.size());
    if (!out.ok()) {
      for (Pending& p : batch) p.done(out.status());
    } else if (batch.size() == 1) {
      batch.front().done(std::move(*out));
    } else {
      int64_t first_row = 0;
      for (Pending& p : batch) {
        std::vector<Tensor> own(out->size());
        for (size_t k = 0; k < own.size(); ++k) {
          const Tensor& all = (*out)[k];
          own[k].name = all.name;
          own[k].width = all.width;
          own[k].data.assign(all.data.begin() + first_row * all.width,
                             all.data.begin() + (first_row + p.rows) * all.width);
        }
        first_row += p.rows;
        p.done(std::move(own));
      }
    }
    batch.clear();
  }

  Status run_warm_up() {
    for (int rows : warm_up_rows) {
      for (Tensor& t : batch_inputs) t.data.assign(static_cast<size_t>(rows * t.width), 0.0f);
      Result<std::vector<Tensor>> out = call_runner(batch_inputs, rows);
      if (!out.ok()) {
        return Status(out.status().code(), fmt::format("{}warm-up with {} rows: {}", model_prefix(),
                                                       rows, out.status().message()));
      }
    }
    return Status::Ok();
  }
};

DynamicBatcher::DynamicBatcher(BatcherConfig config, std::vector<TensorSpec> inputs,
                               BatchRunner run, obs::Registry* metrics)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(inputs), std::move(run), metrics)) {
}

DynamicBatcher::~DynamicBatcher() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  impl_->thread.join();
}

Status DynamicBatcher::check(const BatcherConfig& config, const std::vector<TensorSpec>& inputs) {
  if (config.max_batch_size < 1) {
    return Status::InvalidArgument(
        fmt::format("max_batch_size is {}; it must be at least 1 row", config.max_batch_size));
  }
  int previous = 0;
  for (int p : config.preferred_batch_sizes) {
    if (p <= previous || p > config.max_batch_size) {
      return Status::InvalidArgument(
          fmt::format("preferred_batch_sizes: {} is out of order or outside 1..max_batch_size ({})",
                      p, config.max_batch_size));
    }
    previous = p;
  }
  if (config.max_queue_delay.count() < 0) {
    return Status::InvalidArgument("max_queue_delay is negative");
  }
  for (size_t k = 0; k < inputs.size(); ++k) {
    const TensorSpec& spec = inputs[k];
    if (spec.name.empty()) return Status::InvalidArgument(fmt::format("input {} has no name", k));
    if (spec.width < 1) {
      return Status::InvalidArgument(
          fmt::format("input '{}' has width {}; it must be at least 1", spec.name, spec.width));
    }
    for (size_t j = 0; j < k; ++j) {
      if (inputs[j].name == spec.name) {
        return Status::InvalidArgument(fmt::format("input '{}' is declared twice", spec.name));
      }
    }
  }
  return Status::Ok();
}

void DynamicBatcher::submit(Request request, Done done) {
  impl_->submit(std::move(request), std::move(done));
}

Status DynamicBatcher::warm_up() { return impl_->warm_up(); }

DynamicBatcher::Stats DynamicBatcher::stats() const {
  std::lock_guard lock(impl_->mu);
  Stats s = impl_->counters;
  s.queued = impl_->queued_requests;
  return s;
}

}  // namespace infera::sched
