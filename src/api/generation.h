// The generation endpoints: /v1/chat/completions, /v1/completions (OpenAI-
// compatible, SSE streaming), /v1/models and the assistant endpoint /api/chat.
// Requests are validated into typed requests, rendered with the model's chat
// template, tokenized, and queued on the scheduler; answers stream back from the
// engine loop through the HTTP Responder.
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

namespace infera::api {

struct GenerationConfig {
  std::string model_id;                 // name reported in responses and /v1/models
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

// Registers the generation routes. REQUIRES: `scheduler` outlives the server.
void register_generation_routes(http::Server& server, const GenerationConfig& config,
                                sched::Scheduler& scheduler, Tokenize tokenize);

}  // namespace infera::api
