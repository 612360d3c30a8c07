#include "obs/sla.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace infera::obs {
namespace {

using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

const Clock::time_point kT0 = Clock::time_point{} + seconds(100000);

nlohmann::json scope_of(const nlohmann::json& report, const std::string& name) {
  for (const auto& s : report["scopes"]) {
    if (s["scope"] == name) return s;
  }
  ADD_FAILURE() << "no scope " << name << " in " << report.dump();
  return nlohmann::json::object();
}

nlohmann::json window_of(SlaTracker& sla, const std::string& scope, const std::string& window,
                         Clock::time_point now) {
  return scope_of(sla.report(now), scope)["windows"][window];
}

// `n` requests on route /r at `now`, the first `errors` failed, the first `slow`
// taking `slow_ms` and the rest `fast_ms`.
void record_many(SlaTracker& sla, int n, int errors, int slow, double slow_ms, double fast_ms,
                 Clock::time_point now) {
  for (int i = 0; i < n; ++i) sla.record("/r", "", i < slow ? slow_ms : fast_ms, i >= errors, now);
}

TEST(SlaTracker, RequestsCountOnlyInWindowsThatCoverThem) {
  SlaTracker sla;
  sla.record("/r", "", 10, true, kT0);
  const auto later = kT0 + seconds(120);
  EXPECT_EQ(window_of(sla, "*", "1m", later)["requests"], 0);
  EXPECT_EQ(window_of(sla, "*", "5m", later)["requests"], 1);
  EXPECT_EQ(window_of(sla, "*", "1h", later)["requests"], 1);
  // The 1-minute window is (now - 60 s, now]: still in at +59 s, out at +60 s.
  EXPECT_EQ(window_of(sla, "*", "1m", kT0 + seconds(59))["requests"], 1);
  EXPECT_EQ(window_of(sla, "*", "1m", kT0 + seconds(60))["requests"], 0);
  EXPECT_EQ(window_of(sla, "*", "1h", kT0 + seconds(3599))["requests"], 1);
  EXPECT_EQ(window_of(sla, "*", "1h", kT0 + seconds(3600))["requests"], 0);
}

TEST(SlaTracker, AvailabilityComplianceFlipsWhenErrorsExceedTheBudget) {
  SlaTracker sla({{"*", 1000, 0.99}});
  record_many(sla, 100, 1, 0, 0, 10, kT0);  // 1% errors: exactly the budget
  auto w = window_of(sla, "*", "1m", kT0);
  EXPECT_EQ(w["errors"], 1);
  EXPECT_DOUBLE_EQ(w["availability"].get<double>(), 0.99);
  EXPECT_TRUE(w["availability_compliant"]);
  EXPECT_TRUE(w["compliant"]);

  sla.record("/r", "", 10, false, kT0);  // 2 errors in 101
  w = window_of(sla, "*", "1m", kT0);
  EXPECT_FALSE(w["availability_compliant"]);
  EXPECT_TRUE(w["latency_compliant"]);
  EXPECT_FALSE(w["compliant"]);
}

TEST(SlaTracker, OneErrorInAThousandMeetsThreeNines) {
  SlaTracker sla({{"*", 1000, 0.999}});
  record_many(sla, 1000, 1, 0, 0, 10, kT0);
  EXPECT_TRUE(window_of(sla, "*", "1m", kT0)["availability_compliant"]);
}

TEST(SlaTracker, LatencyComplianceAllowsFivePercentAboveTheBound) {
  SlaTracker sla({{"*", 100, 0.99}});
  // 5 of 100 above 100 ms, and one exactly at the bound, which is within.
  record_many(sla, 99, 0, 5, 150, 50, kT0);
  sla.record("/r", "", 100, true, kT0);
  auto w = window_of(sla, "*", "1m", kT0);
  EXPECT_DOUBLE_EQ(w["within_latency_objective"].get<double>(), 0.95);
  EXPECT_TRUE(w["latency_compliant"]);

  sla.record("/r", "", 101, true, kT0);  // 6 of 101
  w = window_of(sla, "*", "1m", kT0);
  EXPECT_FALSE(w["latency_compliant"]);
  EXPECT_TRUE(w["availability_compliant"]);
  EXPECT_FALSE(w["compliant"]);
}

TEST(SlaTracker, BurnRateIsBadFractionOverBudget) {
  SlaTracker sla({{"*", 100, 0.99}});
  // 200 requests: 1 error (0.5%, half the 1% budget), 5 slow (2.5%, half of 5%).
  record_many(sla, 200, 1, 5, 500, 10, kT0);
  auto budget = window_of(sla, "*", "1m", kT0)["error_budget"];
  EXPECT_NEAR(budget["availability"]["budget"].get<double>(), 0.01, 1e-12);
  EXPECT_NEAR(budget["availability"]["burn_rate"].get<double>(), 0.5, 1e-9);
  EXPECT_NEAR(budget["availability"]["remaining"].get<double>(), 0.5, 1e-9);
  EXPECT_NEAR(budget["latency"]["budget"].get<double>(), 0.05, 1e-12);
  EXPECT_NEAR(budget["latency"]["burn_rate"].get<double>(), 0.5, 1e-9);
  EXPECT_NEAR(budget["latency"]["remaining"].get<double>(), 0.5, 1e-9);

  // 3 more errors: 4 in 203 is ~1.97%, burning about twice the pace; nothing left.
  for (int i = 0; i < 3; ++i) sla.record("/r", "", 10, false, kT0);
  budget = window_of(sla, "*", "1m", kT0)["error_budget"];
  EXPECT_NEAR(budget["availability"]["burn_rate"].get<double>(), (4.0 / 203) / 0.01, 1e-9);
  EXPECT_EQ(budget["availability"]["remaining"].get<double>(), 0.0);
}

TEST(SlaTracker, EmptyWindowIsCompliantWithNoBurn) {
  SlaTracker sla;
  auto w = window_of(sla, "*", "1h", kT0);
  EXPECT_EQ(w["requests"], 0);
  EXPECT_TRUE(w["compliant"]);
  EXPECT_TRUE(w["latency_p95_ms"].is_null());
  EXPECT_EQ(w["error_budget"]["availability"]["burn_rate"], 0.0);
  EXPECT_EQ(w["error_budget"]["availability"]["remaining"], 1.0);
}

TEST(SlaTracker, RouteAndModelScopesUseTheirOwnObjective) {
  SlaTracker sla({{"*", 1000, 0.999}, {"route:/a", 100, 0.99}, {"model:tiny", 50, 0.9}});
  for (int i = 0; i < 20; ++i) sla.record("/a", "tiny", 80, true, kT0);
  sla.record("/b", "", 80, true, kT0);
  const auto report = sla.report(kT0);

  EXPECT_EQ(report["scopes"][0]["scope"], "*");
  EXPECT_EQ(report["scopes"].size(), 4u);  // *, route:/a, route:/b, model:tiny

  auto route_a = scope_of(report, "route:/a");
  EXPECT_EQ(route_a["objective"]["latency_p95_ms"], 100.0);
  EXPECT_EQ(route_a["windows"]["1m"]["requests"], 20);
  EXPECT_TRUE(route_a["windows"]["1m"]["latency_compliant"]);

  auto model = scope_of(report, "model:tiny");
  EXPECT_EQ(model["objective"]["latency_p95_ms"], 50.0);
  EXPECT_EQ(model["objective"]["availability"], 0.9);
  EXPECT_FALSE(model["windows"]["1m"]["latency_compliant"]);  // 80 ms > 50 ms for all

  auto route_b = scope_of(report, "route:/b");
  EXPECT_EQ(route_b["objective"]["latency_p95_ms"], 1000.0);  // falls back to "*"
  EXPECT_EQ(route_b["windows"]["1m"]["requests"], 1);

  EXPECT_EQ(scope_of(report, "*")["windows"]["1m"]["requests"], 21);
}

TEST(SlaTracker, P95EstimateIsNearTheTrueValue) {
  SlaTracker sla;
  for (int i = 1; i <= 1000; ++i) sla.record("/r", "", i * 0.1, true, kT0);  // 0.1..100 ms
  const double p95 = window_of(sla, "*", "1m", kT0)["latency_p95_ms"].get<double>();
  EXPECT_NEAR(p95, 95.0, 95.0 * 0.2);
}

TEST(SlaTracker, RoutesPastTheScopeCapShareRouteOther) {
  SlaTracker sla;
  const int routes = 300;
  for (int i = 0; i < routes; ++i) sla.record("/r" + std::to_string(i), "", 10, true, kT0);
  const auto report = sla.report(kT0);
  EXPECT_LE(report["scopes"].size(), SlaTracker::kMaxScopes);
  const int named = static_cast<int>(report["scopes"].size()) - 2;  // minus "*", "route:other"
  EXPECT_EQ(scope_of(report, "route:other")["windows"]["1m"]["requests"], routes - named);
  sla.record("", "late-model", 10, true, kT0);
  EXPECT_EQ(scope_of(sla.report(kT0), "model:other")["windows"]["1m"]["requests"], 1);
}

TEST(SlaTracker, RequestsOlderThanTheRingAreIgnored) {
  SlaTracker sla;
  sla.record("/r", "", 10, true, kT0 + seconds(4000));
  sla.record("/r", "", 10, true, kT0);  // an hour before the newest: dropped
  EXPECT_EQ(window_of(sla, "*", "1h", kT0 + seconds(4000))["requests"], 1);
}

TEST(SlaObjectives, ParsesTheDocumentedSyntax) {
  auto parsed = SlaTracker::parse_objectives(
      "*=p95:2000ms,availability:99.9; route:/api/chat = p95:5s ;model:tiny=p95:800ms,"
      "availability:99.5%;");
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  ASSERT_EQ(parsed->size(), 3u);
  EXPECT_EQ((*parsed)[0].scope, "*");
  EXPECT_EQ((*parsed)[0].latency_p95_ms, 2000);
  EXPECT_NEAR((*parsed)[0].availability, 0.999, 1e-12);
  EXPECT_EQ((*parsed)[1].scope, "route:/api/chat");
  EXPECT_EQ((*parsed)[1].latency_p95_ms, 5000);
  EXPECT_NEAR((*parsed)[1].availability, 0.999, 1e-12);  // from "*"
  EXPECT_EQ((*parsed)[2].scope, "model:tiny");
  EXPECT_EQ((*parsed)[2].latency_p95_ms, 800);
  EXPECT_NEAR((*parsed)[2].availability, 0.995, 1e-12);
}

TEST(SlaObjectives, MissingItemsComeFromStarWhereverItIs) {
  auto parsed = SlaTracker::parse_objectives("model:m=availability:99;*=p95:300ms");
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_EQ((*parsed)[0].latency_p95_ms, 300);
  auto none = SlaTracker::parse_objectives("route:/x=p95:10ms");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ((*none)[0].availability, SlaObjective{}.availability);
  auto empty = SlaTracker::parse_objectives("  ");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(SlaObjectives, RejectsBadInputNamingThePart) {
  struct Case {
    const char* text;
    const char* named;
  };
  const Case cases[] = {
      {"*=p95:2000ms;route:/x", "route:/x"},       // no '='
      {"*=p95:2000", "p95:2000"},                  // no unit
      {"*=p95:-5ms", "p95:-5ms"},                  // not positive
      {"*=p95:fastms", "p95:fastms"},              // not a number
      {"*=availability:100", "availability:100"},  // no budget left
      {"*=availability:0", "availability:0"},      // out of range
      {"*=latency:5ms", "latency:5ms"},            // unknown item
      {"host:a=p95:5ms", "host:a"},                // unknown scope kind
      {"route:=p95:5ms", "route:"},                // empty route
      {"*=p95:1ms;*=p95:2ms", "scope '*' is given twice"},
      {"*=p95:1ms,p95:2ms", "p95 is given twice"},
  };
  for (const Case& c : cases) {
    auto parsed = SlaTracker::parse_objectives(c.text);
    ASSERT_FALSE(parsed.ok()) << c.text;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find(c.named), std::string::npos)
        << c.text << " -> " << parsed.status().message();
  }
}

}  // namespace
}  // namespace infera::obs
