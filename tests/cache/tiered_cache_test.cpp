#include "cache/tiered_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "cache/redis_server.h"
#include "cache/temp_dir.h"

namespace infera::cache {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

Config base_config() {
  Config c;
  c.max_entries = 1000;
  c.max_bytes = 1 << 20;
  c.shards = 4;
  c.ttl_seconds = 3600;
  return c;
}

TEST(TieredCache, MemoryOnlyHitAfterMissWithHeaderNames) {
  auto cache = Cache::open(base_config());
  ASSERT_TRUE(cache.ok());
  Lookup miss = (*cache)->get("k");
  EXPECT_EQ(miss.tier, Tier::kMiss);
  EXPECT_STREQ(x_cache_header(miss.tier), "MISS");
  (*cache)->put("k", "v");
  Lookup hit = (*cache)->get("k");
  EXPECT_EQ(hit.tier, Tier::kL1);
  EXPECT_EQ(*hit.value, "v");
  EXPECT_STREQ(x_cache_header(hit.tier), "HIT-L1");
  const Stats s = (*cache)->stats();
  EXPECT_TRUE(s.l1.enabled);
  EXPECT_FALSE(s.l2.enabled);
  EXPECT_FALSE(s.l3.enabled);
}

TEST(TieredCache, DiskHitAfterRestartIsPromotedToMemory) {
  testing::TempDir dir;
  Config c = base_config();
  c.dir = dir.path();
  {
    auto cache = Cache::open(c);
    ASSERT_TRUE(cache.ok()) << cache.status().message();
    (*cache)->put("answer", "42");
  }
  auto cache = Cache::open(c);
  ASSERT_TRUE(cache.ok());
  Lookup first = (*cache)->get("answer");
  EXPECT_EQ(first.tier, Tier::kL2);
  EXPECT_STREQ(x_cache_header(first.tier), "HIT-L2");
  EXPECT_EQ(*first.value, "42");
  Lookup second = (*cache)->get("answer");
  EXPECT_EQ(second.tier, Tier::kL1);
  const Stats s = (*cache)->stats();
  EXPECT_EQ(s.l2.hits, 1u);
  EXPECT_EQ(s.l1.hits, 1u);
  EXPECT_EQ(s.l1.misses, 1u);
}

TEST(TieredCache, RedisHitFromAnotherInstanceIsPromotedToDiskAndMemory) {
  if (!testing::redis_server_available())
    GTEST_SKIP() << "redis-server not installed; L3 test skipped";
  testing::RedisServer server(testing::free_loopback_port());
  ASSERT_TRUE(server.start());
  testing::TempDir dir_a, dir_b;
  Config a = base_config();
  a.dir = dir_a.path();
  a.redis_url = server.url();
  Config b = a;
  b.dir = dir_b.path();
  auto first = Cache::open(a);
  auto second = Cache::open(b);
  ASSERT_TRUE(first.ok() && second.ok());
  (*first)->put("shared", "computed by the first instance");

  Lookup from_redis = (*second)->get("shared");
  EXPECT_EQ(from_redis.tier, Tier::kL3);
  EXPECT_EQ(*from_redis.value, "computed by the first instance");
  EXPECT_EQ((*second)->get("shared").tier, Tier::kL1);
  server.stop();  // promotion reached L2 too: it still hits without Redis
  second->reset();
  second = Cache::open(b);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ((*second)->get("shared").tier, Tier::kL2);
}

TEST(TieredCache, DeadRedisNeverFailsARequest) {
  Config c = base_config();
  c.redis_url = "redis://127.0.0.1:" + std::to_string(testing::free_loopback_port());
  c.breaker_failures = 2;
  c.redis_timeout_ms = 100;
  auto cache = Cache::open(c);
  ASSERT_TRUE(cache.ok());
  int computed = 0;
  for (int i = 0; i < 5; ++i) {
    const auto start = steady_clock::now();
    Result<Lookup> r =
        (*cache)->get_or_compute("k" + std::to_string(i), [&]() -> Result<std::string> {
          ++computed;
          return std::string("v");
        });
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(*r->value, "v");
    EXPECT_LT(steady_clock::now() - start, milliseconds(500));
  }
  EXPECT_EQ(computed, 5);
  const Stats s = (*cache)->stats();
  EXPECT_EQ(s.breaker, BreakerState::kOpen);
  EXPECT_GT(s.l3.errors, 0u);
}

TEST(TieredCache, HundredConcurrentIdenticalRequestsComputeOnce) {
  auto opened = Cache::open(base_config());
  ASSERT_TRUE(opened.ok());
  Cache& cache = **opened;
  std::atomic<int> computations{0};
  std::vector<std::thread> threads;
  std::atomic<int> merged{0};
  for (int i = 0; i < 100; ++i) {
    threads.emplace_back([&] {
      Result<Lookup> r = cache.get_or_compute("same question", [&]() -> Result<std::string> {
        ++computations;
        // Stay in flight until the other 99 callers have either joined or hit the cache.
        const auto deadline = steady_clock::now() + std::chrono::seconds(10);
        while (cache.stats().single_flight_merges < 99 && steady_clock::now() < deadline) {
          std::this_thread::yield();
        }
        return std::string("the answer");
      });
      ASSERT_TRUE(r.ok());
      EXPECT_EQ(*r->value, "the answer");
      if (r->merged) ++merged;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(computations.load(), 1);
  EXPECT_EQ(merged.load(), 99);
  EXPECT_EQ(cache.get("same question").tier, Tier::kL1);
  EXPECT_EQ(cache.stats().single_flight_merges, 99u);
}

TEST(TieredCache, StreamingLeaderFillsTheCacheOnComplete) {
  auto opened = Cache::open(base_config());
  ASSERT_TRUE(opened.ok());
  Cache& cache = **opened;
  FlightTicket leader = cache.begin("k");
  ASSERT_TRUE(leader.leader());
  FlightTicket follower = cache.begin("k");
  std::string streamed;
  follower.flight().subscribe([&](std::string_view c) { streamed.append(c); },
                              [](const Result<std::string>&) {});
  leader.publish_chunk("a");
  leader.publish_chunk("b");
  leader.complete(std::string("ab"));
  EXPECT_EQ(streamed, "ab");
  EXPECT_EQ(cache.get("k").tier, Tier::kL1);
}

TEST(TieredCache, ClearEmptiesEveryTier) {
  testing::TempDir dir;
  Config c = base_config();
  c.dir = dir.path();
  auto cache = Cache::open(c);
  ASSERT_TRUE(cache.ok());
  (*cache)->put("k", "v");
  (*cache)->clear();
  EXPECT_EQ((*cache)->get("k").tier, Tier::kMiss);
}

// The disk tier is an optimisation: a directory RocksDB cannot open costs L2, not the cache.
TEST(TieredCache, UnopenableDiskDirectoryLeavesTheCacheWithoutL2) {
  testing::TempDir dir;
  const std::string not_a_dir = dir.path() + "/file";
  { std::ofstream(not_a_dir) << "x"; }
  Config c = base_config();
  c.dir = not_a_dir + "/l2";  // below a regular file: create_directories fails
  auto cache = Cache::open(c);
  ASSERT_TRUE(cache.ok()) << cache.status().message();
  EXPECT_FALSE((*cache)->stats().l2.enabled);
  (*cache)->put("k", "v");
  Lookup hit = (*cache)->get("k");
  EXPECT_EQ(hit.tier, Tier::kL1);
  EXPECT_EQ(*hit.value, "v");
}

TEST(TieredCache, DiskDirectoryLockedByAnotherCacheLeavesTheSecondWithoutL2) {
  testing::TempDir dir;
  Config c = base_config();
  c.dir = dir.path();
  auto first = Cache::open(c);
  auto second = Cache::open(c);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_TRUE((*first)->stats().l2.enabled);
  EXPECT_FALSE((*second)->stats().l2.enabled);
  (*second)->put("k", "v");
  EXPECT_EQ((*second)->get("k").tier, Tier::kL1);
}

}  // namespace
}  // namespace infera::cache
