#include "api/answer_sinks.h"

#include <algorithm>

#include <cmath>

#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "api/json_body.h"

namespace infera::api {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A cached answer: "o2", prompt and completion token counts (4 bytes each, little
// endian), the finish reason's length (1 byte) and bytes, then the text. Read with a
// few copies, no parsing; anything else (damaged, older format) is not an answer.
constexpr std::string_view kValueMagic = "o2";

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t get_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

json usage_json(const Outcome& o) {
  return {{"prompt_tokens", o.prompt_tokens},
          {"completion_tokens", o.completion_tokens},
          {"total_tokens", o.prompt_tokens + o.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", o.cached_prompt_tokens}}}};
}

void append_usage(std::string& out, const Outcome& o) {
  out += fmt::format(
      R"({{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{},"prompt_tokens_details":{{"cached_tokens":{}}}}})",
      o.prompt_tokens, o.completion_tokens, o.prompt_tokens + o.completion_tokens,
      o.cached_prompt_tokens);
}

http::Response error_response(const Outcome& o) {
  const char* type = o.error_status == 429   ? "rate_limit_error"
                     : o.error_status >= 500 ? "server_error"
                                             : "invalid_request_error";
  http::Response r = http::Response::error(o.error_status, o.error, type, o.error_code);
  if (o.error_status == 429 || o.retry_after_s > 0) {
    r.headers.emplace_back("Retry-After",
                           std::to_string(std::max<int64_t>(1, static_cast<int64_t>(std::ceil(o.retry_after_s)))));
  }
  return r;
}

// A 200 JSON answer with its X-Cache header.
void send_answer(http::Responder& responder, std::string body, const std::string& x_cache,
                 const http::Headers& extra = {}) {
  http::Response r = http::Response::json(200, std::move(body));
  r.headers.emplace_back("X-Cache", x_cache);
  for (const auto& h : extra) r.headers.push_back(h);
  responder.send(std::move(r));
}

// A whole OpenAI response (chat.completion or text_completion).
class OpenAiWholeSink final : public Sink {
 public:
  OpenAiWholeSink(http::Responder r, bool chat, std::string id, std::string model,
                  std::string sources)
      : responder_(std::move(r)),
        chat_(chat),
        id_(std::move(id)),
        model_(std::move(model)),
        sources_(std::move(sources)) {}
  void start(const char* x_cache) override { x_cache_ = x_cache; }
  void text(std::string_view) override {}
  void done(const Outcome& o) override {
    if (o.error_status != 0) return responder_.send(error_response(o));
    std::string out;
    out.reserve(o.text.size() + id_.size() + model_.size() + 320);
    out += R"({"id":)";
    append_json_string(out, id_);
    out += chat_ ? R"(,"object":"chat.completion","created":)"
                 : R"(,"object":"text_completion","created":)";
    out += std::to_string(unix_now());
    out += R"(,"model":)";
    append_json_string(out, model_);
    out += R"(,"choices":[{"index":0,)";
    out += chat_ ? R"("message":{"role":"assistant","content":)" : R"("text":)";
    append_json_string(out, o.text);
    if (chat_) out += '}';
    out += R"(,"logprobs":null,"finish_reason":)";
    append_json_string(out, o.finish_reason);
    out += R"(}],"usage":)";
    append_usage(out, o);
    if (!sources_.empty()) {
      out += R"(,"sources":)";
      out += sources_;
    }
    out += '}';
    send_answer(responder_, std::move(out), x_cache_, headers_);
  }
  bool gone() const override { return responder_.client_gone(); }
  void add_header(std::string name, std::string value) override {
    headers_.emplace_back(std::move(name), std::move(value));
  }

 private:
  http::Responder responder_;
  bool chat_;
  std::string id_, model_, sources_;
  std::string x_cache_ = "MISS";
  http::Headers headers_;
};

// An OpenAI SSE stream. The stream (status 200) begins with the first text or the
// end; a request refused before any output still gets its proper status.
class OpenAiStreamSink final : public Sink {
 public:
  OpenAiStreamSink(http::Responder r, bool chat, std::string id, std::string model, bool usage,
                   std::string sources)
      : responder_(std::move(r)),
        chat_(chat),
        id_(std::move(id)),
        model_(std::move(model)),
        sources_(std::move(sources)),
        include_usage_(usage),
        created_(unix_now()) {}
  void start(const char* x_cache) override { x_cache_ = x_cache; }
  void text(std::string_view piece) override {
    begin();
    json choice = {{"index", 0}, {"finish_reason", nullptr}};
    if (chat_) {
      choice["delta"] = {{"content", piece}};
    } else {
      choice["text"] = piece;
    }
    responder_.write(chunk(json::array({std::move(choice)})));
  }
  void done(const Outcome& o) override {
    if (o.error_status != 0 && !begun_) return responder_.send(error_response(o));
    begin();
    if (o.error_status != 0) {
      json e = {
          {"error", {{"message", o.error}, {"type", "server_error"}, {"code", o.error_code}}}};
      responder_.write("data: " + e.dump() + "\n\n");
    } else {
      json choice = {{"index", 0}, {"finish_reason", o.finish_reason}};
      if (chat_) {
        choice["delta"] = json::object();
      } else {
        choice["text"] = "";
      }
      responder_.write(chunk(json::array({std::move(choice)})));
      if (include_usage_) responder_.write(chunk(json::array(), usage_json(o)));
    }
    responder_.write("data: [DONE]\n\n");
    responder_.end();
  }
  bool gone() const override { return responder_.client_gone(); }
  bool sent_text() const override { return begun_; }
  void add_header(std::string name, std::string value) override {
    headers_.emplace_back(std::move(name), std::move(value));
  }

 private:
  void begin() {
    if (begun_) return;
    begun_ = true;
    http::Headers headers = headers_;
    headers.emplace_back("X-Cache", x_cache_);
    responder_.begin_stream(200, "text/event-stream", std::move(headers));
    if (chat_) {
      json sources = sources_.empty() ? json(nullptr) : json::parse(sources_, nullptr, false);
      responder_.write(chunk(json::array({{{"index", 0},
                                           {"delta", {{"role", "assistant"}, {"content", ""}}},
                                           {"finish_reason", nullptr}}}),
                             nullptr, std::move(sources)));
    }
  }
  std::string chunk(json choices, json usage = nullptr, json sources = nullptr) const {
    json c = {{"id", id_},
              {"object", chat_ ? "chat.completion.chunk" : "text_completion"},
              {"created", created_},
              {"model", model_},
              {"choices", std::move(choices)}};
    if (!usage.is_null()) c["usage"] = std::move(usage);
    if (!sources.is_null() && !sources.is_discarded()) c["sources"] = std::move(sources);
    return "data: " + c.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
  }

  http::Responder responder_;
  bool chat_;
  std::string id_, model_, sources_;
  bool include_usage_;
  int64_t created_;
  std::string x_cache_ = "MISS";
  http::Headers headers_;
  bool begun_ = false;
};

// The /api/chat answer.
class AssistantSink final : public Sink {
 public:
  AssistantSink(http::Responder r, std::string model, AssistantTurn turn)
      : responder_(std::move(r)), model_(std::move(model)), turn_(std::move(turn)), start_(Clock::now()) {}
  void start(const char* x_cache) override { x_cache_ = x_cache; }
  void text(std::string_view) override {}
  void done(const Outcome& o) override {
    if (o.error_status != 0) return responder_.send(error_response(o));
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - start_).count();
    std::string out;
    out.reserve(o.text.size() + model_.size() + turn_.session_id.size() + turn_.sources_json.size() + 160);
    out += R"({"answer":)";
    append_json_string(out, o.text);
    out += R"(,"model":)";
    append_json_string(out, model_);
    out += fmt::format(R"(,"latency_ms":{:.3f},"tokens":{},"cached":{},"finish_reason":)", ms,
                       o.completion_tokens, o.from_cache ? "true" : "false");
    append_json_string(out, o.finish_reason);
    out += fmt::format(R"(,"usage":{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{}}})",
                       o.prompt_tokens, o.completion_tokens, o.prompt_tokens + o.completion_tokens);
    if (!turn_.session_id.empty()) {
      out += R"(,"session_id":)";
      append_json_string(out, turn_.session_id);
    }
    if (!turn_.sources_json.empty()) {
      out += R"(,"sources":)";
      out += turn_.sources_json;
    }
    out += '}';
    auto send = [responder = responder_, body = std::move(out), x_cache = x_cache_,
                 headers = headers_]() mutable { send_answer(responder, std::move(body), x_cache, headers); };
    if (!turn_.record) return send();
    turn_.record(o, std::move(send));
  }
  bool gone() const override { return responder_.client_gone(); }
  void add_header(std::string name, std::string value) override {
    headers_.emplace_back(std::move(name), std::move(value));
  }

 private:
  http::Responder responder_;
  std::string model_;
  AssistantTurn turn_;
  http::Headers headers_;
  Clock::time_point start_;
  std::string x_cache_ = "MISS";
};

// Cache warming: no client; reports the outcome to a callback.
class CallbackSink final : public Sink {
 public:
  explicit CallbackSink(std::function<void(const Outcome&)> on_done)
      : on_done_(std::move(on_done)) {}
  void start(const char*) override {}
  void text(std::string_view) override {}
  void done(const Outcome& o) override { on_done_(o); }
  bool gone() const override { return false; }

 private:
  std::function<void(const Outcome&)> on_done_;
};

}  // namespace


std::string encode(const Outcome& o) {
  std::string out;
  out.reserve(11 + o.finish_reason.size() + o.text.size());
  out.append(kValueMagic);
  put_u32(out, static_cast<uint32_t>(o.prompt_tokens));
  put_u32(out, static_cast<uint32_t>(o.completion_tokens));
  out.push_back(static_cast<char>(o.finish_reason.size()));
  out.append(o.finish_reason);
  out.append(o.text);
  return out;
}

std::optional<Outcome> decode(const std::string& value) {
  constexpr size_t kHead = 2 + 4 + 4 + 1;
  if (value.size() < kHead || value.compare(0, 2, kValueMagic) != 0) return std::nullopt;
  const size_t reason_len = static_cast<unsigned char>(value[10]);
  if (value.size() < kHead + reason_len) return std::nullopt;
  Outcome o;
  o.prompt_tokens = static_cast<int>(get_u32(value.data() + 2));
  o.completion_tokens = static_cast<int>(get_u32(value.data() + 6));
  o.finish_reason.assign(value, kHead, reason_len);
  o.text.assign(value, kHead + reason_len);
  return o;
}

Outcome failure(int status, std::string code, std::string message) {
  Outcome o;
  o.error_status = status;
  o.error_code = std::move(code);
  o.error = std::move(message);
  return o;
}

std::shared_ptr<Sink> make_openai_sink(http::Responder responder, bool chat, bool stream,
                                       std::string id, std::string model, bool include_usage,
                                       std::string sources_json) {
  if (stream) {
    return std::make_shared<OpenAiStreamSink>(std::move(responder), chat, std::move(id),
                                              std::move(model), include_usage, std::move(sources_json));
  }
  return std::make_shared<OpenAiWholeSink>(std::move(responder), chat, std::move(id),
                                           std::move(model), std::move(sources_json));
}

std::shared_ptr<Sink> make_assistant_sink(http::Responder responder, std::string model,
                                          AssistantTurn turn) {
  return std::make_shared<AssistantSink>(std::move(responder), std::move(model), std::move(turn));
}

std::shared_ptr<Sink> make_callback_sink(std::function<void(const Outcome&)> on_done) {
  return std::make_shared<CallbackSink>(std::move(on_done));
}

}  // namespace infera::api
