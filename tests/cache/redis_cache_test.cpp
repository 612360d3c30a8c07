#include "cache/redis_cache.h"

#include <gtest/gtest.h>

#include <thread>

#include "cache/redis_server.h"

namespace infera::cache {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;
using testing::RedisServer;

TEST(RedisUrl, ParsesHostPortAndDb) {
  auto e = parse_redis_url("redis://cache.local:6380/2");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->host, "cache.local");
  EXPECT_EQ(e->port, 6380);
  EXPECT_EQ(e->db, 2);
  e = parse_redis_url("redis://127.0.0.1");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->port, 6379);
  EXPECT_EQ(e->db, 0);
  EXPECT_FALSE(parse_redis_url("http://x:1").ok());
  EXPECT_FALSE(parse_redis_url("redis://x:notaport").ok());
  EXPECT_FALSE(parse_redis_url("redis://:6379").ok());
  EXPECT_FALSE(parse_redis_url("redis://x:1/db").ok());
}

class RedisCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::redis_server_available())
      GTEST_SKIP() << "redis-server not installed; L3 tests skipped";
    server_ = std::make_unique<RedisServer>(testing::free_loopback_port());
    ASSERT_TRUE(server_->start()) << "redis-server did not answer PING on port " << server_->port();
  }

  std::unique_ptr<RedisCache> open_cache(milliseconds cooldown = milliseconds(200)) {
    RedisCacheOptions o;
    o.url = server_->url();
    o.pool_size = 2;
    o.connect_timeout = milliseconds(100);
    o.command_timeout = milliseconds(100);
    o.breaker_failures = 3;
    o.breaker_cooldown = cooldown;
    auto cache = RedisCache::open(o);
    EXPECT_TRUE(cache.ok());
    return std::move(cache).value();
  }

  std::unique_ptr<RedisServer> server_;
};

std::int64_t in_an_hour() { return now_unix_ms() + 3600 * 1000; }

TEST_F(RedisCacheTest, HitAfterMiss) {
  auto cache = open_cache();
  EXPECT_FALSE(cache->get("k").has_value());
  ASSERT_TRUE(cache->put("k", std::string("bin\0ary", 7), in_an_hour()).ok());
  auto hit = cache->get("k");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->value, std::string("bin\0ary", 7));
  EXPECT_EQ(cache->stats().hits, 1u);
  EXPECT_EQ(cache->stats().misses, 1u);
  EXPECT_EQ(cache->breaker_state(), BreakerState::kClosed);
}

TEST_F(RedisCacheTest, EveryKeyHasATtlAndExpires) {
  auto cache = open_cache();
  ASSERT_TRUE(cache->put("soon", "v", now_unix_ms() + 50).ok());
  ASSERT_TRUE(cache->get("soon").has_value());
  const auto deadline = steady_clock::now() + std::chrono::seconds(5);
  while (cache->get("soon").has_value() && steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));  // poll interval
  }
  EXPECT_FALSE(cache->get("soon").has_value());
  // Redis itself dropped the key (PX), not only our expiry check.
  ASSERT_TRUE(cache->put("later", "v", in_an_hour()).ok());
  redisContext* c = redisConnect("127.0.0.1", server_->port());
  ASSERT_TRUE(c != nullptr && c->err == 0);
  auto* ttl = static_cast<redisReply*>(redisCommand(c, "PTTL infera:cache:later"));
  ASSERT_NE(ttl, nullptr);
  EXPECT_GT(ttl->integer, 3500 * 1000);
  freeReplyObject(ttl);
  // Redis's own PX clock started a moment after ours: poll until it dropped the key too.
  long long exists = 1;
  const auto gone_deadline = steady_clock::now() + std::chrono::seconds(5);
  while (exists != 0 && steady_clock::now() < gone_deadline) {
    auto* gone = static_cast<redisReply*>(redisCommand(c, "EXISTS infera:cache:soon"));
    ASSERT_NE(gone, nullptr);
    exists = gone->integer;
    freeReplyObject(gone);
    if (exists != 0) std::this_thread::sleep_for(milliseconds(2));  // poll interval
  }
  EXPECT_EQ(exists, 0);
  redisFree(c);
}

TEST_F(RedisCacheTest, DeadRedisCostsABoundedDelayOpensTheBreakerAndRecovers) {
  auto cache = open_cache(milliseconds(200));
  ASSERT_TRUE(cache->put("before", "v", in_an_hour()).ok());
  ASSERT_TRUE(cache->get("before").has_value());

  server_->stop();
  for (int i = 0; i < 20; ++i) {
    const auto start = steady_clock::now();
    EXPECT_FALSE(cache->get("before").has_value());
    (void)cache->put("during", "v", in_an_hour());
    EXPECT_LT(steady_clock::now() - start, milliseconds(500)) << "call " << i;
  }
  EXPECT_NE(cache->breaker_state(), BreakerState::kClosed);
  EXPECT_GE(cache->breaker_opens(), 1u);
  EXPECT_GT(cache->stats().errors, 0u);

  ASSERT_TRUE(server_->start());  // same port, empty data set
  const auto deadline = steady_clock::now() + std::chrono::seconds(10);
  bool hit = false;
  while (!hit && steady_clock::now() < deadline) {
    (void)cache->put("after", "back", in_an_hour());
    hit = cache->get("after").has_value();
    if (!hit) std::this_thread::sleep_for(milliseconds(20));  // poll interval
  }
  EXPECT_TRUE(hit);
  EXPECT_EQ(cache->breaker_state(), BreakerState::kClosed);
}

TEST_F(RedisCacheTest, SlowRedisCostsAtMostTheTimeout) {
  auto cache = open_cache(milliseconds(60000));
  ASSERT_TRUE(cache->put("k", "v", in_an_hour()).ok());
  server_->pause();  // accepts connections, never answers
  const auto start = steady_clock::now();
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(cache->get("k").has_value());
  const auto elapsed = steady_clock::now() - start;
  server_->resume();
  // 3 failures of at most connect + command timeout each, then the breaker answers at once.
  EXPECT_LT(elapsed, milliseconds(3 * 250 + 200));
  EXPECT_EQ(cache->breaker_state(), BreakerState::kOpen);
}

TEST_F(RedisCacheTest, TwoClientsShareEntriesAndClearRemovesOnlyThePrefix) {
  auto a = open_cache();
  auto b = open_cache();
  ASSERT_TRUE(a->put("shared", "from a", in_an_hour()).ok());
  ASSERT_TRUE(b->get("shared").has_value());
  redisContext* c = redisConnect("127.0.0.1", server_->port());
  ASSERT_TRUE(c != nullptr && c->err == 0);
  freeReplyObject(redisCommand(c, "SET other:key x"));
  ASSERT_TRUE(b->clear().ok());
  EXPECT_FALSE(a->get("shared").has_value());
  auto* other = static_cast<redisReply*>(redisCommand(c, "EXISTS other:key"));
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(other->integer, 1);
  freeReplyObject(other);
  redisFree(c);
}

}  // namespace
}  // namespace infera::cache
