#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "guard/guard.h"
#include "obs/metrics.h"

namespace infera::guard {
namespace {

constexpr double kObjectiveMs = 500;
constexpr Limits kBase{8, 256};

// A governor over kBase whose applied limits are collected.
struct Fixture {
  obs::Registry metrics;
  SelfHealingLog log{metrics};
  std::vector<Limits> applied;
  TtftGovernor governor{kObjectiveMs, kBase, [this](Limits l) { applied.push_back(l); }, log};

  uint64_t actions(const std::string& action) {
    return metrics.counter("infera_self_healing_actions_total", "", {{"action", action}}).value();
  }
};

TEST(TtftGovernor, BadWindowHalvesBothLimits) {
  Fixture f;
  EXPECT_EQ(f.governor.current(), kBase);
  f.governor.observe_window(812, 40);
  EXPECT_EQ(f.governor.current(), (Limits{4, 128}));
  EXPECT_EQ(f.applied, (std::vector<Limits>{{4, 128}}));
  EXPECT_EQ(f.actions("lower_limits"), 1u);
  const auto recent = f.log.to_json()["recent"];
  ASSERT_EQ(recent.size(), 1u);
  EXPECT_EQ(recent[0]["action"], "lower_limits");
  EXPECT_NE(recent[0]["detail"].get<std::string>().find("max_seqs 8 -> 4"), std::string::npos);
}

TEST(TtftGovernor, GoodWindowsRaiseStepByStepButNeverAboveBase) {
  Fixture f;
  f.governor.observe_window(900, 10);
  f.governor.observe_window(900, 10);
  ASSERT_EQ(f.governor.current(), (Limits{2, 64}));
  f.governor.observe_window(kObjectiveMs, 10);  // at the objective counts as healthy
  EXPECT_EQ(f.governor.current(), (Limits{4, 128}));
  f.governor.observe_window(100, 10);
  EXPECT_EQ(f.governor.current(), kBase);
  f.governor.observe_window(100, 10);
  EXPECT_EQ(f.governor.current(), kBase);
  EXPECT_EQ(f.applied, (std::vector<Limits>{{4, 128}, {2, 64}, {4, 128}, {8, 256}}));
  EXPECT_EQ(f.actions("lower_limits"), 2u);
  EXPECT_EQ(f.actions("raise_limits"), 2u);
}

TEST(TtftGovernor, HealthyWindowsAtBaseChangeNothing) {
  Fixture f;
  for (int i = 0; i < 5; ++i) f.governor.observe_window(10, 100);
  EXPECT_TRUE(f.applied.empty());
  EXPECT_EQ(f.log.to_json()["total"], 0);
}

TEST(TtftGovernor, EmptyWindowsChangeNothing) {
  Fixture f;
  f.governor.observe_window(10'000, 0);
  EXPECT_EQ(f.governor.current(), kBase);
  f.governor.observe_window(900, 5);
  f.governor.observe_window(0, 0);  // no requests is not a healthy window
  EXPECT_EQ(f.governor.current(), (Limits{4, 128}));
  EXPECT_EQ(f.applied.size(), 1u);
}

TEST(TtftGovernor, LimitsStopAtTheirMinimum) {
  Fixture f;
  for (int i = 0; i < 20; ++i) f.governor.observe_window(5000, 10);
  EXPECT_EQ(f.governor.current(), (Limits{1, 16}));
  EXPECT_EQ(f.actions("lower_limits"), 4u);  // 8 -> 4 -> 2 -> 1 and 256 -> ... -> 16

  obs::Registry metrics;
  SelfHealingLog log(metrics);
  TtftGovernor small(kObjectiveMs, {2, 8}, nullptr, log);
  small.observe_window(5000, 10);
  EXPECT_EQ(small.current(), (Limits{1, 8})) << "a base below 16 tokens is its own floor";
}

}  // namespace
}  // namespace infera::guard
