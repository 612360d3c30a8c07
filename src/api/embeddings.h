// Embeddings: POST /v1/embeddings (OpenAI-shaped) and the embedding step the
// knowledge routes share (documents, search, retrieval, semantic cache).
//
// Texts are embedded by a registry model of a kind with the TextEmbedder capability;
// each text's unit vector is cached under (model, file identity, text, truncate) in
// every cache tier, so a text is embedded once however often it is asked for.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace infera::http {
class Server;
struct Response;
}
namespace infera::models {
class Registry;
}
namespace infera::cache {
class Cache;
}
namespace infera::auth {
struct Caller;
}

namespace infera::api {

struct EmbedRequest {
  std::string model;               // empty: the first declared embedding model
  std::vector<std::string> texts;  // either texts...
  std::vector<std::vector<int32_t>> token_inputs;  // ...or token ids (special tokens as given)
  bool truncate = false;     // cut inputs longer than the model's context instead of refusing
  bool use_cache = true;     // false: neither look up nor fill (Cache-Control: no-cache)
  const auth::Caller* caller = nullptr;  // checked against the model's allow-list
};

struct EmbedResult {
  std::string model;
  int dimensions = 0;
  std::vector<float> vectors;   // unit length, row after row, in input order
  int64_t prompt_tokens = 0;    // tokens of every input (cached ones counted too)
  int cached = 0;               // inputs answered by the cache
  std::string cache_tier;       // the X-Cache value: MISS, HIT-L1/L2/L3 (all from one tier)
  std::vector<int> allowed_dimensions;  // the model's declared shorter lengths
};

// Errors: NotFound (unknown model, 404), PermissionDenied (key may not use it, 403),
// InvalidArgument (not an embedding model, bad or too long input, no pooling type:
// 400), ResourceExhausted / Unavailable (cannot load: 503).
using EmbedDone = std::function<void(Result<EmbedResult>)>;

class Embedder {
 public:
  // REQUIRES: `models` and `cache` (may be null) outlive the embedder.
  Embedder(models::Registry& models, cache::Cache* cache);
  // `done` runs on the model's thread, the registry's dispatcher or the caller's.
  void embed(EmbedRequest request, EmbedDone done);
  // The first declared model whose kind embeds ("embedding"); empty when none.
  std::string default_model() const;
  // Tokens of `text` for `model` as it embeds them (chunking by tokens); the
  // model is loaded if needed. Blocks: not for I/O threads.
  Result<std::vector<int32_t>> tokenize_blocking(const std::string& model, const std::string& text);

 private:
  models::Registry& models_;
  cache::Cache* cache_;
};

// POST /v1/embeddings: `input` a string, array of strings, array of token ids or array
// of such arrays; `encoding_format` "float" (default) or "base64" (little-endian F32);
// `dimensions` (only lengths the model declares, re-normalised); infera's `truncate`.
// REQUIRES: `embedder` outlives the server.
void register_embedding_routes(http::Server& server, Embedder& embedder);

// The HTTP answer to an embedding error (status as above, OpenAI-shaped body).
http::Response embed_error_response(const Status& status);

}  // namespace infera::api
