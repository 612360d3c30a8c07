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
namespace infera::predict {
class ImageIndex;
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

// Image matching against named sets of protected reference images (predict/image_index.h):
//   POST /api/v1/images/references  {"set", "id", "tags", "image": base64} or the raw image
//                                    with ?set=&id=&tags=a,b  (admin)
//   GET /api/v1/images/references[?set=S], DELETE /api/v1/images/references/{id}?set=S (admin)
//   POST /api/v1/images/match       {"set", "image", "threshold", "top_k"} or the raw image
//                                    -> {matches: [{id, score, distance, is_match, tags}],
//                                        threshold, algorithm, set, cached, latency_ms}
// The image's perceptual hash filters the set first (Hamming distance <= max_hash_distance),
// then the embedding model (a registry model with image preprocessing; its first output,
// L2-normalised) scores the survivors by cosine similarity; without a model the hash
// scores them (1 - distance / 64). Answers are cached by the image's bytes, the set's
// generation and the parameters in every cache tier. Images are decoded on the routes'
// own thread ("image decode"), never on an I/O thread.
struct ImageMatchConfig {
  std::string model;           // --image-match-model; empty = perceptual hash only
  double threshold = 0.9;      // --image-match-threshold: score at or above = a match
  int max_hash_distance = 16;  // --image-hash-distance: the first filter, bits of 64
};

// REQUIRES: `models`, `index` and `cache` (may be null) outlive the server.
void register_image_routes(http::Server& server, models::Registry& models, predict::ImageIndex& index,
                           cache::Cache* cache, ImageMatchConfig config);

}  // namespace infera::api
