// The seeds' prediction routes (api/predictions.h): named features in, prediction,
// class probabilities, uncertainty and feature importance out.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>

#include "api/json_body.h"
#include "api/prediction_service.h"
#include "api/predictions.h"
#include "auth/auth.h"
#include "http/server.h"
#include "models/registry.h"

namespace infera::api {

void register_kserve_routes(http::Server& server, models::Registry& models,
                            std::shared_ptr<PredictionService> service);

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxInstances = 10000;

http::Response invalid(const std::string& message, const char* param = nullptr) {
  json error = {{"message", message}, {"type", "invalid_request_error"}, {"code", "invalid_value"}};
  if (param != nullptr) error["param"] = param;
  return http::Response::json(400, json{{"error", error}}.dump());
}

http::Response predict_error(const Status& st) {
  switch (st.code()) {
    case StatusCode::kNotFound:
    case StatusCode::kUnavailable: return model_error_response(st);
    case StatusCode::kResourceExhausted: {
      // The model's queue is full (or memory pressure at load): retry shortly.
      http::Response r = http::Response::error(429, st.message(), "rate_limit_error", "queue_full");
      r.headers.emplace_back("Retry-After", "1");
      return r;
    }
    case StatusCode::kDeadlineExceeded:
      return http::Response::error(504, st.message(), "timeout_error", "timeout");
    case StatusCode::kPermissionDenied:
      return http::Response::error(403, st.message(), "invalid_request_error", "model_not_allowed");
    case StatusCode::kInvalidArgument:
      return http::Response::error(400, st.message(), "invalid_request_error", "invalid_value");
    default: return http::Response::error(500, st.message(), "server_error");
  }
}

// What the routes need from the model's schema, read once per request.
struct ModelFacts {
  std::string task;  // regression | binary | multiclass
  std::vector<std::string> classes;
  std::string method;  // uncertainty method
  double coverage = 0;
  std::vector<std::string> features;
  std::string importance_space;
};

ModelFacts facts_of(models::Predictor& p) {
  json s = p.schema();
  ModelFacts f;
  f.task = s.value("task", "regression");
  if (s.contains("classes")) f.classes = s["classes"].get<std::vector<std::string>>();
  f.method = s["uncertainty"].value("method", "none");
  f.coverage = s["uncertainty"].value("coverage", 0.0);
  f.features = p.feature_names();
  f.importance_space = s.value("importance_space", "prediction");
  return f;
}

const models::Tensor* find(const RowsResult& r, std::string_view name) {
  for (const auto& t : r.outputs) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

json label(const ModelFacts& f, size_t index) {
  if (index < f.classes.size()) return f.classes[index];
  return index;
}

// One row of the result as the seed's JSON.
json row_json(const ModelFacts& f, const RowsResult& r, size_t row) {
  json out;
  const models::Tensor* pred = find(r, "prediction");
  const int64_t groups = pred->shape[1];
  const float* p = pred->data.data() + row * static_cast<size_t>(groups);
  if (f.task == "binary") {
    out["prediction"] = label(f, p[0] >= 0.5f ? 1 : 0);
    out["probabilities"] = {{label(f, 0).is_string() ? label(f, 0).get<std::string>() : "0", 1.0 - p[0]},
                            {label(f, 1).is_string() ? label(f, 1).get<std::string>() : "1", p[0]}};
  } else if (f.task == "multiclass" && groups > 1) {
    size_t best = 0;
    json probs = json::object();
    for (int64_t c = 0; c < groups; ++c) {
      if (p[c] > p[best]) best = static_cast<size_t>(c);
      json l = label(f, static_cast<size_t>(c));
      probs[l.is_string() ? l.get<std::string>() : std::to_string(c)] = p[c];
    }
    out["prediction"] = label(f, best);
    out["probabilities"] = std::move(probs);
  } else if (f.task == "multiclass") {  // multi:softmax: the class index
    out["prediction"] = label(f, static_cast<size_t>(std::lround(p[0])));
  } else {
    out["prediction"] = p[0];
  }
  json u = {{"method", f.method}};
  const models::Tensor* lo = find(r, "prediction_lower");
  const models::Tensor* hi = find(r, "prediction_upper");
  if (lo != nullptr && hi != nullptr) {
    u["coverage"] = f.coverage;
    u["lower"] = lo->data[row];
    u["upper"] = hi->data[row];
    if (const models::Tensor* sd = find(r, "prediction_std")) u["std"] = sd->data[row];
  }
  out["uncertainty"] = std::move(u);
  if (const models::Tensor* imp = find(r, "feature_importance")) {
    // Per feature, then the bias; for classifiers, of the predicted class.
    const size_t per_group = f.features.size() + 1;
    size_t group = 0;
    if (groups > 1) {
      for (int64_t c = 1; c < groups; ++c) {
        if (p[c] > p[group]) group = static_cast<size_t>(c);
      }
    }
    const float* v = imp->data.data() + row * static_cast<size_t>(imp->shape[1]) + group * per_group;
    json values = json::object();
    for (size_t k = 0; k < f.features.size(); ++k) values[f.features[k]] = v[k];
    out["feature_importance"] = std::move(values);
    out["feature_importance_bias"] = v[f.features.size()];
    out["feature_importance_space"] = f.importance_space;
  }
  return out;
}

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

struct PredictOptions {
  bool explain = true;
  std::optional<double> timeout_s;
  std::optional<int> priority;
};

std::optional<http::Response> read_options(const json& body, PredictOptions& o) {
  if (body.contains("explain")) {
    if (!body["explain"].is_boolean()) return invalid("'explain' must be true or false", "explain");
    o.explain = body["explain"].get<bool>();
  }
  if (body.contains("timeout")) {
    if (!body["timeout"].is_number() || body["timeout"].get<double>() <= 0) {
      return invalid("'timeout' must be a positive number of seconds", "timeout");
    }
    o.timeout_s = body["timeout"].get<double>();
  }
  if (body.contains("priority")) {
    if (!body["priority"].is_number_integer() || body["priority"].get<int64_t>() < 0 ||
        body["priority"].get<int64_t>() > 2) {
      return invalid("'priority' must be 0 (high), 1 (normal) or 2 (low)", "priority");
    }
    o.priority = body["priority"].get<int>();
  }
  return std::nullopt;
}

void predict(const http::Request& req, http::Responder responder,
             const std::shared_ptr<PredictionService>& service, bool batch) {
  const auto start = Clock::now();
  http::Response error;
  std::optional<json> body = parse_json_object(req, error);
  if (!body) return responder.send(std::move(error));
  PredictOptions options;
  if (auto bad = read_options(*body, options)) return responder.send(std::move(*bad));
  json instances;
  if (batch) {
    const char* key = body->contains("instances") ? "instances" : "features";
    if (!body->contains(key) || !(*body)[key].is_array() || (*body)[key].empty()) {
      return responder.send(
          invalid("'instances' must be a non-empty array of {name: value} objects", "instances"));
    }
    if ((*body)[key].size() > kMaxInstances) {
      return responder.send(invalid(
          fmt::format("{} instances in one request; at most {}", (*body)[key].size(), kMaxInstances),
          "instances"));
    }
    instances = std::move((*body)[key]);
  } else {
    if (!body->contains("features")) {
      return responder.send(invalid("'features' (an object of {name: value}) is required", "features"));
    }
    instances = json::array({std::move((*body)["features"])});
  }
  std::string name(req.param("model"));
  const bool use_cache = !cache_bypassed(req);
  std::shared_ptr<const auth::Caller> caller = req.caller;
  service->acquire(name, caller.get(), [service, name, instances = std::move(instances), options,
                                        use_cache, caller, batch, start, responder](
                                           Result<std::shared_ptr<models::Lease>> lease) mutable {
    if (!lease.ok()) return responder.send(predict_error(lease.status()));
    responder.set_model(name);
    models::Predictor& predictor = *(*lease)->model().predictor();
    const size_t width = predictor.feature_names().size();
    if (width == 0) {
      return responder.send(invalid(fmt::format(
          "model '{}' takes tensors, not named features; use POST /v2/models/{}/infer", name, name)));
    }
    PredictionService::Rows rows;
    rows.data.resize(instances.size() * width);
    for (size_t i = 0; i < instances.size(); ++i) {
      Status st = predictor.features_to_row(instances[i], rows.data.data() + i * width);
      if (!st.ok()) {
        return responder.send(invalid(batch ? fmt::format("instances[{}]: {}", i, st.message()) : st.message(),
                                      batch ? "instances" : "features"));
      }
    }
    auto facts = std::make_shared<ModelFacts>(facts_of(predictor));
    rows.lease = std::move(lease).value();
    rows.rows = static_cast<int>(instances.size());
    if (!options.explain) {
      for (const auto& t : predictor.outputs()) {
        if (t.name != "feature_importance") rows.outputs.push_back(t.name);
      }
    }
    rows.priority = PredictionService::priority(caller.get(), options.priority);
    rows.deadline = service->deadline(options.timeout_s);
    rows.use_cache = use_cache;
    service->run(std::move(rows), [facts, name, batch, start, responder](Result<RowsResult> result) mutable {
      if (!result.ok()) return responder.send(predict_error(result.status()));
      const size_t n = static_cast<size_t>(find(*result, "prediction")->shape[0]);
      json out;
      if (batch) {
        json predictions = json::array();
        for (size_t i = 0; i < n; ++i) predictions.push_back(row_json(*facts, *result, i));
        out["predictions"] = std::move(predictions);
        out["cached_rows"] = result->cached;
      } else {
        out = row_json(*facts, *result, 0);
      }
      out["model"] = name;
      out["latency_ms"] = std::round(ms_since(start) * 1000) / 1000;
      out["cached"] = result->cached == static_cast<int>(n);
      http::Response r = http::Response::json(200, out.dump());
      r.headers.emplace_back("X-Cache", result->cache_tier);
      responder.send(std::move(r));
    });
  });
}

}  // namespace

void register_predict_routes(http::Server& server, models::Registry& models, cache::Cache* cache,
                             PredictRoutesConfig config) {
  auto service = std::make_shared<PredictionService>(models, cache, config.request_timeout_s);
  server.route("POST", "/api/v1/predict/{model}",
               http::Handler([service](const http::Request& req, http::Responder r) {
                 predict(req, std::move(r), service, false);
               }));
  server.route("POST", "/api/v1/predict/{model}/batch",
               http::Handler([service](const http::Request& req, http::Responder r) {
                 predict(req, std::move(r), service, true);
               }));
  server.route("GET", "/api/v1/models/{model}",
               http::Handler([service](const http::Request& req, http::Responder responder) {
                 std::string name(req.param("model"));
                 service->acquire(name, req.caller.get(), [name, responder](
                                                            Result<std::shared_ptr<models::Lease>> lease) mutable {
                   if (!lease.ok()) return responder.send(predict_error(lease.status()));
                   json s = (*lease)->model().predictor()->schema();
                   s["model"] = name;
                   s["kind"] = (*lease)->spec().kind;
                   s["max_batch_size"] = (*lease)->model().predictor()->max_batch_rows();
                   responder.send(http::Response::json(200, s.dump()));
                 });
               }));
  register_kserve_routes(server, models, service);
}

}  // namespace infera::api
