// MemoryGuard: sampling, the least-squares trend, cleanup and the critical flag. The
// policy is documented on the class in guard.h.
#include <fmt/format.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>

#include "core/log.h"
#include "guard/guard.h"
#include "guard/utc_time.h"
#include "obs/metrics.h"

namespace infera::guard {
namespace {

constexpr size_t kMaxRecords = 100;
constexpr int kMinTrendSamples = 3;
// A refusal outside the critical state comes from a reading that has just recovered: the
// next tick (a fraction of a second) will have caught up.
constexpr double kNormalRetryAfterS = 2;
// While critical, the guard is already running every cleanup action each tick; what
// remains is for running requests to finish and free their KV blocks, which takes seconds.
constexpr double kCriticalRetryAfterS = 5;
constexpr double kBytesPerMb = 1024.0 * 1024.0;

enum class Reason { kNone, kThreshold, kPredicted };

const char* to_string(Reason reason) {
  return reason == Reason::kPredicted ? "predicted" : "threshold";
}

struct Sample {
  Clock::time_point at;
  double fraction = 0;
};

struct CleanupRecord {
  std::string action;
  std::chrono::system_clock::time_point at;
  Reason reason = Reason::kThreshold;
  double fraction_before = 0;
  double fraction_after = 0;
  uint64_t freed_bytes = 0;
};

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// The least-squares line through the samples: fraction = intercept + slope * t, with t in
// seconds since the first sample.
struct Trend {
  Clock::time_point origin;
  double intercept = 0;
  double slope_per_s = 0;
  double at(Clock::time_point when) const {
    return intercept + slope_per_s * seconds_between(origin, when);
  }
};

std::optional<Trend> fit_trend(const std::deque<Sample>& samples) {
  if (samples.size() < static_cast<size_t>(kMinTrendSamples)) return std::nullopt;
  const Clock::time_point origin = samples.front().at;
  double sum_t = 0, sum_f = 0, sum_tt = 0, sum_tf = 0;
  for (const Sample& s : samples) {
    const double t = seconds_between(origin, s.at);
    sum_t += t;
    sum_f += s.fraction;
    sum_tt += t * t;
    sum_tf += t * s.fraction;
  }
  const double n = static_cast<double>(samples.size());
  const double denominator = n * sum_tt - sum_t * sum_t;
  if (denominator <= 0) return std::nullopt;  // every sample at the same instant
  Trend trend;
  trend.origin = origin;
  trend.slope_per_s = (n * sum_tf - sum_t * sum_f) / denominator;
  trend.intercept = (sum_f - trend.slope_per_s * sum_t) / n;
  return trend;
}

nlohmann::json to_json(const CleanupRecord& r) {
  return {{"action", r.action},
          {"at", utc_iso8601(r.at)},
          {"reason", to_string(r.reason)},
          {"fraction_before", r.fraction_before},
          {"fraction_after", r.fraction_after},
          {"freed_bytes", r.freed_bytes}};
}

}  // namespace

struct MemoryGuard::Impl {
  Impl(GuardConfig config_in, MemorySource& source_in, std::vector<CleanupAction> actions_in,
       obs::Registry& metrics)
      : config(config_in),
        source(source_in),
        actions(std::move(actions_in)),
        used_fraction_gauge(metrics.gauge("infera_memory_used_fraction",
                                          "Memory in use: the tighter of system and cgroup")),
        rss_gauge(metrics.gauge("infera_memory_process_rss_bytes", "Resident set size")),
        critical_gauge(metrics.gauge("infera_memory_critical",
                                     "1 while memory is above the critical threshold")) {
    for (const CleanupAction& action : actions) {
      action_counters.push_back(&metrics.counter("infera_memory_cleanup_actions_total",
                                                 "Memory cleanup actions run",
                                                 {{"action", action.name}}));
    }
  }

  // Applies the hysteresis rule; returns the new state when it changed. REQUIRES: mu held.
  std::optional<bool> update_critical_locked(double fraction) {
    const bool was = critical.load(std::memory_order_relaxed);
    const bool is = was ? fraction >= config.critical_threshold - config.critical_hysteresis
                        : fraction >= config.critical_threshold;
    if (is == was) return std::nullopt;
    critical.store(is, std::memory_order_relaxed);
    critical_gauge.set(is ? 1 : 0);
    return is;
  }

  // REQUIRES: mu held; `now` is the newest sample.
  Reason decide_locked(Clock::time_point now, double fraction) const {
    if (fraction >= config.cleanup_threshold) return Reason::kThreshold;
    const auto trend = fit_trend(samples);
    if (trend && trend->slope_per_s > 0 &&
        trend->at(now + config.predict_horizon) >= config.cleanup_threshold) {
      return Reason::kPredicted;
    }
    return Reason::kNone;
  }

  void publish(const MemoryReading& reading) {
    used_fraction_gauge.set(reading.used_fraction());
    rss_gauge.set(static_cast<double>(reading.process_rss_bytes));
  }

  // Cleanup actions run on the guard thread, where an escaping exception (bad_alloc is
  // likely under memory pressure) would end the process; one failed action must not
  // stop the next.
  static uint64_t run_action(const CleanupAction& action) {
    if (!action.run) return 0;
    try {
      return action.run();
    } catch (const std::exception& e) {
      log::error("memory.cleanup_failed", "cleanup action {} failed: {}", action.name, e.what());
      return 0;
    }
  }

  // Runs the chain for `reason` starting from `reading`; returns the last reading.
  MemoryReading run_cleanup(Reason reason, MemoryReading reading) {
    for (size_t i = 0; i < actions.size(); ++i) {
      const double before = reading.used_fraction();
      const uint64_t freed = run_action(actions[i]);
      reading = source.read();
      const double after = reading.used_fraction();
      action_counters[i]->inc();
      // Under sustained pressure the chain runs every tick; runs that change nothing go to
      // debug so they do not bury the ones that did.
      const auto level = freed > 0 || after < before ? log::Level::kInfo : log::Level::kDebug;
      if (log::enabled(level)) {
        log::write(level, "memory.cleanup",
                   fmt::format("{} ({}) freed {} bytes: memory {:.1f}% -> {:.1f}%", actions[i].name,
                               to_string(reason), freed, before * 100, after * 100));
      }
      {
        std::lock_guard lock(mu);
        records.push_front(
            {actions[i].name, std::chrono::system_clock::now(), reason, before, after, freed});
        if (records.size() > kMaxRecords) records.pop_back();
      }
      if (reason == Reason::kPredicted || after < config.cleanup_threshold) break;
    }
    return reading;
  }

  GuardConfig config;
  MemorySource& source;
  std::vector<CleanupAction> actions;
  std::vector<obs::Counter*> action_counters;  // parallel to actions
  obs::Gauge& used_fraction_gauge;
  obs::Gauge& rss_gauge;
  obs::Gauge& critical_gauge;
  std::atomic<bool> critical{false};  // written under mu, read anywhere

  std::mutex tick_mu;     // one tick at a time (the thread and direct callers)
  mutable std::mutex mu;  // guards the state below; never held while actions run
  std::deque<Sample> samples;
  MemoryReading last_reading;
  bool cleaning = false;              // the last tick decided to clean
  std::deque<CleanupRecord> records;  // newest first

  std::mutex lifecycle_mu;  // serialises start() and stop()
  std::mutex thread_mu;     // guards stopping
  std::condition_variable wake;
  bool stopping = false;
  std::thread thread;
};

MemoryGuard::MemoryGuard(GuardConfig config, MemorySource& source,
                         std::vector<CleanupAction> actions, obs::Registry& metrics)
    : impl_(std::make_unique<Impl>(config, source, std::move(actions), metrics)) {}

MemoryGuard::~MemoryGuard() { stop(); }

void MemoryGuard::start() {
  Impl& g = *impl_;
  std::lock_guard lifecycle(g.lifecycle_mu);
  if (g.thread.joinable()) return;
  {
    std::lock_guard lock(g.thread_mu);
    g.stopping = false;
  }
  g.thread = std::thread([this] {
    Impl& guard = *impl_;
    const auto interval = std::max(guard.config.interval, std::chrono::milliseconds(1));
    std::unique_lock lock(guard.thread_mu);
    while (!guard.stopping) {
      lock.unlock();
      tick(Clock::now());
      lock.lock();
      guard.wake.wait_for(lock, interval, [&guard] { return guard.stopping; });
    }
  });
  pthread_setname_np(g.thread.native_handle(), "memory guard");
}

void MemoryGuard::stop() {
  Impl& g = *impl_;
  std::lock_guard lifecycle(g.lifecycle_mu);
  if (!g.thread.joinable()) return;
  {
    std::lock_guard lock(g.thread_mu);
    g.stopping = true;
  }
  g.wake.notify_all();
  g.thread.join();
}

void MemoryGuard::tick(Clock::time_point now) {
  Impl& g = *impl_;
  std::lock_guard serial(g.tick_mu);
  const auto notify = [this](std::optional<bool> flip, double fraction) {
    if (!flip) return;
    if (*flip) {
      log::warn("memory.critical", "memory {:.1f}% >= critical {:.0f}%: new work is refused",
                fraction * 100, impl_->config.critical_threshold * 100);
    } else {
      log::info("memory.recovered", "memory {:.1f}%: critical state cleared", fraction * 100);
    }
    if (on_critical_change) on_critical_change(*flip, fraction);
  };

  const MemoryReading reading = g.source.read();
  const double fraction = reading.used_fraction();
  std::optional<bool> flip;
  Reason reason;
  {
    std::lock_guard lock(g.mu);
    g.samples.push_back({now, fraction});
    while (g.samples.size() > static_cast<size_t>(std::max(g.config.trend_samples, 1))) {
      g.samples.pop_front();
    }
    g.last_reading = reading;
    flip = g.update_critical_locked(fraction);
    reason = g.decide_locked(now, fraction);
    g.cleaning = reason != Reason::kNone;
  }
  g.publish(reading);
  notify(flip, fraction);
  if (reason == Reason::kNone) return;

  const MemoryReading after = g.run_cleanup(reason, reading);
  const double after_fraction = after.used_fraction();
  {
    std::lock_guard lock(g.mu);
    // The samples before the cleanup describe a process that no longer exists; a trend
    // through them would keep predicting the crossing it just prevented.
    g.samples.assign(1, {now, after_fraction});
    g.last_reading = after;
    flip = g.update_critical_locked(after_fraction);
  }
  g.publish(after);
  notify(flip, after_fraction);
}

bool MemoryGuard::critical() const { return impl_->critical.load(std::memory_order_relaxed); }

double MemoryGuard::retry_after_seconds() const {
  return critical() ? kCriticalRetryAfterS : kNormalRetryAfterS;
}

nlohmann::json MemoryGuard::stats() const {
  const Impl& g = *impl_;
  std::lock_guard lock(g.mu);
  const MemoryReading& r = g.last_reading;
  nlohmann::json out;
  out["process"] = {{"rss_bytes", r.process_rss_bytes},
                    {"rss_mb", static_cast<double>(r.process_rss_bytes) / kBytesPerMb}};
  const double system_used_percent =
      r.system_total_bytes == 0 ? 0.0
                                : 100.0 * (1.0 - static_cast<double>(r.system_available_bytes) /
                                                     static_cast<double>(r.system_total_bytes));
  out["system"] = {{"total_bytes", r.system_total_bytes},
                   {"available_bytes", r.system_available_bytes},
                   {"used_percent", system_used_percent}};
  if (r.cgroup_current_bytes) {
    out["cgroup"] = {{"current_bytes", *r.cgroup_current_bytes},
                     {"max_bytes", r.cgroup_max_bytes ? nlohmann::json(*r.cgroup_max_bytes)
                                                      : nlohmann::json(nullptr)}};
  } else {
    out["cgroup"] = nullptr;
  }
  out["used_fraction"] = r.used_fraction();
  const auto trend = fit_trend(g.samples);
  if (trend) {
    const double predicted = trend->at(g.samples.back().at + g.config.predict_horizon);
    out["predicted_fraction"] = std::clamp(predicted, 0.0, 1.0);
  } else {
    out["predicted_fraction"] = nullptr;
  }
  out["state"] = critical() ? "critical" : g.cleaning ? "cleanup" : "normal";
  out["thresholds"] = {{"cleanup", g.config.cleanup_threshold},
                       {"critical", g.config.critical_threshold}};
  nlohmann::json actions = nlohmann::json::array();
  for (const CleanupRecord& record : g.records) actions.push_back(to_json(record));
  out["actions"] = std::move(actions);
  out["samples"] = g.samples.size();
  return out;
}

}  // namespace infera::guard
