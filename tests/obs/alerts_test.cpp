#include "obs/alerts.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <string>

#include "obs/metrics.h"

namespace infera::obs {
namespace {

double firing_gauge(Registry& r) { return r.gauge("infera_alerts_firing", "").value(); }

uint64_t opened_count(Registry& r, const std::string& name) {
  return r.counter("infera_alerts_total", "", {{"name", name}}).value();
}

TEST(AlertManager, OpenMakesAlertFiringAndCountsIt) {
  Registry r;
  AlertManager alerts(r, nullptr);
  EXPECT_FALSE(alerts.is_firing("slow"));
  EXPECT_EQ(firing_gauge(r), 0);

  alerts.open("slow", "warning", "P95 is 3 s", 3000, 2000);
  EXPECT_TRUE(alerts.is_firing("slow"));
  EXPECT_EQ(firing_gauge(r), 1);
  EXPECT_EQ(opened_count(r, "slow"), 1u);
  auto firing = alerts.firing();
  ASSERT_EQ(firing.size(), 1u);
  EXPECT_EQ(firing[0].name, "slow");
  EXPECT_EQ(firing[0].severity, "warning");
  EXPECT_EQ(firing[0].message, "P95 is 3 s");
  EXPECT_EQ(firing[0].value, 3000);
  EXPECT_EQ(firing[0].threshold, 2000);
  EXPECT_TRUE(firing[0].firing);
}

TEST(AlertManager, OpenWhileFiringUpdatesWithoutANewEpisode) {
  Registry r;
  AlertManager alerts(r, nullptr);
  alerts.open("slow", "warning", "P95 is 3 s", 3000);
  const auto opened_at = alerts.firing()[0].opened_at;
  alerts.open("slow", "critical", "P95 is 4 s", 4000);

  auto firing = alerts.firing();
  ASSERT_EQ(firing.size(), 1u);
  EXPECT_EQ(firing[0].message, "P95 is 4 s");
  EXPECT_EQ(firing[0].value, 4000);
  EXPECT_EQ(firing[0].severity, "warning");  // kept from the opening
  EXPECT_EQ(firing[0].opened_at, opened_at);
  EXPECT_EQ(opened_count(r, "slow"), 1u);
  EXPECT_EQ(firing_gauge(r), 1);
  auto recent = alerts.recent();
  ASSERT_EQ(recent.size(), 1u);
  EXPECT_EQ(recent[0].message, "P95 is 4 s");
}

TEST(AlertManager, ResolveEndsTheEpisodeAndLowersTheGauge) {
  Registry r;
  AlertManager alerts(r, nullptr);
  alerts.open("a", "warning", "a opened");
  alerts.open("b", "critical", "b opened");
  EXPECT_EQ(firing_gauge(r), 2);

  alerts.resolve("a", "a is fine again");
  EXPECT_FALSE(alerts.is_firing("a"));
  EXPECT_TRUE(alerts.is_firing("b"));
  EXPECT_EQ(firing_gauge(r), 1);

  // The resolved episode moved to the front, ahead of the later-opened b.
  auto recent = alerts.recent();
  ASSERT_EQ(recent.size(), 2u);
  EXPECT_EQ(recent[0].name, "a");
  EXPECT_FALSE(recent[0].firing);
  EXPECT_EQ(recent[0].message, "a is fine again");
  EXPECT_GE(recent[0].resolved_at, recent[0].opened_at);
  EXPECT_EQ(recent[1].name, "b");
  EXPECT_TRUE(recent[1].firing);
}

TEST(AlertManager, ResolveKeepsTheMessageWhenNoneIsGiven) {
  Registry r;
  AlertManager alerts(r, nullptr);
  alerts.open("a", "warning", "a opened");
  alerts.resolve("a");
  EXPECT_EQ(alerts.recent()[0].message, "a opened");
}

TEST(AlertManager, ResolveOfAnAlertThatIsNotFiringDoesNothing) {
  Registry r;
  AlertManager alerts(r, nullptr);
  alerts.resolve("never_opened");
  EXPECT_TRUE(alerts.recent().empty());
  alerts.open("a", "warning", "x");
  alerts.resolve("a");
  alerts.resolve("a");
  EXPECT_EQ(alerts.recent().size(), 1u);
  EXPECT_EQ(firing_gauge(r), 0);
}

TEST(AlertManager, ReopeningStartsANewEpisode) {
  Registry r;
  AlertManager alerts(r, nullptr);
  alerts.open("a", "warning", "first");
  alerts.resolve("a");
  alerts.open("a", "warning", "second");

  EXPECT_TRUE(alerts.is_firing("a"));
  EXPECT_EQ(opened_count(r, "a"), 2u);
  auto recent = alerts.recent();
  ASSERT_EQ(recent.size(), 2u);
  EXPECT_TRUE(recent[0].firing);
  EXPECT_EQ(recent[0].message, "second");
  EXPECT_FALSE(recent[1].firing);
  EXPECT_EQ(recent[1].message, "first");
}

TEST(AlertManager, RecentKeepsTheLastHundredNewestFirst) {
  Registry r;
  AlertManager alerts(r, nullptr);
  for (int i = 0; i < 150; ++i) alerts.open("alert" + std::to_string(i), "warning", "m");
  auto recent = alerts.recent();
  ASSERT_EQ(recent.size(), AlertManager::kRecentLimit);
  EXPECT_EQ(recent.front().name, "alert149");
  EXPECT_EQ(recent.back().name, "alert50");
  EXPECT_EQ(alerts.firing().size(), 150u);  // history is bounded, firing alerts are not
}

TEST(AlertManager, JsonHasStatusesAndIsoUtcTimes) {
  Registry r;
  AlertManager alerts(r, nullptr);
  alerts.open("a", "warning", "x", 1.5, 1.0);
  alerts.open("b", "critical", "y");
  alerts.resolve("b");

  const nlohmann::json j = alerts.to_json();
  ASSERT_EQ(j["firing"].size(), 1u);
  EXPECT_EQ(j["firing"][0]["name"], "a");
  EXPECT_EQ(j["firing"][0]["status"], "firing");
  EXPECT_EQ(j["firing"][0]["value"], 1.5);
  EXPECT_EQ(j["firing"][0]["threshold"], 1.0);
  EXPECT_FALSE(j["firing"][0].contains("resolved_at"));
  ASSERT_EQ(j["recent"].size(), 2u);
  EXPECT_EQ(j["recent"][0]["name"], "b");
  EXPECT_EQ(j["recent"][0]["status"], "resolved");
  const std::regex iso(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)");
  EXPECT_TRUE(std::regex_match(j["recent"][0]["opened_at"].get<std::string>(), iso))
      << j["recent"][0]["opened_at"];
  EXPECT_TRUE(std::regex_match(j["recent"][0]["resolved_at"].get<std::string>(), iso))
      << j["recent"][0]["resolved_at"];
}

}  // namespace
}  // namespace infera::obs
