// HTTP endpoints of infera, registered on an http::Server. Each function below adds
// one group of routes; main/cli wires the groups it needs.
#pragma once

namespace infera::http {
class Server;
}
namespace infera::obs {
class Registry;
}

namespace infera::api {

// Liveness (/health, /api/health, /api/v1/health: tiny body), readiness (/ready:
// 503 until the server can serve and during drain), metrics (/metrics in
// Prometheus text format, /api/stats as JSON).
void register_system_routes(http::Server& server, obs::Registry& metrics);

}  // namespace infera::api
