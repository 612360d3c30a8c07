// AnomalyDetector: flags windows whose traffic looks unlike the recent past, on
// four signals, and raises them as alerts in an AlertManager.
//
// Signals, each measured per fixed window (AnomalyConfig::window, aligned to
// multiples of the window on the steady clock):
//   latency_p95   P95 of request latency, ms      (skipped when no requests)
//   error_rate    errors / requests, 0..1         (skipped when no requests)
//   request_rate  requests per second              (an empty window counts as 0)
//   ttft_p95      P95 of time to first token, ms  (skipped when no TTFT samples)
//
// Evaluation when a window closes: the baseline of a signal is the mean and the
// population standard deviation σ of its last `baseline_windows` normal windows.
// Until the baseline holds `min_baseline_windows` values every window is taken as
// normal. After that, a value outside mean ± sigmas·σ_eff is anomalous: it opens
// (or refreshes) alert "anomaly_<signal>" with severity "warning" and stays out of
// the baseline; the next normal window resolves the alert. Because anomalous
// windows never join the baseline, a lasting shift keeps the alert firing until
// the signal returns to its old level.
//
// σ floor: a steady signal has σ ≈ 0, which would make any jitter anomalous, so
//   σ_eff = max(σ, 5% of |mean|, floor), floor = 1 ms for latency_p95 and
//   ttft_p95, 0.01 for error_rate, one request per window for request_rate.
//
// Thread-safety: every method may be called from any thread (record_* from
// request threads, tick from a maintenance thread). Whichever call first sees that
// a window has ended closes and evaluates it; the AlertManager is called under the
// detector's lock so alerts change in window order (the manager only queues I/O).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace infera::obs {

class AlertManager;

struct AnomalyConfig {
  std::chrono::milliseconds window{10000};  // length of one measurement window, > 0
  int baseline_windows = 30;                // normal windows kept per signal, >= 1
  int min_baseline_windows = 5;             // baseline size before judging, >= 1
  double sigmas = 2.0;                      // distance from the mean, in σ_eff, > 0
};

class AnomalyDetector {
 public:
  // `alerts` must outlive the detector. Out-of-range config values are clamped to
  // the bounds documented on AnomalyConfig.
  AnomalyDetector(AnomalyConfig config, AlertManager& alerts);
  AnomalyDetector(const AnomalyDetector&) = delete;
  AnomalyDetector& operator=(const AnomalyDetector&) = delete;

  // One finished request; `error` for a failed one (HTTP status >= 500).
  void record_request(double latency_ms, bool error, std::chrono::steady_clock::time_point now);
  // Time to first token of one generation.
  void record_ttft(double ttft_ms, std::chrono::steady_clock::time_point now);
  // Closes and evaluates every window that ended at or before `now`. Call it at
  // least once per window so that quiet periods are noticed.
  void tick(std::chrono::steady_clock::time_point now);

  // {"window_ms", "signals":{"<signal>":{"unit","baseline_windows","mean","sigma",
  //  "sigma_effective","last"(null before the first value),"firing"}}}
  nlohmann::json state() const;

 private:
  enum Signal { kLatencyP95, kErrorRate, kRequestRate, kTtftP95, kSignalCount };
  struct SignalState {
    std::deque<double> baseline;  // last normal values, oldest first
    double last = 0;
    bool has_last = false;
    bool firing = false;
  };

  // Closes windows that ended at or before `now`. REQUIRES: mu_ held.
  void advance(std::chrono::steady_clock::time_point now);
  void close_window();                         // REQUIRES: mu_ held
  void evaluate(Signal signal, double value);  // REQUIRES: mu_ held
  double sigma_floor(Signal signal) const;

  const AnomalyConfig config_;
  AlertManager& alerts_;

  mutable std::mutex mu_;
  bool started_ = false;
  std::chrono::steady_clock::time_point window_start_;
  int64_t requests_ = 0;
  int64_t errors_ = 0;
  int64_t ttft_samples_ = 0;
  // This window's samples, at most a fixed number each (a uniform reservoir beyond
  // it); their capacity is reused from window to window.
  std::vector<double> latencies_ms_;
  std::vector<double> ttfts_ms_;
  uint64_t random_state_ = 0x9e3779b97f4a7c15;  // for the reservoirs
  std::array<SignalState, kSignalCount> signals_;
};

}  // namespace infera::obs
