// Watchdog: stall detection over engine loops from their progress counters.
#include <fmt/format.h>

#include <map>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "guard/guard.h"
#include "obs/metrics.h"

namespace infera::guard {
namespace {

struct Loop {
  uint64_t id = 0;  // tells a re-added loop from the one a tick sampled
  std::function<ProgressSample()> probe;
  bool sampled = false;
  int64_t last_steps = 0;
  Clock::time_point last_progress;  // last tick with a new step or nothing pending
  bool stalled = false;
  std::string reason;  // why it is stalled; empty otherwise
};

struct Probe {
  std::string name;
  uint64_t id = 0;
  std::function<ProgressSample()> probe;
};

struct Transition {
  std::string loop;
  bool stalled = false;
  std::string reason;
};

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

std::string stall_reason(const std::string& name, double stalled_s, int64_t pending) {
  return fmt::format("engine '{}' made no step for {:.1f} s with {} request{} pending", name,
                     stalled_s, pending, pending == 1 ? "" : "s");
}

}  // namespace

struct Watchdog::Impl {
  Impl(std::chrono::milliseconds stall_timeout_in, SelfHealingLog& log_in, obs::Registry& metrics)
      : stall_timeout(stall_timeout_in),
        log(log_in),
        stalled_gauge(metrics.gauge("infera_watchdog_stalled_loops",
                                    "Engine loops with pending work and no recent step")) {}

  // REQUIRES: mu held.
  void publish_locked() const {
    int stalled = 0;
    for (const auto& [name, loop] : loops) stalled += loop.stalled ? 1 : 0;
    stalled_gauge.set(stalled);
  }

  // Advances one loop with a fresh sample; returns its transition, if any.
  // REQUIRES: mu held.
  std::optional<Transition> advance_locked(const std::string& name, Loop& loop,
                                           const ProgressSample& sample,
                                           Clock::time_point now) const {
    if (!loop.sampled || sample.steps_completed != loop.last_steps || sample.pending <= 0) {
      const bool stepped = loop.sampled && sample.steps_completed != loop.last_steps;
      const double stalled_s = seconds_between(loop.last_progress, now);
      loop.sampled = true;
      loop.last_steps = sample.steps_completed;
      loop.last_progress = now;
      if (!loop.stalled) return std::nullopt;
      loop.stalled = false;
      loop.reason.clear();
      return Transition{
          name, false,
          stepped ? fmt::format("engine '{}' stepped again after {:.1f} s", name, stalled_s)
                  : fmt::format("engine '{}' has no requests pending", name)};
    }
    const double stalled_s = seconds_between(loop.last_progress, now);
    if (now - loop.last_progress < stall_timeout) return std::nullopt;
    loop.reason = stall_reason(name, stalled_s, sample.pending);
    if (loop.stalled) return std::nullopt;
    loop.stalled = true;
    return Transition{name, true, loop.reason};
  }

  const std::chrono::milliseconds stall_timeout;
  SelfHealingLog& log;
  obs::Gauge& stalled_gauge;

  std::mutex tick_mu;     // one tick at a time, so transitions are reported in order
  mutable std::mutex mu;  // guards the fields below; never held while probing or notifying
  std::map<std::string, Loop> loops;
  uint64_t next_id = 1;
};

Watchdog::Watchdog(std::chrono::milliseconds stall_timeout, SelfHealingLog& log,
                   obs::Registry& metrics)
    : impl_(std::make_unique<Impl>(stall_timeout, log, metrics)) {}

Watchdog::~Watchdog() = default;

void Watchdog::add(const std::string& name, std::function<ProgressSample()> probe) {
  std::lock_guard lock(impl_->mu);
  Loop loop;
  loop.id = impl_->next_id++;
  loop.probe = std::move(probe);
  impl_->loops[name] = std::move(loop);
  impl_->publish_locked();
}

void Watchdog::remove(const std::string& name) {
  bool was_stalled = false;
  {
    std::lock_guard lock(impl_->mu);
    const auto it = impl_->loops.find(name);
    if (it == impl_->loops.end()) return;
    was_stalled = it->second.stalled;
    impl_->loops.erase(it);
    impl_->publish_locked();
  }
  if (was_stalled && on_change) {
    on_change(name, false, fmt::format("engine '{}' removed while stalled", name));
  }
}

void Watchdog::tick(Clock::time_point now) {
  Impl& w = *impl_;
  std::lock_guard serial(w.tick_mu);
  std::vector<Probe> probes;
  {
    std::lock_guard lock(w.mu);
    for (const auto& [name, loop] : w.loops) probes.push_back({name, loop.id, loop.probe});
  }
  // Probes read an engine's counters and may take that engine's lock.
  std::vector<ProgressSample> samples;
  samples.reserve(probes.size());
  for (const Probe& p : probes) samples.push_back(p.probe ? p.probe() : ProgressSample{});

  std::vector<Transition> transitions;
  {
    std::lock_guard lock(w.mu);
    for (size_t i = 0; i < probes.size(); ++i) {
      const auto it = w.loops.find(probes[i].name);
      if (it == w.loops.end() || it->second.id != probes[i].id) continue;
      if (auto t = w.advance_locked(it->first, it->second, samples[i], now)) {
        transitions.push_back(std::move(*t));
      }
    }
    w.publish_locked();
  }
  for (const Transition& t : transitions) {
    w.log.record(t.stalled ? "engine_stalled" : "engine_recovered", t.reason);
    if (on_change) on_change(t.loop, t.stalled, t.reason);
  }
}

bool Watchdog::healthy() const {
  std::lock_guard lock(impl_->mu);
  for (const auto& [name, loop] : impl_->loops) {
    if (loop.stalled) return false;
  }
  return true;
}

std::string Watchdog::reason() const {
  std::lock_guard lock(impl_->mu);
  std::string joined;
  for (const auto& [name, loop] : impl_->loops) {
    if (!loop.stalled) continue;
    if (!joined.empty()) joined += "; ";
    joined += loop.reason;
  }
  return joined;
}

}  // namespace infera::guard
