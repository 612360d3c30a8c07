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
#include <string>
#include <vector>

#include "api/chat_template.h"

namespace infera::http {
class Server;
}
namespace infera::sched {
class Scheduler;
}
namespace infera::cache {
class Cache;
enum class CachePolicy;
}

namespace infera::api {

struct GenerationConfig {
  std::string model_id;                 // name reported in responses and /v1/models
  std::string model_identity;           // identifies the model file for cache keys
  ChatFormat chat_format = ChatFormat::kPlain;
  int default_max_tokens = 256;         // --default-max-tokens
  double request_timeout_s = 0;         // --request-timeout (0 = none); a request may ask for less
  std::string student_system_prompt;    // --student-prompt, /api/chat role "student"
  std::string teacher_system_prompt;    // --teacher-prompt, /api/chat role "teacher"
  int sessions_max = 10000;             // /api/chat sessions remembered
  int session_turns = 8;                // question/answer pairs kept per session
};

// Text → token ids (with BOS, special tokens parsed), as the model expects.
using Tokenize = std::function<std::vector<int32_t>(const std::string& text)>;

// Registers the generation routes, and with a cache also POST /admin/cache/warm,
// POST /admin/cache/clear, GET /api/cache/stats and GET /api/v1/performance.
// REQUIRES: `scheduler` and `cache` (may be null) outlive the server.
void register_generation_routes(http::Server& server, const GenerationConfig& config,
                                sched::Scheduler& scheduler, Tokenize tokenize,
                                cache::Cache* cache, cache::CachePolicy policy);

// Runs each line of a JSONL file (chat completion or /api/chat request bodies)
// through the cache so later identical requests hit; returns how many were cached.
// Blocks until done. REQUIRES: a cache.
int warm_cache_from_file(const std::string& path, const GenerationConfig& config,
                         sched::Scheduler& scheduler, const Tokenize& tokenize,
                         cache::Cache& cache, cache::CachePolicy policy, std::string* error);

}  // namespace infera::api
