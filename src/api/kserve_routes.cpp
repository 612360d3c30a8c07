// The KServe / Open Inference Protocol v2 REST API on predictor models
// (api/predictions.h). Tensors travel as JSON (flat or nested `data`) or, with the
// binary tensor data extension, as raw little-endian bytes after a JSON header whose
// length the Inference-Header-Content-Length header gives. Errors are {"error": "..."}
// as the protocol says.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "api/json_body.h"
#include "api/prediction_service.h"
#include "auth/auth.h"
#include "http/server.h"
#include "models/registry.h"

namespace infera::api {
namespace {

using nlohmann::json;

http::Response v2_error(int status, const std::string& message) {
  return http::Response::json(status, json{{"error", message}}.dump());
}

http::Response v2_error(const Status& st) {
  switch (st.code()) {
    case StatusCode::kNotFound: return v2_error(404, st.message());
    case StatusCode::kInvalidArgument: return v2_error(400, st.message());
    case StatusCode::kPermissionDenied: return v2_error(403, st.message());
    case StatusCode::kDeadlineExceeded: return v2_error(504, st.message());
    case StatusCode::kResourceExhausted: {
      http::Response r = v2_error(429, st.message());
      r.headers.emplace_back("Retry-After", "1");
      return r;
    }
    case StatusCode::kUnavailable: {
      http::Response r = v2_error(503, st.message());
      r.headers.emplace_back("Retry-After", "1");
      return r;
    }
    default: return v2_error(500, st.message());
  }
}

// Bytes per element of the datatypes a tensor may arrive in (converted to FP32).
int element_bytes(const std::string& datatype) {
  if (datatype == "FP32" || datatype == "INT32" || datatype == "UINT32") return 4;
  if (datatype == "FP64" || datatype == "INT64" || datatype == "UINT64") return 8;
  if (datatype == "INT16" || datatype == "UINT16") return 2;
  if (datatype == "INT8" || datatype == "UINT8" || datatype == "BOOL") return 1;
  return 0;
}

float element_at(const char* p, const std::string& datatype) {
  auto load = [p](auto v) {
    std::memcpy(&v, p, sizeof(v));
    return static_cast<float>(v);
  };
  if (datatype == "FP32") return load(float{});
  if (datatype == "FP64") return load(double{});
  if (datatype == "INT64") return load(int64_t{});
  if (datatype == "UINT64") return load(uint64_t{});
  if (datatype == "INT32") return load(int32_t{});
  if (datatype == "UINT32") return load(uint32_t{});
  if (datatype == "INT16") return load(int16_t{});
  if (datatype == "UINT16") return load(uint16_t{});
  if (datatype == "INT8") return load(int8_t{});
  return load(uint8_t{});  // UINT8, BOOL
}

// Flattens nested JSON `data` into `out`; false on a non-numeric element.
bool flatten(const json& data, std::vector<float>& out, const std::string& datatype) {
  if (data.is_array()) {
    for (const json& d : data) {
      if (!flatten(d, out, datatype)) return false;
    }
    return true;
  }
  if (data.is_boolean() && datatype == "BOOL") {
    out.push_back(data.get<bool>() ? 1.0f : 0.0f);
    return true;
  }
  if (!data.is_number()) return false;
  out.push_back(data.get<float>());
  return true;
}

// The one input tensor of an inference request, as FP32 [rows, width].
struct Parsed {
  std::string id;
  models::Tensor input;
  std::vector<std::string> outputs;
  bool binary_output = false;
  std::optional<int> priority;
  std::optional<double> timeout_s;
};

Result<Parsed> parse_infer(const http::Request& req, const models::Predictor& predictor) {
  std::string_view header_length = req.header("Inference-Header-Content-Length");
  size_t json_bytes = req.body.size();
  if (!header_length.empty()) {
    char* end = nullptr;
    const std::string text(header_length);
    const unsigned long long n = std::strtoull(text.c_str(), &end, 10);
    if (end == text.c_str() || *end != '\0' || n > req.body.size()) {
      return Status::InvalidArgument(fmt::format(
          "Inference-Header-Content-Length {} is not a length within the {}-byte body", text,
          req.body.size()));
    }
    json_bytes = static_cast<size_t>(n);
  }
  json doc = json::parse(std::string_view(req.body).substr(0, json_bytes), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Status::InvalidArgument("the request is not a JSON object (KServe v2 inference request)");
  }
  Parsed p;
  if (doc.contains("id")) {
    if (!doc["id"].is_string()) return Status::InvalidArgument("'id' must be a string");
    p.id = doc["id"].get<std::string>();
  }
  if (doc.contains("parameters")) {
    const json& params = doc["parameters"];
    if (!params.is_object()) return Status::InvalidArgument("'parameters' must be an object");
    if (params.contains("priority")) {
      // Triton's levels: 1 is the highest, 0 the default.
      if (!params["priority"].is_number_integer() || params["priority"].get<int64_t>() < 0) {
        return Status::InvalidArgument("'parameters.priority' must be a non-negative integer");
      }
      const auto level = params["priority"].get<int64_t>();
      if (level > 0) p.priority = static_cast<int>(std::min<int64_t>(level - 1, 2));
    }
    if (params.contains("timeout")) {
      // Microseconds, as Triton's clients send it.
      if (!params["timeout"].is_number() || params["timeout"].get<double>() <= 0) {
        return Status::InvalidArgument("'parameters.timeout' must be a positive number of microseconds");
      }
      p.timeout_s = params["timeout"].get<double>() / 1e6;
    }
    if (params.contains("binary_data_output") && params["binary_data_output"].is_boolean()) {
      p.binary_output = params["binary_data_output"].get<bool>();
    }
  }
  if (!doc.contains("inputs") || !doc["inputs"].is_array() || doc["inputs"].size() != 1) {
    return Status::InvalidArgument(fmt::format("'inputs' must hold exactly one tensor, '{}'",
                                               predictor.inputs().at(0).name));
  }
  const json& in = doc["inputs"][0];
  if (!in.is_object() || !in.contains("name") || !in["name"].is_string() || !in.contains("shape") ||
      !in["shape"].is_array() || !in.contains("datatype") || !in["datatype"].is_string()) {
    return Status::InvalidArgument("an input needs 'name', 'shape' and 'datatype'");
  }
  const models::TensorSpec& spec = predictor.inputs().at(0);
  p.input.name = in["name"].get<std::string>();
  if (p.input.name != spec.name) {
    return Status::InvalidArgument(
        fmt::format("input '{}' is not the model's input '{}'", p.input.name, spec.name));
  }
  const std::string datatype = in["datatype"].get<std::string>();
  const int bytes = element_bytes(datatype);
  if (bytes == 0) {
    return Status::InvalidArgument(fmt::format(
        "datatype '{}' is not supported for input '{}' (FP32, FP64, INT8-64, UINT8-64, BOOL)",
        datatype, spec.name));
  }
  size_t count = 1;
  for (const json& d : in["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() < 1 || d.get<int64_t>() > (1 << 24)) {
      return Status::InvalidArgument(fmt::format("input '{}': shape dimensions must be positive integers",
                                                 spec.name));
    }
    p.input.shape.push_back(d.get<int64_t>());
    count *= static_cast<size_t>(d.get<int64_t>());
    if (count > (size_t{1} << 26)) return Status::InvalidArgument("input tensor too large");
  }
  const json* binary_size = nullptr;
  if (in.contains("parameters") && in["parameters"].is_object() &&
      in["parameters"].contains("binary_data_size")) {
    binary_size = &in["parameters"]["binary_data_size"];
  }
  if (binary_size != nullptr) {
    if (!binary_size->is_number_unsigned() ||
        binary_size->get<uint64_t>() != count * static_cast<size_t>(bytes) ||
        json_bytes + binary_size->get<uint64_t>() != req.body.size()) {
      return Status::InvalidArgument(fmt::format(
          "input '{}': binary_data_size must be {} bytes ({} x {}) and follow the JSON header",
          spec.name, count * static_cast<size_t>(bytes), count, datatype));
    }
    p.input.data.resize(count);
    const char* raw = req.body.data() + json_bytes;
    for (size_t i = 0; i < count; ++i) p.input.data[i] = element_at(raw + i * bytes, datatype);
  } else {
    if (!in.contains("data")) return Status::InvalidArgument(fmt::format("input '{}' has no 'data'", spec.name));
    p.input.data.reserve(count);
    if (!flatten(in["data"], p.input.data, datatype)) {
      return Status::InvalidArgument(fmt::format("input '{}': 'data' must hold numbers", spec.name));
    }
    if (p.input.data.size() != count) {
      return Status::InvalidArgument(fmt::format("input '{}': 'data' has {} values but its shape holds {}",
                                                 spec.name, p.input.data.size(), count));
    }
  }
  for (float v : p.input.data) {
    if (!std::isfinite(v) && !std::isnan(v)) {
      return Status::InvalidArgument(fmt::format("input '{}' holds an infinite value", spec.name));
    }
  }
  if (doc.contains("outputs")) {
    if (!doc["outputs"].is_array()) return Status::InvalidArgument("'outputs' must be an array");
    for (const json& o : doc["outputs"]) {
      if (!o.is_object() || !o.contains("name") || !o["name"].is_string()) {
        return Status::InvalidArgument("each of 'outputs' needs a 'name'");
      }
      p.outputs.push_back(o["name"].get<std::string>());
      if (o.contains("parameters") && o["parameters"].is_object() &&
          o["parameters"].value("binary_data", false)) {
        p.binary_output = true;
      }
    }
  }
  return p;
}

json tensor_meta(const models::TensorSpec& t) {
  return {{"name", t.name}, {"datatype", t.datatype}, {"shape", t.shape}};
}

}  // namespace

void register_kserve_routes(http::Server& server, models::Registry& models,
                            std::shared_ptr<PredictionService> service) {
  server.route("GET", "/v2", http::SyncHandler([](const http::Request&) {
                 return http::Response::json(
                     200, json{{"name", "infera"},
                               {"version", INFERA_VERSION},
                               {"extensions", {"binary_tensor_data", "model_repository"}}}
                              .dump());
               }));
  server.route("GET", "/v2/health/live", http::SyncHandler([](const http::Request&) {
                 return http::Response::json(200, R"({"live":true})");
               }));
  server.route("GET", "/v2/health/ready", http::SyncHandler([](const http::Request&) {
                 return http::Response::json(200, R"({"ready":true})");
               }));
  server.route("GET", "/v2/models/{model}/ready", http::SyncHandler([&models](const http::Request& req) {
                 const std::string name(req.param("model"));
                 if (req.caller != nullptr && !req.caller->may_use_model(name)) {
                   return v2_error(403, fmt::format("model '{}' is not allowed for this key", name));
                 }
                 for (const auto& s : models.list()) {
                   if (s.spec.name != name) continue;
                   const bool ready = s.state == models::ModelState::kReady;
                   return http::Response::json(ready ? 200 : 400,
                                               json{{"name", name}, {"ready", ready}}.dump());
                 }
                 return v2_error(404, fmt::format("model '{}' is not known", name));
               }));
  server.route("GET", "/v2/models/{model}", http::Handler([service](const http::Request& req, http::Responder r) {
                 const std::string name(req.param("model"));
                 service->acquire(name, req.caller.get(), [name, r](Result<std::shared_ptr<models::Lease>> lease) mutable {
                   if (!lease.ok()) return r.send(v2_error(lease.status()));
                   const models::Predictor& p = *(*lease)->model().predictor();
                   json inputs = json::array(), outputs = json::array();
                   for (const auto& t : p.inputs()) inputs.push_back(tensor_meta(t));
                   for (const auto& t : p.outputs()) outputs.push_back(tensor_meta(t));
                   r.send(http::Response::json(
                       200, json{{"name", name},
                                 {"versions", {"1"}},
                                 {"platform", (*lease)->spec().kind},
                                 {"inputs", inputs},
                                 {"outputs", outputs}}
                                .dump()));
                 });
               }));
  server.route("POST", "/v2/models/{model}/infer", http::Handler([service](const http::Request& req, http::Responder r) {
                 const std::string name(req.param("model"));
                 auto request = std::make_shared<http::Request>(req);
                 const bool use_cache = !cache_bypassed(req);
                 service->acquire(name, req.caller.get(), [service, name, request, use_cache, r](
                                                              Result<std::shared_ptr<models::Lease>> lease) mutable {
                   if (!lease.ok()) return r.send(v2_error(lease.status()));
                   r.set_model(name);
                   models::Predictor& predictor = *(*lease)->model().predictor();
                   auto parsed = parse_infer(*request, predictor);
                   if (!parsed.ok()) return r.send(v2_error(parsed.status()));
                   const models::TensorSpec& spec = predictor.inputs().at(0);
                   const auto& shape = parsed->input.shape;
                   // [rows, dims...] as the model declares its dims, or [dims...] for one row.
                   const std::vector<int64_t> dims(spec.shape.begin() + 1, spec.shape.end());
                   int64_t rows = 0;
                   if (shape.size() == dims.size() + 1 && std::equal(dims.begin(), dims.end(), shape.begin() + 1)) {
                     rows = shape[0];
                   } else if (shape == dims) {
                     rows = 1;
                   } else {
                     auto text = [](const std::vector<int64_t>& v) {
                       std::string s;
                       for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
                       return s;
                     };
                     return r.send(v2_error(400, fmt::format("input '{}' has shape [{}]; the model takes [-1,{}]",
                                                             spec.name, text(shape), text(dims))));
                   }
                   PredictionService::Rows rows_request;
                   rows_request.lease = std::move(lease).value();
                   rows_request.data = std::move(parsed->input.data);
                   rows_request.rows = static_cast<int>(rows);
                   rows_request.outputs = parsed->outputs;
                   rows_request.priority = PredictionService::priority(request->caller.get(), parsed->priority);
                   rows_request.deadline = service->deadline(parsed->timeout_s);
                   rows_request.use_cache = use_cache;
                   service->run(std::move(rows_request), [name, id = parsed->id, binary = parsed->binary_output,
                                                          r](Result<RowsResult> result) mutable {
                     if (!result.ok()) return r.send(v2_error(result.status()));
                     // Written directly: a classifier's 1,000 logits per row as nlohmann
                     // values cost a node each and held up the batcher thread that runs this.
                     std::string body = "{\"model_name\":";
                     append_json_string(body, name);
                     body += ",\"model_version\":\"1\"";
                     if (!id.empty()) {
                       body += ",\"id\":";
                       append_json_string(body, id);
                     }
                     body += ",\"outputs\":[";
                     std::string raw;
                     for (size_t k = 0; k < result->outputs.size(); ++k) {
                       const models::Tensor& t = result->outputs[k];
                       if (k > 0) body += ',';
                       body += "{\"name\":";
                       append_json_string(body, t.name);
                       body += ",\"datatype\":\"FP32\",\"shape\":[";
                       for (size_t d = 0; d < t.shape.size(); ++d) {
                         if (d > 0) body += ',';
                         body += std::to_string(t.shape[d]);
                       }
                       body += ']';
                       if (binary) {
                         body += fmt::format(",\"parameters\":{{\"binary_data_size\":{}}}}}", t.data.size() * 4);
                         raw.append(reinterpret_cast<const char*>(t.data.data()), t.data.size() * 4);
                       } else {
                         body += ",\"data\":";
                         append_json_floats(body, t.data);
                         body += '}';
                       }
                     }
                     body += "]}";
                     http::Response resp;
                     if (binary) {
                       const size_t header_size = body.size();
                       resp = http::Response::json(200, body + raw);
                       resp.content_type = "application/octet-stream";
                       resp.headers.emplace_back("Inference-Header-Content-Length", std::to_string(header_size));
                     } else {
                       resp = http::Response::json(200, std::move(body));
                     }
                     resp.headers.emplace_back("X-Cache", result->cache_tier);
                     r.send(std::move(resp));
                   });
                 });
               }));
  server.route("POST", "/v2/repository/index", http::SyncHandler([&models](const http::Request& req) {
                 json index = json::array();
                 for (const auto& s : models.list()) {
                   if (req.caller != nullptr && !req.caller->may_use_model(s.spec.name)) continue;
                   json row = {{"name", s.spec.name}, {"version", "1"},
                               {"state", s.state == models::ModelState::kReady ? "READY" : "UNAVAILABLE"}};
                   if (!s.last_error.empty()) row["reason"] = s.last_error;
                   index.push_back(std::move(row));
                 }
                 return http::Response::json(200, index.dump());
               }));
  for (const char* action : {"load", "unload"}) {
    const bool load = std::string_view(action) == "load";
    server.route("POST", fmt::format("/v2/repository/models/{{model}}/{}", action),
                 http::Handler([&models, load](const http::Request& req, http::Responder r) {
                   const std::string name(req.param("model"));
                   auto done = [r](Status st) mutable {
                     if (!st.ok()) return r.send(v2_error(st));
                     r.send(http::Response::json(200, "{}"));
                   };
                   if (load) {
                     models.load(name, done);
                   } else {
                     models.unload(name, done);
                   }
                 }));
  }
}

}  // namespace infera::api
