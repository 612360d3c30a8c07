// deploy/prometheus/ against the real thing: promtool checks and unit-tests the rules,
// and Debian's Prometheus scrapes a running infera, loads the rules, and fires an
// alert when infera's memory turns critical.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <filesystem>
#include <set>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "integration/server_support.h"

namespace infera::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

const std::string kDeploy = std::string(INFERA_SOURCE_DIR) + "/deploy/prometheus";

#define REQUIRE_PROMETHEUS()                                                                   \
  if (!fs::exists("/usr/bin/prometheus") || !fs::exists("/usr/bin/promtool"))                 \
  GTEST_SKIP() << "Debian's prometheus package is not installed (scripts/setup installs it)"

TEST(Prometheus, PromtoolChecksTheConfigAndPassesTheRuleUnitTests) {
  REQUIRE_PROMETHEUS();
  auto rules = run_command("cd " + kDeploy + " && promtool check rules infera-alerts.yml 2>&1");
  EXPECT_EQ(rules.exit_code, 0) << rules.output;
  auto config = run_command("cd " + kDeploy + " && promtool check config prometheus.yml 2>&1");
  EXPECT_EQ(config.exit_code, 0) << config.output;
  auto tests = run_command("cd " + kDeploy + " && promtool test rules infera-alerts.test.yml 2>&1");
  EXPECT_EQ(tests.exit_code, 0) << tests.output;
}

// A Prometheus child process, killed when the test ends.
class PrometheusProcess {
 public:
  PrometheusProcess(const fs::path& dir, int infera_port) : dir_(dir) {
    fs::create_directories(dir_);
    std::ofstream(dir_ / "prometheus.yml") << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                                           << "rule_files:\n  - " << kDeploy << "/infera-alerts.yml\n"
                                           << "scrape_configs:\n  - job_name: infera\n    static_configs:\n"
                                           << "      - targets: [\"127.0.0.1:" << infera_port << "\"]\n";
    auto port = run_command("python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\",0)); "
                            "print(s.getsockname()[1])'");
    port_ = std::stoi(port.output);
    auto started = run_command("prometheus --config.file=" + (dir_ / "prometheus.yml").string() +
                               " --storage.tsdb.path=" + (dir_ / "data").string() +
                               " --web.listen-address=127.0.0.1:" + std::to_string(port_) + " > " +
                               (dir_ / "log").string() + " 2>&1 & echo $!");
    pid_ = std::stoi(started.output);
  }
  ~PrometheusProcess() {
    if (pid_ > 0) ::kill(pid_, SIGTERM);
    std::this_thread::sleep_for(200ms);
    fs::remove_all(dir_);
  }
  int port() const { return port_; }
  std::string log() const {
    std::ifstream in(dir_ / "log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  // GET /api/v1/<path>; null when Prometheus does not answer (yet).
  json api(const std::string& path) const {
    auto r = http_request(port_, "GET", "/api/v1/" + path);
    if (!r || r->status != 200) return nullptr;
    return json::parse(r->body, nullptr, false);
  }

 private:
  fs::path dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

std::string url_encode(const std::string& text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

template <typename F>
bool eventually(F check, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (check()) return true;
    std::this_thread::sleep_for(250ms);
  }
  return check();
}

TEST(Prometheus, ScrapesInferaLoadsTheRulesAndFiresMemoryCritical) {
  REQUIRE_PROMETHEUS();
  ServerProcess server({"--test-hooks", "true"});
  ASSERT_GT(server.port(), 0);
  PrometheusProcess prom(fs::temp_directory_path() / ("infera-prometheus-" + std::to_string(::getpid())),
                         server.port());
  // up{job="infera"} == 1: the target is scraped.
  const auto up = [&] {
    json q = prom.api("query?query=up%7Bjob%3D%22infera%22%7D");
    return q.is_object() && !q["data"]["result"].empty() && q["data"]["result"][0]["value"][1] == "1";
  };
  ASSERT_TRUE(eventually(up, 30s)) << prom.log();
  // Every group of the deploy file loaded and evaluating without error.
  json rules = prom.api("rules");
  ASSERT_TRUE(rules.is_object()) << prom.log();
  std::set<std::string> groups;
  for (const auto& g : rules["data"]["groups"]) {
    groups.insert(g["name"].get<std::string>());
    for (const auto& r : g["rules"]) EXPECT_EQ(r["health"], "ok") << r.dump();
  }
  EXPECT_EQ(groups, (std::set<std::string>{"infera-availability", "infera-sla", "infera-resources"}));
  // infera's own series arrive under the job.
  json kv = prom.api("query?query=infera_memory_critical");
  ASSERT_TRUE(kv.is_object());
  ASSERT_FALSE(kv["data"]["result"].empty()) << kv.dump();
  EXPECT_EQ(kv["data"]["result"][0]["value"][1], "0");
  // Memory forced critical: the alert fires in Prometheus.
  auto forced = http_request(server.port(), "POST", "/admin/test/memory", R"({"used_fraction":0.99})",
                             {{"Content-Type", "application/json"}});
  ASSERT_TRUE(forced && forced->status == 200) << (forced ? forced->body : "no answer");
  const auto firing = [&] {
    json a = prom.api("alerts");
    if (!a.is_object()) return false;
    for (const auto& alert : a["data"]["alerts"]) {
      if (alert["labels"]["alertname"] == "InferaMemoryCritical" && alert["state"] == "firing") return true;
    }
    return false;
  };
  EXPECT_TRUE(eventually(firing, 30s)) << prom.api("alerts").dump() << "\n" << prom.log();

  // Every query of the Grafana dashboard is valid PromQL over these series.
  std::ifstream in(std::string(INFERA_SOURCE_DIR) + "/deploy/grafana/infera-dashboard.json");
  const json dashboard = json::parse(in);
  int queries = 0;
  for (const auto& panel : dashboard["panels"]) {
    for (const auto& target : panel["targets"]) {
      std::string expr = target["expr"];
      for (size_t at; (at = expr.find("$instance")) != std::string::npos;) expr.replace(at, 9, ".*");
      json r = prom.api("query?query=" + url_encode(expr));
      ASSERT_TRUE(r.is_object()) << panel["title"] << ": " << expr;
      EXPECT_EQ(r["status"], "success") << panel["title"] << ": " << expr << " -> " << r.dump();
      ++queries;
    }
  }
  EXPECT_GE(queries, 10);
}

}  // namespace
}  // namespace infera::testing
