#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "guard/guard.h"
#include "obs/metrics.h"

namespace infera::guard {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Ladder {
  obs::Registry metrics;
  SelfHealingLog log{metrics};
  DegradationLadder ladder;
  explicit Ladder(DegradationConfig c = {.shorten_queue_s = 10, .refuse_queue_s = 30, .hold = 5s})
      : ladder(c, log, metrics) {}
  double gauge() { return metrics.gauge("infera_degradation_level", "").value(); }
};

TEST(DegradationLadder, EntersAtOnceAndSkipsLevelsWhenTheSignalJumps) {
  Ladder l;
  const auto t0 = Clock::now();
  l.ladder.observe(2, t0);
  EXPECT_EQ(l.ladder.level(), 0);
  l.ladder.observe(12, t0 + 1s);
  EXPECT_EQ(l.ladder.level(), 1);
  EXPECT_EQ(l.gauge(), 1);
  l.ladder.observe(45, t0 + 2s);
  EXPECT_EQ(l.ladder.level(), 2);
  EXPECT_EQ(l.ladder.to_json()["name"], "refuse-low");
  Ladder jump;
  jump.ladder.observe(31, t0);
  EXPECT_EQ(jump.ladder.level(), 2);
}

TEST(DegradationLadder, LeavesOneLevelAtATimeAfterStayingCalmForTheHold) {
  Ladder l;
  const auto t0 = Clock::now();
  l.ladder.observe(40, t0);
  ASSERT_EQ(l.ladder.level(), 2);
  // Below the threshold but above half of it: no way down (hysteresis).
  l.ladder.observe(20, t0 + 10s);
  l.ladder.observe(20, t0 + 30s);
  EXPECT_EQ(l.ladder.level(), 2);
  // Under half: only after the hold.
  l.ladder.observe(5, t0 + 31s);
  l.ladder.observe(5, t0 + 34s);
  EXPECT_EQ(l.ladder.level(), 2);
  l.ladder.observe(5, t0 + 36s);
  EXPECT_EQ(l.ladder.level(), 1);
  // A spike restarts the calm period of the next level.
  l.ladder.observe(6, t0 + 37s);  // >= 10 / 2
  l.ladder.observe(1, t0 + 38s);
  l.ladder.observe(1, t0 + 42s);
  EXPECT_EQ(l.ladder.level(), 1);
  l.ladder.observe(1, t0 + 43s);
  EXPECT_EQ(l.ladder.level(), 0);
  EXPECT_EQ(l.gauge(), 0);
  const nlohmann::json healing = l.log.to_json();
  EXPECT_EQ(healing["total"], 3);  // degrade, recover, recover
}

TEST(DegradationLadder, ALevelSetToZeroIsNeverEntered) {
  Ladder l({.shorten_queue_s = 0, .refuse_queue_s = 30, .hold = 1s});
  const auto t0 = Clock::now();
  l.ladder.observe(20, t0);
  EXPECT_EQ(l.ladder.level(), 0);
  l.ladder.observe(30, t0 + 1s);
  EXPECT_EQ(l.ladder.level(), 2);
  l.ladder.observe(0, t0 + 2s);
  l.ladder.observe(0, t0 + 4s);
  EXPECT_EQ(l.ladder.level(), 0);  // straight back: level 1 is off
}

}  // namespace
}  // namespace infera::guard
