// Metrics registry: counters, gauges and histograms with labels, exported as
// Prometheus text (/metrics) and JSON (/api/stats).
//
// Histograms use fixed log-spaced buckets (4 per doubling, ~19% wide) from 1 µs to
// ~1.2e6 units, so P50/P95/P99 estimates are within one bucket width (±10%) and
// recording is a few relaxed atomic increments. Prometheus gets every 4th bucket
// boundary (powers of two), which keeps its output small and stays exact.
//
// Thread-safety: all methods may be called from any thread. Metric objects live as
// long as the registry; references returned by the registry stay valid.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace infera::obs {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void add(double v);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  static constexpr int kBucketsPerDoubling = 4;
  static constexpr int kNumBuckets = 4 * 41;  // 2^-20 .. 2^21 units
  static double upper_bound(int bucket);      // inclusive upper bound of bucket i

  void observe(double value);

  struct Snapshot {
    uint64_t count = 0;
    double sum = 0;
    std::array<uint64_t, kNumBuckets + 1> buckets{};  // last one: +Inf
    double quantile(double q) const;  // 0 when empty; linear inside the bucket
    double mean() const { return count ? sum / static_cast<double>(count) : 0; }
  };
  Snapshot snapshot() const;

 private:
  std::array<std::atomic<uint64_t>, kNumBuckets + 1> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

class Registry {
 public:
  // Returns the metric with this name and labels, creating it on first use. A name
  // keeps the kind and help of its first registration. `unit` (e.g. "seconds") is
  // reported in JSON.
  Counter& counter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge& gauge(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram& histogram(const std::string& name, const std::string& help,
                       const Labels& labels = {});

  // Runs `collect` before every export (prometheus_text, json), e.g. to copy a
  // subsystem's pull-style stats into gauges. Thread-safe; never removed.
  void add_collector(std::function<void()> collect);

  std::string prometheus_text() const;
  // {"name": [{"labels":{...}, "value": v} or {"labels", "count", "sum", "mean",
  //  "p50", "p95", "p99"}], ...}
  // Only families whose name starts with one of `prefixes` (all when empty).
  std::string json(const std::vector<std::string>& prefixes = {}) const;

  static Registry& global();

 private:
  enum class Kind { kCounter, kGauge, kHistogram };
  struct Family {
    Kind kind;
    std::string help;
    std::map<Labels, std::unique_ptr<Counter>> counters;
    std::map<Labels, std::unique_ptr<Gauge>> gauges;
    std::map<Labels, std::unique_ptr<Histogram>> histograms;
  };
  Family& family(const std::string& name, Kind kind, const std::string& help);

  void run_collectors() const;

  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
  mutable std::mutex collectors_mu_;
  std::vector<std::function<void()>> collectors_;
};

}  // namespace infera::obs
