// Inside api/: what the seed prediction routes and the KServe v2 routes share — the
// model lease, the per-row cache, splitting requests larger than a batch, priorities
// and deadlines. Not a public interface (api/predictions.h is).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "models/model.h"

namespace infera::models {
class Registry;
class Lease;
}  // namespace infera::models
namespace infera::cache {
class Cache;
}
namespace infera::auth {
struct Caller;
}
namespace infera::http {
struct Request;
struct Response;
}  // namespace infera::http

namespace infera::api {

struct RowsResult {
  std::vector<models::Tensor> outputs;  // each [rows, width], in the model's output order
  int cached = 0;                       // rows answered by the cache
  std::string cache_tier;               // X-Cache: MISS, or HIT-L1/L2/L3 when all rows hit
};

class PredictionService {
 public:
  using Clock = std::chrono::steady_clock;
  using LeaseDone = std::function<void(Result<std::shared_ptr<models::Lease>>)>;
  using RowsDone = std::function<void(Result<RowsResult>)>;

  PredictionService(models::Registry& models, cache::Cache* cache, double request_timeout_s);

  // A lease on a predictor model the caller may use: NotFound (404), PermissionDenied
  // (403), InvalidArgument when the model does not predict (400), or the registry's
  // load errors (503).
  void acquire(const std::string& name, const auth::Caller* caller, LeaseDone done);

  // Runs `rows` rows of `input` (the model's one input, [rows, width]) through the
  // model: cached rows from the cache, the rest in calls of at most max_batch_rows().
  // `outputs`: names wanted (empty = all); feature importance is computed only when
  // asked for (or all are). `done` runs on the model's batcher thread or the caller's.
  struct Rows {
    std::shared_ptr<models::Lease> lease;
    std::vector<float> data;
    int rows = 0;
    std::vector<std::string> outputs;
    int priority = 1;
    std::optional<Clock::time_point> deadline;
    bool use_cache = true;
  };
  void run(Rows request, RowsDone done);

  // The request's deadline: its own timeout (seconds) or the server's, whichever is
  // shorter; nullopt when neither is set.
  std::optional<Clock::time_point> deadline(std::optional<double> timeout_s) const;
  // The batcher priority level (0 high, 1 normal, 2 low) of a caller's role, lowered
  // (never raised) by what the request asks for (0..2).
  static int priority(const auth::Caller* caller, std::optional<int> requested);

 private:
  models::Registry& models_;
  cache::Cache* cache_;
  double request_timeout_s_;
};

// True when the request asks the cache to be bypassed (Cache-Control: no-cache).
bool cache_bypassed(const http::Request& req);

}  // namespace infera::api
