#include "obs/anomaly.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "obs/alerts.h"
#include "obs/metrics.h"

namespace infera::obs {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// Drives a detector window by window on a fake clock (10-second windows).
class AnomalyTest : public ::testing::Test {
 protected:
  static constexpr milliseconds kWindow{10000};

  // `n` requests in the next window, `errors` of them failed, latencies spread
  // evenly over latency_ms ± 2%; then the window is closed.
  void window(int n, double latency_ms, int errors = 0) {
    for (int i = 0; i < n; ++i) {
      const double spread = n > 1 ? (0.04 * i / (n - 1) - 0.02) : 0;
      detector_.record_request(latency_ms * (1 + spread), i < errors, now_ + milliseconds(i));
    }
    close();
  }
  void ttft_window(int n, double ttft_ms) {
    for (int i = 0; i < n; ++i) {
      detector_.record_request(50, false, now_ + milliseconds(i));
      detector_.record_ttft(ttft_ms, now_ + milliseconds(i));
    }
    close();
  }
  void close() {
    now_ += kWindow;
    detector_.tick(now_);
  }
  nlohmann::json signal(const std::string& name) { return detector_.state()["signals"][name]; }

  Registry metrics_;
  AlertManager alerts_{metrics_, nullptr};
  AnomalyDetector detector_{AnomalyConfig{kWindow, 30, 5, 2.0}, alerts_};
  // Aligned to the window, as the detector aligns its windows.
  Clock::time_point now_ = Clock::time_point{} + std::chrono::seconds(100000);
};

TEST_F(AnomalyTest, LatencyStepOpensAlertAndANormalWindowResolvesIt) {
  for (int w = 0; w < 10; ++w) window(100, 100);
  EXPECT_FALSE(alerts_.is_firing("anomaly_latency_p95"));

  window(100, 300);
  ASSERT_TRUE(alerts_.is_firing("anomaly_latency_p95"));
  const Alert alert = alerts_.firing()[0];
  EXPECT_EQ(alert.severity, "warning");
  EXPECT_NEAR(alert.value, 300 * 1.02, 300 * 0.02);
  EXPECT_GT(alert.threshold, 100);
  EXPECT_LT(alert.threshold, 300);
  EXPECT_NE(alert.message.find("above its baseline"), std::string::npos) << alert.message;
  EXPECT_FALSE(alerts_.is_firing("anomaly_request_rate"));
  EXPECT_FALSE(alerts_.is_firing("anomaly_error_rate"));

  window(100, 100);
  EXPECT_FALSE(alerts_.is_firing("anomaly_latency_p95"));
  ASSERT_FALSE(alerts_.recent().empty());
  EXPECT_EQ(alerts_.recent()[0].name, "anomaly_latency_p95");
  EXPECT_FALSE(alerts_.recent()[0].firing);
}

TEST_F(AnomalyTest, NoAlertBeforeMinBaselineWindows) {
  for (int w = 0; w < 4; ++w) window(100, 100);
  window(100, 1000);  // only 4 windows of baseline: still learning
  EXPECT_FALSE(alerts_.is_firing("anomaly_latency_p95"));
  EXPECT_EQ(signal("latency_p95")["baseline_windows"], 5);
}

TEST_F(AnomalyTest, AnomalousWindowsStayOutOfTheBaseline) {
  for (int w = 0; w < 6; ++w) window(100, 100);
  window(100, 300);
  window(100, 300);
  EXPECT_TRUE(alerts_.is_firing("anomaly_latency_p95"));  // a lasting step keeps firing
  const auto s = signal("latency_p95");
  EXPECT_EQ(s["baseline_windows"], 6);
  EXPECT_NEAR(s["mean"].get<double>(), 102, 1);
  EXPECT_NEAR(s["last"].get<double>(), 306, 1);
  EXPECT_TRUE(s["firing"]);
}

TEST_F(AnomalyTest, ErrorRateSpikeOpensErrorRateAlert) {
  for (int w = 0; w < 10; ++w) window(100, 100, 0);
  window(100, 100, 20);
  EXPECT_TRUE(alerts_.is_firing("anomaly_error_rate"));
  EXPECT_FALSE(alerts_.is_firing("anomaly_latency_p95"));
  EXPECT_NEAR(alerts_.firing()[0].value, 0.2, 1e-12);
  window(100, 100, 0);
  EXPECT_FALSE(alerts_.is_firing("anomaly_error_rate"));
}

TEST_F(AnomalyTest, RequestRateDropOpensRequestRateAlert) {
  for (int w = 0; w < 10; ++w) window(100, 100);
  window(20, 100);
  EXPECT_TRUE(alerts_.is_firing("anomaly_request_rate"));
  EXPECT_NE(alerts_.firing()[0].message.find("below its baseline"), std::string::npos);
  EXPECT_NEAR(alerts_.firing()[0].value, 2.0, 1e-12);  // 20 requests in 10 s
}

TEST_F(AnomalyTest, RequestRateSpikeOpensRequestRateAlert) {
  for (int w = 0; w < 10; ++w) window(100, 100);
  window(300, 100);
  EXPECT_TRUE(alerts_.is_firing("anomaly_request_rate"));
  EXPECT_FALSE(alerts_.is_firing("anomaly_latency_p95"));
}

TEST_F(AnomalyTest, QuietWindowsCountAsZeroRequestsButSkipLatency) {
  for (int w = 0; w < 10; ++w) window(100, 100);
  now_ += 3 * kWindow;  // three windows without a single request
  detector_.tick(now_);
  EXPECT_TRUE(alerts_.is_firing("anomaly_request_rate"));
  EXPECT_EQ(signal("request_rate")["last"], 0.0);
  EXPECT_FALSE(alerts_.is_firing("anomaly_latency_p95"));
  EXPECT_EQ(signal("latency_p95")["baseline_windows"], 10);
  EXPECT_EQ(signal("error_rate")["baseline_windows"], 10);
}

TEST_F(AnomalyTest, SigmaFloorIgnoresTinyChangesOfASteadySignal) {
  // Every window exactly alike: σ = 0, so without a floor any change would alert.
  for (int w = 0; w < 10; ++w) window(100, 100);
  window(100, 104);     // +4%: inside 2 × (5% of the mean)
  window(100, 100, 1);  // 1% errors: inside 2 × 0.01
  window(104, 100);     // +4 requests per window
  EXPECT_TRUE(alerts_.firing().empty()) << alerts_.to_json().dump();
  EXPECT_NEAR(signal("latency_p95")["sigma_effective"].get<double>(), 5.1, 0.1);
}

TEST_F(AnomalyTest, TtftSpikeOpensTtftAlert) {
  for (int w = 0; w < 10; ++w) ttft_window(50, 200);
  EXPECT_FALSE(alerts_.is_firing("anomaly_ttft_p95"));
  ttft_window(50, 900);
  EXPECT_TRUE(alerts_.is_firing("anomaly_ttft_p95"));
  EXPECT_FALSE(alerts_.is_firing("anomaly_latency_p95"));
  ttft_window(50, 200);
  EXPECT_FALSE(alerts_.is_firing("anomaly_ttft_p95"));
}

TEST_F(AnomalyTest, StateReportsBaselinePerSignal) {
  const auto empty = detector_.state();
  EXPECT_EQ(empty["window_ms"], 10000);
  EXPECT_TRUE(empty["signals"]["ttft_p95"]["last"].is_null());
  for (int w = 0; w < 3; ++w) window(100 + 10 * w, 100);  // 10, 11, 12 req/s
  const auto rate = signal("request_rate");
  EXPECT_EQ(rate["baseline_windows"], 3);
  EXPECT_NEAR(rate["mean"].get<double>(), 11.0, 1e-9);
  EXPECT_NEAR(rate["sigma"].get<double>(), std::sqrt(2.0 / 3.0), 1e-9);
  EXPECT_EQ(rate["last"], 12.0);
  EXPECT_FALSE(rate["firing"]);
}

}  // namespace
}  // namespace infera::obs
