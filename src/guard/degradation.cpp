// DegradationLadder: overload levels with hysteresis (guard.h).
#include <fmt/format.h>

#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>

#include "guard/guard.h"
#include "obs/metrics.h"

namespace infera::guard {

using Clock = std::chrono::steady_clock;

struct DegradationLadder::Impl {
  Impl(DegradationConfig c, SelfHealingLog& l, obs::Registry& m)
      : config(c), log(l), gauge(m.gauge("infera_degradation_level", "Overload level: 0 normal, 1 shorten, 2 refuse-low")) {
    gauge.set(0);
  }

  DegradationConfig config;
  SelfHealingLog& log;
  obs::Gauge& gauge;
  std::atomic<int> level{0};
  mutable std::mutex mu;  // the fields below
  double last_signal = 0;
  Clock::time_point since = Clock::now();
  Clock::time_point calm_since{};  // when the signal went below the leave mark (none: {})

  // The queue delay at which `l` (1 or 2) is entered; 0: never.
  double threshold(int l) const { return l == 1 ? config.shorten_queue_s : l == 2 ? config.refuse_queue_s : 0; }

  int target(double signal) const {
    int t = 0;
    for (int l = 1; l <= 2; ++l) {
      if (threshold(l) > 0 && signal >= threshold(l)) t = l;
    }
    return t;
  }
};

DegradationLadder::DegradationLadder(DegradationConfig config, SelfHealingLog& log, obs::Registry& metrics)
    : impl_(std::make_unique<Impl>(config, log, metrics)) {}

DegradationLadder::~DegradationLadder() = default;

void DegradationLadder::observe(double queue_delay_s, Clock::time_point now) {
  Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  d.last_signal = queue_delay_s;
  const int current = d.level.load();
  const int up = d.target(queue_delay_s);
  if (up > current) {
    d.level.store(up);
    d.since = now;
    d.calm_since = {};
    d.gauge.set(up);
    d.log.record("degrade", fmt::format("level {} ({}): estimated queue delay {:.1f} s", up, name(up), queue_delay_s));
    return;
  }
  if (current == 0) return;
  // Leave one level once the signal has stayed under half its threshold for `hold`.
  if (queue_delay_s >= d.threshold(current) / 2) {
    d.calm_since = {};
    return;
  }
  if (d.calm_since == Clock::time_point{}) d.calm_since = now;
  if (now - d.calm_since < d.config.hold) return;
  int down = current - 1;
  while (down > 0 && d.threshold(down) <= 0) --down;  // a level that is off is skipped
  d.level.store(down);
  d.since = now;
  d.calm_since = {};
  d.gauge.set(down);
  d.log.record("recover", fmt::format("level {} ({}): estimated queue delay {:.1f} s", down, name(down), queue_delay_s));
}

int DegradationLadder::level() const { return impl_->level.load(); }

const char* DegradationLadder::name(int level) {
  switch (level) {
    case 0: return "normal";
    case 1: return "shorten";
    case 2: return "refuse-low";
  }
  return "unknown";
}

const DegradationConfig& DegradationLadder::config() const { return impl_->config; }

nlohmann::json DegradationLadder::to_json() const {
  std::lock_guard lock(impl_->mu);
  const int l = impl_->level.load();
  return {{"level", l},
          {"name", name(l)},
          {"queue_delay_s", impl_->last_signal},
          {"since_s", std::chrono::duration<double>(Clock::now() - impl_->since).count()}};
}

}  // namespace infera::guard
