#include "api/generation.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <list>
#include <mutex>
#include <unordered_map>

#include "api/json_body.h"
#include "api/openai_request.h"
#include "http/server.h"
#include "sched/scheduler.h"

namespace infera::api {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const char* openai_finish_reason(sched::FinishReason r) {
  switch (r) {
    case sched::FinishReason::kStop: return "stop";
    case sched::FinishReason::kLength: return "length";
    case sched::FinishReason::kTimeout: return "timeout";
    case sched::FinishReason::kCancelled: return "cancelled";
    case sched::FinishReason::kError: return "error";
  }
  return "stop";
}

json usage_json(const sched::Completion& c) {
  return {{"prompt_tokens", c.prompt_tokens},
          {"completion_tokens", c.completion_tokens},
          {"total_tokens", c.prompt_tokens + c.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", c.cached_prompt_tokens}}}};
}

sched::SamplingParams to_sampling(const SamplingRequest& s) {
  sched::SamplingParams p;
  p.temperature = static_cast<float>(s.temperature);
  p.top_p = static_cast<float>(s.top_p);
  p.top_k = s.top_k;
  p.min_p = static_cast<float>(s.min_p);
  p.repetition_penalty = static_cast<float>(s.repetition_penalty);
  p.presence_penalty = static_cast<float>(s.presence_penalty);
  p.frequency_penalty = static_cast<float>(s.frequency_penalty);
  p.has_seed = s.seed.has_value();
  p.seed = s.seed.value_or(0);
  return p;
}

// Remembers the last turns of each /api/chat session (bounded, least recently
// used sessions are forgotten first). Thread-safe.
class SessionStore {
 public:
  SessionStore(int max_sessions, int max_turns) : max_sessions_(max_sessions), max_turns_(max_turns) {}

  std::vector<ChatMessage> history(const std::string& id) {
    std::lock_guard lock(mu_);
    auto it = index_.find(id);
    if (it == index_.end()) return {};
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->turns;
  }

  void append(const std::string& id, const std::string& question, const std::string& answer) {
    std::lock_guard lock(mu_);
    auto it = index_.find(id);
    if (it == index_.end()) {
      lru_.push_front(Session{id, {}});
      it = index_.emplace(id, lru_.begin()).first;
      if (static_cast<int>(lru_.size()) > max_sessions_) {
        index_.erase(lru_.back().id);
        lru_.pop_back();
      }
    } else {
      lru_.splice(lru_.begin(), lru_, it->second);
    }
    auto& turns = it->second->turns;
    turns.push_back({"user", question});
    turns.push_back({"assistant", answer});
    while (static_cast<int>(turns.size()) > 2 * max_turns_) turns.erase(turns.begin(), turns.begin() + 2);
  }

 private:
  struct Session {
    std::string id;
    std::vector<ChatMessage> turns;
  };
  std::mutex mu_;
  std::list<Session> lru_;
  std::unordered_map<std::string, std::list<Session>::iterator> index_;
  int max_sessions_;
  int max_turns_;
};

class GenerationRoutes {
 public:
  GenerationRoutes(const GenerationConfig& config, sched::Scheduler& scheduler, Tokenize tokenize)
      : config_(config),
        scheduler_(scheduler),
        tokenize_(std::move(tokenize)),
        sessions_(config.sessions_max, config.session_turns),
        created_(unix_now()) {}

  void chat_completions(const http::Request& req, http::Responder responder) {
    handle_openai(req, std::move(responder), /*chat=*/true);
  }
  void completions(const http::Request& req, http::Responder responder) {
    handle_openai(req, std::move(responder), /*chat=*/false);
  }

  http::Response models(const http::Request&) const {
    json data = json::array();
    data.push_back({{"id", config_.model_id}, {"object", "model"}, {"created", created_},
                    {"owned_by", "infera"}});
    return http::Response::json(200, json{{"object", "list"}, {"data", data}}.dump());
  }

  void assistant_chat(const http::Request& req, http::Responder responder) {
    http::Response error;
    auto body = parse_json_object(req, error);
    if (!body) return responder.send(error);
    auto parsed = parse_assistant_chat(*body);
    if (!parsed.ok()) return responder.send(invalid(parsed.status().message()));
    AssistantRequest a = std::move(parsed).value();
    std::vector<ChatMessage> messages;
    const std::string& system =
        a.role == "teacher" ? config_.teacher_system_prompt : config_.student_system_prompt;
    if (!system.empty()) messages.push_back({"system", system});
    if (!a.session_id.empty()) {
      auto past = sessions_.history(a.session_id);
      messages.insert(messages.end(), past.begin(), past.end());
    }
    messages.push_back({"user", a.question});

    auto job = std::make_unique<sched::Job>();
    job->prompt = tokenize_(render_chat(config_.chat_format, messages));
    job->max_tokens = config_.default_max_tokens;
    job->sampling.temperature = 0;  // deterministic answers: repeat questions hit the cache
    set_deadline(*job, std::nullopt);
    auto answer = std::make_shared<std::string>();
    const auto start = Clock::now();
    job->is_cancelled = [responder] { return responder.client_gone(); };
    job->on_text = [answer](std::string_view t) { answer->append(t); };
    job->on_done = [this, responder, answer, start, a](const sched::Completion& c) mutable {
      if (c.reason == sched::FinishReason::kError) {
        return responder.send(http::Response::error(500, c.error, "server_error", "engine_error"));
      }
      if (!a.session_id.empty()) sessions_.append(a.session_id, a.question, *answer);
      double latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      json out = {{"answer", *answer},
                  {"model", config_.model_id},
                  {"latency_ms", std::round(latency_ms * 1000) / 1000},
                  {"tokens", c.completion_tokens},
                  {"cached", false},
                  {"finish_reason", openai_finish_reason(c.reason)}};
      if (!a.session_id.empty()) out["session_id"] = a.session_id;
      responder.send(http::Response::json(200, out.dump()));
    };
    submit(std::move(job), responder);
  }

 private:
  static http::Response invalid(const std::string& message, const char* code = "invalid_value") {
    return http::Response::error(400, message, "invalid_request_error", code);
  }

  void set_deadline(sched::Job& job, std::optional<double> requested_s) const {
    double limit = config_.request_timeout_s;
    if (requested_s && (limit <= 0 || *requested_s < limit)) limit = *requested_s;
    if (limit > 0) {
      job.deadline = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(limit * 1e6));
    }
  }

  void submit(std::unique_ptr<sched::Job> job, http::Responder& responder) {
    Status st = scheduler_.submit(std::move(job));
    if (st.ok()) return;
    if (st.code() == StatusCode::kResourceExhausted) {
      http::Response r = http::Response::error(429, st.message(), "rate_limit_error", "queue_full");
      r.headers.emplace_back("Retry-After", "1");
      return responder.send(std::move(r));
    }
    responder.send(invalid(st.message(), "context_length_exceeded"));
  }

  void handle_openai(const http::Request& req, http::Responder responder, bool chat) {
    http::Response error;
    auto body = parse_json_object(req, error);
    if (!body) return responder.send(error);
    auto parsed = chat ? parse_chat_completion(*body, config_.default_max_tokens)
                       : parse_completion(*body, config_.default_max_tokens);
    if (!parsed.ok()) return responder.send(invalid(parsed.status().message()));
    GenerationRequest g = std::move(parsed).value();
    if (!g.model.empty() && g.model != config_.model_id) {
      return responder.send(http::Response::error(
          400, fmt::format("'model': unknown model '{}'; this server serves '{}'", g.model,
                           config_.model_id),
          "invalid_request_error", "model_not_found"));
    }
    auto job = std::make_unique<sched::Job>();
    job->prompt = tokenize_(chat ? render_chat(config_.chat_format, g.messages) : g.prompt);
    job->max_tokens = g.sampling.max_tokens;
    job->sampling = to_sampling(g.sampling);
    job->stop = g.sampling.stop;
    job->priority = g.priority;
    set_deadline(*job, g.timeout_s);
    job->is_cancelled = [responder] { return responder.client_gone(); };

    auto id = std::make_shared<std::string>((chat ? "chatcmpl-" : "cmpl-") + req.request_id);
    const char* object = chat ? "chat.completion" : "text_completion";
    const int64_t created = unix_now();
    const std::string model = config_.model_id;
    if (g.stream) {
      const char* chunk_object = chat ? "chat.completion.chunk" : "text_completion";
      auto chunk = [=](json choice) {
        json c = {{"id", *id}, {"object", chunk_object}, {"created", created}, {"model", model},
                  {"choices", json::array({std::move(choice)})}};
        return "data: " + c.dump() + "\n\n";
      };
      responder.begin_stream(200, "text/event-stream");
      if (chat) {
        responder.write(chunk({{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}},
                               {"finish_reason", nullptr}}));
      }
      job->on_text = [responder, chunk, chat](std::string_view text) mutable {
        json choice = {{"index", 0}, {"finish_reason", nullptr}};
        if (chat) {
          choice["delta"] = {{"content", text}};
        } else {
          choice["text"] = text;
        }
        responder.write(chunk(std::move(choice)));
      };
      const bool include_usage = g.include_usage;
      job->on_done = [=](const sched::Completion& c) mutable {
        if (c.reason == sched::FinishReason::kError) {
          json e = {{"error", {{"message", c.error}, {"type", "server_error"}, {"code", "engine_error"}}}};
          responder.write("data: " + e.dump() + "\n\n");
        } else {
          json choice = {{"index", 0}, {"finish_reason", openai_finish_reason(c.reason)}};
          if (chat) {
            choice["delta"] = json::object();
          } else {
            choice["text"] = "";
          }
          responder.write(chunk(std::move(choice)));
          if (include_usage) {
            json u = {{"id", *id}, {"object", chunk_object}, {"created", created}, {"model", model},
                      {"choices", json::array()}, {"usage", usage_json(c)}};
            responder.write("data: " + u.dump() + "\n\n");
          }
        }
        responder.write("data: [DONE]\n\n");
        responder.end();
      };
    } else {
      auto text = std::make_shared<std::string>();
      job->on_text = [text](std::string_view t) { text->append(t); };
      job->on_done = [=](const sched::Completion& c) mutable {
        if (c.reason == sched::FinishReason::kError) {
          return responder.send(http::Response::error(500, c.error, "server_error", "engine_error"));
        }
        json choice = {{"index", 0}, {"finish_reason", openai_finish_reason(c.reason)}};
        if (chat) {
          choice["message"] = {{"role", "assistant"}, {"content", *text}};
        } else {
          choice["text"] = *text;
        }
        choice["logprobs"] = nullptr;
        json out = {{"id", *id}, {"object", object}, {"created", created}, {"model", model},
                    {"choices", json::array({std::move(choice)})}, {"usage", usage_json(c)}};
        responder.send(http::Response::json(200, out.dump()));
      };
    }
    if (g.stream) {
      Status st = scheduler_.submit(std::move(job));
      if (!st.ok()) {
        // Headers are out already: report in the stream.
        json e = {{"error", {{"message", st.message()}, {"type", "invalid_request_error"},
                             {"code", st.code() == StatusCode::kResourceExhausted ? "queue_full"
                                                                                 : "invalid_value"}}}};
        responder.write("data: " + e.dump() + "\n\n");
        responder.end();
      }
      return;
    }
    submit(std::move(job), responder);
  }

  GenerationConfig config_;
  sched::Scheduler& scheduler_;
  Tokenize tokenize_;
  SessionStore sessions_;
  int64_t created_;
};

}  // namespace

void register_generation_routes(http::Server& server, const GenerationConfig& config,
                                sched::Scheduler& scheduler, Tokenize tokenize) {
  auto routes = std::make_shared<GenerationRoutes>(config, scheduler, std::move(tokenize));
  server.route("POST", "/v1/chat/completions",
               http::Handler([routes](const http::Request& r, http::Responder p) {
                 routes->chat_completions(r, std::move(p));
               }));
  server.route("POST", "/v1/completions", http::Handler([routes](const http::Request& r, http::Responder p) {
                 routes->completions(r, std::move(p));
               }));
  server.route("POST", "/api/chat", http::Handler([routes](const http::Request& r, http::Responder p) {
                 routes->assistant_chat(r, std::move(p));
               }));
  server.route("GET", "/v1/models",
               http::SyncHandler([routes](const http::Request& r) { return routes->models(r); }));
}

}  // namespace infera::api
