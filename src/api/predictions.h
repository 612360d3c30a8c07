// Predictions from predictor models (models::Predictor: xgboost today; onnx, torchscript
// next) over two APIs on the same models:
//   - the seeds' routes: POST /api/v1/predict/{model} {"features": {name: value}} ->
//     {prediction, probabilities, uncertainty, feature_importance, model, latency_ms,
//     cached}; POST /api/v1/predict/{model}/batch {"instances": [{...}, ...]};
//     GET /api/v1/models/{model} (the schema);
//   - the KServe / Open Inference Protocol v2 REST API, so Triton, KServe and MLServer
//     clients work: GET /v2, /v2/health/live, /v2/health/ready, GET /v2/models/{m},
//     /v2/models/{m}/ready, POST /v2/models/{m}/infer (JSON tensors and the binary
//     tensor data extension; `parameters.priority` and `parameters.timeout`),
//     POST /v2/repository/index, /v2/repository/models/{m}/load and /unload.
//
// Each row's outputs are cached under (model, file identity, the row's bytes, whether
// feature importance was computed) in every cache tier, for both APIs.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace infera::http {
class Server;
}
namespace infera::models {
class Registry;
}
namespace infera::cache {
class Cache;
}

namespace infera::api {

struct PredictRoutesConfig {
  // Longest a prediction may wait and run unless the request sets a shorter `timeout`
  // (--request-timeout); 0 = none. A request still queued at its deadline gets 504.
  double request_timeout_s = 0;
};

// REQUIRES: `models` and `cache` (may be null) outlive the server.
void register_predict_routes(http::Server& server, models::Registry& models, cache::Cache* cache,
                             PredictRoutesConfig config);

}  // namespace infera::api
