#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "guard/guard.h"
#include "obs/metrics.h"

namespace infera::guard {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const Clock::time_point kT0 = Clock::time_point() + std::chrono::hours(1);

struct Change {
  std::string loop;
  bool stalled;
  std::string reason;
};

// A watchdog with a 2 s timeout whose transitions are collected.
struct Fixture {
  obs::Registry metrics;
  SelfHealingLog log{metrics};
  Watchdog watchdog{seconds(2), log, metrics};
  std::vector<Change> changes;

  Fixture() {
    watchdog.on_change = [this](const std::string& loop, bool stalled, const std::string& why) {
      changes.push_back({loop, stalled, why});
    };
  }
  uint64_t actions(const std::string& action) {
    return metrics.counter("infera_self_healing_actions_total", "", {{"action", action}}).value();
  }
};

TEST(Watchdog, PendingWorkWithoutStepsForStallTimeoutIsUnhealthy) {
  Fixture f;
  ProgressSample progress{5, 4};
  f.watchdog.add("tiny", [&] { return progress; });
  f.watchdog.tick(kT0);
  f.watchdog.tick(kT0 + milliseconds(1999));
  EXPECT_TRUE(f.watchdog.healthy());
  EXPECT_EQ(f.watchdog.reason(), "");

  f.watchdog.tick(kT0 + milliseconds(3200));
  EXPECT_FALSE(f.watchdog.healthy());
  EXPECT_EQ(f.watchdog.reason(), "engine 'tiny' made no step for 3.2 s with 4 requests pending");
  ASSERT_EQ(f.changes.size(), 1u);
  EXPECT_EQ(f.changes[0].loop, "tiny");
  EXPECT_TRUE(f.changes[0].stalled);
  EXPECT_EQ(f.actions("engine_stalled"), 1u);
  EXPECT_EQ(f.metrics.gauge("infera_watchdog_stalled_loops", "").value(), 1);

  // Still stuck: the reason keeps counting, but it is one transition.
  f.watchdog.tick(kT0 + seconds(10));
  EXPECT_NE(f.watchdog.reason().find("10.0 s"), std::string::npos);
  EXPECT_EQ(f.changes.size(), 1u);
  EXPECT_EQ(f.actions("engine_stalled"), 1u);
}

TEST(Watchdog, ResumedStepsRecoverAtOnce) {
  Fixture f;
  ProgressSample progress{5, 1};
  f.watchdog.add("tiny", [&] { return progress; });
  f.watchdog.tick(kT0);
  f.watchdog.tick(kT0 + seconds(3));
  ASSERT_FALSE(f.watchdog.healthy());
  EXPECT_NE(f.watchdog.reason().find("with 1 request pending"), std::string::npos);

  progress.steps_completed = 6;
  f.watchdog.tick(kT0 + seconds(4));
  EXPECT_TRUE(f.watchdog.healthy());
  EXPECT_EQ(f.watchdog.reason(), "");
  ASSERT_EQ(f.changes.size(), 2u);
  EXPECT_FALSE(f.changes[1].stalled);
  EXPECT_EQ(f.changes[1].reason, "engine 'tiny' stepped again after 4.0 s");
  EXPECT_EQ(f.actions("engine_recovered"), 1u);
  EXPECT_EQ(f.metrics.gauge("infera_watchdog_stalled_loops", "").value(), 0);

  // The stall clock restarts from the step.
  f.watchdog.tick(kT0 + seconds(5));
  EXPECT_TRUE(f.watchdog.healthy());
  f.watchdog.tick(kT0 + seconds(6));
  EXPECT_FALSE(f.watchdog.healthy());
}

TEST(Watchdog, IdleLoopNeverStalls) {
  Fixture f;
  f.watchdog.add("idle", [] { return ProgressSample{42, 0}; });
  for (int i = 0; i < 100; ++i) f.watchdog.tick(kT0 + seconds(60 * i));
  EXPECT_TRUE(f.watchdog.healthy());
  EXPECT_TRUE(f.changes.empty());
  EXPECT_EQ(f.actions("engine_stalled"), 0u);
}

TEST(Watchdog, PendingDroppingToZeroRecovers) {
  Fixture f;
  ProgressSample progress{0, 2};
  f.watchdog.add("tiny", [&] { return progress; });
  f.watchdog.tick(kT0);
  f.watchdog.tick(kT0 + seconds(2));
  ASSERT_FALSE(f.watchdog.healthy());
  progress.pending = 0;  // e.g. every request was cancelled
  f.watchdog.tick(kT0 + seconds(3));
  EXPECT_TRUE(f.watchdog.healthy());
  ASSERT_EQ(f.changes.size(), 2u);
  EXPECT_EQ(f.changes[1].reason, "engine 'tiny' has no requests pending");
}

TEST(Watchdog, OnlyTheStuckLoopIsNamed) {
  Fixture f;
  int64_t steps = 0;
  f.watchdog.add("busy", [&] { return ProgressSample{++steps, 3}; });
  f.watchdog.add("stuck", [] { return ProgressSample{7, 2}; });
  for (int i = 0; i <= 3; ++i) f.watchdog.tick(kT0 + seconds(i));
  EXPECT_FALSE(f.watchdog.healthy());
  EXPECT_EQ(f.watchdog.reason(), "engine 'stuck' made no step for 3.0 s with 2 requests pending");
  ASSERT_EQ(f.changes.size(), 1u);
  EXPECT_EQ(f.changes[0].loop, "stuck");
}

TEST(Watchdog, RemovingAStalledLoopMakesItHealthyAndReportsIt) {
  Fixture f;
  f.watchdog.add("tiny", [] { return ProgressSample{1, 1}; });
  f.watchdog.tick(kT0);
  f.watchdog.tick(kT0 + seconds(5));
  ASSERT_FALSE(f.watchdog.healthy());
  f.watchdog.remove("tiny");
  EXPECT_TRUE(f.watchdog.healthy());
  ASSERT_EQ(f.changes.size(), 2u);
  EXPECT_FALSE(f.changes[1].stalled);
  EXPECT_EQ(f.metrics.gauge("infera_watchdog_stalled_loops", "").value(), 0);
  f.watchdog.remove("unknown");  // no-op
  EXPECT_EQ(f.changes.size(), 2u);
}

TEST(Watchdog, ReAddedLoopStartsAFreshClock) {
  Fixture f;
  f.watchdog.add("tiny", [] { return ProgressSample{1, 1}; });
  f.watchdog.tick(kT0);
  f.watchdog.add("tiny", [] { return ProgressSample{1, 1}; });  // model reloaded
  f.watchdog.tick(kT0 + seconds(3));
  EXPECT_TRUE(f.watchdog.healthy());
  f.watchdog.tick(kT0 + seconds(5));
  EXPECT_FALSE(f.watchdog.healthy());
}

TEST(SelfHealingLog, ListsNewestFirstAndKeepsTheLastHundred) {
  obs::Registry metrics;
  SelfHealingLog log(metrics);
  for (int i = 0; i < 120; ++i) log.record("engine_stalled", "detail " + std::to_string(i));
  log.record("engine_recovered", "last");
  const auto json = log.to_json();
  EXPECT_EQ(json["total"], 121);
  ASSERT_EQ(json["recent"].size(), 100u);
  EXPECT_EQ(json["recent"][0]["action"], "engine_recovered");
  EXPECT_EQ(json["recent"][0]["detail"], "last");
  EXPECT_EQ(json["recent"][1]["detail"], "detail 119");
  EXPECT_TRUE(json["recent"][0]["at"].get<std::string>().ends_with("Z"));
  EXPECT_EQ(metrics.counter("infera_self_healing_actions_total", "", {{"action", "engine_stalled"}})
                .value(),
            120u);
}

}  // namespace
}  // namespace infera::guard
