// Where the generation routes' answers go: the outcome of one generation, its
// encoding in the response cache, and the sinks that turn it into an OpenAI response
// (whole or streamed), an /api/chat answer, or a callback (cache warming). Internal to
// api/; generation.cpp is the only user.
#pragma once

#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "api/chat_template.h"
#include "http/server.h"
#include "sched/scheduler.h"

namespace infera::api {

// What a generation produced (computed, merged or from the cache).
struct Outcome {
  std::string text;
  std::string finish_reason;
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_prompt_tokens = 0;
  bool from_cache = false;
  int error_status = 0;  // non-zero: failed before or while generating
  std::string error_code;
  std::string error;
  double ttft_ms = -1;  // computed answers: submit to first token
  double retry_after_s = 0;  // refusals: when to try again (Retry-After, at least 1 s)
};

Outcome failure(int status, std::string code, std::string message);
// The cache's value for a finished answer, and back (nullopt: not an answer).
std::string encode(const Outcome& o);
std::optional<Outcome> decode(const std::string& value);

// Where one generation's output goes. start() comes first (X-Cache value), then
// text pieces, then done() exactly once. Methods may run on the I/O thread or the
// engine loop, never concurrently for one sink.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void start(const char* x_cache) = 0;
  virtual void text(std::string_view piece) = 0;
  virtual void done(const Outcome& outcome) = 0;
  virtual bool gone() const = 0;
  // Whether text has already reached the client (a stream has begun).
  virtual bool sent_text() const { return false; }
  // A header for the response (before start()), e.g. X-Semantic-Similarity.
  virtual void add_header(std::string name, std::string value) {}
};

// A whole OpenAI response (chat.completion or text_completion) or its SSE stream.
// `sources_json` (a JSON array, or empty for none) is added as "sources": to the
// response, or to the stream's first chunk.
std::shared_ptr<Sink> make_openai_sink(http::Responder responder, bool chat, bool stream,
                                       std::string id, std::string model, bool include_usage,
                                       std::string sources_json = {});

// Remembers the last turns of each /api/chat session (bounded, least recently
// used sessions are forgotten first). Thread-safe.
class SessionStore {
 public:
  SessionStore(int max_sessions, int max_turns)
      : max_sessions_(max_sessions), max_turns_(max_turns) {}

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
    while (static_cast<int>(turns.size()) > 2 * max_turns_)
      turns.erase(turns.begin(), turns.begin() + 2);
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

// What an /api/chat answer carries besides the answer, and what happens to its turn.
struct AssistantTurn {
  std::string session_id;    // echoed in the answer; empty without a session
  std::string sources_json;  // "sources": a JSON array; empty without retrieval
  // Records a finished answer (e.g. commits the turn to the session's history) and
  // then calls `send`, which answers the client: a client never sees an answer that
  // is not recorded. Empty: the answer is sent at once.
  std::function<void(const Outcome& answer, std::function<void()> send)> record;
};

// The /api/chat answer.
std::shared_ptr<Sink> make_assistant_sink(http::Responder responder, std::string model,
                                          AssistantTurn turn);
// No client: reports the outcome to `on_done` (cache warming).
std::shared_ptr<Sink> make_callback_sink(std::function<void(const Outcome&)> on_done);

}  // namespace infera::api
