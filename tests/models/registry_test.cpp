// The registry against a fake model kind: single loads, draining before eviction,
// eviction by value, budgets, vetoes, keep-alive and file changes.
#include "models/registry.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "obs/metrics.h"

namespace infera::models {
namespace {

using namespace std::chrono_literals;

struct FakeWorld {
  std::mutex mu;
  std::map<std::string, int> loads;        // path -> loads
  std::map<std::string, int> alive;        // path -> models alive now
  std::map<std::string, std::string> ids;  // path -> identity
  std::atomic<int> load_ms{0};
  std::atomic<int> warm_ups{0};
};

class FakeModel final : public LoadedModel {
 public:
  FakeModel(FakeWorld& w, std::string path) : w_(w), path_(std::move(path)) {
    std::lock_guard lock(w_.mu);
    ++w_.alive[path_];
  }
  ~FakeModel() override {
    std::lock_guard lock(w_.mu);
    --w_.alive[path_];
  }
  uint64_t bytes() const override { return 100; }
  Status warm_up() override {
    ++w_.warm_ups;
    return Status::Ok();
  }
  Progress progress() const override { return {}; }
  uint64_t drop_caches() override { return 7; }
  nlohmann::json describe() const override { return nlohmann::json::object(); }

 private:
  FakeWorld& w_;
  std::string path_;
};

class FakeKind final : public ModelKind {
 public:
  explicit FakeKind(FakeWorld& w) : w_(w) {}
  std::string name() const override { return "fake"; }
  Status validate(const ModelSpec& spec) const override {
    return spec.path == "missing" ? Status::InvalidArgument("missing: no such file") : Status::Ok();
  }
  uint64_t estimate_bytes(const ModelSpec&) const override { return 100; }
  std::string identity(const ModelSpec& spec) const override {
    std::lock_guard lock(w_.mu);
    return w_.ids[spec.path];
  }
  Result<std::unique_ptr<LoadedModel>> load(const ModelSpec& spec) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(w_.load_ms.load()));
    {
      std::lock_guard lock(w_.mu);
      ++w_.loads[spec.path];
    }
    if (spec.path == "broken") return Status::Corrupt("broken: bad magic");
    return std::unique_ptr<LoadedModel>(std::make_unique<FakeModel>(w_, spec.path));
  }

 private:
  FakeWorld& w_;
};

class RegistryTest : public ::testing::Test {
 protected:
  std::unique_ptr<Registry> make(RegistryConfig config, std::vector<std::string> names) {
    auto r = std::make_unique<Registry>(config, metrics_);
    r->register_kind(std::make_unique<FakeKind>(world_));
    for (const auto& n : names) {
      ModelSpec s;
      s.name = n;
      s.path = n;
      s.kind = "fake";
      EXPECT_TRUE(r->add(s).ok());
    }
    return r;
  }
  // Blocks until the lease (or its error) arrives.
  static Result<std::shared_ptr<Lease>> get(
      Registry& r, const std::string& name,
      std::optional<std::chrono::milliseconds> keep = std::nullopt) {
    std::promise<Result<std::shared_ptr<Lease>>> p;
    auto f = p.get_future();
    r.acquire(name, keep, [&p](Result<std::shared_ptr<Lease>> l) { p.set_value(std::move(l)); });
    return f.get();
  }
  ModelState state(Registry& r, const std::string& name) {
    for (const auto& s : r.list()) {
      if (s.spec.name == name) return s.state;
    }
    return ModelState::kFailed;
  }
  int loads(const std::string& path) {
    std::lock_guard lock(world_.mu);
    return world_.loads[path];
  }
  int alive(const std::string& path) {
    std::lock_guard lock(world_.mu);
    return world_.alive[path];
  }
  template <typename F>
  static bool eventually(F f) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (f()) return true;
      std::this_thread::sleep_for(5ms);
    }
    return f();
  }

  obs::Registry metrics_;
  FakeWorld world_;
};

TEST_F(RegistryTest, ConcurrentFirstRequestsShareOneLoad) {
  world_.load_ms = 50;
  auto r = make({}, {"a"});
  std::vector<std::future<bool>> got;
  for (int i = 0; i < 10; ++i) {
    got.push_back(std::async(std::launch::async, [&] { return get(*r, "a").ok(); }));
  }
  for (auto& g : got) EXPECT_TRUE(g.get());
  EXPECT_EQ(loads("a"), 1);
  EXPECT_EQ(r->list()[0].requests, 10);
}

// A request waiting for the load makes the first pass itself; an explicit load warms up.
TEST_F(RegistryTest, WarmsUpOnlyLoadsNoRequestIsWaitingFor) {
  auto r = make({}, {"a", "b"});
  ASSERT_TRUE(get(*r, "a").ok());
  EXPECT_EQ(world_.warm_ups.load(), 0);
  std::promise<Status> loaded;
  r->load("b", [&loaded](Status s) { loaded.set_value(s); });
  EXPECT_TRUE(loaded.get_future().get().ok());
  EXPECT_EQ(world_.warm_ups.load(), 1);
}

TEST_F(RegistryTest, UnknownModelIsNotFoundNamingTheKnownOnes) {
  auto r = make({}, {"a", "b"});
  auto l = get(*r, "zzz");
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), StatusCode::kNotFound);
  EXPECT_NE(l.status().message().find("a, b"), std::string::npos);
}

TEST_F(RegistryTest, DeclarationsAreCheckedByTheirKind) {
  auto r = make({}, {"a"});
  ModelSpec dup{.name = "a", .kind = "fake", .path = "x"};
  EXPECT_EQ(r->add(dup).code(), StatusCode::kInvalidArgument);
  ModelSpec missing{.name = "m", .kind = "fake", .path = "missing"};
  EXPECT_NE(r->add(missing).message().find("no such file"), std::string::npos);
  ModelSpec unknown{.name = "u", .kind = "onnx", .path = "x"};
  EXPECT_NE(r->add(unknown).message().find("unknown kind 'onnx'"), std::string::npos);
}

TEST_F(RegistryTest, AModelWithRequestsInFlightIsDrainedBeforeEvictionNeverCut) {
  RegistryConfig c;
  c.max_loaded = 1;
  auto r = make(c, {"a", "b"});
  auto held = get(*r, "a");
  ASSERT_TRUE(held.ok());
  std::promise<Result<std::shared_ptr<Lease>>> b_promise;
  auto b_future = b_promise.get_future();
  r->acquire("b", std::nullopt,
             [&](Result<std::shared_ptr<Lease>> l) { b_promise.set_value(std::move(l)); });
  ASSERT_TRUE(eventually([&] { return state(*r, "a") == ModelState::kDraining; }));
  EXPECT_EQ(b_future.wait_for(100ms), std::future_status::timeout);  // waits for a's request
  EXPECT_EQ(alive("a"), 1);
  held = Status::Cancelled("released");  // the request ends: its lease goes
  auto b = b_future.get();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(alive("a"), 0);
  EXPECT_EQ(state(*r, "a"), ModelState::kAvailable);
  EXPECT_EQ(state(*r, "b"), ModelState::kReady);
}

TEST_F(RegistryTest, AModelDrainingForAnUnloadDoesNotHoldUpOtherLoads) {
  auto r = make({}, {"a", "b"});
  auto held = get(*r, "a");
  ASSERT_TRUE(held.ok());
  std::promise<Status> unloaded;
  auto unload_done = unloaded.get_future();
  r->unload("a", [&](Status st) { unloaded.set_value(st); });
  ASSERT_TRUE(get(*r, "b").ok());  // loads while a still drains
  EXPECT_EQ(state(*r, "a"), ModelState::kDraining);
  EXPECT_EQ(unload_done.wait_for(50ms), std::future_status::timeout);
  held = Status::Cancelled("released");
  EXPECT_TRUE(unload_done.get().ok());
  EXPECT_EQ(state(*r, "a"), ModelState::kAvailable);
}

TEST_F(RegistryTest, ARequestWaitingLongerThanTheAcquireTimeoutGetsUnavailable) {
  RegistryConfig c;
  c.max_loaded = 1;
  c.acquire_timeout = 150ms;
  auto r = make(c, {"a", "b"});
  auto held = get(*r, "a");  // never released during the wait: b cannot load
  auto b = get(*r, "b");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(b.status().message().find("did not become ready in time"), std::string::npos);
}

TEST_F(RegistryTest, EvictsTheLeastRequestRateTimesReloadTimeNotTheLeastRecent) {
  RegistryConfig c;
  c.max_loaded = 2;
  auto r = make(c, {"busy", "rare", "new"});
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(get(*r, "busy").ok());
  ASSERT_TRUE(get(*r, "rare").ok());  // used last, but rarely
  ASSERT_TRUE(get(*r, "new").ok());
  EXPECT_EQ(state(*r, "busy"), ModelState::kReady);
  EXPECT_EQ(state(*r, "rare"), ModelState::kAvailable);
  EXPECT_EQ(state(*r, "new"), ModelState::kReady);
}

TEST_F(RegistryTest, PinnedModelsAreNeverEvictedAndANonFittingLoadSaysWhy) {
  RegistryConfig c;
  c.memory_budget_bytes = 150;  // one model of 100 bytes
  obs::Registry metrics;
  Registry r(c, metrics);
  r.register_kind(std::make_unique<FakeKind>(world_));
  ASSERT_TRUE(r.add({.name = "p", .kind = "fake", .path = "p", .pin = true}).ok());
  ASSERT_TRUE(r.add({.name = "q", .kind = "fake", .path = "q"}).ok());
  ASSERT_TRUE(get(r, "p").ok());
  auto q = get(r, "q");
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(q.status().message().find("pinned: p"), std::string::npos) << q.status().message();
  EXPECT_EQ(state(r, "p"), ModelState::kReady);
}

TEST_F(RegistryTest, AVetoRefusesLoadsAsResourceExhausted) {
  std::atomic<bool> pressure{true};
  RegistryConfig c;
  c.load_veto = [&]() -> std::optional<std::string> {
    if (pressure) return "memory is critical";
    return std::nullopt;
  };
  auto r = make(c, {"a"});
  auto refused = get(*r, "a");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  pressure = false;
  EXPECT_TRUE(get(*r, "a").ok());
}

TEST_F(RegistryTest, AFailedLoadIsReportedAndRetriedOnTheNextRequest) {
  auto r = make({}, {"broken"});
  auto first = get(*r, "broken");
  ASSERT_FALSE(first.ok());
  EXPECT_NE(first.status().message().find("bad magic"), std::string::npos);
  EXPECT_EQ(state(*r, "broken"), ModelState::kFailed);
  EXPECT_FALSE(get(*r, "broken").ok());
  EXPECT_EQ(loads("broken"), 2);
}

TEST_F(RegistryTest, KeepAliveZeroUnloadsWhenIdleAndRequestsOverrideIt) {
  auto r = make({}, {"a"});
  ASSERT_TRUE(get(*r, "a", 0ms).ok());  // the lease is released at once
  EXPECT_TRUE(eventually([&] { return state(*r, "a") == ModelState::kAvailable; }));
  ASSERT_TRUE(get(*r, "a", -1ms).ok());
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(state(*r, "a"), ModelState::kReady);
}

TEST_F(RegistryTest, AChangedFileReloadsWhenIdleOnceItsIdentityHoldsStill) {
  RegistryConfig c;
  c.file_check_interval = 50ms;
  {
    std::lock_guard lock(world_.mu);
    world_.ids["a"] = "v1";
  }
  auto r = make(c, {"a"});
  ASSERT_TRUE(get(*r, "a").ok());
  {
    std::lock_guard lock(world_.mu);
    world_.ids["a"] = "v2";
  }
  EXPECT_TRUE(eventually([&] { return loads("a") == 2 && state(*r, "a") == ModelState::kReady; }));
  auto l = get(*r, "a");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ((*l)->identity(), "v2");
}

TEST_F(RegistryTest, UnloadIdleAndDropCachesServeTheMemoryGuard) {
  auto r = make({}, {"a", "b"});
  auto held = get(*r, "a");
  ASSERT_TRUE(get(*r, "b").ok());
  EXPECT_EQ(r->drop_caches(), 14u);
  EXPECT_EQ(r->unload_idle(), 100u);  // b only: a has a request
  EXPECT_EQ(state(*r, "a"), ModelState::kReady);
  EXPECT_EQ(state(*r, "b"), ModelState::kAvailable);
}

}  // namespace
}  // namespace infera::models
