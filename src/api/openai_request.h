// Typed, validated forms of the OpenAI-compatible request bodies
// (/v1/chat/completions, /v1/completions) and of /api/chat. Every invalid field
// yields a message naming the field and what is allowed, for a 400 response.
#pragma once

#include <cstdint>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "api/chat_template.h"
#include "core/status.h"

namespace infera::api {

struct SamplingRequest {
  int max_tokens = 256;           // tokens to generate at most
  double temperature = 1.0;       // 0 = greedy
  double top_p = 1.0;
  int top_k = 0;                  // 0 = off
  double min_p = 0.0;
  double repetition_penalty = 1.0;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;  // up to 4 stop sequences
};

// infera extension: answer from a document collection (retrieval-augmented).
struct KnowledgeRequest {
  std::string collection;
  int top_k = 4;  // chunks put in the prompt, 1..20
};

struct GenerationRequest {
  bool chat = true;                    // messages (chat) or prompt (completion)
  std::string model;
  std::vector<ChatMessage> messages;   // chat
  std::string prompt;                  // completion
  SamplingRequest sampling;
  bool stream = false;
  bool include_usage = false;          // stream_options.include_usage
  std::string user;
  int priority = 0;                    // infera extension: higher is served first
  std::optional<double> timeout_s;     // infera extension: per-request deadline
  // Ollama's keep_alive: how long the model stays loaded after this request
  // ("5m", seconds, -1 forever, 0 unload when idle).
  std::optional<std::chrono::milliseconds> keep_alive;
  std::optional<KnowledgeRequest> knowledge;  // infera extension: {"collection", "top_k"}
};

// `default_max_tokens` applies when the request omits max_tokens.
Result<GenerationRequest> parse_chat_completion(const nlohmann::json& body, int default_max_tokens);
Result<GenerationRequest> parse_completion(const nlohmann::json& body, int default_max_tokens);

struct AssistantRequest {  // /api/chat
  std::string question;
  std::string role = "student";  // "student" or "teacher"
  std::string session_id;
  std::string model;             // empty: the server's default model
  std::optional<std::chrono::milliseconds> keep_alive;
  std::optional<KnowledgeRequest> knowledge;  // "collection" (and "top_k"): answer from it
};
Result<AssistantRequest> parse_assistant_chat(const nlohmann::json& body);

}  // namespace infera::api
