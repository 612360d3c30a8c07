#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "guard/guard.h"
#include "obs/metrics.h"

namespace infera::guard {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr uint64_t kMiB = 1 << 20;

// Memory as a whole percentage of a 100 MiB machine; actions lower it. Readings are
// counted so the threaded test can wait for ticks.
class FakeSource final : public MemorySource {
 public:
  explicit FakeSource(int used_percent) : used_percent_(used_percent) {}

  MemoryReading read() override {
    reads_.fetch_add(1);
    MemoryReading reading;
    reading.process_rss_bytes = 7 * kMiB;
    reading.system_total_bytes = 100 * kMiB;
    reading.system_available_bytes = static_cast<uint64_t>(100 - used_percent_.load()) * kMiB;
    reading.cgroup_current_bytes = cgroup_current_bytes;
    reading.cgroup_max_bytes = cgroup_max_bytes;
    return reading;
  }

  void set(int used_percent) { used_percent_ = used_percent; }
  void lower(int percent) { used_percent_ -= percent; }
  int reads() const { return reads_.load(); }

  std::optional<uint64_t> cgroup_current_bytes;
  std::optional<uint64_t> cgroup_max_bytes;

 private:
  std::atomic<int> used_percent_;
  std::atomic<int> reads_{0};
};

// Cleanup actions that append their name to `ran` and free their percentage of memory.
struct Actions {
  FakeSource& source;
  std::vector<std::string> ran;

  std::vector<CleanupAction> make(const std::vector<std::pair<std::string, int>>& frees) {
    std::vector<CleanupAction> out;
    for (auto& [name, percent] : frees) {
      out.push_back({name, [this, name = name, percent = percent]() -> uint64_t {
                       ran.push_back(name);
                       source.lower(percent);
                       return static_cast<uint64_t>(percent) * kMiB;
                     }});
    }
    return out;
  }
};

const Clock::time_point kT0 = Clock::time_point() + std::chrono::hours(1);

TEST(MemoryReading, UsedFractionIsTheTighterOfSystemAndCgroup) {
  MemoryReading r;
  EXPECT_EQ(r.used_fraction(), 0);
  r.system_total_bytes = 100;
  r.system_available_bytes = 60;
  EXPECT_DOUBLE_EQ(r.used_fraction(), 0.40);
  r.cgroup_current_bytes = 90;  // no limit: the cgroup does not count
  EXPECT_DOUBLE_EQ(r.used_fraction(), 0.40);
  r.cgroup_max_bytes = 100;
  EXPECT_DOUBLE_EQ(r.used_fraction(), 0.90);
  r.system_available_bytes = 1;
  EXPECT_DOUBLE_EQ(r.used_fraction(), 0.99);
}

TEST(MemoryGuard, CleanupRunsActionsInOrderAndStopsOnceBelowThreshold) {
  FakeSource source(90);
  Actions actions{source, {}};
  obs::Registry metrics;
  MemoryGuard guard(
      {}, source,
      actions.make({{"shrink_cache", 5}, {"drop_prefix_blocks", 10}, {"unload_idle_models", 30}}),
      metrics);
  guard.tick(kT0);
  // 90% -> 85% (still >= 80%) -> 75%: the third action is not needed.
  EXPECT_EQ(actions.ran, (std::vector<std::string>{"shrink_cache", "drop_prefix_blocks"}));
  EXPECT_EQ(metrics.counter("infera_memory_cleanup_actions_total", "", {{"action", "shrink_cache"}})
                .value(),
            1u);
  EXPECT_EQ(
      metrics.counter("infera_memory_cleanup_actions_total", "", {{"action", "unload_idle_models"}})
          .value(),
      0u);
  EXPECT_NEAR(metrics.gauge("infera_memory_used_fraction", "").value(), 0.75, 1e-9);
  EXPECT_EQ(metrics.gauge("infera_memory_process_rss_bytes", "").value(), 7.0 * kMiB);

  actions.ran.clear();
  guard.tick(kT0 + seconds(1));  // 75%, and the trend restarted after the cleanup
  EXPECT_TRUE(actions.ran.empty());
}

TEST(MemoryGuard, NothingRunsBelowThreshold) {
  FakeSource source(79);
  Actions actions{source, {}};
  obs::Registry metrics;
  MemoryGuard guard({}, source, actions.make({{"shrink_cache", 5}}), metrics);
  for (int i = 0; i < 20; ++i) guard.tick(kT0 + seconds(i));
  EXPECT_TRUE(actions.ran.empty());
  EXPECT_EQ(guard.stats()["state"], "normal");
}

TEST(MemoryGuard, RunsTheWholeChainWhenNothingGetsBelowThreshold) {
  FakeSource source(99);
  Actions actions{source, {}};
  obs::Registry metrics;
  MemoryGuard guard({}, source, actions.make({{"a", 1}, {"b", 1}, {"c", 1}}), metrics);
  guard.tick(kT0);
  EXPECT_EQ(actions.ran, (std::vector<std::string>{"a", "b", "c"}));
}

TEST(MemoryGuard, RisingTrendStartsCleanupBeforeTheThreshold) {
  FakeSource source(60);
  Actions actions{source, {}};
  obs::Registry metrics;
  MemoryGuard guard({}, source, actions.make({{"shrink_cache", 1}, {"unload_idle_models", 1}}),
                    metrics);
  guard.tick(kT0);
  source.set(63);
  guard.tick(kT0 + seconds(1));
  EXPECT_TRUE(actions.ran.empty()) << "two samples are not a trend";
  source.set(66);
  guard.tick(kT0 + seconds(2));  // +3%/s reaches 96% within the 10 s horizon
  EXPECT_EQ(actions.ran, std::vector<std::string>{"shrink_cache"})
      << "a predicted crossing runs only the first action";
  const auto stats = guard.stats();
  ASSERT_EQ(stats["actions"].size(), 1u);
  EXPECT_EQ(stats["actions"][0]["reason"], "predicted");
  EXPECT_EQ(stats["samples"], 1) << "the trend restarts after a cleanup";

  // The post-cleanup reading starts the new trend; two more rising samples complete it.
  source.set(68);
  guard.tick(kT0 + seconds(3));
  EXPECT_EQ(actions.ran.size(), 1u);
  source.set(70);
  guard.tick(kT0 + seconds(4));
  EXPECT_EQ(actions.ran.size(), 2u);
}

TEST(MemoryGuard, FlatTrendBelowThresholdDoesNotPredict) {
  FakeSource source(75);
  Actions actions{source, {}};
  obs::Registry metrics;
  MemoryGuard guard({}, source, actions.make({{"shrink_cache", 1}}), metrics);
  for (int i = 0; i < 10; ++i) guard.tick(kT0 + seconds(i));
  EXPECT_TRUE(actions.ran.empty());
  EXPECT_NEAR(guard.stats()["predicted_fraction"].get<double>(), 0.75, 1e-9);
}

TEST(MemoryGuard, TrendTooSlowToCrossWithinHorizonDoesNotPredict) {
  FakeSource source(70);
  Actions actions{source, {}};
  obs::Registry metrics;
  MemoryGuard guard({}, source, actions.make({{"shrink_cache", 1}}), metrics);
  // +1% every 5 s: 75% ten seconds after the last sample, short of 80%.
  for (int i = 0; i < 4; ++i) {
    source.set(70 + i);
    guard.tick(kT0 + seconds(5 * i));
  }
  EXPECT_TRUE(actions.ran.empty());
  EXPECT_NEAR(guard.stats()["predicted_fraction"].get<double>(), 0.75, 1e-9);
}

TEST(MemoryGuard, CriticalHasHysteresisAndRecoversAutomatically) {
  FakeSource source(90);
  obs::Registry metrics;
  MemoryGuard guard({}, source, {}, metrics);
  std::vector<std::pair<bool, double>> changes;
  guard.on_critical_change = [&](bool critical, double fraction) {
    changes.emplace_back(critical, fraction);
  };
  guard.tick(kT0);
  EXPECT_FALSE(guard.critical());
  EXPECT_EQ(guard.retry_after_seconds(), 2);

  source.set(95);
  guard.tick(kT0 + seconds(1));
  EXPECT_TRUE(guard.critical());
  EXPECT_EQ(metrics.gauge("infera_memory_critical", "").value(), 1);
  EXPECT_EQ(guard.stats()["state"], "critical");
  EXPECT_EQ(guard.retry_after_seconds(), 5);

  source.set(94);  // inside the 93..95% band
  guard.tick(kT0 + seconds(2));
  source.set(93);
  guard.tick(kT0 + seconds(3));
  EXPECT_TRUE(guard.critical());

  source.set(92);
  guard.tick(kT0 + seconds(4));
  EXPECT_FALSE(guard.critical());
  EXPECT_EQ(metrics.gauge("infera_memory_critical", "").value(), 0);

  ASSERT_EQ(changes.size(), 2u);
  EXPECT_TRUE(changes[0].first);
  EXPECT_NEAR(changes[0].second, 0.95, 1e-9);
  EXPECT_FALSE(changes[1].first);
  EXPECT_NEAR(changes[1].second, 0.92, 1e-9);
}

TEST(MemoryGuard, CleanupThatRelievesPressureClearsCriticalInTheSameTick) {
  FakeSource source(97);
  Actions actions{source, {}};
  obs::Registry metrics;
  MemoryGuard guard({}, source, actions.make({{"unload_idle_models", 30}}), metrics);
  std::vector<bool> changes;
  guard.on_critical_change = [&](bool critical, double) {
    // Admission must already be refused while the action runs.
    if (critical) {
      EXPECT_TRUE(actions.ran.empty());
    }
    changes.push_back(critical);
  };
  guard.tick(kT0);
  EXPECT_EQ(changes, (std::vector<bool>{true, false}));
  EXPECT_FALSE(guard.critical());
}

TEST(MemoryGuard, StatsHaveTheDocumentedFieldsAndNewestActionFirst) {
  FakeSource source(85);
  Actions actions{source, {}};
  obs::Registry metrics;
  GuardConfig config;
  config.cleanup_threshold = 0.80;
  config.critical_threshold = 0.95;
  MemoryGuard guard(config, source, actions.make({{"first", 3}, {"second", 10}}), metrics);
  auto empty = guard.stats();
  EXPECT_EQ(empty["samples"], 0);
  EXPECT_TRUE(empty["actions"].empty());
  EXPECT_TRUE(empty["predicted_fraction"].is_null());

  guard.tick(kT0);
  const auto stats = guard.stats();
  EXPECT_EQ(stats["process"]["rss_bytes"], 7 * kMiB);
  EXPECT_DOUBLE_EQ(stats["process"]["rss_mb"].get<double>(), 7.0);
  EXPECT_EQ(stats["system"]["total_bytes"], 100 * kMiB);
  EXPECT_EQ(stats["system"]["available_bytes"], 28 * kMiB);
  EXPECT_NEAR(stats["system"]["used_percent"].get<double>(), 72, 1e-9);
  EXPECT_TRUE(stats["cgroup"].is_null());
  EXPECT_NEAR(stats["used_fraction"].get<double>(), 0.72, 1e-9);
  EXPECT_TRUE(stats["predicted_fraction"].is_null());
  EXPECT_EQ(stats["state"], "cleanup");
  EXPECT_EQ(stats["thresholds"]["cleanup"], 0.80);
  EXPECT_EQ(stats["thresholds"]["critical"], 0.95);
  EXPECT_EQ(stats["samples"], 1);
  ASSERT_EQ(stats["actions"].size(), 2u);
  const auto& newest = stats["actions"][0];
  EXPECT_EQ(newest["action"], "second");
  EXPECT_EQ(newest["reason"], "threshold");
  EXPECT_NEAR(newest["fraction_before"].get<double>(), 0.82, 1e-9);
  EXPECT_NEAR(newest["fraction_after"].get<double>(), 0.72, 1e-9);
  EXPECT_EQ(newest["freed_bytes"], 10 * kMiB);
  EXPECT_EQ(newest["at"].get<std::string>().size(), std::string("2024-05-01T12:00:00.123Z").size());
  EXPECT_EQ(stats["actions"][1]["action"], "first");

  source.cgroup_current_bytes = 32 * kMiB;
  guard.tick(kT0 + seconds(1));
  EXPECT_EQ(guard.stats()["cgroup"],
            (nlohmann::json{{"current_bytes", 32 * kMiB}, {"max_bytes", nullptr}}));
  source.cgroup_max_bytes = 64 * kMiB;
  guard.tick(kT0 + seconds(2));
  const auto with_limit = guard.stats();
  EXPECT_EQ(with_limit["cgroup"]["max_bytes"], 64 * kMiB);
  EXPECT_EQ(with_limit["state"], "normal");
  EXPECT_NEAR(with_limit["predicted_fraction"].get<double>(), 0.72, 1e-9);
}

TEST(MemoryGuard, KeepsOnlyTheLastHundredActions) {
  FakeSource source(99);
  Actions actions{source, {}};
  obs::Registry metrics;
  MemoryGuard guard({}, source, actions.make({{"noop", 0}}), metrics);
  for (int i = 0; i < 150; ++i) guard.tick(kT0 + seconds(i));
  EXPECT_EQ(actions.ran.size(), 150u);
  EXPECT_EQ(guard.stats()["actions"].size(), 100u);
}

TEST(MemoryGuard, ThreadTicksUntilStopped) {
  FakeSource source(50);
  obs::Registry metrics;
  GuardConfig config;
  config.interval = milliseconds(1);
  MemoryGuard guard(config, source, {}, metrics);
  guard.start();
  guard.start();  // already running: no second thread
  const auto deadline = Clock::now() + seconds(10);
  while (source.reads() < 5 && Clock::now() < deadline) {
    EXPECT_FALSE(guard.critical());  // readers on other threads while the guard ticks
    EXPECT_EQ(guard.stats()["state"], "normal");
  }
  guard.stop();
  EXPECT_GE(source.reads(), 5);
  const int reads_after_stop = source.reads();
  guard.stop();
  EXPECT_EQ(source.reads(), reads_after_stop);
  EXPECT_GT(guard.stats()["samples"].get<int>(), 0);
}

}  // namespace
}  // namespace infera::guard
