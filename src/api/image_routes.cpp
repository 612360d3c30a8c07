// Image matching routes (api/predictions.h).
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "api/json_body.h"
#include "api/knowledge_routes.h"
#include "api/prediction_service.h"
#include "api/predictions.h"
#include "auth/auth.h"
#include "cache/cache.h"
#include "http/server.h"
#include "models/registry.h"
#include "predict/image_index.h"
#include "predict/image_preprocess.h"

namespace infera::api {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

http::Response invalid(const std::string& message) {
  return http::Response::error(400, message, "invalid_request_error", "invalid_value");
}

http::Response status_error(const Status& st) {
  switch (st.code()) {
    case StatusCode::kInvalidArgument: return invalid(st.message());
    case StatusCode::kNotFound: return http::Response::error(404, st.message(), "invalid_request_error", "not_found");
    case StatusCode::kPermissionDenied:
      return http::Response::error(403, st.message(), "invalid_request_error", "model_not_allowed");
    case StatusCode::kResourceExhausted: {
      http::Response r = http::Response::error(429, st.message(), "rate_limit_error", "queue_full");
      r.headers.emplace_back("Retry-After", "1");
      return r;
    }
    case StatusCode::kDeadlineExceeded: return http::Response::error(504, st.message(), "timeout_error", "timeout");
    case StatusCode::kUnavailable: return model_error_response(st);
    default: return http::Response::error(500, st.message(), "server_error");
  }
}

// What a request carries: the image, the set and its options.
struct ImageRequest {
  std::string image;
  std::string set = "default";
  std::string id;
  std::vector<std::string> tags;
  double threshold = 0;
  size_t top_k = 10;
};

// JSON with a base64 `image`, or the raw image bytes with query parameters.
std::variant<ImageRequest, http::Response> read_request(const http::Request& req, double default_threshold,
                                                        bool reference) {
  ImageRequest r;
  r.threshold = default_threshold;
  const std::string type(req.header("Content-Type"));
  if (type.rfind("application/json", 0) == 0 || (!req.body.empty() && req.body[0] == '{')) {
    http::Response error;
    std::optional<json> body = parse_json_object(req, error);
    if (!body) return error;
    if (!body->contains("image") || !(*body)["image"].is_string()) {
      return invalid("'image' (the image file, base64-encoded) is required");
    }
    auto decoded = decode_base64((*body)["image"].get<std::string>());
    if (!decoded || decoded->empty()) return invalid("'image' is not valid base64");
    r.image = std::move(*decoded);
    if (body->contains("set")) {
      if (!(*body)["set"].is_string()) return invalid("'set' must be a string");
      r.set = (*body)["set"].get<std::string>();
    }
    if (body->contains("id")) {
      if (!(*body)["id"].is_string()) return invalid("'id' must be a string");
      r.id = (*body)["id"].get<std::string>();
    }
    if (body->contains("tags")) {
      const json& t = (*body)["tags"];
      if (!t.is_array() || !std::all_of(t.begin(), t.end(), [](const json& x) { return x.is_string(); })) {
        return invalid("'tags' must be an array of strings");
      }
      r.tags = t.get<std::vector<std::string>>();
    }
    if (body->contains("threshold")) {
      if (!(*body)["threshold"].is_number()) return invalid("'threshold' must be a number from -1 to 1");
      r.threshold = (*body)["threshold"].get<double>();
    }
    if (body->contains("top_k")) {
      if (!(*body)["top_k"].is_number_integer() || (*body)["top_k"].get<int64_t>() < 1 ||
          (*body)["top_k"].get<int64_t>() > 1000) {
        return invalid("'top_k' must be an integer from 1 to 1000");
      }
      r.top_k = (*body)["top_k"].get<size_t>();
    }
  } else {
    if (req.body.empty()) return invalid("send the image as the body, or JSON with a base64 'image'");
    r.image = req.body;
    if (auto v = query_value(req.query, "set")) r.set = *v;
    if (auto v = query_value(req.query, "id")) r.id = *v;
    if (auto v = query_value(req.query, "tags")) {
      for (size_t pos = 0; pos <= v->size();) {
        size_t comma = v->find(',', pos);
        if (comma == std::string::npos) comma = v->size();
        if (comma > pos) r.tags.push_back(v->substr(pos, comma - pos));
        pos = comma + 1;
      }
    }
    if (auto v = query_value(req.query, "threshold")) {
      char* end = nullptr;
      r.threshold = std::strtod(v->c_str(), &end);
      if (end == v->c_str() || *end != '\0') return invalid("'threshold' must be a number from -1 to 1");
    }
    if (auto v = query_value(req.query, "top_k")) {
      char* end = nullptr;
      const long k = std::strtol(v->c_str(), &end, 10);
      if (end == v->c_str() || *end != '\0' || k < 1 || k > 1000) return invalid("'top_k' must be an integer from 1 to 1000");
      r.top_k = static_cast<size_t>(k);
    }
  }
  if (!std::isfinite(r.threshold) || r.threshold < -1 || r.threshold > 1) {
    return invalid("'threshold' must be a number from -1 to 1");
  }
  if (Status st = predict::ImageIndex::check_set_name(r.set); !st.ok()) return invalid(st.message());
  if (reference) {
    if (r.id.empty()) return invalid("'id' (the reference image's id) is required");
    if (Status st = predict::ImageIndex::check_id(r.id); !st.ok()) return invalid(st.message());
  }
  return r;
}

// The routes' state: a thread that decodes images, and the embedding step.
class ImageRoutes {
 public:
  ImageRoutes(models::Registry& models, predict::ImageIndex& index, cache::Cache* cache, ImageMatchConfig config)
      : models_(models), index_(index), cache_(cache), config_(std::move(config)) {
    worker_ = std::thread([this] { work(); });
  }
  ~ImageRoutes() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  struct Analysis {
    uint64_t phash = 0;
    std::vector<float> embedding;  // unit length; empty without a model
    std::string model;             // name and identity of the model that made it
  };
  using AnalysisDone = std::function<void(Result<Analysis>)>;

  // Hash (and embedding) of an image; `done` on the decode thread or a batcher thread.
  void analyse(std::string image, const auth::Caller* caller, AnalysisDone done) {
    if (!config_.model.empty() && caller != nullptr && !caller->may_use_model(config_.model)) {
      return done(Status::PermissionDenied(fmt::format("this key may not use the image model '{}'", config_.model)));
    }
    post([this, image = std::move(image), done = std::move(done)]() mutable {
      auto hash = predict::perceptual_hash(image);
      if (!hash.ok()) return done(hash.status());
      if (config_.model.empty()) return done(Analysis{*hash, {}, {}});
      models_.acquire(config_.model, std::nullopt, [this, image = std::move(image), phash = *hash,
                                                    done = std::move(done)](
                                                       Result<std::shared_ptr<models::Lease>> lease) mutable {
        if (!lease.ok()) return done(lease.status());
        models::Predictor* p = (*lease)->model().predictor();
        if (p == nullptr) {
          return done(Status::Unavailable(fmt::format("--image-match-model '{}' is not a tensor model", config_.model)));
        }
        // Runs on the decode thread when the model was ready, else on the registry's
        // dispatcher; either way not on an I/O thread.
        auto row = p->image_to_row(image);
        if (!row.ok()) {
          return done(row.status().code() == StatusCode::kUnsupported
                          ? Status::Unavailable(fmt::format("--image-match-model '{}' declares no image input",
                                                            config_.model))
                          : row.status());
        }
        models::Predictor::Request r;
        models::Tensor in{p->inputs()[0].name, p->inputs()[0].shape, std::move(row).value()};
        in.shape[0] = 1;
        r.inputs.push_back(std::move(in));
        r.priority = 1;
        const std::string model = config_.model + "@" + (*lease)->identity();
        auto held = std::move(lease).value();
        p->predict(std::move(r), [phash, model, held, done = std::move(done)](Result<std::vector<models::Tensor>> out) {
          if (!out.ok()) return done(out.status());
          std::vector<float> e = std::move((*out)[0].data);
          double sq = 0;
          for (float v : e) sq += static_cast<double>(v) * v;
          if (sq > 0) {
            const auto inv = static_cast<float>(1.0 / std::sqrt(sq));
            for (float& v : e) v *= inv;
          }
          done(Analysis{phash, std::move(e), model});
        });
      });
    });
  }

  predict::ImageIndex& index() { return index_; }
  cache::Cache* cache() { return cache_; }
  const ImageMatchConfig& config() const { return config_; }
  std::string algorithm() const {
    return config_.model.empty() ? "phash" : "phash+cnn:" + config_.model;
  }
  std::string model_identity() {
    if (config_.model.empty()) return "-";
    for (const auto& s : models_.list()) {
      if (s.spec.name == config_.model) return s.identity.empty() ? s.spec.path : s.identity;
    }
    return config_.model;
  }

 private:
  void post(std::function<void()> task) {
    {
      std::lock_guard lock(mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
  }
  void work() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !tasks_.empty(); });
        if (stop_ && tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  models::Registry& models_;
  predict::ImageIndex& index_;
  cache::Cache* cache_;
  ImageMatchConfig config_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stop_ = false;
  std::thread worker_;
};

json match_json(const predict::ImageMatch& m, double threshold) {
  return {{"id", m.id},
          {"score", std::round(m.score * 1e6) / 1e6},
          {"distance", m.distance},
          {"is_match", m.score >= threshold},
          {"tags", m.tags}};
}

}  // namespace

void register_image_routes(http::Server& server, models::Registry& models, predict::ImageIndex& index,
                           cache::Cache* cache, ImageMatchConfig config) {
  auto routes = std::make_shared<ImageRoutes>(models, index, cache, std::move(config));
  server.route("POST", "/api/v1/images/references", http::Handler([routes](const http::Request& req, http::Responder r) {
                 auto parsed = read_request(req, routes->config().threshold, true);
                 if (auto* e = std::get_if<http::Response>(&parsed)) return r.send(std::move(*e));
                 ImageRequest request = std::get<ImageRequest>(std::move(parsed));
                 routes->analyse(std::move(request.image), req.caller.get(),
                                 [routes, request, r](Result<ImageRoutes::Analysis> a) mutable {
                                   if (!a.ok()) return r.send(status_error(a.status()));
                                   const bool embedded = !a->embedding.empty();
                                   Status st = routes->index().add(
                                       request.set, {request.id, request.tags, a->phash, std::move(a->embedding), a->model});
                                   if (!st.ok()) return r.send(status_error(st));
                                   r.send(http::Response::json(
                                       201, json{{"id", request.id},
                                                 {"set", request.set},
                                                 {"tags", request.tags},
                                                 {"phash", fmt::format("{:016x}", a->phash)},
                                                 {"embedded", embedded},
                                                 {"references", routes->index().list(request.set).size()}}
                                                .dump()));
                                 });
               }));
  server.route("GET", "/api/v1/images/references", http::SyncHandler([routes](const http::Request& req) {
                 auto set = query_value(req.query, "set");
                 if (!set) {
                   json sets = json::array();
                   for (const auto& [name, n] : routes->index().sets()) sets.push_back({{"set", name}, {"references", n}});
                   return http::Response::json(200, json{{"sets", sets}}.dump());
                 }
                 json refs = json::array();
                 for (const auto& ref : routes->index().list(*set)) {
                   refs.push_back({{"id", ref.id}, {"tags", ref.tags}, {"phash", fmt::format("{:016x}", ref.phash)},
                                   {"embedded", !ref.embedding.empty()}});
                 }
                 return http::Response::json(200, json{{"set", *set}, {"references", refs}}.dump());
               }));
  server.route("DELETE", "/api/v1/images/references/{id}", http::SyncHandler([routes](const http::Request& req) {
                 const std::string set = query_value(req.query, "set").value_or("default");
                 Status st = routes->index().remove(set, std::string(req.param("id")));
                 if (!st.ok()) return status_error(st);
                 return http::Response::json(200, json{{"deleted", std::string(req.param("id"))}, {"set", set}}.dump());
               }));
  server.route("POST", "/api/v1/images/match", http::Handler([routes](const http::Request& req, http::Responder r) {
                 const auto start = Clock::now();
                 auto parsed = read_request(req, routes->config().threshold, false);
                 if (auto* e = std::get_if<http::Response>(&parsed)) return r.send(std::move(*e));
                 ImageRequest request = std::get<ImageRequest>(std::move(parsed));
                 std::string key;
                 cache::Cache* cache = cache_bypassed(req) ? nullptr : routes->cache();
                 if (cache != nullptr) {
                   key = cache::KeyBuilder("images", routes->model_identity(), "match")
                             .input(request.image)
                             .param("set", request.set)
                             .param("generation", static_cast<int64_t>(routes->index().generation(request.set)))
                             .param("threshold", request.threshold)
                             .param("top_k", static_cast<int64_t>(request.top_k))
                             .param("distance", routes->config().max_hash_distance)
                             .key();
                   cache::Lookup hit = cache->get(key);
                   if (hit.value) {
                     json body = json::parse(*hit.value, nullptr, false);
                     if (!body.is_discarded()) {
                       body["cached"] = true;
                       body["latency_ms"] = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
                       http::Response resp = http::Response::json(200, body.dump());
                       resp.headers.emplace_back("X-Cache", cache::x_cache_header(hit.tier));
                       return r.send(std::move(resp));
                     }
                   }
                 }
                 routes->analyse(std::move(request.image), req.caller.get(),
                                 [routes, request, key, cache, start, r](Result<ImageRoutes::Analysis> a) mutable {
                                   if (!a.ok()) return r.send(status_error(a.status()));
                                   auto found = routes->index().match(request.set, a->phash, a->embedding, a->model,
                                                                      routes->config().max_hash_distance, request.top_k);
                                   json matches = json::array();
                                   for (const auto& m : found) matches.push_back(match_json(m, request.threshold));
                                   json body = {{"matches", matches},
                                                {"threshold", request.threshold},
                                                {"algorithm", routes->algorithm()},
                                                {"set", request.set},
                                                {"phash", fmt::format("{:016x}", a->phash)}};
                                   if (cache != nullptr) cache->put(key, body.dump());
                                   body["cached"] = false;
                                   body["latency_ms"] = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
                                   http::Response resp = http::Response::json(200, body.dump());
                                   resp.headers.emplace_back("X-Cache", "MISS");
                                   r.send(std::move(resp));
                                 });
               }));
}

}  // namespace infera::api
