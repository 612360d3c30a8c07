#include "api/generation.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <future>
#include <limits>
#include <mutex>
#include <thread>

#include "api/answer_sinks.h"
#include "api/embeddings.h"
#include "api/json_body.h"
#include "api/openai_request.h"
#include "api/popularity.h"
#include "auth/auth.h"
#include "cache/cache.h"
#include "core/log.h"
#include "http/server.h"
#include "knowledge/knowledge.h"
#include "knowledge/semantic_cache.h"
#include "models/registry.h"
#include "sched/scheduler.h"
#include "store/store.h"

namespace infera::api {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// Charges one request's tokens to its caller's rate limits and quota: prompt tokens
// when it is submitted, each completion token as it is produced, and at the end
// whatever the exact count says is still owed (cached answers: all of it).
class TokenMeter {
 public:
  explicit TokenMeter(std::shared_ptr<const auth::Caller> caller) : caller_(std::move(caller)) {}
  static std::shared_ptr<TokenMeter> for_caller(const std::shared_ptr<const auth::Caller>& caller) {
    if (!caller || !caller->charge) return nullptr;
    return std::make_shared<TokenMeter>(caller);
  }
  void add(int64_t tokens) {
    charged_.fetch_add(tokens, std::memory_order_relaxed);
    caller_->charge_tokens(tokens);
  }
  void settle(int64_t total) {
    const int64_t owed = total - charged_.load(std::memory_order_relaxed);
    if (owed > 0) add(owed);
  }

 private:
  std::shared_ptr<const auth::Caller> caller_;
  std::atomic<int64_t> charged_{0};
};

// One generation to run: the prompt text, sampling, and the cache key when cacheable.
struct Spec {
  std::string prompt;  // rendered text; tokenized only when the engine must run
  SamplingRequest sampling;
  int priority = 0;
  std::string tenant;  // sched::Job::tenant
  Clock::time_point deadline = Clock::time_point::max();
  std::optional<std::string> cache_key;
  std::shared_ptr<TokenMeter> meter;  // null: nobody to charge
  // Single-turn questions with the semantic cache on: everything but the question
  // (model, system prompt and sources, settings) as `scope`, and the question.
  struct Semantic {
    std::string scope;
    std::string question;
    std::string collection;  // its entries leave when this collection changes
  };
  std::optional<Semantic> semantic;
};

// Whom the scheduler's fair share counts a request against: its API key, else its
// client address (a session id is the client's to invent, so it does not count).
std::string tenant_of(const auth::Caller* caller) {
  if (caller == nullptr) return {};
  if (caller->authenticated) return "key:" + caller->name;
  return caller->client_address.empty() ? std::string() : "ip:" + caller->client_address;
}

// The priority a request runs at: without keys its own; with a key the key's role's,
// which the request may lower but not raise.
int effective_priority(int requested, const auth::Caller* caller) {
  if (caller == nullptr || !caller->authenticated) return requested;
  return requested != 0 ? std::min(requested, caller->priority) : caller->priority;
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

// The model a request runs on, as the routes see it: held by a lease for the
// request's whole life, so the model cannot be unloaded under it.
struct ModelView {
  std::shared_ptr<models::Lease> lease;
  models::TextGenerator* generator = nullptr;
  std::string model_id;
  ChatFormat chat_format = ChatFormat::kPlain;
};

using Chunks = std::vector<knowledge::RetrievedChunk>;

int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The chunks a retrieval found, as the prompt carries them: numbered for citation, as
// many as fit `budget` tokens (best first). Sets *used to how many.
std::string grounding_text(const Chunks& chunks, const models::TextGenerator& generator, int budget,
                           size_t* used) {
  std::string out =
      "Answer using the numbered sources below and cite the ones you use as [1], [2]. If the "
      "sources do not contain the answer, say that you do not know.\n";
  int spent = static_cast<int>(generator.tokenize(out).size());
  *used = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const auto& c = chunks[i];
    std::string block = fmt::format("\n[{}] {}", i + 1, c.document_name);
    if (!c.heading.empty()) block += " - " + c.heading;
    if (c.page > 0) block += fmt::format(", page {}", c.page);
    block += "\n" + c.text + "\n";
    const int cost = static_cast<int>(generator.tokenize(block).size());
    if (spent + cost > budget) break;
    spent += cost;
    out += block;
    *used = i + 1;
  }
  return *used == 0 ? std::string() : out;
}

// The "sources" of an answer: the first `n` chunks.
std::string sources_json(const Chunks& chunks, size_t n) {
  json a = json::array();
  for (size_t i = 0; i < n && i < chunks.size(); ++i) {
    const auto& c = chunks[i];
    a.push_back({{"index", i + 1},
                 {"document", c.document_name},
                 {"document_id", c.document_id},
                 {"chunk_id", c.rank.id},
                 {"heading", c.heading},
                 {"page", c.page},
                 {"score", c.rank.score},
                 {"text", c.text}});
  }
  return a.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Commits finished /api/chat turns to the conversation store on its own thread and
// only then lets each answer go, so that fsync never holds up an engine loop or an I/O
// thread and a client never sees an answer that a crash could lose. Also deletes
// sessions past their retention.
class TurnWriter {
 public:
  struct Turn {
    std::string owner, session_id, question, answer, sources;
    std::function<void()> send;
  };

  TurnWriter(store::Store& store, int64_t ttl_s) : store_(store), ttl_ms_(ttl_s * 1000) {
    thread_ = std::thread([this] { run(); });
  }
  ~TurnWriter() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void write(Turn turn) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(turn));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    for (;;) {
      std::deque<Turn> batch;
      {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, std::chrono::seconds(60), [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) {
          if (stop_) return;
          lock.unlock();
          if (ttl_ms_ > 0) (void)store_.purge_expired(unix_ms_now());
          continue;
        }
        batch.swap(queue_);
      }
      for (Turn& t : batch) {
        if (Status st = commit(t); !st.ok()) {
          log::error("session.write_failed", "session {}: {}", t.session_id, st.message());
        }
        t.send();
      }
    }
  }

  Status commit(const Turn& t) {
    const int64_t expires = ttl_ms_ > 0 ? unix_ms_now() + ttl_ms_ : 0;
    std::string title = t.question.substr(0, 80);
    auto session = store_.ensure_session({t.session_id, t.owner, title, expires});
    if (!session.ok()) return session.status();
    auto q = store_.append_message(t.owner, t.session_id, {"user", t.question, "", expires});
    if (!q.ok()) return q.status();
    auto a = store_.append_message(t.owner, t.session_id, {"assistant", t.answer, t.sources, expires});
    return a.ok() ? Status::Ok() : a.status();
  }

  store::Store& store_;
  const int64_t ttl_ms_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Turn> queue_;
  bool stop_ = false;
  std::thread thread_;
};

class GenerationRoutes : public std::enable_shared_from_this<GenerationRoutes> {
 public:
  GenerationRoutes(const GenerationConfig& config, models::Registry& models, cache::Cache* cache,
                   cache::CachePolicy policy, GenerationHooks hooks)
      : config_(config),
        models_(models),
        cache_(cache),
        policy_(policy),
        hooks_(std::move(hooks)),
        sessions_(config.sessions_max, config.session_turns) {
    if (hooks_.conversations != nullptr) {
      turns_ = std::make_unique<TurnWriter>(*hooks_.conversations, config.session_ttl_s);
    }
    if (config.semantic_cache && hooks_.embedder != nullptr && cache_ != nullptr) {
      semantic_ = std::make_shared<knowledge::SemanticCache>(knowledge::SemanticCacheOptions{
          static_cast<float>(config.semantic_threshold), static_cast<size_t>(config.semantic_entries)});
      if (hooks_.knowledge != nullptr) {
        hooks_.knowledge->on_change([weak = std::weak_ptr<knowledge::SemanticCache>(semantic_)](std::string_view c) {
          if (auto cache = weak.lock()) cache->invalidate_collection(c);
        });
      }
    }
  }

  const knowledge::SemanticCache* semantic_cache() const { return semantic_.get(); }
  void clear_semantic() {
    if (semantic_) semantic_->clear();
  }

  void openai(const http::Request& req, http::Responder responder, bool chat) {
    http::Response error;
    auto body = parse_json_object(req, error);
    if (!body) return responder.send(error);
    auto parsed = chat ? parse_chat_completion(*body, config_.default_max_tokens)
                       : parse_completion(*body, config_.default_max_tokens);
    if (!parsed.ok()) return responder.send(invalid(parsed.status().message()));
    if (parsed->knowledge && !chat) {
      return responder.send(invalid("'knowledge' needs /v1/chat/completions (messages), not a prompt"));
    }
    const bool client_no_cache = no_cache(req);
    const bool chose_max_tokens = body->contains("max_tokens") || body->contains("max_completion_tokens");
    // What a restarted server would ask again to re-warm this answer (not streamed).
    std::string rewarm_body;
    if (hooks_.popularity != nullptr && !client_no_cache && !parsed->knowledge) {
      json b = *body;
      b.erase("stream");
      b.erase("stream_options");
      rewarm_body = b.dump();
    }
    const std::string id = (chat ? "chatcmpl-" : "cmpl-") + req.request_id;
    const auto started = Clock::now();
    std::string query;  // the last user message asks what retrieval looks for
    for (const auto& m : parsed->messages) {
      if (m.role == "user") query = m.content;
    }
    const std::optional<KnowledgeRequest> k = parsed->knowledge;
    auto go = [self = shared_from_this(), g = std::move(parsed).value(), chat, client_no_cache, chose_max_tokens, id,
               responder, started, caller = req.caller, rewarm_body = std::move(rewarm_body)](Chunks chunks) mutable {
      const std::string model = g.model;
      const auto keep_alive = g.keep_alive;
      self->with_model(model, keep_alive, caller.get(), responder,
                       [self, g = std::move(g), chat, client_no_cache, chose_max_tokens, id, responder, started,
                        caller, rewarm_body = std::move(rewarm_body), chunks = std::move(chunks)](ModelView view) mutable {
                         std::string sources;
                         const int priority = effective_priority(g.priority, caller.get());
                         g.sampling.max_tokens = self->max_tokens_for(g.sampling.max_tokens, priority, chose_max_tokens);
                         Spec spec = self->openai_spec(g, chat, view, client_no_cache, chunks, &sources);
                         spec.priority = priority;
                         self->count_question(spec, rewarm_body);
                         spec.tenant = tenant_of(caller.get());
                         spec.meter = TokenMeter::for_caller(caller);
                         std::shared_ptr<Sink> sink = make_openai_sink(responder, chat, g.stream, id, view.model_id,
                                                                       g.include_usage, std::move(sources));
                         self->run(std::move(spec), self->observed(std::move(sink), view.model_id, started),
                                   std::move(view));
                       });
    };
    if (!k) return go({});
    retrieve(*k, std::move(query), responder, std::move(go));
  }

  void assistant(const http::Request& req, http::Responder responder) {
    http::Response error;
    auto body = parse_json_object(req, error);
    if (!body) return responder.send(error);
    auto parsed = parse_assistant_chat(*body);
    if (!parsed.ok()) return responder.send(invalid(parsed.status().message()));
    // With keys: a key's /api/chat role is its own (teacher or student) unless the
    // body names one, and only teacher and admin keys may ask as a teacher; sessions
    // are the key's own.
    std::string session_key = parsed->session_id;
    if (const auth::Caller* caller = req.caller.get(); caller != nullptr && caller->authenticated) {
      if (!body->contains("role") && (caller->role == "teacher" || caller->role == "student")) {
        parsed->role = caller->role;
      }
      if (parsed->role == "teacher" && caller->role != "teacher" && !caller->admin) {
        return responder.send(http::Response::error(
            403, fmt::format("key '{}' (role {}) may not ask with role teacher", caller->name, caller->role),
            "invalid_request_error", "insufficient_permissions"));
      }
      session_key = caller->name + '\x1f' + parsed->session_id;
    }
    const bool client_no_cache = no_cache(req);
    const auto started = Clock::now();
    const std::optional<KnowledgeRequest> k = parsed->knowledge;
    const std::string question = parsed->question;
    std::string owner = req.caller ? req.caller->name : std::string();
    auto go = [self = shared_from_this(), a = std::move(parsed).value(), client_no_cache, responder, started,
               caller = req.caller, session_key, owner](Chunks chunks) mutable {
      const std::string model = a.model;
      const auto keep_alive = a.keep_alive;
      self->with_model(model, keep_alive, caller.get(), responder,
                       [self, a = std::move(a), client_no_cache, responder, started, caller, session_key, owner,
                        chunks = std::move(chunks)](ModelView view) mutable {
                         AssistantTurn turn;
                         const int priority = effective_priority(0, caller.get());
                         Spec spec = self->assistant_spec(a, session_key, owner, view, client_no_cache, chunks,
                                                          &turn.sources_json, priority);
                         spec.priority = priority;
                         if (a.session_id.empty() && !a.knowledge) {
                           self->count_question(spec, json{{"question", a.question}, {"role", a.role},
                                                           {"model", a.model}}.dump());
                         }
                         spec.tenant = tenant_of(caller.get());
                         spec.meter = TokenMeter::for_caller(caller);
                         turn.session_id = a.session_id;
                         if (!a.session_id.empty()) turn.record = self->recorder(owner, session_key, a, turn.sources_json);
                         auto sink = make_assistant_sink(responder, view.model_id, std::move(turn));
                         self->run(std::move(spec), self->observed(std::move(sink), view.model_id, started),
                                   std::move(view));
                       });
    };
    if (!k) return go({});
    retrieve(*k, question, responder, std::move(go));
  }

  // Runs one warm-up request body; `done` gets whether its answer is now cached.
  // Counts a cacheable question for the next start's re-warming.
  void count_question(const Spec& spec, const std::string& rewarm_body) const {
    if (hooks_.popularity == nullptr || !spec.cache_key || rewarm_body.empty()) return;
    hooks_.popularity->record(*spec.cache_key, rewarm_body);
  }

  void warm(const json& body, std::function<void(bool)> done, int priority = 0) {
    std::string model;
    if (body.is_object() && body.contains("model") && body["model"].is_string()) {
      model = body["model"].get<std::string>();
    }
    if (model.empty()) model = models_.default_model();
    models_.acquire(model, std::nullopt,
                    [self = shared_from_this(), body, done, priority](Result<std::shared_ptr<models::Lease>> lease) {
                      if (!lease.ok()) return done(false);
                      auto view = self->view_of(std::move(lease).value());
                      if (!view) return done(false);
                      std::optional<Spec> spec;
                      if (body.contains("question")) {
                        auto parsed = parse_assistant_chat(body);
                        if (parsed.ok() && !parsed->knowledge) {
                          spec = self->assistant_spec(*parsed, parsed->session_id, "", *view, false, {}, nullptr);
                        }
                      } else {
                        const bool chat = body.contains("messages");
                        auto parsed = chat ? parse_chat_completion(body, self->config_.default_max_tokens)
                                           : parse_completion(body, self->config_.default_max_tokens);
                        if (parsed.ok() && !parsed->knowledge) spec = self->openai_spec(*parsed, chat, *view, false);
                      }
                      if (!spec || !spec->cache_key) return done(false);
                      spec->priority = priority;
                      self->run(std::move(*spec), make_callback_sink([done](const Outcome& o) {
                                  done(o.error_status == 0 &&
                                       (o.finish_reason == "stop" || o.finish_reason == "length"));
                                }),
                                std::move(*view));
                    });
  }

 private:
  static http::Response invalid(const std::string& message, const char* code = "invalid_value") {
    return http::Response::error(400, message, "invalid_request_error", code);
  }
  static bool no_cache(const http::Request& req) {
    std::string value(req.header("Cache-Control"));
    for (char& c : value) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return value.find("no-cache") != std::string::npos;
  }

  // The view of a leased model; nullopt when it does not generate text.
  std::optional<ModelView> view_of(std::shared_ptr<models::Lease> lease) const {
    ModelView view;
    view.generator = lease->model().text_generator();
    if (view.generator == nullptr) return std::nullopt;
    const models::ModelSpec& spec = lease->spec();
    view.model_id = spec.name;
    // The declaration's format, else --chat-template's, else the file's own template.
    const bool declared =
        spec.chat_template != "auto" && chat_format_from_name(spec.chat_template, view.chat_format);
    if (!declared) {
      view.chat_format = config_.detect_chat_format
                             ? detect_chat_format(view.generator->chat_template_text())
                             : config_.chat_format;
    }
    view.lease = std::move(lease);
    return view;
  }

  // Resolves the request's model (loading it if needed) and calls `then` with it,
  // or answers the error: 404 unknown model, 503 cannot load or memory pressure.
  void with_model(const std::string& requested, std::optional<std::chrono::milliseconds> keep_alive,
                  const auth::Caller* caller, http::Responder responder, std::function<void(ModelView)> then) {
    if (hooks_.memory_pressure) {
      if (auto retry = hooks_.memory_pressure()) {
        http::Response r = http::Response::error(
            503, "the server is short of memory and admits no new generation now; retry later",
            "server_error", "memory_pressure");
        r.headers.emplace_back("Retry-After", fmt::format("{}", static_cast<int>(std::ceil(*retry))));
        return responder.send(std::move(r));
      }
    }
    const std::string name = requested.empty() ? models_.default_model() : requested;
    if (name.empty()) {
      return responder.send(http::Response::error(404, "no model is configured on this server",
                                                  "invalid_request_error", "model_not_found"));
    }
    if (caller != nullptr && !caller->may_use_model(name)) {
      return responder.send(http::Response::error(
          403, fmt::format("key '{}' (role {}) may not use model '{}'", caller->name, caller->role, name),
          "invalid_request_error", "model_not_allowed"));
    }
    models_.acquire(name, keep_alive,
                    [self = shared_from_this(), name, responder,
                     then = std::move(then)](Result<std::shared_ptr<models::Lease>> lease) mutable {
                      // Per-model SLA: known models only (a client's made-up name is no scope).
                      if (lease.ok() || lease.status().code() != StatusCode::kNotFound) {
                        responder.set_model(name);
                      }
                      if (!lease.ok()) return responder.send(model_error_response(lease.status()));
                      auto view = self->view_of(std::move(lease).value());
                      if (!view) {
                        return responder.send(http::Response::error(
                            400, fmt::format("model '{}' does not generate text", name),
                            "invalid_request_error", "model_not_supported"));
                      }
                      then(std::move(*view));
                    });
  }

  // Reports the request's end to the hooks (SLA, anomalies), then to `sink`.
  std::shared_ptr<Sink> observed(std::shared_ptr<Sink> sink, std::string model, Clock::time_point started) {
    if (!hooks_.on_finished) return sink;
    class Observed final : public Sink {
     public:
      Observed(std::shared_ptr<Sink> inner, std::string model, Clock::time_point started,
               GenerationHooks hooks)
          : inner_(std::move(inner)),
            model_(std::move(model)),
            started_(started),
            hooks_(std::move(hooks)) {}
      void start(const char* x_cache) override { inner_->start(x_cache); }
      void text(std::string_view piece) override { inner_->text(piece); }
      void done(const Outcome& o) override {
        hooks_.on_finished(model_, ms_since(started_), o.from_cache ? -1 : o.ttft_ms, o.error_status < 500);
        inner_->done(o);
      }
      bool gone() const override { return inner_->gone(); }
      bool sent_text() const override { return inner_->sent_text(); }
      void add_header(std::string name, std::string value) override {
        inner_->add_header(std::move(name), std::move(value));
      }

     private:
      static double ms_since(Clock::time_point t) {
        return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
      }
      std::shared_ptr<Sink> inner_;
      std::string model_;
      Clock::time_point started_;
      GenerationHooks hooks_;  // a copy: the sink may outlive the routes
    };
    return std::make_shared<Observed>(std::move(sink), std::move(model), started, hooks_);
  }

  Clock::time_point deadline_for(std::optional<double> requested_s) const {
    double limit = config_.request_timeout_s;
    if (requested_s && (limit <= 0 || *requested_s < limit)) limit = *requested_s;
    if (limit <= 0) return Clock::time_point::max();
    return Clock::now() + std::chrono::microseconds(static_cast<int64_t>(limit * 1e6));
  }

  // The cache key of a request whose inputs (prompt, or role and content of each
  // message) are `inputs`; nullopt when it must not be cached.
  std::optional<std::string> key_for(const ModelView& view, const char* endpoint,
                                     const std::vector<std::string_view>& inputs, const SamplingRequest& s,
                                     bool client_no_cache) const {
    if (cache_ == nullptr) return std::nullopt;
    cache::Sampling sampling{s.temperature, s.top_k, s.seed, client_no_cache};
    if (!cache::is_cacheable(policy_, sampling)) return std::nullopt;
    cache::KeyBuilder k(view.model_id, view.lease->identity(), endpoint);
    k.param("chat_format", chat_format_name(view.chat_format));
    k.param("inputs", static_cast<int64_t>(inputs.size()));
    for (std::string_view text : inputs) k.input(text);
    k.param("max_tokens", s.max_tokens).param("temperature", s.temperature).param("top_p", s.top_p);
    k.param("top_k", s.top_k).param("min_p", s.min_p).param("repetition_penalty", s.repetition_penalty);
    k.param("presence_penalty", s.presence_penalty).param("frequency_penalty", s.frequency_penalty);
    if (s.seed) {
      k.param("seed", static_cast<int64_t>(*s.seed));
    } else {
      k.absent("seed");
    }
    k.param("stops", static_cast<int64_t>(s.stop.size()));
    for (const auto& stop : s.stop) k.param("stop", stop);
    return k.key();
  }

  static std::vector<std::string_view> message_inputs(const std::vector<ChatMessage>& messages) {
    std::vector<std::string_view> inputs;
    inputs.reserve(2 * messages.size());
    for (const auto& m : messages) {
      inputs.push_back(m.role);
      inputs.push_back(m.content);
    }
    return inputs;
  }

  Spec openai_spec(const GenerationRequest& g, bool chat, const ModelView& view, bool client_no_cache,
                   const Chunks& chunks = {}, std::string* sources = nullptr) const {
    Spec spec;
    const std::vector<ChatMessage>* messages = &g.messages;
    std::vector<ChatMessage> grounded;
    if (chat && !chunks.empty()) {
      // The sources go into the system message (after the client's own, if any).
      const int budget = source_budget(view, render_chat(view.chat_format, g.messages), g.sampling.max_tokens);
      size_t used = 0;
      std::string text = grounding_text(chunks, *view.generator, budget, &used);
      grounded = g.messages;
      if (!text.empty()) {
        if (!grounded.empty() && grounded.front().role == "system") {
          grounded.front().content += "\n\n" + text;
        } else {
          grounded.insert(grounded.begin(), ChatMessage{"system", text});
        }
      }
      messages = &grounded;
      if (sources) *sources = sources_json(chunks, used);
    } else if (chat && sources && g.knowledge) {
      *sources = "[]";
    }
    spec.prompt = chat ? render_chat(view.chat_format, *messages) : g.prompt;
    spec.sampling = g.sampling;
    spec.priority = g.priority;
    spec.deadline = deadline_for(g.timeout_s);
    spec.cache_key = chat ? key_for(view, "chat", message_inputs(*messages), g.sampling, client_no_cache)
                          : key_for(view, "completions", {g.prompt}, g.sampling, client_no_cache);
    // Single-turn only: system messages, then one user question.
    if (chat && !messages->empty() && messages->back().role == "user") {
      bool single = true;
      for (size_t i = 0; i + 1 < messages->size(); ++i) single = single && (*messages)[i].role == "system";
      if (single) {
        std::vector<ChatMessage> context(messages->begin(), messages->end() - 1);
        spec.semantic = semantic_for(view, context, messages->back().content, g.sampling, client_no_cache,
                                     g.knowledge ? g.knowledge->collection : std::string());
      }
    }
    return spec;
  }

  // The semantic cache's scope and question for a request, when the cache is on and the
  // request is cacheable: the key of everything but the question.
  std::optional<Spec::Semantic> semantic_for(const ModelView& view, const std::vector<ChatMessage>& context,
                                             const std::string& question, const SamplingRequest& sampling,
                                             bool client_no_cache, std::string collection) const {
    if (!semantic_) return std::nullopt;
    auto scope = key_for(view, "semantic-chat", message_inputs(context), sampling, client_no_cache);
    if (!scope) return std::nullopt;
    return Spec::Semantic{*scope + "|" + config_.semantic_model, question, std::move(collection)};
  }

  // Tokens the sources may take: the model's context less the prompt without them,
  // the answer's tokens and a margin.
  int source_budget(const ModelView& view, const std::string& prompt_without, int max_tokens) const {
    const int ctx = view.generator->context_length();
    if (ctx <= 0) return 4096;
    const int prompt = static_cast<int>(view.generator->tokenize(prompt_without).size());
    return std::max(0, ctx - prompt - max_tokens - 16);
  }

  // Finds the chunks for `k`, then calls `then`; answers the error itself (404 unknown
  // collection, 400 without a knowledge store).
  void retrieve(const KnowledgeRequest& k, std::string query, http::Responder responder,
                std::function<void(Chunks)> then) {
    if (hooks_.knowledge == nullptr) {
      return responder.send(http::Response::error(400, "this server keeps no documents to retrieve from",
                                                  "invalid_request_error", "knowledge_unavailable"));
    }
    knowledge::RetrievalOptions options;
    options.k = static_cast<size_t>(k.top_k);
    hooks_.knowledge->search(k.collection, std::move(query), options,
                             [responder, then = std::move(then), collection = k.collection](Result<Chunks> hits) mutable {
                               if (!hits.ok()) {
                                 if (hits.status().code() == StatusCode::kNotFound) {
                                   return responder.send(http::Response::error(
                                       404, fmt::format("collection '{}' not found", collection),
                                       "invalid_request_error", "collection_not_found"));
                                 }
                                 return responder.send(http::Response::error(
                                     503, "retrieval failed: " + hits.status().message(), "server_error",
                                     "retrieval_failed"));
                               }
                               then(std::move(hits).value());
                             });
  }

  // How a finished /api/chat turn is recorded before its answer goes out.
  std::function<void(const Outcome&, std::function<void()>)> recorder(const std::string& owner,
                                                                      const std::string& session_key,
                                                                      const AssistantRequest& a,
                                                                      const std::string& sources) {
    if (turns_) {
      return [writer = turns_.get(), owner, id = a.session_id, question = a.question, sources](
                 const Outcome& o, std::function<void()> send) {
        writer->write({owner, id, question, o.text, sources, std::move(send)});
      };
    }
    return [self = shared_from_this(), session_key, question = a.question](const Outcome& o,
                                                                          std::function<void()> send) {
      self->sessions_.append(session_key, question, o.text);
      send();
    };
  }

  std::string system_prompt(const ModelView& view, const std::string& role) const {
    const auto& prompts = view.lease->spec().role_prompts;
    if (auto it = prompts.find(role); it != prompts.end()) return it->second;
    return role == "teacher" ? config_.teacher_system_prompt : config_.student_system_prompt;
  }

  // The session's past turns, newest kept first within --history-tokens.
  std::vector<ChatMessage> history(const std::string& owner, const std::string& session_id,
                                   const std::string& session_key, const ModelView& view) {
    std::vector<ChatMessage> past;
    if (hooks_.conversations != nullptr) {
      auto stored = hooks_.conversations->list_messages(owner, session_id,
                                                        static_cast<size_t>(2 * config_.session_turns));
      if (stored.ok()) {
        for (const auto& m : *stored) past.push_back({m.role, m.content});
      }
    } else {
      past = sessions_.history(session_key);
    }
    int spent = 0;
    size_t first = past.size();
    while (first > 0) {
      const int cost = static_cast<int>(view.generator->tokenize(past[first - 1].content).size());
      if (spent + cost > config_.history_tokens) break;
      spent += cost;
      --first;
    }
    // Whole turns only: never start with an answer whose question was dropped.
    if (first < past.size() && past[first].role != "user") ++first;
    return {past.begin() + static_cast<std::ptrdiff_t>(first), past.end()};
  }

  int degradation_level() const { return hooks_.degradation_level ? hooks_.degradation_level() : 0; }

  // max_tokens under overload (level 1+): a low-priority request that did not choose
  // its own gets the shortened limit (its cache key says so: it is never served as the
  // full answer later).
  int max_tokens_for(int max_tokens, int priority, bool chosen) const {
    if (chosen || priority > 0 || degradation_level() < 1) return max_tokens;
    return std::min(max_tokens, hooks_.shortened_max_tokens);
  }

  Spec assistant_spec(const AssistantRequest& a, const std::string& session_key, const std::string& owner,
                      const ModelView& view, bool client_no_cache, const Chunks& chunks,
                      std::string* sources, int priority = 1) {
    std::vector<ChatMessage> messages;
    std::string system = system_prompt(view, a.role);
    if (!system.empty()) messages.push_back({"system", system});
    if (!a.session_id.empty()) {
      auto past = history(owner, a.session_id, session_key, view);
      messages.insert(messages.end(), past.begin(), past.end());
    }
    messages.push_back({"user", a.question});
    if (!chunks.empty()) {
      const int budget = source_budget(view, render_chat(view.chat_format, messages), config_.default_max_tokens);
      size_t used = 0;
      std::string text = grounding_text(chunks, *view.generator, budget, &used);
      if (!text.empty()) {
        if (!messages.empty() && messages.front().role == "system") {
          messages.front().content += "\n\n" + text;
        } else {
          messages.insert(messages.begin(), ChatMessage{"system", text});
        }
      }
      if (sources) *sources = sources_json(chunks, used);
    } else if (sources && a.knowledge) {
      *sources = "[]";
    }
    Spec spec;
    spec.prompt = render_chat(view.chat_format, messages);
    spec.sampling.max_tokens = max_tokens_for(config_.default_max_tokens, priority, false);
    spec.sampling.temperature = 0;  // deterministic: repeated questions hit the cache
    spec.deadline = deadline_for(std::nullopt);
    spec.cache_key = key_for(view, "chat", message_inputs(messages), spec.sampling, client_no_cache);
    if (a.session_id.empty()) {
      std::vector<ChatMessage> context(messages.begin(), messages.end() - 1);  // all but the question
      spec.semantic = semantic_for(view, context, a.question, spec.sampling, client_no_cache,
                                   a.knowledge ? a.knowledge->collection : std::string());
    }
    return spec;
  }

  // Answers from the cache, joins an identical generation in flight, or generates.
  // The sink keeps the view (and so the model's lease) until the request ends.
  void run(Spec spec, std::shared_ptr<Sink> sink, ModelView view) {
    auto model = std::make_shared<ModelView>(std::move(view));
    if (!spec.cache_key) {
      sink->start("MISS");
      return submit(std::move(spec), std::move(sink), nullptr, model);
    }
    cache::Lookup hit = cache_->get(*spec.cache_key);
    if (hit.value) {
      if (auto o = decode(*hit.value)) {
        o->from_cache = true;
        if (spec.meter) spec.meter->settle(o->prompt_tokens + o->completion_tokens);
        sink->start(cache::x_cache_header(hit.tier));
        if (!o->text.empty()) sink->text(o->text);
        return sink->done(*o);
      }
    }
    if (spec.semantic && semantic_) return semantic_lookup(std::move(spec), std::move(sink), std::move(model));
    run_flight(std::move(spec), std::move(sink), std::move(model));
  }

  // Embeds the question; a compatible cached answer to a question that means the same
  // answers it (X-Cache: HIT-SEMANTIC), else it runs and its answer is remembered.
  void semantic_lookup(Spec spec, std::shared_ptr<Sink> sink, std::shared_ptr<ModelView> model) {
    EmbedRequest request;
    request.model = config_.semantic_model;
    request.texts.push_back(spec.semantic->question);
    request.truncate = true;
    hooks_.embedder->embed(std::move(request), [self = shared_from_this(), spec = std::move(spec), sink,
                                                model](Result<EmbedResult> embedded) mutable {
      if (!embedded.ok()) {
        log::warn("semantic_cache.embed_failed", "{}", embedded.status().message());
        return self->run_flight(std::move(spec), std::move(sink), std::move(model));
      }
      std::vector<float> vector = std::move(embedded->vectors);
      if (auto hit = self->semantic_->lookup(spec.semantic->scope, spec.semantic->question, vector)) {
        if (auto o = decode(hit->value)) {
          o->from_cache = true;
          if (spec.meter) spec.meter->settle(o->prompt_tokens + o->completion_tokens);
          sink->add_header("X-Semantic-Similarity", fmt::format("{:.4f}", hit->similarity));
          sink->start("HIT-SEMANTIC");
          if (!o->text.empty()) sink->text(o->text);
          return sink->done(*o);
        }
      }
      auto fill = std::make_shared<SemanticFill>(std::move(sink), self->semantic_, *spec.semantic, std::move(vector));
      self->run_flight(std::move(spec), std::move(fill), std::move(model));
    });
  }

  // Remembers a finished answer in the semantic cache, passing everything through.
  class SemanticFill final : public Sink {
   public:
    SemanticFill(std::shared_ptr<Sink> inner, std::shared_ptr<knowledge::SemanticCache> cache, Spec::Semantic q,
                 std::vector<float> vector)
        : inner_(std::move(inner)), cache_(std::move(cache)), q_(std::move(q)), vector_(std::move(vector)) {}
    void start(const char* x_cache) override { inner_->start(x_cache); }
    void text(std::string_view piece) override { inner_->text(piece); }
    void done(const Outcome& o) override {
      if (o.error_status == 0 && (o.finish_reason == "stop" || o.finish_reason == "length")) {
        cache_->insert(q_.scope, q_.question, vector_, encode(o), q_.collection);
      }
      inner_->done(o);
    }
    bool gone() const override { return inner_->gone(); }
    bool sent_text() const override { return inner_->sent_text(); }
    void add_header(std::string name, std::string value) override { inner_->add_header(std::move(name), std::move(value)); }

   private:
    std::shared_ptr<Sink> inner_;
    std::shared_ptr<knowledge::SemanticCache> cache_;
    Spec::Semantic q_;
    std::vector<float> vector_;
  };

  // Joins an identical generation in flight, or generates (the exact cache missed).
  void run_flight(Spec spec, std::shared_ptr<Sink> sink, std::shared_ptr<ModelView> model) {
    auto ticket = std::make_shared<cache::FlightTicket>(cache_->begin(*spec.cache_key));
    sink->start("MISS");
    if (!ticket->leader()) {
      // A joiner replays the leader's text as it comes. If the shared generation
      // ends without an answer (the leader's own deadline or client), a joiner whose
      // client has seen no text yet generates for itself.
      auto own = std::make_shared<Spec>(spec);
      own->cache_key.reset();
      ticket->flight().subscribe(
          [sink](std::string_view piece) { sink->text(piece); },
          [self = shared_from_this(), sink, own, model](const Result<std::string>& value) {
            std::optional<Outcome> o;
            if (value.ok()) o = decode(*value);
            if (o) {
              if (own->meter) own->meter->settle(o->prompt_tokens + o->completion_tokens);
              return sink->done(*o);
            }
            if (!sink->sent_text()) return self->submit(std::move(*own), sink, nullptr, model);
            sink->done(failure(503, "shared_generation_failed",
                               "the identical request this one joined did not finish; retry"));
          });
      return;
    }
    submit(std::move(spec), std::move(sink), std::move(ticket), model);
  }

  void submit(Spec spec, std::shared_ptr<Sink> sink, std::shared_ptr<cache::FlightTicket> ticket,
              std::shared_ptr<ModelView> model) {
    if (spec.priority <= 0 && degradation_level() >= 2) {
      // Overloaded: what the cache could answer was answered; low priority waits.
      const double retry = std::max(1.0, model->generator->scheduler().stats().queue_delay_s);
      if (ticket) ticket->complete(Status::Unavailable("overloaded"));
      Outcome o = failure(429, "overloaded",
                          fmt::format("the server is overloaded (about {:.0f} s of queued work); questions it has "
                                      "answered before are still served, others: retry later", retry));
      o.retry_after_s = retry;
      return sink->done(o);
    }
    auto job = std::make_unique<sched::Job>();
    job->prompt = model->generator->tokenize(spec.prompt);
    job->max_tokens = spec.sampling.max_tokens;
    job->sampling = to_sampling(spec.sampling);
    job->stop = spec.sampling.stop;
    job->priority = spec.priority;
    job->tenant = std::move(spec.tenant);
    job->deadline = spec.deadline;
    job->is_cancelled = [sink] { return sink->gone(); };
    auto meter = spec.meter;
    if (meter) meter->add(static_cast<int64_t>(job->prompt.size()));
    auto text = std::make_shared<std::string>();
    job->on_text = [sink, text, ticket, meter](std::string_view piece) {
      if (meter) meter->add(1);
      text->append(piece);
      sink->text(piece);
      if (ticket) ticket->publish_chunk(std::string(piece));
    };
    // The job holds the model's lease until it ends.
    job->on_done = [sink, text, ticket, model, meter](const sched::Completion& c) {
      if (meter) meter->settle(c.prompt_tokens + c.completion_tokens);
      Outcome o;
      if (c.reason == sched::FinishReason::kError) {
        o = failure(500, "engine_error", c.error);
      } else {
        o.text = std::move(*text);
        o.finish_reason = sched::to_string(c.reason);
        o.prompt_tokens = c.prompt_tokens;
        o.completion_tokens = c.completion_tokens;
        o.cached_prompt_tokens = c.cached_prompt_tokens;
      }
      o.ttft_ms = c.completion_tokens > 0 ? c.ttft_ms : -1;
      if (ticket) {
        // Only complete answers are cached; followers of a failed flight are told.
        bool complete = c.reason == sched::FinishReason::kStop || c.reason == sched::FinishReason::kLength;
        ticket->complete(complete ? Result<std::string>(encode(o))
                                  : Result<std::string>(Status::Cancelled("generation did not finish")));
      }
      sink->done(o);
    };
    double retry_after_s = 0;
    Status st = model->generator->scheduler().submit(std::move(job), &retry_after_s);
    if (st.ok()) return;
    if (ticket) ticket->complete(Status::Unavailable(st.message()));
    const auto refused = [&](int status, const char* code) {
      Outcome o = failure(status, code, st.message());
      o.retry_after_s = retry_after_s;
      return o;
    };
    switch (st.code()) {
      case StatusCode::kResourceExhausted: return sink->done(refused(429, "queue_full"));
      case StatusCode::kDeadlineExceeded: return sink->done(refused(503, "deadline_unreachable"));
      case StatusCode::kInvalidArgument:
        return sink->done(failure(400, "context_length_exceeded", st.message()));
      default: return sink->done(failure(503, "unavailable", st.message()));
    }
  }

  GenerationConfig config_;
  models::Registry& models_;
  cache::Cache* cache_;
  cache::CachePolicy policy_;
  GenerationHooks hooks_;
  SessionStore sessions_;
  std::unique_ptr<TurnWriter> turns_;  // with a conversation store
  std::shared_ptr<knowledge::SemanticCache> semantic_;  // with --semantic-cache
};

json tier_json(const cache::TierStats& t) {
  return {{"enabled", t.enabled},       {"hits", t.hits},         {"misses", t.misses},
          {"hit_rate", t.hit_rate()},   {"entries", t.entries},   {"bytes", t.bytes},
          {"evictions", t.evictions},   {"expired", t.expired},   {"corrupt", t.corrupt},
          {"errors", t.errors}};
}

json cache_stats_json(const cache::Stats& s) {
  return {{"l1", tier_json(s.l1)},
          {"l2", tier_json(s.l2)},
          {"l3", tier_json(s.l3)},
          {"compression_ratio", s.compression_ratio()},
          {"compressed_entries", s.l1_compressed_entries},
          {"single_flight", {{"computations", s.single_flight_leaders}, {"merges", s.single_flight_merges}}},
          {"redis_breaker", {{"state", cache::breaker_state_name(s.breaker)}, {"opens", s.breaker_opens}}}};
}

// Parses a warm-up body: {"requests": [...]}, a JSON array, or JSON lines.
std::vector<json> warm_requests(const std::string& body) {
  json doc = json::parse(body, nullptr, false);
  if (!doc.is_discarded()) {
    if (doc.is_object() && doc.contains("requests") && doc["requests"].is_array()) {
      return doc["requests"].get<std::vector<json>>();
    }
    if (doc.is_array()) return doc.get<std::vector<json>>();
    if (doc.is_object()) return {doc};
  }
  std::vector<json> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find('\n', pos);
    if (end == std::string::npos) end = body.size();
    std::string line = body.substr(pos, end - pos);
    pos = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json j = json::parse(line, nullptr, false);
    out.push_back(j.is_discarded() ? json(nullptr) : j);
  }
  return out;
}

}  // namespace

void register_generation_routes(http::Server& server, const GenerationConfig& config,
                                models::Registry& models, cache::Cache* cache, cache::CachePolicy policy,
                                GenerationHooks hooks) {
  auto routes = std::make_shared<GenerationRoutes>(config, models, cache, policy, std::move(hooks));
  server.route("POST", "/v1/chat/completions", http::Handler([routes](const http::Request& r, http::Responder p) {
                 routes->openai(r, std::move(p), /*chat=*/true);
               }));
  server.route("POST", "/v1/completions", http::Handler([routes](const http::Request& r, http::Responder p) {
                 routes->openai(r, std::move(p), /*chat=*/false);
               }));
  server.route("POST", "/api/chat", http::Handler([routes](const http::Request& r, http::Responder p) {
                 routes->assistant(r, std::move(p));
               }));
  if (cache == nullptr) return;

  server.route("GET", "/api/cache/stats", http::SyncHandler([cache, routes](const http::Request&) {
                 json stats = cache_stats_json(cache->stats());
                 if (const knowledge::SemanticCache* semantic = routes->semantic_cache()) {
                   const knowledge::SemanticCacheStats st = semantic->stats();
                   const uint64_t lookups = st.hits + st.misses;
                   stats["semantic"] = {{"enabled", true},
                                        {"hits", st.hits},
                                        {"misses", st.misses},
                                        {"hit_rate", lookups ? static_cast<double>(st.hits) / static_cast<double>(lookups) : 0.0},
                                        {"guard_refusals", st.guard_refusals},
                                        {"entries", st.entries},
                                        {"invalidated", st.invalidated}};
                 } else {
                   stats["semantic"] = {{"enabled", false}};
                 }
                 return http::Response::json(200, stats.dump());
               }));
  server.route("GET", "/api/v1/performance", http::SyncHandler([cache](const http::Request&) {
                 return http::Response::json(200, json{{"cache", cache_stats_json(cache->stats())}}.dump());
               }));
  server.route("POST", "/admin/cache/clear", http::SyncHandler([cache, routes](const http::Request&) {
                 cache->clear();
                 routes->clear_semantic();
                 return http::Response::json(200, R"({"cleared":true})");
               }));
  server.route("POST", "/admin/cache/warm", http::Handler([routes](const http::Request& r, http::Responder p) {
                 std::vector<json> requests = warm_requests(r.body);
                 if (requests.empty()) {
                   return p.send(http::Response::error(
                       400, "body must hold warm-up requests: {\"requests\":[...]}, a JSON array or JSON lines",
                       "invalid_request_error", "invalid_value"));
                 }
                 struct Tally {
                   std::atomic<int> left, cached{0};
                   explicit Tally(int n) : left(n) {}
                 };
                 auto tally = std::make_shared<Tally>(static_cast<int>(requests.size()));
                 const int total = static_cast<int>(requests.size());
                 for (const auto& body : requests) {
                   routes->warm(body, [tally, p, total](bool cached) mutable {
                     if (cached) tally->cached.fetch_add(1);
                     if (tally->left.fetch_sub(1) == 1) {
                       int ok = tally->cached.load();
                       p.send(http::Response::json(
                           200, json{{"requested", total}, {"cached", ok}, {"failed", total - ok}}.dump()));
                     }
                   });
                 }
               }));
}

int warm_cache_from_file(const std::string& path, const GenerationConfig& config,
                         models::Registry& models, cache::Cache& cache, cache::CachePolicy policy,
                         std::string* error) {
  std::ifstream in(path);
  if (!in) {
    if (error) *error = path + ": cannot open the cache warm-up file";
    return 0;
  }
  std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto routes = std::make_shared<GenerationRoutes>(config, models, &cache, policy, GenerationHooks{});
  std::vector<std::future<bool>> results;
  for (const auto& request : warm_requests(body)) {
    auto promise = std::make_shared<std::promise<bool>>();
    results.push_back(promise->get_future());
    routes->warm(request, [promise](bool cached) { promise->set_value(cached); });
  }
  int cached = 0;
  for (auto& r : results) cached += r.get() ? 1 : 0;
  return cached;
}

int rewarm_popular(const std::vector<std::string>& bodies, const GenerationConfig& config,
                   models::Registry& models, cache::Cache& cache, cache::CachePolicy policy,
                   const std::function<bool()>& stop) {
  auto routes = std::make_shared<GenerationRoutes>(config, models, &cache, policy, GenerationHooks{});
  const auto idle = [&models] {
    bool busy = false;
    models.for_each_loaded([&](const std::string&, models::LoadedModel& m) {
      if (auto* g = m.text_generator()) {
        const sched::SchedulerStats s = g->scheduler().stats();
        busy = busy || s.running > 0 || s.waiting > 0;
      }
    });
    return !busy;
  };
  int cached = 0;
  for (const std::string& text : bodies) {
    json body = json::parse(text, nullptr, false);
    if (!body.is_object()) continue;
    while (!stop() && !idle()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (stop()) break;
    auto promise = std::make_shared<std::promise<bool>>();
    auto answer = promise->get_future();
    routes->warm(body, [promise](bool ok) { promise->set_value(ok); }, std::numeric_limits<int>::min() / 2);
    // At shutdown nobody waits for the answer (the callback outlives this loop).
    while (answer.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
      if (stop()) return cached;
    }
    cached += answer.get() ? 1 : 0;
  }
  return cached;
}

}  // namespace infera::api
