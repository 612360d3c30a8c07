// libFuzzer target for the JSON request validation of every generation endpoint:
// the input is a request body, parsed as the server parses it (parse_json_object)
// and then validated as a chat completion, a completion and an /api/chat request.
// Each must either accept it, with every field inside its documented range, or
// reject it with a message that makes a valid OpenAI-shaped error body. Also checks
// append_json_string against nlohmann's dump for the body as a string. Build and
// run: docs/FUZZING.md.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "api/json_body.h"
#include "api/openai_request.h"
#include "http/server.h"
#include "require.h"

namespace {

using infera::Status;
using nlohmann::json;

constexpr int kDefaultMaxTokens = 77;


// An error answer must be JSON whose message is the status's message.
void check_error(const Status& status) {
  require(!status.ok());
  require(!status.message().empty());
  const infera::http::Response r = infera::http::Response::error(400, status.message());
  const json doc = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  require(doc.is_object());
  require(doc["error"]["message"] == status.message());
}

void check_sampling(const infera::api::GenerationRequest& g) {
  const auto& s = g.sampling;
  require(s.max_tokens >= 1 && s.max_tokens <= (1 << 20));
  require(s.temperature >= 0 && s.temperature <= 2);
  require(s.top_p >= 0 && s.top_p <= 1);
  require(s.top_k >= 0 && s.top_k <= (1 << 20));
  require(s.min_p >= 0 && s.min_p <= 1);
  require(s.repetition_penalty >= 0.01 && s.repetition_penalty <= 10);
  require(s.presence_penalty >= -2 && s.presence_penalty <= 2);
  require(s.frequency_penalty >= -2 && s.frequency_penalty <= 2);
  require(s.stop.size() <= 4);
  for (const auto& stop : s.stop) require(!stop.empty());
  require(g.priority >= -100 && g.priority <= 100);
  if (g.timeout_s) require(*g.timeout_s >= 0.001 && *g.timeout_s <= 86400);
  if (g.keep_alive) require(g.keep_alive->count() >= -1);
}

void check_generation(const infera::Result<infera::api::GenerationRequest>& r, bool chat) {
  if (!r.ok()) return check_error(r.status());
  require(r->chat == chat);
  check_sampling(*r);
  if (chat) {
    require(!r->messages.empty());
    for (const auto& m : r->messages) {
      require(m.role == "system" || m.role == "user" || m.role == "assistant");
    }
  }
}

// append_json_string promises nlohmann's bytes for valid UTF-8.
void check_json_string(std::string_view text) {
  std::string expected;
  try {
    expected = json(std::string(text)).dump();
  } catch (const json::type_error&) {
    return;  // invalid UTF-8: no promise beyond not crashing
  }
  std::string out;
  infera::api::append_json_string(out, text);
  require(out == expected);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  infera::http::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.body.assign(reinterpret_cast<const char*>(data), size);
  check_json_string(req.body);

  infera::http::Response error;
  const auto body = infera::api::parse_json_object(req, error);
  if (!body) {
    require(error.status == 400);
    require(json::parse(error.body, nullptr, false).is_object());
    return 0;
  }
  require(body->is_object());
  check_generation(infera::api::parse_chat_completion(*body, kDefaultMaxTokens), true);
  check_generation(infera::api::parse_completion(*body, kDefaultMaxTokens), false);
  const auto assistant = infera::api::parse_assistant_chat(*body);
  if (!assistant.ok()) {
    check_error(assistant.status());
  } else {
    require(assistant->role == "student" || assistant->role == "teacher");
    require(assistant->session_id.size() <= 256);
    require(assistant->question.find_first_not_of(" \t\r\n") != std::string::npos);
  }
  return 0;
}
