// The generation endpoints: /v1/chat/completions, /v1/completions (OpenAI-
// compatible, SSE streaming), /v1/models and the assistant endpoint /api/chat.
// Requests are validated into typed requests, rendered with the model's chat
// template, tokenized, and — unless the response cache answers them — queued on
// the scheduler; answers stream back from the engine loop through the Responder.
//
// With a cache: deterministic requests (greedy or seeded, per the cache policy) are
// keyed on the model, the rendered input and every output-affecting parameter;
// hits answer at once (X-Cache: HIT-L1|HIT-L2|HIT-L3), identical requests in flight
// share one generation (single-flight, streaming followers included), and finished
// answers fill every tier. Every generation response carries X-Cache.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/chat_template.h"

namespace infera::http {
class Server;
}
namespace infera::models {
class Registry;
}
namespace infera::cache {
class Cache;
enum class CachePolicy;
}
namespace infera::knowledge {
class Knowledge;
}
namespace infera::store {
class Store;
}

namespace infera::api {

class Embedder;
class PopularityLog;

struct GenerationConfig {
  // --chat-template: a format for every model whose declaration says "auto"; with
  // "auto" here too, each model's format is detected from its file.
  bool detect_chat_format = true;
  ChatFormat chat_format = ChatFormat::kPlain;  // when !detect_chat_format
  int default_max_tokens = 256;         // --default-max-tokens
  double request_timeout_s = 0;         // --request-timeout (0 = none); a request may ask for less
  std::string student_system_prompt;    // --student-prompt, /api/chat role "student"
  std::string teacher_system_prompt;    // --teacher-prompt, /api/chat role "teacher"
  int sessions_max = 10000;             // /api/chat sessions remembered
  int session_turns = 8;                // question/answer pairs kept per session
  int history_tokens = 1024;            // --history-tokens: most tokens of past turns in a prompt
  int64_t session_ttl_s = 0;            // --session-ttl: sessions idle this long are deleted (0 = kept)
  // --semantic-cache: single-turn questions may be answered by a cached answer to a
  // question that means the same (knowledge/semantic_cache.h); X-Cache: HIT-SEMANTIC.
  bool semantic_cache = false;
  double semantic_threshold = 0.95;     // --semantic-threshold: least cosine similarity
  std::string semantic_model;           // --semantic-model: the embedder (empty: first embedding model)
  int semantic_entries = 10000;         // --semantic-cache-size
};

// What the generation routes ask of, and tell, the rest of the server.
struct GenerationHooks {
  // Seconds for Retry-After while new generations must be refused (memory
  // pressure: 503 memory_pressure), nullopt while they are admitted. May be empty.
  std::function<std::optional<double>()> memory_pressure;
  // The overload level (guard::DegradationLadder: 0 normal, 1 shorten, 2 refuse-low);
  // may be empty (always 0). At 1+, low-priority requests (priority <= 0) that did not
  // set max_tokens get at most `shortened_max_tokens`; at 2, those the cache cannot
  // answer get 429 overloaded.
  std::function<int()> degradation_level;
  int shortened_max_tokens = 64;
  // Once per finished generation request: its model, end-to-end latency, time to
  // first token (< 0 when none was generated) and whether it succeeded (no 5xx).
  std::function<void(const std::string& model, double latency_ms, double ttft_ms, bool ok)> on_finished;
  // Retrieval for /api/chat's "collection" and the chat completions' "knowledge"
  // extension; null: such requests get 400.
  knowledge::Knowledge* knowledge = nullptr;
  // Where /api/chat sessions live (each turn committed before its answer is sent);
  // null: in memory only (bounded, lost on restart).
  store::Store* conversations = nullptr;
  // Embeds questions for the semantic cache; null: no semantic cache.
  Embedder* embedder = nullptr;
  // Counts the cacheable questions asked (without a session or retrieval), for
  // rewarm_popular after a restart; null: not counted.
  PopularityLog* popularity = nullptr;
};

// Registers the generation routes, and with a cache also POST /admin/cache/warm,
// POST /admin/cache/clear, GET /api/cache/stats and GET /api/v1/performance.
// Requests name their model ("model"; the registry's default when absent); the
// registry loads it on first use. REQUIRES: `models` and `cache` (may be null)
// outlive the server.
void register_generation_routes(http::Server& server, const GenerationConfig& config,
                                models::Registry& models, cache::Cache* cache,
                                cache::CachePolicy policy, GenerationHooks hooks = {});

// Runs each line of a JSONL file (chat completion or /api/chat request bodies)
// through the cache so later identical requests hit; returns how many were cached.
// Blocks until done. REQUIRES: a cache.
int warm_cache_from_file(const std::string& path, const GenerationConfig& config,
                         models::Registry& models, cache::Cache& cache, cache::CachePolicy policy,
                         std::string* error);

// Runs the request bodies (PopularityLog::top of an earlier run) through the cache one at
// a time at the lowest priority, each only once no model has requests running or
// waiting, so live requests never queue behind them; returns how many answers are now
// cached. Returns early when `stop()` turns true. REQUIRES: a cache.
int rewarm_popular(const std::vector<std::string>& bodies, const GenerationConfig& config,
                   models::Registry& models, cache::Cache& cache, cache::CachePolicy policy,
                   const std::function<bool()>& stop);

}  // namespace infera::api
