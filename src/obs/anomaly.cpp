#include "obs/anomaly.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "obs/alerts.h"

namespace infera::obs {
namespace {

using Clock = std::chrono::steady_clock;

// Enough for a stable P95 (500 samples above it) while bounding memory per window.
constexpr size_t kMaxSamplesPerWindow = 10000;
constexpr double kRelativeSigmaFloor = 0.05;

struct SignalInfo {
  const char* name;   // key in state() and suffix of the alert name
  const char* label;  // for messages
  const char* unit;
};
constexpr SignalInfo kSignals[] = {
    {"latency_p95", "latency P95", "ms"},
    {"error_rate", "error rate", ""},
    {"request_rate", "request rate", "req/s"},
    {"ttft_p95", "TTFT P95", "ms"},
};

AnomalyConfig sanitized(AnomalyConfig c) {
  c.window = std::max(c.window, std::chrono::milliseconds(1));
  c.baseline_windows = std::max(c.baseline_windows, 1);
  c.min_baseline_windows = std::clamp(c.min_baseline_windows, 1, c.baseline_windows);
  return c;
}

// splitmix64 (Steele, Lea & Flood 2014): a tiny, good-enough generator.
uint64_t next_random(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
  z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
  return z ^ (z >> 31);
}

// Reservoir sampling, Algorithm R (Vitter 1985): after `seen` samples each one is
// kept with equal probability. `seen` counts `value` itself.
void add_sample(std::vector<double>& samples, int64_t seen, double value, uint64_t& random_state) {
  if (samples.size() < kMaxSamplesPerWindow) {
    samples.push_back(value);
    return;
  }
  const uint64_t slot = next_random(random_state) % static_cast<uint64_t>(seen);
  if (slot < kMaxSamplesPerWindow) samples[slot] = value;
}

// Nearest-rank P95. REQUIRES: !samples.empty(); reorders them.
double p95(std::vector<double>& samples) {
  const auto rank = static_cast<size_t>(std::ceil(0.95 * static_cast<double>(samples.size())));
  const auto nth = samples.begin() + static_cast<std::ptrdiff_t>(std::max<size_t>(rank, 1) - 1);
  std::nth_element(samples.begin(), nth, samples.end());
  return *nth;
}

struct Stats {
  double mean = 0;
  double sigma = 0;
};

Stats stats_of(const std::deque<double>& values) {
  Stats s;
  if (values.empty()) return s;
  for (double v : values) s.mean += v;
  s.mean /= static_cast<double>(values.size());
  double squares = 0;
  for (double v : values) squares += (v - s.mean) * (v - s.mean);
  s.sigma = std::sqrt(squares / static_cast<double>(values.size()));
  return s;
}

// See the header: the σ floor that keeps a steady signal from alerting on jitter.
double effective_sigma(const Stats& base, double absolute_floor) {
  return std::max({base.sigma, kRelativeSigmaFloor * std::abs(base.mean), absolute_floor});
}

std::string with_unit(double value, const char* unit) {
  return *unit ? fmt::format("{:.4g} {}", value, unit) : fmt::format("{:.4g}", value);
}

}  // namespace

AnomalyDetector::AnomalyDetector(AnomalyConfig config, AlertManager& alerts)
    : config_(sanitized(config)), alerts_(alerts) {}

void AnomalyDetector::record_request(double latency_ms, bool error, Clock::time_point now) {
  std::lock_guard lock(mu_);
  advance(now);
  requests_++;
  if (error) errors_++;
  add_sample(latencies_ms_, requests_, latency_ms, random_state_);
}

void AnomalyDetector::record_ttft(double ttft_ms, Clock::time_point now) {
  std::lock_guard lock(mu_);
  advance(now);
  ttft_samples_++;
  add_sample(ttfts_ms_, ttft_samples_, ttft_ms, random_state_);
}

void AnomalyDetector::tick(Clock::time_point now) {
  std::lock_guard lock(mu_);
  advance(now);
}

void AnomalyDetector::advance(Clock::time_point now) {
  const auto window = std::chrono::duration_cast<Clock::duration>(config_.window);
  if (!started_) {
    auto index = now.time_since_epoch() / window;
    if (now.time_since_epoch() < index * window) --index;  // floor for times before the epoch
    window_start_ = Clock::time_point(index * window);
    started_ = true;
    return;
  }
  if (now < window_start_ + window) return;
  const int64_t ended = (now - window_start_) / window;
  // After the window with data, empty windows all look alike: once baseline_windows
  // of them have entered the baseline (or all were anomalous) more change nothing,
  // so a long gap is evaluated as that many and then skipped.
  const int64_t evaluated = std::min<int64_t>(ended, config_.baseline_windows + 2);
  for (int64_t i = 0; i < evaluated; ++i) {
    close_window();
    window_start_ += window;
  }
  window_start_ += (ended - evaluated) * window;
}

void AnomalyDetector::close_window() {
  const double window_s = std::chrono::duration<double>(config_.window).count();
  evaluate(kRequestRate, static_cast<double>(requests_) / window_s);
  if (requests_ > 0) {
    evaluate(kErrorRate, static_cast<double>(errors_) / static_cast<double>(requests_));
    evaluate(kLatencyP95, p95(latencies_ms_));
  }
  if (!ttfts_ms_.empty()) evaluate(kTtftP95, p95(ttfts_ms_));
  requests_ = 0;
  errors_ = 0;
  ttft_samples_ = 0;
  latencies_ms_.clear();
  ttfts_ms_.clear();
}

double AnomalyDetector::sigma_floor(Signal signal) const {
  switch (signal) {
    case kLatencyP95:
    case kTtftP95:
      return 1.0;  // ms
    case kErrorRate:
      return 0.01;
    case kRequestRate:
      return 1.0 / std::chrono::duration<double>(config_.window).count();  // 1 per window
    case kSignalCount:
      break;
  }
  return 0;
}

void AnomalyDetector::evaluate(Signal signal, double value) {
  SignalState& s = signals_[signal];
  const SignalInfo& info = kSignals[signal];
  s.last = value;
  s.has_last = true;
  if (static_cast<int>(s.baseline.size()) >= config_.min_baseline_windows) {
    const Stats base = stats_of(s.baseline);
    const double sigma = effective_sigma(base, sigma_floor(signal));
    const double allowed = config_.sigmas * sigma;
    if (std::abs(value - base.mean) > allowed) {
      const bool above = value > base.mean;
      const std::string message =
          fmt::format("{} {} over the last {} ms is {} its baseline {} (σ {}, allowed ±{})",
                      info.label, with_unit(value, info.unit), config_.window.count(),
                      above ? "above" : "below", with_unit(base.mean, info.unit),
                      with_unit(sigma, info.unit), with_unit(allowed, info.unit));
      alerts_.open(std::string("anomaly_") + info.name, "warning", message, value,
                   above ? base.mean + allowed : base.mean - allowed);
      s.firing = true;
      return;  // anomalous windows stay out of the baseline
    }
  }
  s.baseline.push_back(value);
  if (static_cast<int>(s.baseline.size()) > config_.baseline_windows) s.baseline.pop_front();
  if (s.firing) {
    alerts_.resolve(std::string("anomaly_") + info.name,
                    fmt::format("{} back to normal: {}", info.label, with_unit(value, info.unit)));
    s.firing = false;
  }
}

nlohmann::json AnomalyDetector::state() const {
  std::lock_guard lock(mu_);
  nlohmann::json signals = nlohmann::json::object();
  for (int i = 0; i < kSignalCount; ++i) {
    const SignalState& s = signals_[i];
    const Stats base = stats_of(s.baseline);
    signals[kSignals[i].name] = {
        {"unit", kSignals[i].unit},
        {"baseline_windows", s.baseline.size()},
        {"mean", base.mean},
        {"sigma", base.sigma},
        {"sigma_effective", effective_sigma(base, sigma_floor(static_cast<Signal>(i)))},
        {"last", s.has_last ? nlohmann::json(s.last) : nlohmann::json(nullptr)},
        {"firing", s.firing},
    };
  }
  return {{"window_ms", config_.window.count()}, {"signals", std::move(signals)}};
}

}  // namespace infera::obs
