// Operations of a real `infera serve` over real HTTP, with faults injected through
// --test-hooks: a stalled engine turns /ready and /api/health degraded and back, a
// latency step opens and resolves an anomaly alert (seen by a webhook receiver),
// memory pressure runs the cleanup chain and answers 503 until it recovers.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "integration/server_support.h"

namespace infera::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::optional<HttpResponse> post(int port, const std::string& path, const json& body,
                                 std::map<std::string, std::string> headers = {}) {
  headers["Content-Type"] = "application/json";
  return http_request(port, "POST", path, body.dump(), headers);
}

json completion(int max_tokens = 4) {
  return {{"prompt", "Once upon a time"}, {"max_tokens", max_tokens}, {"temperature", 0}};
}

// Polls `check` every 20 ms until it holds or `timeout` passes.
template <typename F>
bool eventually(F check, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (check()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return check();
}

int status_of(int port, const std::string& path) {
  auto r = http_request(port, "GET", path);
  return r ? r->status : 0;
}

json get_json(int port, const std::string& path) {
  auto r = http_request(port, "GET", path);
  return r ? json::parse(r->body, nullptr, false) : json();
}

bool alert_in(const json& alerts, const char* list, const std::string& name,
              const std::string& status) {
  for (const auto& a : alerts[list]) {
    if (a["name"] == name && a["status"] == status) return true;
  }
  return false;
}

// A plain HTTP receiver on a loopback port: records every POST body, answers 200.
class WebhookReceiver {
 public:
  WebhookReceiver() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    listen(fd_, 16);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~WebhookReceiver() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
  std::vector<json> bodies() {
    std::lock_guard lock(mu_);
    return bodies_;
  }

 private:
  void serve() {
    while (!stop_) {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string data;
      char buf[4096];
      size_t need = std::string::npos;
      while (true) {
        ssize_t n = read(c, buf, sizeof buf);
        if (n <= 0) break;
        data.append(buf, static_cast<size_t>(n));
        size_t head = data.find("\r\n\r\n");
        if (head == std::string::npos) continue;
        if (need == std::string::npos) {
          size_t cl = data.find("Content-Length: ");
          if (cl == std::string::npos) cl = data.find("content-length: ");
          need = head + 4 + (cl == std::string::npos ? 0 : std::stoul(data.substr(cl + 16)));
        }
        if (data.size() >= need) break;
      }
      const std::string reply = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      (void)!write(c, reply.data(), reply.size());
      close(c);
      size_t head = data.find("\r\n\r\n");
      if (head == std::string::npos) continue;
      json body = json::parse(data.substr(head + 4), nullptr, false);
      std::lock_guard lock(mu_);
      bodies_.push_back(body);
    }
  }
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<json> bodies_;
};

TEST(Operations, AStalledEngineTurnsReadyAndHealthDegradedUntilStepsResume) {
  ServerProcess server({"--test-hooks", "true", "--stall-timeout", "0.3"});
  ASSERT_GT(server.port(), 0);
  const int port = server.port();
  ASSERT_EQ(http_request(port, "POST", "/api/models/stories260K/load")->status, 200);
  EXPECT_EQ(status_of(port, "/ready"), 200);
  ASSERT_EQ(post(port, "/admin/test/fault",
                 {{"model", "stories260K"}, {"per_step_ms", 2500}, {"duration_ms", 2500}})
                ->status,
            200);
  // Work waits behind the stuck engine.
  auto pending = std::async(std::launch::async, [&] {
    auto r = post(port, "/v1/completions", completion(), {{"Cache-Control", "no-cache"}});
    return r ? r->status : 0;
  });
  ASSERT_TRUE(eventually([&] { return status_of(port, "/ready") == 503; }, 5s));
  auto health = http_request(port, "GET", "/api/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  auto doc = json::parse(health->body);
  EXPECT_EQ(doc["status"], "degraded");
  EXPECT_NE(doc["reason"].get<std::string>().find("stories260K"), std::string::npos)
      << health->body;
  EXPECT_TRUE(
      alert_in(get_json(port, "/api/v1/alerts"), "firing", "engine_stalled:stories260K", "firing"));
  EXPECT_EQ(get_json(port, "/api/v1/status")["status"], "degraded");

  // Steps resume: healthy again, the request answers, the alert resolves.
  EXPECT_EQ(pending.get(), 200);
  ASSERT_TRUE(eventually([&] { return status_of(port, "/ready") == 200; }, 5s));
  EXPECT_EQ(status_of(port, "/api/health"), 200);
  EXPECT_TRUE(alert_in(get_json(port, "/api/v1/alerts"), "recent", "engine_stalled:stories260K",
                       "resolved"));
  json status = get_json(port, "/api/v1/status");
  EXPECT_EQ(status["status"], "ok");
  EXPECT_GE(status["self_healing"]["total"].get<int>(), 2);
  auto metrics = http_request(port, "GET", "/metrics");
  EXPECT_NE(metrics->body.find("infera_self_healing_actions_total{action=\"engine_recovered\"} 1"),
            std::string::npos);
}

TEST(Operations, ALatencyStepOpensAnAnomalyAlertAndANormalWindowResolvesIt) {
  WebhookReceiver receiver;
  ServerProcess server(
      {"--test-hooks", "true", "--anomaly-window-ms", "400", "--alert-webhook", receiver.url()});
  ASSERT_GT(server.port(), 0);
  const int port = server.port();
  ASSERT_EQ(http_request(port, "POST", "/api/models/stories260K/load")->status, 200);
  std::atomic<bool> stop{false};
  std::thread client([&] {
    while (!stop) {
      post(port, "/v1/completions", completion(4), {{"Cache-Control", "no-cache"}});
      std::this_thread::sleep_for(10ms);
    }
  });
  // Baseline: the detector needs five normal windows.
  ASSERT_TRUE(eventually(
      [&] {
        return get_json(port, "/api/v1/alerts")["anomaly_detector"]["signals"]["latency_p95"]
                                               ["baseline_windows"] >= 6;
      },
      15s));
  EXPECT_FALSE(
      alert_in(get_json(port, "/api/v1/alerts"), "firing", "anomaly_latency_p95", "firing"));
  // A latency step: every engine step takes 60 ms longer for 1.2 s.
  ASSERT_EQ(post(port, "/admin/test/fault",
                 {{"model", "stories260K"}, {"per_step_ms", 60}, {"duration_ms", 1200}})
                ->status,
            200);
  EXPECT_TRUE(eventually(
      [&] {
        return alert_in(get_json(port, "/api/v1/alerts"), "firing", "anomaly_latency_p95",
                        "firing");
      },
      10s));
  EXPECT_TRUE(eventually(
      [&] {
        return alert_in(get_json(port, "/api/v1/alerts"), "recent", "anomaly_latency_p95",
                        "resolved");
      },
      10s));
  stop = true;
  client.join();
  // The webhook saw it open and resolve.
  bool fired = false, resolved = false;
  ASSERT_TRUE(eventually(
      [&] {
        for (const auto& b : receiver.bodies()) {
          if (b.is_discarded() || b["alert"]["name"] != "anomaly_latency_p95") continue;
          fired = fired || b["status"] == "firing";
          resolved = resolved || b["status"] == "resolved";
        }
        return fired && resolved;
      },
      10s));
}

TEST(Operations, MemoryPressureRunsTheCleanupChainInOrderAndCriticalAnswers503UntilItRecovers) {
  ServerProcess server({"--test-hooks", "true", "--memory-cleanup-threshold", "0.80",
                        "--critical-memory-threshold", "0.95"});
  ASSERT_GT(server.port(), 0);
  const int port = server.port();
  ASSERT_EQ(
      post(port, "/api/chat", {{"question", "Once upon a time"}, {"role", "student"}})->status,
      200);
  // Above cleanup, below critical: every action runs, in order, and the idle model goes.
  ASSERT_EQ(post(port, "/admin/test/memory", {{"used_fraction", 0.85}})->status, 200);
  ASSERT_TRUE(
      eventually([&] { return get_json(port, "/api/memory/stats")["actions"].size() >= 3; }));
  json actions = get_json(port, "/api/memory/stats")["actions"];  // newest first
  std::vector<std::string> order;
  for (auto it = actions.rbegin(); it != actions.rend() && order.size() < 3; ++it)
    order.push_back((*it)["action"]);
  EXPECT_EQ(order,
            (std::vector<std::string>{"shrink_cache", "drop_prefix_blocks", "unload_idle_models"}));
  EXPECT_TRUE(eventually(
      [&] { return get_json(port, "/api/models")["models"][0]["state"] == "available"; }));
  EXPECT_EQ(post(port, "/v1/completions", completion())->status, 200);  // still admitted

  // Critical: new generations and loads are refused with 503 memory_pressure.
  ASSERT_EQ(post(port, "/admin/test/memory", {{"used_fraction", 0.97}})->status, 200);
  ASSERT_TRUE(
      eventually([&] { return get_json(port, "/api/memory/stats")["state"] == "critical"; }));
  auto refused = post(port, "/v1/completions", completion(), {{"Cache-Control", "no-cache"}});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503);
  EXPECT_EQ(json::parse(refused->body)["error"]["code"], "memory_pressure");
  EXPECT_FALSE(refused->header("retry-after").empty());
  http_request(port, "POST", "/api/models/stories260K/unload");
  auto load = http_request(port, "POST", "/api/models/stories260K/load");
  EXPECT_EQ(load->status, 503);
  EXPECT_EQ(json::parse(load->body)["error"]["code"], "memory_pressure");
  EXPECT_TRUE(alert_in(get_json(port, "/api/v1/alerts"), "firing", "memory_critical", "firing"));

  // Recovery is automatic.
  ASSERT_EQ(post(port, "/admin/test/memory", {{"used_fraction", nullptr}})->status, 200);
  ASSERT_TRUE(eventually([&] { return get_json(port, "/api/memory/stats")["state"] == "normal"; }));
  EXPECT_EQ(post(port, "/v1/completions", completion(), {{"Cache-Control", "no-cache"}})->status,
            200);
  EXPECT_TRUE(alert_in(get_json(port, "/api/v1/alerts"), "recent", "memory_critical", "resolved"));
}

TEST(Operations, ABrokenTtftObjectiveLowersTheModelsLimits) {
  ServerProcess server({"--ttft-objective-ms", "0.001", "--anomaly-window-ms", "300", "--max-seqs",
                        "8", "--max-batch-tokens", "256"});
  ASSERT_GT(server.port(), 0);
  const int port = server.port();
  auto limits = [&] {
    json models = get_json(port, "/api/models")["models"];
    return models[0].contains("details") ? models[0]["details"] : json();
  };
  ASSERT_EQ(post(port, "/v1/completions", completion(), {{"Cache-Control", "no-cache"}})->status, 200);
  EXPECT_EQ(limits()["max_seqs"], 8);
  // Every window with requests breaks a 1 µs objective: the limits halve.
  std::atomic<bool> stop{false};
  std::thread client([&] {
    while (!stop) post(port, "/v1/completions", completion(), {{"Cache-Control", "no-cache"}});
  });
  EXPECT_TRUE(eventually([&] { return limits().value("max_seqs", 8) <= 2; }));
  stop = true;
  client.join();
  EXPECT_LE(limits()["max_batch_tokens"].get<int>(), 64);
  auto metrics = http_request(port, "GET", "/metrics");
  EXPECT_NE(metrics->body.find("infera_self_healing_actions_total{action=\"lower_limits\"}"),
            std::string::npos);
  bool listed = false;
  const json status = get_json(port, "/api/v1/status");
  for (const auto& a : status["self_healing"]["recent"]) {
    listed = listed || a["action"] == "lower_limits";
  }
  EXPECT_TRUE(listed);
}

TEST(Operations, OverloadShortensThenRefusesLowPriorityAnswersAndSaysSo) {
  // One sequence at a time, every engine step slowed to 25 ms: each queued 30-token
  // answer is ~0.75 s of work. Level 1 past 0.5 s of estimated queue, level 2 past 4.5 s.
  ServerProcess server({"--max-seqs", "1", "--batch-timeout", "0", "--ttft-objective-ms", "0", "--test-hooks",
                        "true", "--degrade-shorten-after", "0.5", "--degrade-refuse-after", "4.5",
                        "--degraded-max-tokens", "5"});
  ASSERT_GT(server.port(), 0);
  const int port = server.port();
  ASSERT_EQ(http_request(port, "POST", "/api/models/stories260K/load")->status, 200);
  ASSERT_EQ(post(port, "/admin/test/fault", {{"model", "stories260K"}, {"per_step_ms", 25}, {"duration_ms", 120000}})
                ->status,
            200);
  const std::map<std::string, std::string> no_cache = {{"Cache-Control", "no-cache"}};
  auto ask = [&](const std::string& prompt, std::optional<int> max_tokens) {
    json body = {{"prompt", prompt}, {"temperature", 0}};
    if (max_tokens) body["max_tokens"] = *max_tokens;
    return post(port, "/v1/completions", body, no_cache);
  };
  auto level = [&] { return get_json(port, "/api/v1/status")["degradation"].value("level", -1); };
  // The service time is measured; the first answer is also cached (no Cache-Control).
  ASSERT_EQ(post(port, "/v1/completions", {{"prompt", "Once upon a time"}, {"temperature", 0}, {"max_tokens", 30}})
                ->status,
            200);
  ASSERT_EQ(ask("The end", 30)->status, 200);
  EXPECT_EQ(level(), 0);
  std::vector<std::future<std::optional<HttpResponse>>> queued;
  // One running and two waiting: ~2 s ahead of a new request.
  for (int i = 0; i < 3; ++i) {
    queued.push_back(std::async(std::launch::async, [&, i] { return ask("Tale " + std::to_string(i), 30); }));
  }
  ASSERT_TRUE(eventually([&] { return level() >= 1; }, 5s)) << get_json(port, "/api/v1/status").dump();
  // No max_tokens of its own, low priority: shortened (and cached as such).
  auto shortened = std::async(std::launch::async, [&] { return ask("The little dog", std::nullopt); });
  // Six more waiting: ~6 s ahead.
  for (int i = 3; i < 9; ++i) {
    queued.push_back(std::async(std::launch::async, [&, i] { return ask("Tale " + std::to_string(i), 30); }));
  }
  ASSERT_TRUE(eventually([&] { return level() == 2; }, 5s)) << get_json(port, "/api/v1/status").dump();
  auto refused = ask("A new question", 10);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 429) << refused->body;
  EXPECT_EQ(json::parse(refused->body)["error"]["code"], "overloaded");
  EXPECT_GE(std::stoi(refused->header("retry-after")), 1);
  // An answer the cache holds is still served at level 2.
  auto cached = post(port, "/v1/completions", {{"prompt", "Once upon a time"}, {"temperature", 0}, {"max_tokens", 30}});
  ASSERT_TRUE(cached);
  EXPECT_EQ(cached->status, 200) << cached->body;
  EXPECT_EQ(cached->header("x-cache"), "HIT-L1");
  auto s = shortened.get();
  ASSERT_TRUE(s);
  ASSERT_EQ(s->status, 200) << s->body;
  EXPECT_LE(json::parse(s->body)["usage"]["completion_tokens"].get<int>(), 5) << s->body;
  for (auto& q : queued) {
    auto r = q.get();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;  // admitted before level 2: answered in full
  }
  auto metrics = http_request(port, "GET", "/metrics");
  EXPECT_NE(metrics->body.find("infera_degradation_level "), std::string::npos);
  const json status = get_json(port, "/api/v1/status");
  bool degraded = false;
  for (const auto& a : status["self_healing"]["recent"]) degraded = degraded || a["action"] == "degrade";
  EXPECT_TRUE(degraded);
}

TEST(Operations, SlaReportsComplianceAndBudgetPerRouteAndModel) {
  ServerProcess server(
      {"--sla-objectives", "*=p95:2000ms,availability:99.9;model:stories260K=p95:1ms"});
  ASSERT_GT(server.port(), 0);
  const int port = server.port();
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(post(port, "/v1/completions", completion(8), {{"Cache-Control", "no-cache"}})->status,
              200);
  }
  json report = get_json(port, "/api/v1/metrics/sla");
  std::map<std::string, json> scopes;
  for (const auto& s : report["scopes"]) scopes[s["scope"]] = s;
  ASSERT_TRUE(scopes.count("*") && scopes.count("route:/v1/completions") &&
              scopes.count("model:stories260K"))
      << report.dump();
  EXPECT_EQ(scopes["route:/v1/completions"]["windows"]["1m"]["requests"], 3);
  EXPECT_EQ(scopes["*"]["windows"]["1m"]["compliant"], true);
  // A 1 ms objective the model cannot meet: its latency budget burns.
  EXPECT_EQ(scopes["model:stories260K"]["windows"]["1m"]["latency_compliant"], false);
  EXPECT_GT(scopes["model:stories260K"]["windows"]["5m"]["error_budget"]["latency"]["burn_rate"]
                .get<double>(),
            1.0);
}

}  // namespace
}  // namespace infera::testing
