// Access control of a real `infera serve` over real HTTP: API keys and roles, key
// reloads, rate-limit headers and refusals, token and daily quotas, limits shared by
// two instances through a real Redis and the local fallback, CORS and TLS.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "integration/server_support.h"

namespace infera::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

// SHA-256 through the coreutils tool, independent of the server's own code.
std::string sha256_of(const std::string& key) {
  auto r = run_command("printf %s '" + key + "' | sha256sum");
  return r.output.substr(0, 64);
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/infera-auth-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

 private:
  std::string dir_;
};

std::string key_entry(const std::string& name, const std::string& role, const std::string& extra = "") {
  return "\n[[keys]]\nname = \"" + name + "\"\nsha256 = \"" + sha256_of("sk-" + name) + "\"\nrole = \"" + role +
         "\"\n" + extra;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path + ".tmp");
  out << text;
  out.close();
  fs::rename(path + ".tmp", path);
}

std::optional<HttpResponse> call(int port, const std::string& method, const std::string& path,
                                 const std::string& key, const std::string& body = {},
                                 std::map<std::string, std::string> headers = {}) {
  if (!key.empty()) headers["Authorization"] = "Bearer " + key;
  if (!body.empty()) headers["Content-Type"] = "application/json";
  return http_request(port, method, path, body, headers);
}

int status_of(const std::optional<HttpResponse>& r) { return r ? r->status : -1; }

std::string code_of(const std::optional<HttpResponse>& r) {
  if (!r) return "no response";
  json j = json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.contains("error") || !j["error"]["code"].is_string()) return "";
  return j["error"]["code"].get<std::string>();
}

double metric_value(int port, const std::string& series) {
  auto r = http_request(port, "GET", "/metrics", "", {{"Authorization", "Bearer sk-root"}});
  if (!r) return -1;
  std::istringstream in(r->body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

const std::string kChat = R"({"question":"Once upon a time"})";

// Waits until `pred` holds, polling; false after `timeout`.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return pred();
}

TEST(Auth, KeysAndRoles) {
  TempDir dir;
  const std::string keys = dir.path("keys.toml");
  write_file(keys, "[roles.student]\nmodels = [\"stories*\"]\n" + key_entry("root", "admin") +
                       key_entry("tina", "teacher") + key_entry("sam", "student") +
                       key_entry("nina", "student", "models = [\"other-model\"]\n"));
  ServerProcess server({"--api-keys-file", keys, "--cache-policy", "off"});
  ASSERT_GT(server.port(), 0);
  const int port = server.port();

  // No key, a wrong key: 401 with WWW-Authenticate; probes stay open.
  auto missing = call(port, "GET", "/v1/models", "");
  EXPECT_EQ(status_of(missing), 401);
  EXPECT_EQ(code_of(missing), "missing_api_key");
  EXPECT_EQ(missing->header("www-authenticate").rfind("Bearer", 0), 0u);
  auto wrong = call(port, "GET", "/v1/models", "sk-nobody");
  EXPECT_EQ(status_of(wrong), 401);
  EXPECT_EQ(code_of(wrong), "invalid_api_key");
  EXPECT_EQ(status_of(call(port, "GET", "/no/such/route", "")), 401);
  EXPECT_EQ(status_of(call(port, "GET", "/health", "")), 200);
  EXPECT_EQ(status_of(call(port, "GET", "/ready", "")), 200);

  // Both header forms.
  EXPECT_EQ(status_of(call(port, "GET", "/v1/models", "sk-sam")), 200);
  EXPECT_EQ(status_of(http_request(port, "GET", "/v1/models", "", {{"X-API-Key", "sk-sam"}})), 200);
  EXPECT_EQ(status_of(call(port, "GET", "/no/such/route", "sk-sam")), 404);

  // Admin routes: 403 for student and teacher, allowed for admin.
  for (const char* key : {"sk-sam", "sk-tina"}) {
    auto r = call(port, "POST", "/admin/cache/clear", key, "{}");
    EXPECT_EQ(status_of(r), 403) << key;
    EXPECT_EQ(code_of(r), "insufficient_permissions");
    EXPECT_EQ(status_of(call(port, "POST", "/api/models/stories260K/load", key, "{}")), 403) << key;
    EXPECT_EQ(status_of(call(port, "GET", "/admin/keys", key)), 403) << key;
  }
  EXPECT_EQ(status_of(call(port, "POST", "/api/models/stories260K/load", "sk-root", "{}")), 200);

  // Models: a key limited to other models is refused this one, and does not see it.
  auto chat = call(port, "POST", "/api/chat", "sk-nina", kChat);
  EXPECT_EQ(status_of(chat), 403);
  EXPECT_EQ(code_of(chat), "model_not_allowed");
  auto listed = call(port, "GET", "/v1/models", "sk-nina");
  ASSERT_EQ(status_of(listed), 200);
  EXPECT_TRUE(json::parse(listed->body)["data"].empty());
  auto sam_models = json::parse(call(port, "GET", "/v1/models", "sk-sam")->body);
  ASSERT_EQ(sam_models["data"].size(), 1u);
  EXPECT_EQ(call(port, "POST", "/api/chat", "sk-sam", kChat)->status, 200);

  // /api/chat's teacher role: teacher and admin keys only.
  auto as_teacher = call(port, "POST", "/api/chat", "sk-sam", R"({"question":"Once","role":"teacher"})");
  EXPECT_EQ(status_of(as_teacher), 403);
  EXPECT_EQ(status_of(call(port, "POST", "/api/chat", "sk-tina", R"({"question":"Once","role":"teacher"})")), 200);

  // /admin/keys lists names and roles, never keys or digests.
  auto listing = call(port, "GET", "/admin/keys", "sk-root");
  ASSERT_EQ(status_of(listing), 200);
  auto rows = json::parse(listing->body)["data"];
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[2]["name"], "sam");
  EXPECT_EQ(rows[2]["role"], "student");
  EXPECT_EQ(listing->body.find(sha256_of("sk-sam")), std::string::npos);
  EXPECT_EQ(listing->body.find("sk-"), std::string::npos);

  // Keys never reach the logs; their names do.
  server.signal(SIGTERM);
  server.wait_exit(10s);
  const std::string logs = server.logs();
  EXPECT_EQ(logs.find("sk-sam"), std::string::npos);
  EXPECT_EQ(logs.find("sk-nobody"), std::string::npos);
}

TEST(Auth, SessionsBelongToTheirKey) {
  TempDir dir;
  const std::string keys = dir.path("keys.toml");
  write_file(keys, key_entry("ann", "student") + key_entry("ben", "student"));
  ServerProcess server({"--api-keys-file", keys, "--cache-policy", "off", "--default-max-tokens", "8"});
  ASSERT_GT(server.port(), 0);
  // The same session id under two keys: each key's history is its own, so ben's
  // first turn renders exactly like a fresh session (same greedy answer as ann's first).
  auto a1 = call(server.port(), "POST", "/api/chat", "sk-ann", R"({"question":"Once upon a time","session_id":"s1"})");
  ASSERT_EQ(status_of(a1), 200);
  auto a2 = call(server.port(), "POST", "/api/chat", "sk-ann", R"({"question":"Once upon a time","session_id":"s1"})");
  auto b1 = call(server.port(), "POST", "/api/chat", "sk-ben", R"({"question":"Once upon a time","session_id":"s1"})");
  ASSERT_EQ(status_of(a2), 200);
  ASSERT_EQ(status_of(b1), 200);
  EXPECT_EQ(json::parse(b1->body)["answer"], json::parse(a1->body)["answer"]);
  EXPECT_EQ(json::parse(b1->body)["usage"]["prompt_tokens"], json::parse(a1->body)["usage"]["prompt_tokens"]);
  EXPECT_GT(json::parse(a2->body)["usage"]["prompt_tokens"].get<int>(),
            json::parse(a1->body)["usage"]["prompt_tokens"].get<int>());
}

TEST(Auth, KeysAreCreatedAndReloadedWithoutRestart) {
  TempDir dir;
  const std::string keys = dir.path("keys.toml");
  write_file(keys, key_entry("root", "admin") + key_entry("sam", "student"));
  ServerProcess server({"--api-keys-file", keys, "--cache-policy", "off"});
  ASSERT_GT(server.port(), 0);
  const int port = server.port();

  // Created over the API: shown once, usable at once, its digest in the file.
  auto created = call(port, "POST", "/admin/keys", "sk-root", R"({"name":"newbie","role":"student"})");
  ASSERT_EQ(status_of(created), 201) << (created ? created->body : "");
  const std::string secret = json::parse(created->body)["key"];
  EXPECT_EQ(status_of(call(port, "GET", "/v1/models", secret)), 200);
  std::ifstream in(keys);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find(sha256_of(secret)), std::string::npos);
  EXPECT_EQ(text.find(secret), std::string::npos);
  EXPECT_EQ(status_of(call(port, "POST", "/admin/keys", "sk-root", R"({"name":"newbie","role":"student"})")), 409);
  EXPECT_EQ(status_of(call(port, "POST", "/admin/keys", "sk-root", R"({"name":"x","role":"ghost"})")), 400);
  EXPECT_EQ(status_of(call(port, "POST", "/admin/keys", "sk-root", R"({"name":"a\"b","role":"student"})")), 400);

  // The file changes: a key added by hand works without a restart.
  write_file(keys, key_entry("root", "admin") + key_entry("sam", "student") + key_entry("zoe", "teacher"));
  EXPECT_TRUE(eventually([&] { return status_of(call(port, "GET", "/v1/models", "sk-zoe")) == 200; }));
  // A key removed stops working; SIGHUP reloads at once.
  write_file(keys, key_entry("root", "admin") + key_entry("zoe", "teacher"));
  server.signal(SIGHUP);
  EXPECT_TRUE(eventually([&] { return status_of(call(port, "GET", "/v1/models", "sk-sam")) == 401; }, 3s));
  // A broken file is refused; the keys in force stay.
  write_file(keys, "[[keys]\nbroken");
  server.signal(SIGHUP);
  EXPECT_TRUE(eventually([&] { return server.logs().find("auth.keys_reload_failed") != std::string::npos; }));
  EXPECT_EQ(status_of(call(port, "GET", "/v1/models", "sk-zoe")), 200);
  EXPECT_EQ(status_of(call(port, "GET", "/v1/models", "sk-sam")), 401);
}

TEST(Auth, NoKeysMeansLoopbackOnly) {
  auto refused = run_command(std::string(INFERA_BINARY) + " serve --host 0.0.0.0 --port 0 2>&1");
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("refusing to listen on 0.0.0.0 without API keys"), std::string::npos)
      << refused.output;
  EXPECT_NE(refused.output.find("--api-keys-file"), std::string::npos);
  EXPECT_NE(refused.output.find("--allow-anonymous"), std::string::npos);
  // Polls its log for up to 30 s (a fixed 2 s timeout once cut an ASan build short on a
  // loaded machine), then stops it.
  const std::string log = "/tmp/infera-anonymous-" + std::to_string(::getpid()) + ".log";
  auto allowed = run_command(std::string(INFERA_BINARY) + " serve --host 0.0.0.0 --port 0 --allow-anonymous > " +
                             log + " 2>&1 & p=$!; for i in $(seq 300); do grep -q http.listening " + log +
                             " && break; sleep 0.1; done; kill $p; wait $p; cat " + log + "; rm -f " + log);
  EXPECT_NE(allowed.output.find("http.listening"), std::string::npos) << allowed.output;
  // Loopback without keys is the default and serves everyone on this machine.
  ServerProcess local({"--cache-policy", "off"});
  ASSERT_GT(local.port(), 0);
  EXPECT_EQ(status_of(call(local.port(), "GET", "/v1/models", "")), 200);
}

TEST(Auth, RateLimitHeadersAndRefusals) {
  TempDir dir;
  const std::string keys = dir.path("keys.toml");
  write_file(keys, "[roles.student]\nrequests_per_minute = 3\ntokens_per_minute = 100000\n" +
                       key_entry("root", "admin") + key_entry("sam", "student"));
  ServerProcess server({"--api-keys-file", keys, "--cache-policy", "off", "--default-max-tokens", "4"});
  ASSERT_GT(server.port(), 0);
  const int port = server.port();
  const std::regex reset_format(R"(^(\d+ms|\d+s|\d+m\d+s|\d+h\d+m\d+s)$)");
  for (int i = 0; i < 3; ++i) {
    auto r = call(port, "POST", "/api/chat", "sk-sam", kChat);
    ASSERT_EQ(status_of(r), 200) << i;
    EXPECT_EQ(r->header("x-ratelimit-limit-requests"), "3");
    EXPECT_EQ(r->header("x-ratelimit-remaining-requests"), std::to_string(2 - i));
    EXPECT_TRUE(std::regex_match(r->header("x-ratelimit-reset-requests"), reset_format))
        << r->header("x-ratelimit-reset-requests");
    EXPECT_EQ(r->header("x-ratelimit-limit-tokens"), "100000");
    EXPECT_FALSE(r->header("x-ratelimit-remaining-tokens").empty());
    EXPECT_TRUE(std::regex_match(r->header("x-ratelimit-reset-tokens"), reset_format));
  }
  auto refused = call(port, "POST", "/api/chat", "sk-sam", kChat);
  ASSERT_EQ(status_of(refused), 429);
  EXPECT_EQ(code_of(refused), "rate_limit_exceeded");
  EXPECT_EQ(json::parse(refused->body)["error"]["type"], "requests");
  const int retry = std::stoi(refused->header("retry-after"));
  EXPECT_GE(retry, 1);
  EXPECT_LE(retry, 20);  // one cell frees every 20 s
  EXPECT_EQ(refused->header("x-ratelimit-remaining-requests"), "0");
  // The admin key has no limit: no headers, never refused.
  auto admin = call(port, "GET", "/v1/models", "sk-root");
  EXPECT_EQ(status_of(admin), 200);
  EXPECT_TRUE(admin->header("x-ratelimit-limit-requests").empty());
  EXPECT_GE(metric_value(port, R"(infera_ratelimit_refusals_total{reason="requests_per_minute"})"), 1);
}

TEST(Auth, TokensAreChargedAsTheyAreProduced) {
  TempDir dir;
  const std::string keys = dir.path("keys.toml");
  // 60 tokens a minute: one a second, so the bucket barely refills during the test.
  write_file(keys, "[roles.student]\ntokens_per_minute = 60\n" + key_entry("sam", "student"));
  ServerProcess server({"--api-keys-file", keys, "--cache-policy", "off"});
  ASSERT_GT(server.port(), 0);
  const int port = server.port();
  auto first = call(port, "POST", "/v1/completions", "sk-sam",
                    R"({"prompt":"Once upon a time","max_tokens":20,"temperature":0})");
  ASSERT_EQ(status_of(first), 200);
  EXPECT_EQ(first->header("x-ratelimit-remaining-tokens"), "60");  // admitted before it ran
  const int used = json::parse(first->body)["usage"]["total_tokens"];
  ASSERT_GT(used, 5);
  auto second = call(port, "POST", "/v1/completions", "sk-sam",
                     R"({"prompt":"Once upon a time","max_tokens":100,"temperature":0})");
  ASSERT_EQ(status_of(second), 200);
  const int remaining = std::stoi(second->header("x-ratelimit-remaining-tokens"));
  EXPECT_GE(remaining, 60 - used);
  EXPECT_LE(remaining, 60 - used + 2);  // refilled meanwhile: a token a second
  const int used2 = json::parse(second->body)["usage"]["total_tokens"];
  if (used + used2 > 62) {
    // In debt: refused until it is paid back, with the time it takes.
    auto refused = call(port, "POST", "/v1/completions", "sk-sam", R"({"prompt":"Once","max_tokens":1})");
    ASSERT_EQ(status_of(refused), 429);
    EXPECT_EQ(code_of(refused), "rate_limit_exceeded");
    EXPECT_NE(json::parse(refused->body)["error"]["message"].get<std::string>().find("tokens_per_minute"),
              std::string::npos);
    EXPECT_GE(std::stoi(refused->header("retry-after")), used + used2 - 62);
  }
}

TEST(Auth, ConcurrentRequestsPerClientAddress) {
  ServerProcess server({"--client-concurrent", "1", "--cache-policy", "off", "--test-hooks", "true"});
  ASSERT_GT(server.port(), 0);
  const int port = server.port();
  ASSERT_EQ(status_of(call(port, "POST", "/api/models/stories260K/load", "", "{}")), 200);
  // Each engine step sleeps 100 ms for a while: a 20-token answer takes ~2 s.
  ASSERT_EQ(status_of(call(port, "POST", "/admin/test/fault", "",
                           R"({"model":"stories260K","per_step_ms":100,"duration_ms":4000})")),
            200);
  std::thread slow([&] {
    auto r = call(port, "POST", "/v1/completions", "", R"({"prompt":"Once upon a time","max_tokens":20})");
    EXPECT_EQ(status_of(r), 200);
  });
  std::this_thread::sleep_for(500ms);
  auto refused = call(port, "GET", "/v1/models", "");
  EXPECT_EQ(status_of(refused), 429);
  EXPECT_EQ(code_of(refused), "concurrency_limit_exceeded");
  EXPECT_EQ(refused->header("retry-after"), "1");
  slow.join();
  EXPECT_EQ(status_of(call(port, "GET", "/v1/models", "")), 200);  // the slot came back
}

TEST(Auth, DailyQuotaSurvivesRestart) {
  TempDir dir;
  const std::string keys = dir.path("keys.toml");
  write_file(keys, key_entry("sam", "student", "tokens_per_day = 30\n"));
  const std::vector<std::string> args = {"--api-keys-file", keys, "--cache-policy", "off", "--data-dir",
                                         dir.path("state")};
  {
    ServerProcess server(args);
    ASSERT_GT(server.port(), 0);
    int answered = 0;
    for (int i = 0; i < 10; ++i) {
      auto r = call(server.port(), "POST", "/v1/completions", "sk-sam",
                    R"({"prompt":"Once upon a time","max_tokens":16,"temperature":0})");
      if (status_of(r) == 429) {
        EXPECT_EQ(code_of(r), "insufficient_quota");
        break;
      }
      ASSERT_EQ(status_of(r), 200);
      ++answered;
    }
    EXPECT_GE(answered, 1);
    EXPECT_LE(answered, 3);
    server.signal(SIGTERM);
    ASSERT_TRUE(server.wait_exit(10s).has_value());
  }
  EXPECT_TRUE(fs::exists(dir.path("state/quotas.json")));
  ServerProcess again(args);
  ASSERT_GT(again.port(), 0);
  auto r = call(again.port(), "POST", "/v1/completions", "sk-sam", R"({"prompt":"Once","max_tokens":1})");
  EXPECT_EQ(status_of(r), 429);
  EXPECT_EQ(code_of(r), "insufficient_quota");
}

// ---- Redis ----------------------------------------------------------------------

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// A real redis-server, persistence off, killed at the end.
class Redis {
 public:
  Redis() : port_(free_port()) {
    pid_ = fork();
    if (pid_ == 0) {
      const std::string port = std::to_string(port_);
      execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--loglevel", "warning", static_cast<char*>(nullptr));
      _exit(127);
    }
    ready_ = eventually([this] { return Connection(port_, 200ms).connected(); }, 10s);
  }
  ~Redis() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool ready() const { return ready_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

 private:
  int port_;
  pid_t pid_ = -1;
  bool ready_ = false;
};

bool have_redis() { return run_command("command -v redis-server").exit_code == 0; }

TEST(Auth, TwoInstancesShareOneLimitThroughRedis) {
  if (!have_redis()) GTEST_SKIP() << "redis-server is not installed";
  Redis redis;
  ASSERT_TRUE(redis.ready());
  TempDir dir;
  const std::string keys = dir.path("keys.toml");
  // 600 a minute = 10 a second, burst 1: over 30 s the two instances together may
  // admit 300 (+1) requests of this key.
  write_file(keys, "[roles.student]\nrequests_per_minute = 600\nrequest_burst = 1\n" + key_entry("sam", "student") +
                       key_entry("root", "admin"));
  const std::vector<std::string> args = {"--api-keys-file", keys, "--cache-policy", "off", "--redis-url",
                                         redis.url()};
  ServerProcess a(args), b(args);
  ASSERT_GT(a.port(), 0);
  ASSERT_GT(b.port(), 0);
  std::atomic<int> allowed{0}, refused{0}, other{0};
  std::atomic<bool> stop{false};
  auto client = [&](int port) {
    Connection c(port);
    while (!stop.load()) {
      if (!c.send_all("GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-sam\r\n\r\n")) break;
      auto r = c.read_response();
      if (!r) break;
      if (stop.load()) break;  // finished after the window: not counted
      if (r->status == 200) {
        ++allowed;
      } else if (r->status == 429) {
        ++refused;
      } else {
        ++other;
      }
    }
  };
  std::vector<std::thread> clients;
  for (int port : {a.port(), b.port(), a.port(), b.port()}) clients.emplace_back(client, port);
  std::this_thread::sleep_for(30s);
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_GT(refused.load(), 0);
  // Within ±5% of the configured 300 (+1 burst).
  EXPECT_GE(allowed.load(), 301 - 15) << "refused " << refused.load();
  EXPECT_LE(allowed.load(), 301 + 15) << "refused " << refused.load();
  EXPECT_EQ(metric_value(a.port(), "infera_ratelimit_redis_fallbacks_total"), 0);
}

TEST(Auth, RedisDownFallsBackToLocalLimits) {
  TempDir dir;
  const std::string keys = dir.path("keys.toml");
  write_file(keys, "[roles.student]\nrequests_per_minute = 3\n" + key_entry("sam", "student") +
                       key_entry("root", "admin"));
  // Nothing listens on this port.
  ServerProcess server({"--api-keys-file", keys, "--cache-policy", "off", "--redis-url",
                        "redis://127.0.0.1:" + std::to_string(free_port())});
  ASSERT_GT(server.port(), 0);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(status_of(call(server.port(), "GET", "/v1/models", "sk-sam")), 200);
  auto refused = call(server.port(), "GET", "/v1/models", "sk-sam");
  EXPECT_EQ(status_of(refused), 429);
  EXPECT_EQ(code_of(refused), "rate_limit_exceeded");
  EXPECT_GE(metric_value(server.port(), "infera_ratelimit_redis_fallbacks_total"), 4);
  EXPECT_NE(server.logs().find("ratelimit.redis_fallback"), std::string::npos);
}

// ---- CORS, security headers, TLS --------------------------------------------------

TEST(Auth, CorsAndSecurityHeaders) {
  TempDir dir;
  const std::string keys = dir.path("keys.toml");
  write_file(keys, key_entry("sam", "student"));
  ServerProcess server({"--api-keys-file", keys, "--cors-origins", "https://app.example.org", "--cache-policy", "off"});
  ASSERT_GT(server.port(), 0);
  const int port = server.port();
  // A preflight needs no key.
  auto pre = http_request(port, "OPTIONS", "/v1/chat/completions", "",
                          {{"Origin", "https://app.example.org"},
                           {"Access-Control-Request-Method", "POST"},
                           {"Access-Control-Request-Headers", "authorization, content-type"}});
  ASSERT_EQ(status_of(pre), 204);
  EXPECT_EQ(pre->header("access-control-allow-origin"), "https://app.example.org");
  EXPECT_NE(pre->header("access-control-allow-headers").find("Authorization"), std::string::npos);
  EXPECT_NE(pre->header("access-control-allow-methods").find("POST"), std::string::npos);
  auto evil = http_request(port, "OPTIONS", "/v1/chat/completions", "",
                           {{"Origin", "https://evil.example.com"}, {"Access-Control-Request-Method", "POST"}});
  EXPECT_EQ(status_of(evil), 403);
  EXPECT_TRUE(evil->header("access-control-allow-origin").empty());
  // Real requests from the allowed origin carry the CORS headers, on refusals too.
  auto ok = call(port, "GET", "/v1/models", "sk-sam", "", {{"Origin", "https://app.example.org"}});
  ASSERT_EQ(status_of(ok), 200);
  EXPECT_EQ(ok->header("access-control-allow-origin"), "https://app.example.org");
  EXPECT_NE(ok->header("access-control-expose-headers").find("x-ratelimit-remaining-requests"), std::string::npos);
  auto denied = call(port, "GET", "/v1/models", "", "", {{"Origin", "https://app.example.org"}});
  EXPECT_EQ(status_of(denied), 401);
  EXPECT_EQ(denied->header("access-control-allow-origin"), "https://app.example.org");
  auto other = call(port, "GET", "/v1/models", "sk-sam", "", {{"Origin", "https://evil.example.com"}});
  EXPECT_TRUE(other->header("access-control-allow-origin").empty());
  for (const auto& r : {ok, denied}) {
    EXPECT_EQ(r->header("x-content-type-options"), "nosniff");
    EXPECT_EQ(r->header("x-frame-options"), "DENY");
    EXPECT_EQ(r->header("referrer-policy"), "no-referrer");
    EXPECT_TRUE(r->header("strict-transport-security").empty());  // plain HTTP
  }
}

TEST(Auth, Tls) {
  if (run_command("command -v openssl && command -v curl").exit_code != 0) {
    GTEST_SKIP() << "openssl or curl is not installed";
  }
  TempDir dir;
  const std::string cert = dir.path("cert.pem"), key = dir.path("key.pem");
  auto made = run_command("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " +
                          key + " -out " + cert +
                          " -days 2 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost 2>&1");
  ASSERT_EQ(made.exit_code, 0) << made.output;
  ServerProcess server({"--tls-cert", cert, "--tls-key", key, "--cache-policy", "off"});
  ASSERT_GT(server.port(), 0);
  const std::string base = "https://127.0.0.1:" + std::to_string(server.port());
  auto health = run_command("curl -sS -i --cacert " + cert + " " + base + "/health 2>&1");
  EXPECT_EQ(health.exit_code, 0) << health.output;
  EXPECT_NE(health.output.find("HTTP/1.1 200"), std::string::npos) << health.output;
  EXPECT_NE(health.output.find("Strict-Transport-Security: max-age=31536000"), std::string::npos);
  auto chat = run_command("curl -sS --cacert " + cert + " " + base + "/api/chat -d '" + kChat + "' 2>&1");
  EXPECT_EQ(chat.exit_code, 0) << chat.output;
  EXPECT_NE(chat.output.find("\"answer\""), std::string::npos) << chat.output;
  // Streaming over TLS.
  auto stream = run_command("curl -sS -N --cacert " + cert + " " + base +
                            "/v1/chat/completions -d '{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
                            "\"stream\":true,\"max_tokens\":5}' 2>&1");
  EXPECT_NE(stream.output.find("data: [DONE]"), std::string::npos) << stream.output;
  // An untrusted certificate is refused by the client; plain HTTP gets no answer.
  EXPECT_NE(run_command("curl -sS " + base + "/health 2>&1").exit_code, 0);
  EXPECT_NE(status_of(http_request(server.port(), "GET", "/health")), 200);
  // A missing key file stops start-up with a message naming it.
  auto bad = run_command(std::string(INFERA_BINARY) + " serve --port 0 --tls-cert " + cert +
                         " --tls-key /nonexistent/key.pem 2>&1");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("/nonexistent/key.pem"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace infera::testing

namespace infera::testing {
namespace {

TEST(Auth, PerAddressLimitsSeeThroughTrustedProxiesOnly) {
  auto xff = [](int port, const std::string& chain) {
    return status_of(http_request(port, "GET", "/v1/models", "", {{"X-Forwarded-For", chain}}));
  };
  // Behind a trusted proxy (this test, on 127.0.0.1): each forwarded client has its own
  // bucket; a client cannot dodge its limit by prepending addresses.
  ServerProcess behind({"--client-requests-per-minute", "2", "--client-request-burst", "2", "--trusted-proxies",
                        "127.0.0.1", "--cache-policy", "off"});
  ASSERT_GT(behind.port(), 0);
  EXPECT_EQ(xff(behind.port(), "10.0.0.1"), 200);
  EXPECT_EQ(xff(behind.port(), "6.6.6.6, 10.0.0.1"), 200);
  EXPECT_EQ(xff(behind.port(), "7.7.7.7, 10.0.0.1"), 429);
  EXPECT_EQ(xff(behind.port(), "10.0.0.2"), 200);
  // Without --trusted-proxies the header is the client's word and ignored.
  ServerProcess direct({"--client-requests-per-minute", "2", "--client-request-burst", "2", "--cache-policy", "off"});
  ASSERT_GT(direct.port(), 0);
  EXPECT_EQ(xff(direct.port(), "10.0.0.1"), 200);
  EXPECT_EQ(xff(direct.port(), "10.0.0.2"), 200);
  EXPECT_EQ(xff(direct.port(), "10.0.0.3"), 429);
}

}  // namespace
}  // namespace infera::testing
