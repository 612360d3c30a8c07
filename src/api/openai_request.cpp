#include "api/openai_request.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>

#include "models/models_file.h"

namespace infera::api {
namespace {

using nlohmann::json;

Status field_error(std::string_view field, std::string_view what) {
  return Status::InvalidArgument(fmt::format("'{}' {}", field, what));
}

// Reads an optional number field within [lo, hi].
Status read_number(const json& body, const char* field, double lo, double hi, double& out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return Status::Ok();
  if (!it->is_number()) return field_error(field, "must be a number");
  double v = it->get<double>();
  if (!std::isfinite(v) || v < lo || v > hi) {
    return field_error(field, fmt::format("must be between {} and {} (got {})", lo, hi, v));
  }
  out = v;
  return Status::Ok();
}

Status read_int(const json& body, const char* field, int64_t lo, int64_t hi, int& out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return Status::Ok();
  if (!it->is_number_integer()) return field_error(field, "must be an integer");
  int64_t v = it->get<int64_t>();
  if (v < lo || v > hi) {
    return field_error(field, fmt::format("must be between {} and {} (got {})", lo, hi, v));
  }
  out = static_cast<int>(v);
  return Status::Ok();
}

Status read_string(const json& body, const char* field, std::string& out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return Status::Ok();
  if (!it->is_string()) return field_error(field, "must be a string");
  out = it->get<std::string>();
  return Status::Ok();
}

Status read_bool(const json& body, const char* field, bool& out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return Status::Ok();
  if (!it->is_boolean()) return field_error(field, "must be true or false");
  out = it->get<bool>();
  return Status::Ok();
}

#define INFERA_RETURN_IF_ERROR(expr)   \
  do {                                 \
    Status _st = (expr);               \
    if (!_st.ok()) return _st;         \
  } while (0)

Status read_top_k(const json& body, const char* field, KnowledgeRequest& k) {
  return read_int(body, field, 1, 20, k.top_k);
}

Status read_keep_alive(const json& body, std::optional<std::chrono::milliseconds>& out) {
  auto it = body.find("keep_alive");
  if (it == body.end() || it->is_null()) return Status::Ok();
  std::string text;
  if (it->is_string()) {
    text = it->get<std::string>();
  } else if (it->is_number()) {
    text = fmt::format("{}", it->get<double>());
  } else {
    return field_error("keep_alive", "must be a duration such as \"5m\" or a number of seconds");
  }
  auto parsed = models::parse_keep_alive(text);
  if (!parsed.ok()) return field_error("keep_alive", parsed.status().message());
  out = *parsed;
  return Status::Ok();
}

Status parse_common(const json& body, int default_max_tokens, GenerationRequest& r) {
  if (!body.is_object()) return Status::InvalidArgument("request body must be a JSON object");
  INFERA_RETURN_IF_ERROR(read_string(body, "model", r.model));
  SamplingRequest& s = r.sampling;
  s.max_tokens = default_max_tokens;
  INFERA_RETURN_IF_ERROR(read_int(body, "max_tokens", 1, 1 << 20, s.max_tokens));
  INFERA_RETURN_IF_ERROR(read_int(body, "max_completion_tokens", 1, 1 << 20, s.max_tokens));
  INFERA_RETURN_IF_ERROR(read_number(body, "temperature", 0, 2, s.temperature));
  INFERA_RETURN_IF_ERROR(read_number(body, "top_p", 0, 1, s.top_p));
  INFERA_RETURN_IF_ERROR(read_int(body, "top_k", 0, 1 << 20, s.top_k));
  INFERA_RETURN_IF_ERROR(read_number(body, "min_p", 0, 1, s.min_p));
  INFERA_RETURN_IF_ERROR(read_number(body, "repetition_penalty", 0.01, 10, s.repetition_penalty));
  INFERA_RETURN_IF_ERROR(read_number(body, "presence_penalty", -2, 2, s.presence_penalty));
  INFERA_RETURN_IF_ERROR(read_number(body, "frequency_penalty", -2, 2, s.frequency_penalty));
  if (auto it = body.find("seed"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer()) return field_error("seed", "must be an integer");
    s.seed = it->get<uint64_t>();
  }
  if (auto it = body.find("stop"); it != body.end() && !it->is_null()) {
    if (it->is_string()) {
      s.stop.push_back(it->get<std::string>());
    } else if (it->is_array()) {
      if (it->size() > 4) return field_error("stop", "may hold at most 4 sequences");
      for (const auto& e : *it) {
        if (!e.is_string()) return field_error("stop", "must be a string or an array of strings");
        s.stop.push_back(e.get<std::string>());
      }
    } else {
      return field_error("stop", "must be a string or an array of strings");
    }
    for (const auto& stop : s.stop) {
      if (stop.empty()) return field_error("stop", "must not contain empty strings");
    }
  }
  INFERA_RETURN_IF_ERROR(read_bool(body, "stream", r.stream));
  if (auto it = body.find("stream_options"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) return field_error("stream_options", "must be an object");
    INFERA_RETURN_IF_ERROR(read_bool(*it, "include_usage", r.include_usage));
  }
  INFERA_RETURN_IF_ERROR(read_string(body, "user", r.user));
  INFERA_RETURN_IF_ERROR(read_int(body, "priority", -100, 100, r.priority));
  double timeout = 0;
  INFERA_RETURN_IF_ERROR(read_number(body, "timeout", 0.001, 86400, timeout));
  if (timeout > 0) r.timeout_s = timeout;
  INFERA_RETURN_IF_ERROR(read_keep_alive(body, r.keep_alive));
  if (auto it = body.find("knowledge"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) {
      return field_error("knowledge", "must be an object: {\"collection\": \"...\", \"top_k\": 4}");
    }
    KnowledgeRequest k;
    INFERA_RETURN_IF_ERROR(read_string(*it, "collection", k.collection));
    if (k.collection.empty()) return field_error("knowledge.collection", "is required");
    INFERA_RETURN_IF_ERROR(read_top_k(*it, "top_k", k));
    r.knowledge = std::move(k);
  }
  if (auto it = body.find("n"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<int64_t>() != 1) {
      return field_error("n", "must be 1 (one choice per request is supported)");
    }
  }
  return Status::Ok();
}

}  // namespace

Result<GenerationRequest> parse_chat_completion(const json& body, int default_max_tokens) {
  GenerationRequest r;
  r.chat = true;
  INFERA_RETURN_IF_ERROR(parse_common(body, default_max_tokens, r));
  auto it = body.find("messages");
  if (it == body.end()) return field_error("messages", "is required");
  if (!it->is_array()) return field_error("messages", "must be an array");
  if (it->empty()) return field_error("messages", "must contain at least one message");
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    std::string where = fmt::format("messages[{}]", i);
    if (!m.is_object()) return field_error(where, "must be an object");
    ChatMessage msg;
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) return field_error(where + ".role", "must be a string");
    msg.role = role->get<std::string>();
    if (msg.role == "developer") msg.role = "system";
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant") {
      return field_error(where + ".role", "must be system, user or assistant (got '" + msg.role + "')");
    }
    auto content = m.find("content");
    if (content == m.end() || content->is_null()) return field_error(where + ".content", "is required");
    if (content->is_string()) {
      msg.content = content->get<std::string>();
    } else if (content->is_array()) {
      // Content parts: only text parts are supported.
      for (const auto& part : *content) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
            !part["text"].is_string()) {
          return field_error(where + ".content", "parts must be {\"type\":\"text\",\"text\":...}");
        }
        msg.content += part["text"].get<std::string>();
      }
    } else {
      return field_error(where + ".content", "must be a string or an array of text parts");
    }
    r.messages.push_back(std::move(msg));
  }
  return r;
}

Result<GenerationRequest> parse_completion(const json& body, int default_max_tokens) {
  GenerationRequest r;
  r.chat = false;
  INFERA_RETURN_IF_ERROR(parse_common(body, default_max_tokens, r));
  auto it = body.find("prompt");
  if (it == body.end()) return field_error("prompt", "is required");
  if (it->is_string()) {
    r.prompt = it->get<std::string>();
  } else if (it->is_array() && it->size() == 1 && (*it)[0].is_string()) {
    r.prompt = (*it)[0].get<std::string>();
  } else {
    return field_error("prompt", "must be a string");
  }
  return r;
}

Result<AssistantRequest> parse_assistant_chat(const json& body) {
  AssistantRequest r;
  if (!body.is_object()) return Status::InvalidArgument("request body must be a JSON object");
  auto q = body.find("question");
  if (q == body.end() || !q->is_string()) return field_error("question", "is required and must be a string");
  r.question = q->get<std::string>();
  if (r.question.find_first_not_of(" \t\r\n") == std::string::npos) {
    return field_error("question", "must not be empty");
  }
  INFERA_RETURN_IF_ERROR(read_string(body, "role", r.role));
  if (r.role != "student" && r.role != "teacher") {
    return field_error("role", "must be 'student' or 'teacher' (got '" + r.role + "')");
  }
  INFERA_RETURN_IF_ERROR(read_string(body, "session_id", r.session_id));
  if (r.session_id.size() > 256) return field_error("session_id", "must be at most 256 characters");
  INFERA_RETURN_IF_ERROR(read_string(body, "model", r.model));
  INFERA_RETURN_IF_ERROR(read_keep_alive(body, r.keep_alive));
  if (body.contains("collection")) {
    KnowledgeRequest k;
    INFERA_RETURN_IF_ERROR(read_string(body, "collection", k.collection));
    if (k.collection.empty()) return field_error("collection", "must not be empty");
    INFERA_RETURN_IF_ERROR(read_top_k(body, "top_k", k));
    r.knowledge = std::move(k);
  } else if (body.contains("top_k")) {
    return field_error("top_k", "needs a 'collection' to retrieve from");
  }
  return r;
}

}  // namespace infera::api
