#include "obs/metrics.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <random>
#include <thread>

namespace infera::obs {
namespace {

TEST(Histogram, QuantilesAreWithinOneBucket) {
  Histogram h;
  // 1..10000 microseconds, uniformly: P50 = 5 ms, P95 = 9.5 ms, P99 = 9.9 ms.
  for (int i = 1; i <= 10000; ++i) h.observe(i * 1e-6);
  auto s = h.snapshot();
  EXPECT_EQ(s.count, 10000u);
  EXPECT_NEAR(s.quantile(0.50), 5e-3, 5e-3 * 0.10);
  EXPECT_NEAR(s.quantile(0.95), 9.5e-3, 9.5e-3 * 0.10);
  EXPECT_NEAR(s.quantile(0.99), 9.9e-3, 9.9e-3 * 0.10);
  EXPECT_NEAR(s.mean(), 5.0005e-3, 1e-9);
}

TEST(Histogram, SkewedDistributionTail) {
  Histogram h;
  for (int i = 0; i < 990; ++i) h.observe(0.001);
  for (int i = 0; i < 10; ++i) h.observe(2.0);
  auto s = h.snapshot();
  EXPECT_NEAR(s.quantile(0.5), 0.001, 0.0002);
  EXPECT_NEAR(s.quantile(0.999), 2.0, 0.4);
  EXPECT_EQ(Histogram::Snapshot{}.quantile(0.99), 0);
}

TEST(Histogram, ConcurrentObservationsAreAllCounted) {
  Histogram h;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&h] {
      for (int i = 0; i < 25000; ++i) h.observe(0.5);
    });
  }
  for (auto& t : threads) t.join();
  auto s = h.snapshot();
  EXPECT_EQ(s.count, 100000u);
  EXPECT_DOUBLE_EQ(s.sum, 50000.0);
}

TEST(Registry, PrometheusTextHasTypesLabelsAndCumulativeBuckets) {
  Registry r;
  r.counter("requests_total", "Requests", {{"route", "/a"}}).inc(3);
  r.gauge("queue_depth", "Waiting").set(7);
  auto& h = r.histogram("latency_seconds", "Latency", {{"route", "/a"}});
  h.observe(0.003);
  h.observe(0.2);
  std::string text = r.prometheus_text();
  EXPECT_NE(text.find("# TYPE requests_total counter"), std::string::npos);
  EXPECT_NE(text.find("requests_total{route=\"/a\"} 3"), std::string::npos);
  EXPECT_NE(text.find("queue_depth 7"), std::string::npos);
  EXPECT_NE(text.find("# TYPE latency_seconds histogram"), std::string::npos);
  EXPECT_NE(text.find("latency_seconds_bucket{route=\"/a\",le=\"0.00390625\"} 1"), std::string::npos)
      << text;
  EXPECT_NE(text.find("latency_seconds_bucket{route=\"/a\",le=\"0.25\"} 2"), std::string::npos);
  EXPECT_NE(text.find("latency_seconds_bucket{route=\"/a\",le=\"+Inf\"} 2"), std::string::npos);
  EXPECT_NE(text.find("latency_seconds_count{route=\"/a\"} 2"), std::string::npos);
}

TEST(Registry, JsonHasQuantilesAndSameMetricIsReturnedTwice) {
  Registry r;
  Counter& a = r.counter("hits_total", "Hits", {{"tier", "l1"}});
  Counter& b = r.counter("hits_total", "Hits", {{"tier", "l1"}});
  EXPECT_EQ(&a, &b);
  a.inc();
  r.histogram("ttft_seconds", "TTFT").observe(0.05);
  auto doc = nlohmann::json::parse(r.json());
  EXPECT_EQ(doc["hits_total"][0]["labels"]["tier"], "l1");
  EXPECT_EQ(doc["hits_total"][0]["value"], 1);
  EXPECT_EQ(doc["ttft_seconds"][0]["count"], 1);
  EXPECT_NEAR(doc["ttft_seconds"][0]["p99"].get<double>(), 0.05, 0.01);
  EXPECT_THROW(r.gauge("hits_total", "x"), std::logic_error);
  auto filtered = nlohmann::json::parse(r.json({"ttft_"}));
  EXPECT_TRUE(filtered.contains("ttft_seconds"));
  EXPECT_FALSE(filtered.contains("hits_total"));
}

}  // namespace
}  // namespace infera::obs
