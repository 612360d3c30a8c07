// The operations side of `infera serve`, wired in one place: the memory guard and
// its cleanup chain, the engine watchdog, the time-to-first-token governors, SLA
// tracking, the anomaly detector, alerts and their webhook, and the maintenance
// thread that ticks them. The logic lives in guard/ and obs/; this only connects
// them to the registry, the cache and the HTTP server.
//
// Order of use: Operations(...); load_veto() into the registry config; attach();
// register_routes(); start(). Threads: the memory guard's own, and one maintenance
// thread ("operations") ticking the watchdog, anomalies and governors.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/generation.h"
#include "core/cpu_topology.h"
#include "core/status.h"
#include "guard/guard.h"
#include "http/server.h"
#include "obs/sla.h"

namespace infera::cache {
class Cache;
}
namespace infera::models {
class Registry;
}
namespace infera::obs {
class Registry;
}

namespace infera::cli {

struct OperationsConfig {
  double cleanup_threshold = 0.80;                  // MEMORY_CLEANUP_THRESHOLD
  double critical_threshold = 0.95;                 // CRITICAL_MEMORY_THRESHOLD
  std::chrono::milliseconds stall_timeout{10000};   // --stall-timeout
  double ttft_objective_ms = 5000;                  // --ttft-objective-ms (0 = no governor)
  std::vector<obs::SlaObjective> objectives;        // --sla-objectives
  std::chrono::milliseconds anomaly_window{10000};  // --anomaly-window-ms
  std::string alert_webhook;                        // --alert-webhook
  bool test_hooks = false;                          // --test-hooks
  int base_max_seqs = 8;                            // --max-seqs, for models that do not set theirs
  int base_max_batch_tokens = 256;                  // --max-batch-tokens
  core::CpuPlacement cpu;                           // --max-workers, --cpu-affinity
  guard::DegradationConfig degradation;             // --degrade-*, --degraded-max-tokens
};

class Operations {
 public:
  // Fails for an unusable webhook URL.
  static Result<std::unique_ptr<Operations>> create(OperationsConfig config,
                                                    obs::Registry& metrics);
  ~Operations();  // stops the threads

  // For RegistryConfig::load_veto: a reason while memory is critical.
  std::function<std::optional<std::string>()> load_veto();
  // Connects the cleanup chain (L1, prefix KV blocks, idle models), watchdog probes
  // and governors to the models and the cache (may be null).
  // REQUIRES: both outlive this object.
  void attach(models::Registry& models, cache::Cache* cache);
  api::GenerationHooks generation_hooks();
  http::Server::Observer observer();
  // Why the server is not healthy (a stalled engine), nullopt when it is.
  std::optional<std::string> degraded_reason() const;
  // GET /api/memory/stats, /api/v1/status, /api/v1/alerts, /api/v1/metrics/sla and,
  // with test_hooks, POST /admin/test/fault and /admin/test/memory.
  void register_routes(http::Server& server);
  void start();
  // Stops the threads (memory guard, maintenance); the hooks stay usable until
  // destruction. Idempotent.
  void stop();

  struct Impl;

 private:
  explicit Operations(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace infera::cli
