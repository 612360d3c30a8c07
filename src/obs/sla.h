// SlaTracker: service-level objectives per route, per model and overall, measured
// over sliding 1-minute, 5-minute and 1-hour windows.
//
// An objective has two parts, judged separately in every window:
//  - latency "P95 <= latency_p95_ms": met when at most 5% of the window's requests
//    took longer than latency_p95_ms (a request exactly at the bound is within).
//    All requests count, failed ones included.
//  - availability: the fraction of requests that did not fail (the caller passes
//    ok=false for HTTP status >= 500); met when it is >= `availability`.
// Error budgets, one per part, in the usual SRE sense:
//  - budget: the bad fraction the objective allows; 1 - availability for
//    availability, 0.05 (the requests allowed above the P95 bound) for latency.
//  - burn_rate = observed bad fraction / budget: 1.0 spends the budget exactly on
//    pace, 2.0 twice as fast, 0 not at all. A part is met iff burn_rate <= 1.
//  - remaining = clamp(1 - burn_rate, 0, 1): the share of the window's budget left.
// A window without requests is compliant with burn rate 0 (no traffic spends no
// budget) and reports latency_p95_ms as null.
//
// Scopes: "*" aggregates every request; each non-empty route seen gets
// "route:<route>" and each non-empty model "model:<name>". A scope uses the
// objective configured for exactly its name, else the "*" objective (the defaults
// below when "*" is not configured). At most kMaxScopes scopes exist; later routes
// are counted under "route:other" and later models under "model:other", so memory
// stays bounded (~150 KiB per scope, allocated when the scope first appears).
//
// Accuracy: compliance and burn rates are exact counts over per-second slots. The
// reported latency_p95_ms is an estimate from log-spaced buckets (2 per doubling,
// so within ~20%) kept per 10-second slot: each window's estimate covers the
// 10-second slots it touches, i.e. up to 9 s more than the window.
//
// Time comes only from the `now` arguments (steady clock), so tests can drive it.
// Thread-safety: every method may be called from any thread; record() takes one
// short lock and does not allocate once its route and model have been seen.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace infera::obs {

struct SlaObjective {
  std::string scope = "*";       // "*", "route:/v1/chat/completions" or "model:<name>"
  double latency_p95_ms = 2000;  // P95 latency bound, milliseconds
  double availability = 0.999;   // fraction of requests that must not fail, in (0, 1)
};

class SlaTracker {
 public:
  static constexpr size_t kMaxScopes = 256;

  // `objectives` as returned by parse_objectives; for a repeated scope the last wins.
  explicit SlaTracker(std::vector<SlaObjective> objectives = {});
  ~SlaTracker();
  SlaTracker(const SlaTracker&) = delete;
  SlaTracker& operator=(const SlaTracker&) = delete;

  // Counts one finished request under "*", its route and its model (each when not
  // empty). `ok` is false for a failed request (HTTP status >= 500). Requests whose
  // `now` is more than an hour older than the newest seen are ignored.
  void record(std::string_view route, std::string_view model, double latency_ms, bool ok,
              std::chrono::steady_clock::time_point now);

  // {"objectives":[{"scope","latency_p95_ms","availability"}...],
  //  "scopes":[{"scope","objective":{"latency_p95_ms","availability"},
  //             "windows":{"1m"|"5m"|"1h":{"requests","errors","availability",
  //               "latency_p95_ms","within_latency_objective","latency_compliant",
  //               "availability_compliant","compliant",
  //               "error_budget":{"availability":{"budget","burn_rate","remaining"},
  //                               "latency":{"budget","burn_rate","remaining"}}}}}...]}
  // Scopes are "*" first, then routes, then models, each sorted by name. A window
  // covers the whole seconds (now - length, now].
  nlohmann::json report(std::chrono::steady_clock::time_point now) const;

  // Parses objectives written as entries separated by ';':
  //   <scope>=<item>[,<item>...]
  //   scope: "*" | "route:<path>" | "model:<name>"
  //   item:  "p95:<number>ms" or "p95:<number>s"   (latency bound, > 0)
  //          "availability:<percent>[%]"            (0 < percent < 100)
  // e.g. "*=p95:2000ms,availability:99.9;route:/api/chat=p95:5000ms;model:tiny=p95:800ms".
  // Spaces around parts are ignored, as are empty entries. An item an entry leaves
  // out comes from the "*" entry (wherever it appears), else from SlaObjective's
  // defaults. Errors name the offending entry or item; a scope given twice is one.
  static Result<std::vector<SlaObjective>> parse_objectives(const std::string& text);

 private:
  struct Scope;  // per-second counters and latency buckets, in sla.cpp
  using ScopeMap = std::map<std::string, std::unique_ptr<Scope>, std::less<>>;

  // Finds or creates the scope for `name` in `map` (prefix "route:" or "model:").
  // REQUIRES: mu_ held.
  Scope& scope_for(ScopeMap& map, std::string_view prefix, std::string_view name);
  const SlaObjective& objective_for(const std::string& scope) const;

  std::vector<SlaObjective> objectives_;  // "*" always present
  mutable std::mutex mu_;                 // guards the scopes and their counters
  std::unique_ptr<Scope> overall_;
  ScopeMap routes_;  // keyed by route, without the "route:" prefix
  ScopeMap models_;  // keyed by model name
  size_t scope_count_ = 1;
};

}  // namespace infera::obs
