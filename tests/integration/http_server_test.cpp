// The real `infera serve` binary over real loopback HTTP.
#include <signal.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "integration/server_support.h"

namespace infera::testing {
namespace {

using namespace std::chrono_literals;

void expect_openai_error(const HttpResponse& r, int status) {
  EXPECT_EQ(r.status, status);
  EXPECT_EQ(r.header("content-type"), "application/json");
  auto doc = nlohmann::json::parse(r.body, nullptr, false);
  ASSERT_TRUE(doc.is_object()) << r.body;
  ASSERT_TRUE(doc.contains("error")) << r.body;
  EXPECT_TRUE(doc["error"]["message"].is_string());
  EXPECT_TRUE(doc["error"]["type"].is_string());
  EXPECT_TRUE(doc["error"].contains("code"));
}

TEST(HttpServer, HealthAnswersWithRequestIdAndResponseTime) {
  ServerProcess server({});
  ASSERT_GT(server.port(), 0);
  for (const char* path : {"/health", "/api/health", "/api/v1/health", "/ready"}) {
    auto r = http_request(server.port(), "GET", path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 200) << path;
    EXPECT_FALSE(r->header("x-request-id").empty());
    EXPECT_NE(r->header("x-response-time").find("ms"), std::string::npos);
  }
  auto echoed = http_request(server.port(), "GET", "/health", "", {{"X-Request-ID", "trace-42"}});
  ASSERT_TRUE(echoed);
  EXPECT_EQ(echoed->header("x-request-id"), "trace-42");
}

TEST(HttpServer, UnknownRouteIsJson404) {
  ServerProcess server({});
  auto r = http_request(server.port(), "GET", "/no/such/route");
  ASSERT_TRUE(r);
  expect_openai_error(*r, 404);
}

TEST(HttpServer, WrongMethodIs405) {
  ServerProcess server({});
  auto r = http_request(server.port(), "DELETE", "/health");
  ASSERT_TRUE(r);
  expect_openai_error(*r, 405);
}

TEST(HttpServer, BodyOverLimitIs413) {
  ServerProcess server({"--max-content-length", "1KiB"});
  std::string body(4096, 'x');
  auto r = http_request(server.port(), "PUT", "/admin/log-level", body,
                        {{"Content-Type", "application/json"}});
  ASSERT_TRUE(r);
  expect_openai_error(*r, 413);
  EXPECT_NE(r->body.find("MAX_CONTENT_LENGTH"), std::string::npos);

  // A chunked body has no Content-Length: the limit is enforced while reading.
  Connection c(server.port());
  std::string chunk(600, 'y');
  std::string req = "PUT /admin/log-level HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 3; ++i) req += "258\r\n" + chunk + "\r\n";
  req += "0\r\n\r\n";
  ASSERT_TRUE(c.send_all(req));
  auto chunked = c.read_response();
  ASSERT_TRUE(chunked);
  expect_openai_error(*chunked, 413);

  // A body under the limit still works.
  auto ok = http_request(server.port(), "PUT", "/admin/log-level", R"({"level":"info"})");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
}

TEST(HttpServer, MalformedJsonIs400WithOpenAiError) {
  ServerProcess server({});
  auto r = http_request(server.port(), "PUT", "/admin/log-level", R"({"level": "debug",)");
  ASSERT_TRUE(r);
  expect_openai_error(*r, 400);
  EXPECT_NE(r->body.find("not valid JSON"), std::string::npos) << r->body;

  auto wrong_type = http_request(server.port(), "PUT", "/admin/log-level", R"({"level": 3})");
  ASSERT_TRUE(wrong_type);
  expect_openai_error(*wrong_type, 400);
  EXPECT_NE(wrong_type->body.find("'level'"), std::string::npos);
}

TEST(HttpServer, MalformedHttpIs400) {
  ServerProcess server({});
  Connection c(server.port());
  ASSERT_TRUE(c.send_all("THIS IS NOT HTTP\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  expect_openai_error(*r, 400);
}

TEST(HttpServer, SlowlorisClientIsDroppedAfterHeaderTimeout) {
  ServerProcess server({"--header-timeout-ms", "300"});
  Connection c(server.port());
  ASSERT_TRUE(c.send_all("GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "));
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(c.wait_closed(5s)) << "server kept a client with unfinished headers";
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, 250ms);
  // The server is still healthy for others.
  auto r = http_request(server.port(), "GET", "/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(HttpServer, IdleKeepAliveConnectionIsClosed) {
  ServerProcess server({"--idle-timeout-ms", "300"});
  Connection c(server.port());
  ASSERT_TRUE(c.send_all("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(c.read_response());
  EXPECT_TRUE(c.wait_closed(5s));
}

TEST(HttpServer, KeepAliveReusesTheConnection) {
  ServerProcess server({});
  Connection c(server.port());
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(c.send_all("GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r) << "request " << i << " on the same connection";
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, R"({"status":"ok"})");
  }
  // Pipelined requests in one write are answered in order.
  ASSERT_TRUE(c.send_all("GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto first = c.read_response();
  auto second = c.read_response();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->status, 200);
  EXPECT_EQ(second->status, 404);
}

TEST(HttpServer, GzipOnlyWhenAcceptedAndLarge) {
  ServerProcess server({});
  // Produce some metrics so /metrics is well over 1 KiB.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(http_request(server.port(), "GET", "/health"));
  auto plain = http_request(server.port(), "GET", "/metrics");
  ASSERT_TRUE(plain);
  ASSERT_GT(plain->body.size(), 1024u);
  EXPECT_EQ(plain->header("content-encoding"), "");

  auto gz = http_request(server.port(), "GET", "/metrics", "", {{"Accept-Encoding", "gzip, br"}});
  ASSERT_TRUE(gz);
  EXPECT_EQ(gz->header("content-encoding"), "gzip");
  ASSERT_GE(gz->body.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(gz->body[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>(gz->body[1]), 0x8b);
  EXPECT_LT(gz->body.size(), plain->body.size());

  auto refused = http_request(server.port(), "GET", "/metrics", "", {{"Accept-Encoding", "gzip;q=0"}});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->header("content-encoding"), "");

  auto small = http_request(server.port(), "GET", "/health", "", {{"Accept-Encoding", "gzip"}});
  ASSERT_TRUE(small);
  EXPECT_EQ(small->header("content-encoding"), "");

  // A real client decompresses it to the same text format.
  auto curl = run_command("curl -sf --compressed http://127.0.0.1:" + std::to_string(server.port()) +
                          "/metrics");
  EXPECT_EQ(curl.exit_code, 0);
  EXPECT_NE(curl.output.find("# TYPE http_requests_total counter"), std::string::npos);
}

TEST(HttpServer, MetricsCountRequestsByRouteAndStatus) {
  ServerProcess server({});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(http_request(server.port(), "GET", "/api/health"));
  ASSERT_TRUE(http_request(server.port(), "GET", "/missing"));
  auto metrics = http_request(server.port(), "GET", "/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find(
                R"(http_requests_total{route="/api/health",method="GET",status="200"} 3)"),
            std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find(R"(http_requests_total{route="unmatched",method="any",status="404"} 1)"),
            std::string::npos);
  EXPECT_NE(metrics->body.find(
                R"(http_request_duration_seconds_count{route="/api/health",method="GET",status="200"} 3)"),
            std::string::npos);

  auto stats = http_request(server.port(), "GET", "/api/stats");
  ASSERT_TRUE(stats);
  auto doc = nlohmann::json::parse(stats->body);
  bool found = false;
  for (const auto& h : doc["metrics"]["http_request_duration_seconds"]) {
    if (h["labels"]["route"] == "/api/health") {
      found = true;
      EXPECT_EQ(h["count"], 3);
      EXPECT_GT(h["p99"].get<double>(), 0.0);
      EXPECT_GE(h["p99"].get<double>(), h["p50"].get<double>());
    }
  }
  EXPECT_TRUE(found) << stats->body;
}

TEST(HttpServer, SigtermDrainsInFlightRequestAndRefusesNewOnes) {
  ServerProcess server({"--drain-timeout-ms", "10000"});
  // An in-flight request: headers sent, body still uploading.
  Connection slow(server.port());
  const std::string body = R"({"level":"info"})";
  ASSERT_TRUE(slow.send_all("PUT /admin/log-level HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body.substr(0, 5)));
  std::this_thread::sleep_for(100ms);  // let the server read the headers
  server.signal(SIGTERM);

  // While draining, a new request is refused with 503 and /ready reports it.
  std::optional<HttpResponse> refused;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    refused = http_request(server.port(), "GET", "/ready");
    if (refused && refused->status == 503) break;
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(refused);
  expect_openai_error(*refused, 503);
  EXPECT_FALSE(server.wait_exit(200ms)) << "exited with a request in flight";

  // The in-flight request completes normally, then the server exits cleanly.
  ASSERT_TRUE(slow.send_all(body.substr(5)));
  auto r = slow.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->header("connection"), "close");
  auto code = server.wait_exit(5s);
  ASSERT_TRUE(code) << "server did not exit after drain";
  EXPECT_EQ(*code, 0);
}

TEST(HttpServer, DrainIsBoundedByTimeout) {
  ServerProcess server({"--drain-timeout-ms", "300"});
  Connection stuck(server.port());
  ASSERT_TRUE(stuck.send_all("PUT /admin/log-level HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"));
  std::this_thread::sleep_for(100ms);
  server.signal(SIGINT);
  auto code = server.wait_exit(5s);
  ASSERT_TRUE(code) << "drain did not respect its bound";
  EXPECT_EQ(*code, 0);
  EXPECT_NE(server.logs().find("http.drain_timeout"), std::string::npos);
}

}  // namespace
}  // namespace infera::testing

namespace infera::testing {
namespace {

double cpu_seconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::string f;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(f);  // utime, stime
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

TEST(HttpServer, OutOfDescriptorsPausesAcceptingInsteadOfSpinning) {
  // The child inherits a low descriptor limit; this process keeps its own.
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = 64;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  ServerProcess server({"--cache-policy", "off"});
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  ASSERT_GT(server.port(), 0);
  std::vector<std::unique_ptr<Connection>> held;
  for (int i = 0; i < 100; ++i) held.push_back(std::make_unique<Connection>(server.port()));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const double before = cpu_seconds(server.pid());
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const double used = cpu_seconds(server.pid()) - before;
  EXPECT_LT(used, 0.3) << "the accept loop spun while descriptors were exhausted";
  held.clear();  // descriptors come back: the server accepts again
  bool answered = false;
  for (int i = 0; i < 50 && !answered; ++i) {
    auto r = http_request(server.port(), "GET", "/health");
    answered = r && r->status == 200;
    if (!answered) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(answered);
}

}  // namespace
}  // namespace infera::testing
