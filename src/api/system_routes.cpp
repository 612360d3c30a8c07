#include <chrono>

#include <fmt/format.h>

#include "api/api.h"
#include "http/server.h"
#include "obs/metrics.h"

namespace infera::api {

void register_system_routes(http::Server& server, obs::Registry& metrics) {
  const auto started = std::chrono::steady_clock::now();
  auto health = [](const http::Request&) {
    return http::Response::json(200, R"({"status":"ok"})");
  };
  server.route("GET", "/health", health);
  server.route("GET", "/api/health", health);
  server.route("GET", "/api/v1/health", health);

  server.route("GET", "/ready", [&server](const http::Request&) {
    if (server.ready()) return http::Response::json(200, R"({"status":"ready"})");
    const char* why = server.draining() ? "draining" : "starting";
    return http::Response::error(503, fmt::format("server is not ready ({})", why),
                                 "server_error", why);
  });

  server.route("GET", "/metrics", [&metrics](const http::Request&) {
    http::Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics.prometheus_text();
    return r;
  });

  server.route("GET", "/api/stats", [&metrics, started](const http::Request&) {
    double uptime =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return http::Response::json(
        200, fmt::format(R"({{"uptime_seconds":{:.3f},"metrics":{}}})", uptime, metrics.json()));
  });
}

}  // namespace infera::api
