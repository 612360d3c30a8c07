#include "auth/limiter.h"

#include <gtest/gtest.h>

#include <thread>

#include "cache/redis_server.h"

namespace infera::auth {
namespace {

constexpr double kSecond = 1e6;  // µs

Subject key(const std::string& id, Limits l) { return Subject{id, l}; }

TEST(Gcra, BurstThenSteadyRate) {
  Limits l;
  l.requests_per_minute = 60;  // one per second, a minute's worth at once
  LocalBuckets b;
  const double t0 = 1000 * kSecond;
  for (int i = 0; i < 60; ++i) {
    Quote q = b.admit({key("k", l)}, t0, 0);
    ASSERT_TRUE(q.allowed) << i;
    EXPECT_EQ(q.limit_requests, 60);
    EXPECT_EQ(q.remaining_requests, 59 - i);
  }
  Quote refused = b.admit({key("k", l)}, t0, 0);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.reason, "requests_per_minute");
  EXPECT_EQ(refused.subject, "k");
  EXPECT_NEAR(refused.retry_after_s, 1.0, 1e-6);
  EXPECT_EQ(refused.remaining_requests, 0);
  EXPECT_NEAR(refused.reset_requests_s, 60.0, 1e-6);
  // A cell frees after one emission interval, not before.
  EXPECT_FALSE(b.admit({key("k", l)}, t0 + 0.99 * kSecond, 0).allowed);
  EXPECT_TRUE(b.admit({key("k", l)}, t0 + 1.0 * kSecond, 0).allowed);
}

TEST(Gcra, SustainedRateMatchesTheLimit) {
  Limits l;
  l.requests_per_minute = 600;
  l.request_burst = 5;
  LocalBuckets b;
  // A client trying every millisecond for a simulated minute gets the burst plus
  // exactly the configured rate.
  int allowed = 0;
  for (int ms = 0; ms < 60000; ++ms) {
    if (b.admit({key("k", l)}, 5000 * kSecond + ms * 1000.0, 0).allowed) ++allowed;
  }
  EXPECT_GE(allowed, 600 + 5 - 1);
  EXPECT_LE(allowed, 600 + 5);
}

TEST(Gcra, TokensAreChargedAsProducedAndGoIntoDebt) {
  Limits l;
  l.tokens_per_minute = 1000;
  LocalBuckets b;
  const double t0 = 100 * kSecond;
  Quote q = b.admit({key("k", l)}, t0, 0);
  ASSERT_TRUE(q.allowed);
  EXPECT_EQ(q.limit_tokens, 1000);
  EXPECT_EQ(q.remaining_tokens, 1000);
  b.charge({key("k", l)}, 400, t0, 0);
  EXPECT_EQ(b.admit({key("k", l)}, t0, 0).remaining_tokens, 600);
  b.charge({key("k", l)}, 1600, t0, 0);  // 1000 owed beyond the bucket
  Quote refused = b.admit({key("k", l)}, t0, 0);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.reason, "tokens_per_minute");
  // The debt (1000 tokens) plus one token must be paid back: 60.06 s at 1000/min.
  EXPECT_NEAR(refused.retry_after_s, 60.06, 1e-3);
  EXPECT_FALSE(b.admit({key("k", l)}, t0 + 60 * kSecond, 0).allowed);
  EXPECT_TRUE(b.admit({key("k", l)}, t0 + 60.06 * kSecond, 0).allowed);
}

TEST(Gcra, DailyQuotaRenewsWithTheDay) {
  Limits l;
  l.tokens_per_day = 100;
  LocalBuckets b;
  EXPECT_TRUE(b.admit({key("k", l)}, 0, 20000).allowed);
  b.charge({key("k", l)}, 99, 0, 20000);
  EXPECT_TRUE(b.admit({key("k", l)}, 0, 20000).allowed);
  b.charge({key("k", l)}, 1, 0, 20000);
  Quote refused = b.admit({key("k", l)}, 0, 20000);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.reason, "tokens_per_day");
  EXPECT_GE(refused.retry_after_s, 1.0);
  EXPECT_EQ(b.daily_usage(20000).at("k"), 100);
  EXPECT_TRUE(b.admit({key("k", l)}, 0, 20001).allowed);
  // Restored usage (a restart) counts.
  LocalBuckets restarted;
  restarted.restore_daily("k", 20000, 100);
  EXPECT_FALSE(restarted.admit({key("k", l)}, 0, 20000).allowed);
}

TEST(Gcra, AllSubjectsOrNone) {
  Limits roomy;
  roomy.requests_per_minute = 100;
  Limits tight;
  tight.requests_per_minute = 1;
  LocalBuckets b;
  ASSERT_TRUE(b.admit({key("key:a", roomy), key("ip:1", tight)}, 0, 0).allowed);
  Quote refused = b.admit({key("key:a", roomy), key("ip:1", tight)}, 0, 0);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.subject, "ip:1");
  // The refused request took no cell from the key's bucket: 99 were left, this takes one.
  EXPECT_EQ(b.admit({key("key:a", roomy)}, 0, 0).remaining_requests, 98);
}

TEST(Gcra, HeadersDescribeTheFirstLimitedSubject) {
  Limits a;
  a.requests_per_minute = 10;
  Limits ip;
  ip.requests_per_minute = 1000;
  LocalBuckets b;
  Quote q = b.admit({key("key:a", a), key("ip:1", ip)}, 0, 0);
  EXPECT_EQ(q.limit_requests, 10);
  EXPECT_EQ(q.remaining_requests, 9);
}

TEST(Concurrency, SlotsPerSubject) {
  Limits l;
  l.concurrent = 2;
  Concurrency c;
  std::vector<Subject> s = {key("k", l)};
  EXPECT_TRUE(c.acquire(s, nullptr));
  EXPECT_TRUE(c.acquire(s, nullptr));
  std::string refused;
  EXPECT_FALSE(c.acquire(s, &refused));
  EXPECT_EQ(refused, "k");
  EXPECT_EQ(c.in_flight("k"), 2);
  c.release(s);
  EXPECT_TRUE(c.acquire(s, nullptr));
  c.release(s);
  c.release(s);
  EXPECT_EQ(c.in_flight("k"), 0);
}

TEST(UtcDay, Boundaries) {
  EXPECT_EQ(utc_day(0), 0);
  EXPECT_EQ(utc_day(86399), 0);
  EXPECT_EQ(utc_day(86400), 1);
  EXPECT_EQ(seconds_to_next_utc_day(86400 + 3600), 82800);
}

class RedisBucketsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cache::testing::redis_server_available()) GTEST_SKIP() << "redis-server is not installed";
    server_ = std::make_unique<cache::testing::RedisServer>(cache::testing::free_loopback_port());
    ASSERT_TRUE(server_->start());
  }
  std::unique_ptr<RedisBuckets> open(const std::string& prefix = "t:") {
    RedisLimiterOptions o;
    o.url = server_->url();
    o.prefix = prefix;
    o.timeout = std::chrono::milliseconds(500);
    auto b = RedisBuckets::open(o);
    EXPECT_TRUE(b.ok());
    return std::move(b).value();
  }
  std::unique_ptr<cache::testing::RedisServer> server_;
};

TEST_F(RedisBucketsTest, TwoInstancesShareOneBucket) {
  auto a = open();
  auto b = open();
  Limits l;
  l.requests_per_minute = 6;  // one per 10 s: no cell frees during the test
  int allowed = 0;
  for (int i = 0; i < 10; ++i) {
    auto qa = a->admit({key("key:x", l)});
    auto qb = b->admit({key("key:x", l)});
    ASSERT_TRUE(qa && qb);
    allowed += qa->allowed + qb->allowed;
  }
  EXPECT_EQ(allowed, 6);
  auto refused = a->admit({key("key:x", l)});
  ASSERT_TRUE(refused);
  EXPECT_FALSE(refused->allowed);
  EXPECT_EQ(refused->reason, "requests_per_minute");
  EXPECT_EQ(refused->subject, "key:x");
  EXPECT_GT(refused->retry_after_s, 0);
  EXPECT_LE(refused->retry_after_s, 10.0);
}

TEST_F(RedisBucketsTest, TokensAndDailyQuota) {
  auto a = open();
  auto b = open();
  Limits l;
  l.tokens_per_minute = 600;
  l.tokens_per_day = 1000;
  auto q = a->admit({key("key:t", l)});
  ASSERT_TRUE(q && q->allowed);
  EXPECT_EQ(q->limit_tokens, 600);
  EXPECT_EQ(q->remaining_tokens, 600);
  ASSERT_TRUE(b->charge({key("key:t", l)}, 700));  // charged on the other instance
  auto refused = a->admit({key("key:t", l)});
  ASSERT_TRUE(refused);
  EXPECT_FALSE(refused->allowed);
  EXPECT_EQ(refused->reason, "tokens_per_minute");
  EXPECT_NEAR(refused->retry_after_s, 10.1, 0.2);  // 100 owed + 1 at 10/s
  EXPECT_EQ(a->daily_used("key:t").value_or(-1), 700);
  ASSERT_TRUE(a->charge({key("key:t", l)}, 300));
  Limits daily_only;
  daily_only.tokens_per_day = 1000;
  auto over = b->admit({key("key:t", daily_only)});
  ASSERT_TRUE(over);
  EXPECT_FALSE(over->allowed);
  EXPECT_EQ(over->reason, "tokens_per_day");
}

TEST_F(RedisBucketsTest, AllSubjectsOrNone) {
  auto a = open();
  Limits roomy;
  roomy.requests_per_minute = 100;
  Limits tight;
  tight.requests_per_minute = 1;
  ASSERT_TRUE(a->admit({key("key:r", roomy), key("ip:9", tight)})->allowed);
  auto refused = a->admit({key("key:r", roomy), key("ip:9", tight)});
  ASSERT_TRUE(refused);
  EXPECT_FALSE(refused->allowed);
  EXPECT_EQ(refused->subject, "ip:9");
  EXPECT_EQ(a->admit({key("key:r", roomy)})->remaining_requests, 98);
}

TEST_F(RedisBucketsTest, UnreachableRedisIsReportedNotAllowed) {
  auto a = open();
  server_->stop();
  Limits l;
  l.requests_per_minute = 1;
  EXPECT_FALSE(a->admit({key("key:d", l)}).has_value());
  EXPECT_FALSE(a->charge({key("key:d", l)}, 5));
  // Back: the next call reconnects and reloads the scripts.
  ASSERT_TRUE(server_->start());
  auto q = a->admit({key("key:d", l)});
  ASSERT_TRUE(q);
  EXPECT_TRUE(q->allowed);
}

}  // namespace
}  // namespace infera::auth
