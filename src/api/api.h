// HTTP endpoints of infera, registered on an http::Server. Each function below adds
// one group of routes; main/cli wires the groups it needs.
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace infera::http {
class Server;
}
namespace infera::obs {
class Registry;
}
namespace infera::models {
class Registry;
}

namespace infera::api {

// Why the server is degraded (e.g. a stalled engine); nullopt when healthy.
using DegradedReason = std::function<std::optional<std::string>()>;

// Liveness (/health: the process answers), health (/api/health, /api/v1/health:
// {"status":"ok"}, or 503 {"status":"degraded","reason":...} while `degraded` says
// so), readiness (/ready: 503 until the server can serve, during drain and while
// degraded), metrics (/metrics in Prometheus text format, /api/stats as JSON).
void register_system_routes(http::Server& server, obs::Registry& metrics,
                            DegradedReason degraded = {});

// The model registry's routes: GET /v1/models (OpenAI list, with each model's
// state), GET /api/models (state, kind, bytes, last use, load time, requests),
// POST /api/models/{name}/load and /unload (answer when done).
// REQUIRES: `registry` outlives the server.
void register_model_routes(http::Server& server, models::Registry& registry);

}  // namespace infera::api
