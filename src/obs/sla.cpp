#include "obs/sla.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <system_error>
#include <vector>

namespace infera::obs {
namespace {

constexpr int64_t kRingSeconds = 3600;  // the longest window
constexpr int64_t kBucketSlotSeconds = 10;
constexpr int64_t kBucketSlots = kRingSeconds / kBucketSlotSeconds;
constexpr int kLatencyBuckets = 40;
constexpr double kFirstBucketMs = 0.25;  // bucket 0 holds everything up to this
constexpr double kLatencyBudget = 0.05;  // "P95 <= X" allows 5% of requests above X
constexpr int64_t kNever = std::numeric_limits<int64_t>::min();

struct WindowSpec {
  const char* name;
  int64_t seconds;
};
constexpr std::array<WindowSpec, 3> kWindows = {{{"1m", 60}, {"5m", 300}, {"1h", 3600}}};

// Bucket i > 0 holds (0.25 * 2^((i-1)/2), 0.25 * 2^(i/2)] ms; the last one is
// open-ended (above ~131 s).
int latency_bucket(double ms) {
  if (!(ms > kFirstBucketMs)) return 0;
  const int idx = static_cast<int>(std::ceil(2 * std::log2(ms / kFirstBucketMs)));
  return std::clamp(idx, 0, kLatencyBuckets - 1);
}

double bucket_upper_ms(int i) { return kFirstBucketMs * std::exp2(i / 2.0); }

int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

size_t ring_index(int64_t slot, int64_t size) {
  return static_cast<size_t>(slot - floor_div(slot, size) * size);
}

int64_t whole_seconds(std::chrono::steady_clock::time_point t) {
  return std::chrono::floor<std::chrono::seconds>(t.time_since_epoch()).count();
}

struct WindowTotals {
  uint64_t requests = 0;
  uint64_t errors = 0;
  uint64_t slow = 0;
  std::array<uint64_t, kLatencyBuckets> buckets{};
};

// Nearest-rank P95 over the buckets, interpolated linearly inside its bucket.
std::optional<double> p95_estimate_ms(const std::array<uint64_t, kLatencyBuckets>& buckets) {
  uint64_t total = 0;
  for (uint64_t n : buckets) total += n;
  if (total == 0) return std::nullopt;
  const auto rank = static_cast<uint64_t>(std::ceil(0.95 * static_cast<double>(total)));
  uint64_t seen = 0;
  for (int i = 0; i < kLatencyBuckets; ++i) {
    if (buckets[i] == 0 || seen + buckets[i] < rank) {
      seen += buckets[i];
      continue;
    }
    const double lower = i == 0 ? 0 : bucket_upper_ms(i - 1);
    if (i == kLatencyBuckets - 1) return lower;
    const double within = static_cast<double>(rank - seen) / static_cast<double>(buckets[i]);
    return lower + (bucket_upper_ms(i) - lower) * within;
  }
  return bucket_upper_ms(kLatencyBuckets - 2);
}

// One error budget; see the header for the definitions. `met` is burn_rate <= 1,
// with a relative tolerance so that e.g. 1 error in 1000 meets 99.9%.
nlohmann::json budget_json(uint64_t bad, uint64_t requests, double budget, bool& met) {
  double burn_rate = 0;
  if (requests > 0 && bad > 0) {
    const double bad_fraction = static_cast<double>(bad) / static_cast<double>(requests);
    burn_rate = budget > 0 ? bad_fraction / budget : std::numeric_limits<double>::infinity();
  }
  met = burn_rate <= 1 + 1e-9;
  return {{"budget", budget},
          {"burn_rate", burn_rate},
          {"remaining", std::clamp(1 - burn_rate, 0.0, 1.0)}};
}

nlohmann::json window_json(const WindowTotals& t, const SlaObjective& objective) {
  const double n = static_cast<double>(t.requests);
  nlohmann::json w;
  w["requests"] = t.requests;
  w["errors"] = t.errors;
  w["availability"] = t.requests ? 1 - static_cast<double>(t.errors) / n : 1.0;
  const auto p95 = p95_estimate_ms(t.buckets);
  w["latency_p95_ms"] = p95 ? nlohmann::json(*p95) : nlohmann::json(nullptr);
  w["within_latency_objective"] = t.requests ? 1 - static_cast<double>(t.slow) / n : 1.0;
  bool availability_met = true;
  bool latency_met = true;
  nlohmann::json budgets = {
      {"availability",
       budget_json(t.errors, t.requests, 1 - objective.availability, availability_met)},
      {"latency", budget_json(t.slow, t.requests, kLatencyBudget, latency_met)}};
  w["latency_compliant"] = latency_met;
  w["availability_compliant"] = availability_met;
  w["compliant"] = latency_met && availability_met;
  w["error_budget"] = std::move(budgets);
  return w;
}

nlohmann::json objective_json(const SlaObjective& o) {
  return {{"latency_p95_ms", o.latency_p95_ms}, {"availability", o.availability}};
}

std::string_view trim(std::string_view s) {
  const size_t first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const size_t last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

std::vector<std::string_view> split(std::string_view s, char separator) {
  std::vector<std::string_view> parts;
  for (;;) {
    const size_t at = s.find(separator);
    parts.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return parts;
    s.remove_prefix(at + 1);
  }
}

std::optional<double> parse_number(std::string_view s) {
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

// "2000ms" or "2s" -> milliseconds; nullopt unless positive with a unit.
std::optional<double> parse_latency_ms(std::string_view s) {
  double scale = 1;
  if (s.size() > 2 && s.substr(s.size() - 2) == "ms") {
    s.remove_suffix(2);
  } else if (s.size() > 1 && s.back() == 's') {
    s.remove_suffix(1);
    scale = 1000;
  } else {
    return std::nullopt;
  }
  auto v = parse_number(trim(s));
  if (!v || *v <= 0) return std::nullopt;
  return *v * scale;
}

// "99.9" or "99.9%" -> 0.999; nullopt unless strictly between 0 and 100.
std::optional<double> parse_percent(std::string_view s) {
  if (!s.empty() && s.back() == '%') s.remove_suffix(1);
  auto v = parse_number(trim(s));
  if (!v || *v <= 0 || *v >= 100) return std::nullopt;
  return *v / 100;
}

bool valid_scope(std::string_view scope) {
  if (scope == "*") return true;
  for (std::string_view prefix : {std::string_view("route:"), std::string_view("model:")}) {
    if (scope.size() > prefix.size() && scope.substr(0, prefix.size()) == prefix) return true;
  }
  return false;
}

}  // namespace

struct SlaTracker::Scope {
  Scope(std::string scope_name, const SlaObjective& scope_objective)
      : name(std::move(scope_name)), objective(scope_objective) {}

  void record(int64_t second, double latency_ms, bool ok) {
    if (newest_second != kNever && second <= newest_second - kRingSeconds) return;
    newest_second = std::max(newest_second, second);
    Second& s = seconds[ring_index(second, kRingSeconds)];
    if (s.second < second) s = Second{second, 0, 0, 0};
    s.requests++;
    if (!ok) s.errors++;
    if (latency_ms > objective.latency_p95_ms) s.slow++;
    // The oldest 10-second slot may already be reused by the newest one.
    const int64_t slot = floor_div(second, kBucketSlotSeconds);
    Buckets& b = buckets[ring_index(slot, kBucketSlots)];
    if (b.slot < slot) b = Buckets{slot, {}};
    if (b.slot == slot) b.counts[latency_bucket(latency_ms)]++;
  }

  // Totals for every window of kWindows, ending at (and including) `now_second`.
  std::array<WindowTotals, kWindows.size()> totals(int64_t now_second) const {
    std::array<WindowTotals, kWindows.size()> out;
    for (int64_t age = 0; age < kRingSeconds; ++age) {
      const Second& s = seconds[ring_index(now_second - age, kRingSeconds)];
      if (s.second != now_second - age) continue;
      for (size_t w = 0; w < kWindows.size(); ++w) {
        if (age >= kWindows[w].seconds) continue;
        out[w].requests += s.requests;
        out[w].errors += s.errors;
        out[w].slow += s.slow;
      }
    }
    const int64_t now_slot = floor_div(now_second, kBucketSlotSeconds);
    for (size_t w = 0; w < kWindows.size(); ++w) {
      const int64_t first_slot =
          floor_div(now_second - kWindows[w].seconds + 1, kBucketSlotSeconds);
      for (int64_t slot = first_slot; slot <= now_slot; ++slot) {
        const Buckets& b = buckets[ring_index(slot, kBucketSlots)];
        if (b.slot != slot) continue;
        for (int i = 0; i < kLatencyBuckets; ++i) out[w].buckets[i] += b.counts[i];
      }
    }
    return out;
  }

  struct Second {
    int64_t second = kNever;  // which second the counts belong to
    uint32_t requests = 0;
    uint32_t errors = 0;
    uint32_t slow = 0;  // latency above objective.latency_p95_ms
  };
  struct Buckets {
    int64_t slot = kNever;  // which 10-second slot the counts belong to
    std::array<uint32_t, kLatencyBuckets> counts{};
  };

  const std::string name;
  const SlaObjective objective;
  int64_t newest_second = kNever;
  std::array<Second, kRingSeconds> seconds{};
  std::array<Buckets, kBucketSlots> buckets{};
};

SlaTracker::SlaTracker(std::vector<SlaObjective> objectives) : objectives_(std::move(objectives)) {
  const bool has_default = std::any_of(objectives_.begin(), objectives_.end(),
                                       [](const SlaObjective& o) { return o.scope == "*"; });
  if (!has_default) objectives_.insert(objectives_.begin(), SlaObjective{});
  overall_ = std::make_unique<Scope>("*", objective_for("*"));
}

SlaTracker::~SlaTracker() = default;

const SlaObjective& SlaTracker::objective_for(const std::string& scope) const {
  // Searched from the back so that a repeated scope's last objective wins.
  for (auto it = objectives_.rbegin(); it != objectives_.rend(); ++it) {
    if (it->scope == scope) return *it;
  }
  for (auto it = objectives_.rbegin(); it != objectives_.rend(); ++it) {
    if (it->scope == "*") return *it;
  }
  return objectives_.front();  // unreachable: the constructor adds "*"
}

SlaTracker::Scope& SlaTracker::scope_for(ScopeMap& map, std::string_view prefix,
                                         std::string_view name) {
  if (auto it = map.find(name); it != map.end()) return *it->second;
  // Two places stay reserved so "route:other" and "model:other" can always exist.
  const std::string_view key = scope_count_ + 2 >= kMaxScopes ? "other" : name;
  if (auto it = map.find(key); it != map.end()) return *it->second;
  std::string full_name = std::string(prefix) + std::string(key);
  const SlaObjective& objective = objective_for(full_name);
  auto scope = std::make_unique<Scope>(std::move(full_name), objective);
  Scope& ref = *scope;
  map.emplace(std::string(key), std::move(scope));
  scope_count_++;
  return ref;
}

void SlaTracker::record(std::string_view route, std::string_view model, double latency_ms, bool ok,
                        std::chrono::steady_clock::time_point now) {
  const int64_t second = whole_seconds(now);
  std::lock_guard lock(mu_);
  overall_->record(second, latency_ms, ok);
  if (!route.empty()) scope_for(routes_, "route:", route).record(second, latency_ms, ok);
  if (!model.empty()) scope_for(models_, "model:", model).record(second, latency_ms, ok);
}

nlohmann::json SlaTracker::report(std::chrono::steady_clock::time_point now) const {
  const int64_t now_second = whole_seconds(now);
  struct Measured {
    const Scope* scope;
    std::array<WindowTotals, kWindows.size()> totals;
  };
  std::vector<Measured> measured;
  {
    // Only the counting happens under the lock; record() waits for nothing else.
    std::lock_guard lock(mu_);
    measured.reserve(scope_count_);
    measured.push_back({overall_.get(), overall_->totals(now_second)});
    for (const auto& [key, scope] : routes_)
      measured.push_back({scope.get(), scope->totals(now_second)});
    for (const auto& [key, scope] : models_)
      measured.push_back({scope.get(), scope->totals(now_second)});
  }
  nlohmann::json objectives = nlohmann::json::array();
  for (const SlaObjective& o : objectives_) {
    nlohmann::json j = objective_json(o);
    j["scope"] = o.scope;
    objectives.push_back(std::move(j));
  }
  nlohmann::json scopes = nlohmann::json::array();
  for (const Measured& m : measured) {
    // A scope's name and objective never change once it exists.
    nlohmann::json windows = nlohmann::json::object();
    for (size_t w = 0; w < kWindows.size(); ++w) {
      windows[kWindows[w].name] = window_json(m.totals[w], m.scope->objective);
    }
    scopes.push_back({{"scope", m.scope->name},
                      {"objective", objective_json(m.scope->objective)},
                      {"windows", std::move(windows)}});
  }
  return {{"objectives", std::move(objectives)}, {"scopes", std::move(scopes)}};
}

Result<std::vector<SlaObjective>> SlaTracker::parse_objectives(const std::string& text) {
  struct Partial {
    std::string scope;
    std::optional<double> latency_p95_ms;
    std::optional<double> availability;
  };
  std::vector<Partial> parsed;
  for (std::string_view entry : split(text, ';')) {
    entry = trim(entry);
    if (entry.empty()) continue;
    auto bad = [&](const std::string& why) {
      return Status::InvalidArgument(fmt::format("SLA objective '{}': {}", entry, why));
    };
    // Items never contain '=', so the last one separates scope and items.
    const size_t eq = entry.rfind('=');
    if (eq == std::string_view::npos) return bad("expected <scope>=<item>[,<item>...]");
    Partial p;
    p.scope = std::string(trim(entry.substr(0, eq)));
    if (!valid_scope(p.scope)) {
      return bad(fmt::format("scope '{}' must be '*', 'route:<path>' or 'model:<name>'", p.scope));
    }
    for (const Partial& earlier : parsed) {
      if (earlier.scope == p.scope) return bad(fmt::format("scope '{}' is given twice", p.scope));
    }
    for (std::string_view item : split(entry.substr(eq + 1), ',')) {
      item = trim(item);
      const size_t colon = item.find(':');
      const std::string_view key = trim(item.substr(0, colon));
      const std::string_view value =
          colon == std::string_view::npos ? std::string_view{} : trim(item.substr(colon + 1));
      if (key == "p95") {
        if (p.latency_p95_ms) return bad("p95 is given twice");
        auto ms = parse_latency_ms(value);
        if (!ms) {
          return bad(
              fmt::format("item '{}': expected p95:<number>ms or p95:<number>s, above 0", item));
        }
        p.latency_p95_ms = *ms;
      } else if (key == "availability") {
        if (p.availability) return bad("availability is given twice");
        auto fraction = parse_percent(value);
        if (!fraction) {
          return bad(fmt::format(
              "item '{}': expected availability:<percent> with 0 < percent < 100", item));
        }
        p.availability = *fraction;
      } else {
        return bad(
            fmt::format("unknown item '{}' (expected p95:<ms>ms or availability:<percent>)", item));
      }
    }
    parsed.push_back(std::move(p));
  }

  SlaObjective fallback;
  for (const Partial& p : parsed) {
    if (p.scope != "*") continue;
    if (p.latency_p95_ms) fallback.latency_p95_ms = *p.latency_p95_ms;
    if (p.availability) fallback.availability = *p.availability;
  }
  std::vector<SlaObjective> out;
  out.reserve(parsed.size());
  for (const Partial& p : parsed) {
    out.push_back({p.scope, p.latency_p95_ms.value_or(fallback.latency_p95_ms),
                   p.availability.value_or(fallback.availability)});
  }
  return out;
}

}  // namespace infera::obs
