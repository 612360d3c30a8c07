#include "obs/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/log.h"

namespace infera::obs {
namespace {

constexpr int kMinExponent = -20;

int bucket_index(double v) {
  if (!(v > 0)) return 0;
  double pos = (std::log2(v) - kMinExponent) * Histogram::kBucketsPerDoubling;
  int idx = static_cast<int>(std::ceil(pos)) - 1;
  if (idx < 0) return 0;
  if (idx >= Histogram::kNumBuckets) return Histogram::kNumBuckets;  // +Inf
  return idx;
}

void atomic_add(std::atomic<double>& a, double v) {
  double cur = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}

std::string format_value(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  return fmt::format("{}", v);
}

std::string prom_labels(const Labels& labels, const std::string& extra_key = {},
                        const std::string& extra_value = {}) {
  if (labels.empty() && extra_key.empty()) return {};
  std::string out = "{";
  bool first = true;
  auto add = [&](const std::string& k, const std::string& v) {
    if (!first) out += ',';
    first = false;
    out += k;
    out += "=\"";
    for (char c : v) {
      if (c == '"' || c == '\\') out += '\\';
      if (c == '\n') {
        out += "\\n";
        continue;
      }
      out += c;
    }
    out += '"';
  };
  for (const auto& [k, v] : labels) add(k, v);
  if (!extra_key.empty()) add(extra_key, extra_value);
  out += '}';
  return out;
}

std::string json_labels(const Labels& labels) {
  std::string out = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i) out += ',';
    out += fmt::format("\"{}\":\"{}\"", log::json_escape(labels[i].first),
                       log::json_escape(labels[i].second));
  }
  return out + "}";
}

std::string json_number(double v) { return std::isfinite(v) ? fmt::format("{}", v) : "null"; }

}  // namespace

void Gauge::add(double v) { atomic_add(value_, v); }

double Histogram::upper_bound(int bucket) {
  return std::exp2(kMinExponent + static_cast<double>(bucket + 1) / kBucketsPerDoubling);
}

void Histogram::observe(double value) {
  buckets_[static_cast<size_t>(bucket_index(value))].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  atomic_add(sum_, value);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    s.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
    s.count += s.buckets[i];
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

double Histogram::Snapshot::quantile(double q) const {
  if (count == 0) return 0;
  double rank = q * static_cast<double>(count);
  uint64_t cumulative = 0;
  for (int i = 0; i <= kNumBuckets; ++i) {
    uint64_t in_bucket = buckets[static_cast<size_t>(i)];
    if (in_bucket == 0) continue;
    if (static_cast<double>(cumulative + in_bucket) >= rank) {
      if (i == kNumBuckets) return upper_bound(kNumBuckets - 1);
      double lo = i == 0 ? 0 : upper_bound(i - 1);
      double hi = upper_bound(i);
      double frac = (rank - static_cast<double>(cumulative)) / static_cast<double>(in_bucket);
      return lo + (hi - lo) * std::clamp(frac, 0.0, 1.0);
    }
    cumulative += in_bucket;
  }
  return upper_bound(kNumBuckets - 1);
}

Registry::Family& Registry::family(const std::string& name, Kind kind, const std::string& help) {
  auto [it, inserted] = families_.try_emplace(name, Family{kind, help, {}, {}, {}});
  if (!inserted && it->second.kind != kind) {
    throw std::logic_error("metric " + name + " registered with two kinds");
  }
  return it->second;
}

Counter& Registry::counter(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& slot = family(name, Kind::kCounter, help).counters[labels];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

Gauge& Registry::gauge(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& slot = family(name, Kind::kGauge, help).gauges[labels];
  if (!slot) slot = std::make_unique<Gauge>();
  return *slot;
}

Histogram& Registry::histogram(const std::string& name, const std::string& help,
                               const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& slot = family(name, Kind::kHistogram, help).histograms[labels];
  if (!slot) slot = std::make_unique<Histogram>();
  return *slot;
}

void Registry::add_collector(std::function<void()> collect) {
  std::lock_guard lock(collectors_mu_);
  collectors_.push_back(std::move(collect));
}

void Registry::run_collectors() const {
  std::lock_guard lock(collectors_mu_);
  for (const auto& c : collectors_) c();
}

std::string Registry::prometheus_text() const {
  run_collectors();
  std::lock_guard lock(mu_);
  std::string out;
  out.reserve(8192);
  for (const auto& [name, fam] : families_) {
    const char* type = fam.kind == Kind::kCounter ? "counter"
                       : fam.kind == Kind::kGauge ? "gauge"
                                                  : "histogram";
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, fam.help, name, type);
    for (const auto& [labels, c] : fam.counters) {
      out += fmt::format("{}{} {}\n", name, prom_labels(labels), c->value());
    }
    for (const auto& [labels, g] : fam.gauges) {
      out += fmt::format("{}{} {}\n", name, prom_labels(labels), format_value(g->value()));
    }
    for (const auto& [labels, h] : fam.histograms) {
      Histogram::Snapshot s = h->snapshot();
      uint64_t cumulative = 0;
      for (int i = 0; i < Histogram::kNumBuckets; ++i) {
        cumulative += s.buckets[static_cast<size_t>(i)];
        if ((i + 1) % Histogram::kBucketsPerDoubling != 0) continue;
        double le = Histogram::upper_bound(i);
        if (le < 1e-5) continue;  // below any latency we can measure
        out += fmt::format("{}_bucket{} {}\n", name, prom_labels(labels, "le", format_value(le)),
                           cumulative);
      }
      out += fmt::format("{}_bucket{} {}\n", name, prom_labels(labels, "le", "+Inf"), s.count);
      out += fmt::format("{}_sum{} {}\n", name, prom_labels(labels), format_value(s.sum));
      out += fmt::format("{}_count{} {}\n", name, prom_labels(labels), s.count);
    }
  }
  return out;
}

std::string Registry::json(const std::vector<std::string>& prefixes) const {
  run_collectors();
  std::lock_guard lock(mu_);
  std::string out = "{";
  bool first_family = true;
  for (const auto& [name, fam] : families_) {
    bool wanted = prefixes.empty();
    for (const auto& p : prefixes) wanted = wanted || name.rfind(p, 0) == 0;
    if (!wanted) continue;
    if (!first_family) out += ',';
    first_family = false;
    out += fmt::format("\"{}\":[", name);
    bool first = true;
    auto sep = [&] {
      if (!first) out += ',';
      first = false;
    };
    for (const auto& [labels, c] : fam.counters) {
      sep();
      out += fmt::format("{{\"labels\":{},\"value\":{}}}", json_labels(labels), c->value());
    }
    for (const auto& [labels, g] : fam.gauges) {
      sep();
      out += fmt::format("{{\"labels\":{},\"value\":{}}}", json_labels(labels),
                         json_number(g->value()));
    }
    for (const auto& [labels, h] : fam.histograms) {
      sep();
      Histogram::Snapshot s = h->snapshot();
      out += fmt::format(
          "{{\"labels\":{},\"count\":{},\"sum\":{},\"mean\":{},\"p50\":{},\"p95\":{},\"p99\":{}}}",
          json_labels(labels), s.count, json_number(s.sum), json_number(s.mean()),
          json_number(s.quantile(0.50)), json_number(s.quantile(0.95)),
          json_number(s.quantile(0.99)));
    }
    out += ']';
  }
  return out + "}";
}

Registry& Registry::global() {
  static Registry r;
  return r;
}

}  // namespace infera::obs
