#include "api/embeddings.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <future>
#include <nlohmann/json.hpp>

#include "api/json_body.h"
#include "auth/auth.h"
#include "cache/cache.h"
#include "http/server.h"
#include "models/registry.h"

namespace infera::api {
namespace {

using nlohmann::json;

constexpr size_t kMaxInputs = 2048;  // OpenAI's limit per request

// A cached vector: the input's token count (u32), then dims F32, little-endian.
std::string encode_entry(uint32_t tokens, const float* v, int dims) {
  std::string out(4 + static_cast<size_t>(dims) * 4, '\0');
  std::memcpy(out.data(), &tokens, 4);
  std::memcpy(out.data() + 4, v, static_cast<size_t>(dims) * 4);
  return out;
}

bool decode_entry(const std::string& entry, int dims, uint32_t* tokens, float* v) {
  if (entry.size() != 4 + static_cast<size_t>(dims) * 4) return false;
  std::memcpy(tokens, entry.data(), 4);
  std::memcpy(v, entry.data() + 4, static_cast<size_t>(dims) * 4);
  for (int i = 0; i < dims; ++i) {
    if (!std::isfinite(v[i])) return false;
  }
  return true;
}

std::string base64(const uint8_t* data, size_t n) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    const uint32_t v = (uint32_t{data[i]} << 16) | (uint32_t{data[i + 1]} << 8) | data[i + 2];
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < n) {
    uint32_t v = uint32_t{data[i]} << 16;
    if (i + 1 < n) v |= uint32_t{data[i + 1]} << 8;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < n ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// What one request carries through the cache lookups and the model's pass.
struct Pending {
  EmbedResult result;
  std::vector<std::string> keys;       // cache key per text input ("" = not cached)
  std::vector<size_t> rows;            // result row of each input sent to the model
  std::vector<uint32_t> token_counts;  // per input sent to the model
  cache::Tier worst = cache::Tier::kL1;
};

}  // namespace

Embedder::Embedder(models::Registry& models, cache::Cache* cache) : models_(models), cache_(cache) {}

std::string Embedder::default_model() const { return models_.first_of_kind("embedding"); }

void Embedder::embed(EmbedRequest request, EmbedDone done) {
  std::string name = request.model.empty() ? default_model() : request.model;
  if (name.empty()) {
    return done(Status::NotFound(
        "no embedding model is configured on this server (declare one: --model name=file.gguf "
        "with a BERT-family file, or kind = \"embedding\" in the models file)"));
  }
  if (request.caller != nullptr && !request.caller->may_use_model(name)) {
    return done(Status::PermissionDenied(fmt::format("key '{}' (role {}) may not use model '{}'",
                                                     request.caller->name, request.caller->role,
                                                     name)));
  }
  models_.acquire(name, std::nullopt, [this, name, request = std::move(request), done = std::move(done)](
                                          Result<std::shared_ptr<models::Lease>> leased) mutable {
    if (!leased.ok()) return done(leased.status());
    std::shared_ptr<models::Lease> lease = std::move(leased).value();
    models::TextEmbedder* model = lease->model().text_embedder();
    if (model == nullptr) {
      return done(Status::InvalidArgument(fmt::format(
          "model '{}' (kind {}) does not embed text; use an embedding model", name, lease->spec().kind)));
    }
    if (model->pooling().empty()) {
      return done(Status::FailedPrecondition(fmt::format(
          "model '{}': {} declares no pooling type ({{arch}}.pooling_type), so infera cannot tell "
          "how its token states become one vector; add the key to the file, or set pooling = "
          "\"mean\" or \"last\" for the model in the models file",
          name, lease->spec().path)));
    }
    auto p = std::make_shared<Pending>();
    const int dims = model->dimensions();
    const bool from_text = !request.texts.empty();
    const size_t n = from_text ? request.texts.size() : request.token_inputs.size();
    p->result.model = name;
    p->result.dimensions = dims;
    p->result.allowed_dimensions = lease->spec().dimensions;
    p->result.vectors.assign(n * static_cast<size_t>(dims), 0.0f);
    std::vector<std::vector<int32_t>> todo;
    const bool use_cache = cache_ != nullptr && request.use_cache && from_text;
    for (size_t i = 0; i < n; ++i) {
      if (use_cache) {
        std::string key = cache::KeyBuilder(name, lease->identity(), "embedding")
                              .param("text", request.texts[i])
                              .param("truncate", request.truncate ? 1 : 0)
                              .key();
        cache::Lookup hit = cache_->get(key);
        uint32_t tokens = 0;
        if (hit.value && decode_entry(*hit.value, dims, &tokens,
                                      p->result.vectors.data() + i * static_cast<size_t>(dims))) {
          p->result.prompt_tokens += tokens;
          ++p->result.cached;
          p->worst = cache::slower_tier(p->worst, hit.tier);
          continue;
        }
        p->keys.push_back(std::move(key));
      }
      std::vector<int32_t> ids;
      if (from_text) {
        auto tokenized = model->tokenize(request.texts[i], request.truncate);
        if (!tokenized.ok()) {
          return done(Status::InvalidArgument(
              fmt::format("input {}: {}", i, tokenized.status().message())));
        }
        ids = std::move(tokenized).value();
      } else {
        ids = std::move(request.token_inputs[i]);
        if (request.truncate && ids.size() > static_cast<size_t>(model->max_tokens())) {
          ids.resize(static_cast<size_t>(model->max_tokens()));
        }
      }
      p->token_counts.push_back(static_cast<uint32_t>(ids.size()));
      p->result.prompt_tokens += static_cast<int64_t>(ids.size());
      p->rows.push_back(i);
      todo.push_back(std::move(ids));
    }
    if (todo.empty()) {
      p->result.cache_tier = cache::x_cache_header(p->worst);
      return done(std::move(p->result));
    }
    p->result.cache_tier = cache::x_cache_header(cache::Tier::kMiss);
    cache::Cache* cache = use_cache ? cache_ : nullptr;
    model->embed(std::move(todo), [p, lease, dims, cache, done = std::move(done)](
                                      Result<std::vector<float>> vectors) mutable {
      if (!vectors.ok()) return done(vectors.status());
      const size_t d = static_cast<size_t>(dims);
      for (size_t j = 0; j < p->rows.size(); ++j) {
        const float* v = vectors->data() + j * d;
        std::copy(v, v + d, p->result.vectors.begin() + static_cast<std::ptrdiff_t>(p->rows[j] * d));
        if (cache != nullptr) cache->put(p->keys[j], encode_entry(p->token_counts[j], v, dims));
      }
      lease.reset();
      done(std::move(p->result));
    });
  });
}

Result<std::vector<int32_t>> Embedder::tokenize_blocking(const std::string& model,
                                                         const std::string& text) {
  std::promise<Result<std::vector<int32_t>>> promise;
  auto future = promise.get_future();
  models_.acquire(model, std::nullopt, [&](Result<std::shared_ptr<models::Lease>> lease) {
    if (!lease.ok()) return promise.set_value(lease.status());
    models::TextEmbedder* m = (*lease)->model().text_embedder();
    if (m == nullptr) {
      return promise.set_value(
          Status::InvalidArgument(fmt::format("model '{}' does not embed text", model)));
    }
    promise.set_value(m->tokenize(text, /*truncate=*/true));
  });
  return future.get();
}

http::Response embed_error_response(const Status& status) {
  switch (status.code()) {
    case StatusCode::kNotFound:
    case StatusCode::kResourceExhausted:
    case StatusCode::kUnavailable: return model_error_response(status);
    case StatusCode::kPermissionDenied:
      return http::Response::error(403, status.message(), "invalid_request_error", "model_not_allowed");
    case StatusCode::kFailedPrecondition:
      return http::Response::error(400, status.message(), "invalid_request_error",
                                   "model_not_supported");
    case StatusCode::kInvalidArgument:
      return http::Response::error(400, status.message(), "invalid_request_error", "invalid_value");
    default: return http::Response::error(500, status.message(), "server_error");
  }
}

namespace {

http::Response invalid(const std::string& message, const char* param) {
  json body = {{"error",
                {{"message", message}, {"type", "invalid_request_error"}, {"param", param},
                 {"code", "invalid_value"}}}};
  return http::Response::json(400, body.dump());
}

// Reads `input` into texts or token arrays; the error response when malformed.
std::optional<http::Response> parse_input(const json& input, EmbedRequest& out) {
  auto token_array = [](const json& a, std::vector<int32_t>& ids) {
    for (const json& t : a) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > INT32_MAX) return false;
      ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
    }
    return true;
  };
  if (input.is_string()) {
    if (input.get_ref<const std::string&>().empty()) return invalid("'input' is an empty string", "input");
    out.texts.push_back(input.get<std::string>());
    return std::nullopt;
  }
  if (!input.is_array() || input.empty()) {
    return invalid("'input' must be a non-empty string, array of strings, array of token ids, or "
                   "array of token id arrays",
                   "input");
  }
  if (input.size() > kMaxInputs) {
    return invalid(fmt::format("'input' has {} items; at most {} per request", input.size(), kMaxInputs),
                   "input");
  }
  if (input[0].is_number_integer()) {  // one input as token ids
    std::vector<int32_t> ids;
    if (!token_array(input, ids)) return invalid("'input' mixes token ids with other values", "input");
    out.token_inputs.push_back(std::move(ids));
    return std::nullopt;
  }
  for (size_t i = 0; i < input.size(); ++i) {
    const json& item = input[i];
    if (item.is_string()) {
      if (!out.token_inputs.empty()) return invalid("'input' mixes strings and token arrays", "input");
      if (item.get_ref<const std::string&>().empty())
        return invalid(fmt::format("'input[{}]' is an empty string", i), "input");
      out.texts.push_back(item.get<std::string>());
    } else if (item.is_array()) {
      if (!out.texts.empty()) return invalid("'input' mixes strings and token arrays", "input");
      std::vector<int32_t> ids;
      if (item.empty() || !token_array(item, ids))
        return invalid(fmt::format("'input[{}]' must be a non-empty array of token ids", i), "input");
      out.token_inputs.push_back(std::move(ids));
    } else {
      return invalid(fmt::format("'input[{}]' must be a string or an array of token ids", i), "input");
    }
  }
  return std::nullopt;
}

bool no_cache(const http::Request& req) {
  std::string value(req.header("Cache-Control"));
  for (char& c : value) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return value.find("no-cache") != std::string::npos;
}

}  // namespace

void register_embedding_routes(http::Server& server, Embedder& embedder) {
  server.route("POST", "/v1/embeddings", http::Handler([&embedder](const http::Request& req,
                                                                     http::Responder responder) {
    http::Response error;
    std::optional<json> body = parse_json_object(req, error);
    if (!body) return responder.send(std::move(error));
    EmbedRequest request;
    if (!body->contains("input")) return responder.send(invalid("'input' is required", "input"));
    if (auto bad = parse_input((*body)["input"], request)) return responder.send(std::move(*bad));
    if (body->contains("model")) {
      if (!(*body)["model"].is_string()) return responder.send(invalid("'model' must be a string", "model"));
      request.model = (*body)["model"].get<std::string>();
    }
    bool base64_format = false;
    if (body->contains("encoding_format")) {
      const json& f = (*body)["encoding_format"];
      if (!f.is_string() || (f != "float" && f != "base64")) {
        return responder.send(invalid("'encoding_format' must be \"float\" or \"base64\"", "encoding_format"));
      }
      base64_format = f == "base64";
    }
    std::optional<int> dimensions;
    if (body->contains("dimensions")) {
      const json& d = (*body)["dimensions"];
      if (!d.is_number_integer() || d.get<int64_t>() < 1 || d.get<int64_t>() > 65536) {
        return responder.send(invalid("'dimensions' must be a positive integer", "dimensions"));
      }
      dimensions = d.get<int>();
    }
    if (body->contains("truncate")) {
      if (!(*body)["truncate"].is_boolean())
        return responder.send(invalid("'truncate' must be true or false", "truncate"));
      request.truncate = (*body)["truncate"].get<bool>();
    }
    if (body->contains("user") && !(*body)["user"].is_string()) {
      return responder.send(invalid("'user' must be a string", "user"));
    }
    request.use_cache = !no_cache(req);
    request.caller = req.caller.get();
    std::shared_ptr<const auth::Caller> caller = req.caller;
    embedder.embed(std::move(request), [responder, dimensions, base64_format, caller](
                                           Result<EmbedResult> result) mutable {
      if (!result.ok()) return responder.send(embed_error_response(result.status()));
      responder.set_model(result->model);
      const int full = result->dimensions;
      int dims = full;
      if (dimensions && *dimensions != full) {
        const auto& allowed = result->allowed_dimensions;
        if (std::find(allowed.begin(), allowed.end(), *dimensions) == allowed.end()) {
          std::string list = fmt::format("{}", full);
          for (int a : allowed) list += fmt::format(", {}", a);
          return responder.send(invalid(
              fmt::format("model '{}' does not support dimensions={} (it declares: {})",
                          result->model, *dimensions, list),
              "dimensions"));
        }
        dims = *dimensions;
      }
      if (caller) caller->charge_tokens(result->prompt_tokens);
      const size_t n = result->vectors.size() / static_cast<size_t>(full);
      std::string out;
      out.reserve(64 + n * static_cast<size_t>(dims) * (base64_format ? 6 : 12));
      out += "{\"object\":\"list\",\"data\":[";
      std::vector<float> row(static_cast<size_t>(dims));
      for (size_t i = 0; i < n; ++i) {
        const float* v = result->vectors.data() + i * static_cast<size_t>(full);
        std::copy(v, v + dims, row.begin());
        if (dims != full) {  // cut and make unit length again
          double sq = 0;
          for (float x : row) sq += static_cast<double>(x) * x;
          if (sq > 0) {
            const auto inv = static_cast<float>(1.0 / std::sqrt(sq));
            for (float& x : row) x *= inv;
          }
        }
        fmt::format_to(std::back_inserter(out), "{}{{\"object\":\"embedding\",\"index\":{},\"embedding\":",
                       i == 0 ? "" : ",", i);
        if (base64_format) {
          out += '"';
          out += base64(reinterpret_cast<const uint8_t*>(row.data()), row.size() * 4);
          out += '"';
        } else {
          out += '[';
          for (int k = 0; k < dims; ++k) {
            if (k) out += ',';
            fmt::format_to(std::back_inserter(out), "{}", row[static_cast<size_t>(k)]);
          }
          out += ']';
        }
        out += '}';
      }
      out += "],\"model\":";
      append_json_string(out, result->model);
      fmt::format_to(std::back_inserter(out),
                     ",\"usage\":{{\"prompt_tokens\":{0},\"total_tokens\":{0}}}}}", result->prompt_tokens);
      http::Response r = http::Response::json(200, std::move(out));
      r.headers.emplace_back("X-Cache", result->cache_tier);
      r.headers.emplace_back("X-Cache-Inputs", fmt::format("{}/{}", result->cached, n));
      responder.send(std::move(r));
    });
  }));
}

}  // namespace infera::api
