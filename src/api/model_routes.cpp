#include <fmt/chrono.h>
#include <fmt/format.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>

#include "api/api.h"
#include "api/json_body.h"
#include "auth/auth.h"
#include "http/server.h"
#include "models/registry.h"

namespace infera::api {
namespace {

using nlohmann::json;

int64_t unix_seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

std::string iso8601(std::chrono::system_clock::time_point t) {
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}Z", fmt::gmtime(std::chrono::system_clock::to_time_t(t)));
}

json keep_alive_json(const models::ModelSpec& spec) {
  if (!spec.keep_alive) return nullptr;
  return spec.keep_alive->count() < 0
             ? json(-1)
             : json(static_cast<double>(spec.keep_alive->count()) / 1000.0);
}

json status_json(const models::ModelStatus& s, bool details) {
  json j = {{"name", s.spec.name},
            {"kind", s.spec.kind},
            {"state", models::to_string(s.state)},
            {"path", s.spec.path},
            {"pinned", s.spec.pin},
            {"bytes", s.bytes},
            {"load_ms", s.load_ms},
            {"loads", s.loads},
            {"requests", s.requests},
            {"in_flight", s.in_flight},
            {"last_used", s.last_used ? json(iso8601(*s.last_used)) : json(nullptr)},
            {"keep_alive_s", keep_alive_json(s.spec)},
            {"declared_by", s.spec.declared_by}};
  if (!s.last_error.empty()) j["error"] = s.last_error;
  if (details && !s.identity.empty()) j["identity"] = s.identity;
  return j;
}

// The registry's row for `name` after an action, as JSON.
json row(models::Registry& registry, const std::string& name) {
  for (const auto& s : registry.list()) {
    if (s.spec.name == name) return status_json(s, true);
  }
  return nullptr;
}

}  // namespace

void register_model_routes(http::Server& server, models::Registry& registry) {
  const int64_t created = unix_seconds(std::chrono::system_clock::now());
  // A key sees only the models its role may use.
  auto visible = [](const http::Request& req, const std::string& name) {
    return req.caller == nullptr || req.caller->may_use_model(name);
  };
  server.route("GET", "/v1/models", http::SyncHandler([&registry, created, visible](const http::Request& req) {
                 json data = json::array();
                 for (const auto& s : registry.list()) {
                   if (!visible(req, s.spec.name)) continue;
                   data.push_back({{"id", s.spec.name},
                                   {"object", "model"},
                                   {"created", created},
                                   {"owned_by", "infera"},
                                   {"kind", s.spec.kind},
                                   {"state", models::to_string(s.state)}});
                 }
                 return http::Response::json(200, json{{"object", "list"}, {"data", data}}.dump());
               }));
  server.route(
      "GET", "/api/models", http::SyncHandler([&registry, visible](const http::Request& req) {
        json data = json::array();
        uint64_t loaded = 0;
        std::map<std::string, json> details;  // what each loaded model's kind reports
        registry.for_each_loaded([&details](const std::string& name, models::LoadedModel& m) {
          details[name] = m.describe();
        });
        for (const auto& s : registry.list()) {
          if (!visible(req, s.spec.name)) continue;
          data.push_back(status_json(s, true));
          if (auto it = details.find(s.spec.name); it != details.end()) {
            data.back()["details"] = std::move(it->second);
          }
          if (s.state == models::ModelState::kReady || s.state == models::ModelState::kDraining) {
            loaded += s.bytes;
          }
        }
        return http::Response::json(
            200,
            json{{"models", data}, {"default", registry.default_model()}, {"loaded_bytes", loaded}}
                .dump());
      }));
  server.route("POST", "/api/models/{name}/load",
               http::Handler([&registry](const http::Request& req, http::Responder r) {
                 std::string name(req.param("name"));
                 registry.load(name, [&registry, name, r](Status st) mutable {
                   if (!st.ok()) return r.send(model_error_response(st));
                   r.send(http::Response::json(200, row(registry, name).dump()));
                 });
               }));
  server.route("POST", "/api/models/{name}/unload",
               http::Handler([&registry](const http::Request& req, http::Responder r) {
                 std::string name(req.param("name"));
                 registry.unload(name, [&registry, name, r](Status st) mutable {
                   if (!st.ok()) return r.send(model_error_response(st));
                   r.send(http::Response::json(200, row(registry, name).dump()));
                 });
               }));
}

}  // namespace infera::api
