#include <chrono>

#include <fmt/format.h>

#include "api/api.h"
#include "api/json_body.h"
#include "core/log.h"
#include "http/server.h"
#include "obs/metrics.h"

namespace infera::api {

void register_system_routes(http::Server& server, obs::Registry& metrics, DegradedReason degraded) {
  const auto started = std::chrono::steady_clock::now();
  server.route("GET", "/health", [](const http::Request&) {
    return http::Response::json(200, R"({"status":"ok"})");
  });
  auto health = [degraded](const http::Request&) {
    if (degraded) {
      if (auto reason = degraded()) {
        std::string body = R"({"status":"degraded","reason":)";
        append_json_string(body, *reason);
        body += '}';
        return http::Response::json(503, std::move(body));
      }
    }
    return http::Response::json(200, R"({"status":"ok"})");
  };
  server.route("GET", "/api/health", health);
  server.route("GET", "/api/v1/health", health);

  server.route("GET", "/ready", [&server, degraded](const http::Request&) {
    std::optional<std::string> reason = degraded ? degraded() : std::nullopt;
    if (server.ready() && !reason) return http::Response::json(200, R"({"status":"ready"})");
    if (reason) {
      return http::Response::error(503, "server is not ready (degraded: " + *reason + ")", "server_error",
                                   "degraded");
    }
    const char* why = server.draining() ? "draining" : "starting";
    return http::Response::error(503, fmt::format("server is not ready ({})", why),
                                 "server_error", why);
  });

  // Changes the log level at run time: {"level": "debug"}.
  server.route("PUT", "/admin/log-level", [](const http::Request& req) {
    http::Response error;
    auto body = parse_json_object(req, error);
    if (!body) return error;
    auto it = body->find("level");
    if (it == body->end() || !it->is_string()) {
      return http::Response::error(400, "field 'level' is required and must be a string",
                                   "invalid_request_error", "invalid_level");
    }
    std::string level = it->get<std::string>();
    if (!log::set_level(level)) {
      return http::Response::error(
          400, "field 'level' must be one of trace, debug, info, warn, error, off; got '" + level + "'",
          "invalid_request_error", "invalid_level");
    }
    return http::Response::json(200, fmt::format(R"({{"level":"{}"}})", level));
  });

  server.route("GET", "/metrics", [&metrics](const http::Request&) {
    http::Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics.prometheus_text();
    return r;
  });

  // Views of the same registry for dashboards: HTTP latency and AI inference.
  server.route("GET", "/api/v1/metrics/performance", [&metrics](const http::Request&) {
    return http::Response::json(200, metrics.json({"http_"}));
  });
  server.route("GET", "/api/v1/metrics/ai-inference", [&metrics](const http::Request&) {
    return http::Response::json(200, metrics.json({"infera_"}));
  });

  server.route("GET", "/api/stats", [&metrics, started](const http::Request&) {
    double uptime =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return http::Response::json(
        200, fmt::format(R"({{"uptime_seconds":{:.3f},"metrics":{}}})", uptime, metrics.json()));
  });
}

}  // namespace infera::api
