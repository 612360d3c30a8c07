#include "api/knowledge_routes.h"

#include <fmt/format.h>

#include <chrono>
#include <future>
#include <variant>
#include <nlohmann/json.hpp>

#include "api/embeddings.h"
#include "api/json_body.h"
#include "auth/auth.h"
#include "http/server.h"
#include "knowledge/knowledge.h"
#include "models/registry.h"

namespace infera::api {
namespace {

using nlohmann::json;

// ---- the embedding adapter ----

class KnowledgeEmbedding final : public knowledge::Embedding {
 public:
  KnowledgeEmbedding(Embedder& embedder, models::Registry& models)
      : embedder_(embedder), models_(models) {}

  std::string default_model() const override { return embedder_.default_model(); }

  Result<std::vector<float>> embed(const std::string& model, std::vector<std::string> texts,
                                   int* dims) override {
    std::promise<Result<EmbedResult>> promise;
    auto future = promise.get_future();
    EmbedRequest request;
    request.model = model;
    request.texts = std::move(texts);
    request.truncate = true;
    embedder_.embed(std::move(request), [&promise](Result<EmbedResult> r) { promise.set_value(std::move(r)); });
    Result<EmbedResult> result = future.get();
    if (!result.ok()) return result.status();
    *dims = result->dimensions;
    return std::move(result->vectors);
  }

  void embed_async(const std::string& model, std::string text, EmbedDone done) override {
    EmbedRequest request;
    request.model = model;
    request.texts.push_back(std::move(text));
    request.truncate = true;
    embedder_.embed(std::move(request), [done = std::move(done)](Result<EmbedResult> r) {
      if (!r.ok()) return done(r.status());
      done(std::move(r->vectors));
    });
  }

  Result<std::pair<knowledge::TokenCounter, size_t>> token_counter(const std::string& model) override {
    std::promise<Result<std::shared_ptr<models::Lease>>> promise;
    auto future = promise.get_future();
    models_.acquire(model, std::nullopt,
                    [&promise](Result<std::shared_ptr<models::Lease>> l) { promise.set_value(std::move(l)); });
    Result<std::shared_ptr<models::Lease>> lease = future.get();
    if (!lease.ok()) return lease.status();
    std::shared_ptr<models::Lease> held = std::move(lease).value();
    models::TextEmbedder* embedder = held->model().text_embedder();
    if (embedder == nullptr) {
      return Status::InvalidArgument(fmt::format("model '{}' does not embed text", model));
    }
    const size_t max = static_cast<size_t>(embedder->max_tokens());
    knowledge::TokenCounter counter = [held, embedder](std::string_view text) {
      return embedder->count_tokens(text);
    };
    return std::make_pair(std::move(counter), max);
  }

 private:
  Embedder& embedder_;
  models::Registry& models_;
};

// ---- helpers ----

std::string owner_of(const http::Request& req) { return req.caller ? req.caller->name : std::string(); }
bool is_admin(const http::Request& req) { return req.caller == nullptr || req.caller->admin; }

int64_t millis_to_seconds(int64_t ms) { return ms / 1000; }

json document_json(const store::Document& d) {
  const double progress =
      d.status == store::DocumentStatus::kReady
          ? 1.0
          : (d.chunks_total > 0 ? static_cast<double>(d.chunks_done) / static_cast<double>(d.chunks_total) : 0.0);
  json j = {{"id", d.id},
            {"object", "document"},
            {"collection", d.collection},
            {"name", d.content.name},
            {"format", d.content.format},
            {"title", d.content.title},
            {"bytes", d.content.bytes},
            {"status", store::status_name(d.status)},
            {"chunks_total", d.chunks_total},
            {"chunks_done", d.chunks_done},
            {"progress", progress},
            {"owner", d.owner},
            {"created_at", millis_to_seconds(d.created_at_ms)},
            {"updated_at", millis_to_seconds(d.updated_at_ms)}};
  if (!d.error.empty()) j["error"] = d.error;
  return j;
}

http::Response status_response(const Status& st) {
  switch (st.code()) {
    case StatusCode::kNotFound: return http::Response::error(404, st.message(), "invalid_request_error", "not_found");
    case StatusCode::kInvalidArgument:
    case StatusCode::kUnsupported:
      return http::Response::error(400, st.message(), "invalid_request_error", "invalid_value");
    case StatusCode::kPermissionDenied:
      return http::Response::error(403, st.message(), "invalid_request_error", "forbidden");
    default: return http::Response::error(500, st.message(), "server_error");
  }
}

http::Response invalid(const std::string& message) {
  return http::Response::error(400, message, "invalid_request_error", "invalid_value");
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// An upload from any of the three body forms; the error response when malformed.
std::variant<knowledge::Upload, http::Response> read_upload(const http::Request& req) {
  knowledge::Upload u;
  u.owner = owner_of(req);
  const std::string type = lower(req.header("Content-Type"));
  if (type.rfind("multipart/form-data", 0) == 0) {
    auto parts = parse_multipart(req.header("Content-Type"), req.body);
    if (!parts.ok()) return invalid(parts.status().message());
    bool have_file = false;
    for (const FormPart& p : *parts) {
      if (p.name == "file" || (!p.filename.empty() && !have_file)) {
        if (have_file) return invalid("one document per upload: the form has two files");
        have_file = true;
        u.name = p.filename.empty() ? "document" : p.filename;
        u.content_type = p.content_type;
        u.bytes = std::string(p.data);
      } else if (p.name == "collection") {
        u.collection = std::string(p.data);
      } else if (p.name == "name") {
        u.name = std::string(p.data);
      } else if (p.name == "embedding_model") {
        u.embedding_model = std::string(p.data);
      }
    }
    if (!have_file) return invalid("the form has no 'file' part");
  } else if (type.rfind("application/json", 0) == 0) {
    http::Response error;
    std::optional<json> body = parse_json_object(req, error);
    if (!body) return error;
    auto str = [&](const char* key, std::string& out) -> bool {
      if (!body->contains(key)) return true;
      if (!(*body)[key].is_string()) return false;
      out = (*body)[key].get<std::string>();
      return true;
    };
    std::string text, b64;
    for (const char* key : {"collection", "name", "content_type", "embedding_model", "text", "content_base64"}) {
      std::string* out = std::string_view(key) == "collection"        ? &u.collection
                         : std::string_view(key) == "name"            ? &u.name
                         : std::string_view(key) == "content_type"    ? &u.content_type
                         : std::string_view(key) == "embedding_model" ? &u.embedding_model
                         : std::string_view(key) == "text"            ? &text
                                                                      : &b64;
      if (!str(key, *out)) return invalid(fmt::format("'{}' must be a string", key));
    }
    if (body->contains("text") == body->contains("content_base64")) {
      return invalid("give the document as 'text' or as 'content_base64' (one of them)");
    }
    if (body->contains("text")) {
      u.bytes = std::move(text);
      if (u.content_type.empty() && u.name.empty()) u.content_type = "text/plain";
    } else {
      auto decoded = decode_base64(b64);
      if (!decoded) return invalid("'content_base64' is not valid base64");
      u.bytes = std::move(*decoded);
    }
    if (u.name.empty()) u.name = "document";
  } else {
    u.bytes = req.body;
    u.content_type = std::string(req.header("Content-Type"));
    u.collection = query_value(req.query, "collection").value_or("");
    u.name = query_value(req.query, "name").value_or("document");
    u.embedding_model = query_value(req.query, "embedding_model").value_or("");
  }
  if (auto c = query_value(req.query, "collection"); c && u.collection.empty()) u.collection = *c;
  return u;
}

// The document `id` from the path, if the caller may change it.
std::variant<store::Document, http::Response> owned_document(knowledge::Knowledge& k,
                                                             const http::Request& req, bool write) {
  const std::string text(req.param("id"));
  char* end = nullptr;
  const long long id = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || id <= 0) return invalid(fmt::format("'{}' is not a document id", text));
  auto doc = k.store().get_document(id);
  if (!doc.ok()) return status_response(doc.status());
  if (write && !is_admin(req) && doc->owner != owner_of(req)) {
    return http::Response::error(403, fmt::format("document {} belongs to another key", id),
                                 "invalid_request_error", "forbidden");
  }
  return *doc;
}

}  // namespace

std::unique_ptr<knowledge::Embedding> make_knowledge_embedding(Embedder& embedder,
                                                               models::Registry& models) {
  return std::make_unique<KnowledgeEmbedding>(embedder, models);
}

std::optional<std::string> query_value(std::string_view query, std::string_view key) {
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string_view::npos) amp = query.size();
    std::string_view pair = query.substr(pos, amp - pos);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) == key) {
      std::string out;
      std::string_view v = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
      for (size_t i = 0; i < v.size(); ++i) {
        if (v[i] == '+') {
          out += ' ';
        } else if (v[i] == '%' && i + 2 < v.size() + 0 && hex_value(v[i + 1]) >= 0 && hex_value(v[i + 2]) >= 0) {
          out += static_cast<char>(hex_value(v[i + 1]) * 16 + hex_value(v[i + 2]));
          i += 2;
        } else {
          out += v[i];
        }
      }
      return out;
    }
    pos = amp + 1;
  }
  return std::nullopt;
}

Result<std::vector<FormPart>> parse_multipart(std::string_view content_type, std::string_view body) {
  // boundary=... (possibly quoted) from the Content-Type.
  const std::string lowered = lower(content_type);
  size_t b = lowered.find("boundary=");
  if (b == std::string::npos) return Status::InvalidArgument("multipart/form-data without a boundary");
  std::string_view boundary = content_type.substr(b + 9);
  if (size_t semi = boundary.find(';'); semi != std::string_view::npos) boundary = boundary.substr(0, semi);
  if (!boundary.empty() && boundary.front() == '"') {
    boundary.remove_prefix(1);
    if (size_t q = boundary.find('"'); q != std::string_view::npos) boundary = boundary.substr(0, q);
  }
  if (boundary.empty() || boundary.size() > 200) return Status::InvalidArgument("multipart/form-data: bad boundary");
  const std::string delimiter = "--" + std::string(boundary);
  std::vector<FormPart> parts;
  size_t pos = body.find(delimiter);
  if (pos == std::string_view::npos) return Status::InvalidArgument("multipart/form-data: no part found");
  for (;;) {
    pos += delimiter.size();
    if (body.substr(pos, 2) == "--") break;  // the closing delimiter
    if (body.substr(pos, 2) != "\r\n") return Status::InvalidArgument("multipart/form-data: malformed delimiter line");
    pos += 2;
    const size_t headers_end = body.find("\r\n\r\n", pos);
    if (headers_end == std::string_view::npos) return Status::InvalidArgument("multipart/form-data: part headers never end");
    FormPart part;
    std::string_view headers = body.substr(pos, headers_end - pos);
    size_t line_start = 0;
    while (line_start <= headers.size()) {
      size_t line_end = headers.find("\r\n", line_start);
      if (line_end == std::string_view::npos) line_end = headers.size();
      std::string_view line = headers.substr(line_start, line_end - line_start);
      const size_t colon = line.find(':');
      if (colon != std::string_view::npos) {
        const std::string name = lower(line.substr(0, colon));
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        if (name == "content-type") {
          part.content_type = std::string(value);
        } else if (name == "content-disposition") {
          auto param = [&](std::string_view key) -> std::string {
            const std::string needle = std::string(key) + "=";
            size_t at = 0;
            while ((at = value.find(needle, at)) != std::string_view::npos) {
              if (at == 0 || value[at - 1] == ' ' || value[at - 1] == ';') break;
              at += needle.size();
            }
            if (at == std::string_view::npos) return {};
            std::string_view v = value.substr(at + needle.size());
            if (!v.empty() && v.front() == '"') {
              v.remove_prefix(1);
              return std::string(v.substr(0, v.find('"')));
            }
            return std::string(v.substr(0, v.find(';')));
          };
          part.name = param("name");
          part.filename = param("filename");
        }
      }
      line_start = line_end + 2;
    }
    const size_t data_start = headers_end + 4;
    const size_t next = body.find("\r\n" + delimiter, data_start);
    if (next == std::string_view::npos) return Status::InvalidArgument("multipart/form-data: a part is not closed");
    part.data = body.substr(data_start, next - data_start);
    parts.push_back(std::move(part));
    pos = next + 2;
  }
  return parts;
}

void register_session_routes(http::Server& server, store::Store& store) {
  auto session_json = [](const store::Session& s) {
    return json{{"id", s.id},
                {"object", "session"},
                {"title", s.title},
                {"messages", s.message_count},
                {"created_at", millis_to_seconds(s.created_at_ms)},
                {"updated_at", millis_to_seconds(s.updated_at_ms)},
                {"expires_at", s.expires_at_ms > 0 ? json(millis_to_seconds(s.expires_at_ms)) : json(nullptr)}};
  };
  server.route("GET", "/api/sessions", http::SyncHandler([&store, session_json](const http::Request& req) {
    const std::string q = query_value(req.query, "q").value_or("");
    size_t limit = 50;
    if (auto l = query_value(req.query, "limit")) {
      char* end = nullptr;
      const long long v = std::strtoll(l->c_str(), &end, 10);
      if (l->empty() || *end != '\0' || v < 1 || v > 1000) return invalid("'limit' must be an integer from 1 to 1000");
      limit = static_cast<size_t>(v);
    }
    auto found = store.list_sessions(owner_of(req), q, limit);
    if (!found.ok()) return status_response(found.status());
    json data = json::array();
    for (const auto& m : *found) {
      json j = session_json(m.session);
      if (!q.empty()) j["snippet"] = m.snippet;
      data.push_back(std::move(j));
    }
    return http::Response::json(200, json{{"object", "list"}, {"data", data}}.dump(-1, ' ', false, json::error_handler_t::replace));
  }));
  server.route("GET", "/api/sessions/{id}/messages", http::SyncHandler([&store](const http::Request& req) {
    const std::string id(req.param("id"));
    auto messages = store.list_messages(owner_of(req), id);
    if (!messages.ok()) {
      if (messages.status().code() == StatusCode::kNotFound) {
        return http::Response::error(404, fmt::format("session '{}' not found", id), "invalid_request_error", "not_found");
      }
      return status_response(messages.status());
    }
    json data = json::array();
    for (const auto& m : *messages) {
      json j = {{"id", m.id}, {"role", m.role}, {"content", m.content}, {"created_at", millis_to_seconds(m.created_at_ms)}};
      if (!m.sources_json.empty()) {
        json sources = json::parse(m.sources_json, nullptr, false);
        if (!sources.is_discarded()) j["sources"] = std::move(sources);
      }
      data.push_back(std::move(j));
    }
    return http::Response::json(200, json{{"object", "list"}, {"session_id", id}, {"data", data}}.dump(-1, ' ', false, json::error_handler_t::replace));
  }));
  server.route("DELETE", "/api/sessions/{id}", http::SyncHandler([&store](const http::Request& req) {
    const std::string id(req.param("id"));
    if (Status st = store.delete_session(owner_of(req), id); !st.ok()) {
      if (st.code() == StatusCode::kNotFound) {
        return http::Response::error(404, fmt::format("session '{}' not found", id), "invalid_request_error", "not_found");
      }
      return status_response(st);
    }
    return http::Response::json(200, json{{"id", id}, {"object", "session"}, {"deleted", true}}.dump());
  }));
}

void register_knowledge_routes(http::Server& server, knowledge::Knowledge& k, uint64_t max_document_bytes) {
  // Multipart framing and base64 add to the document's own size.
  server.set_body_limit("/api/documents", max_document_bytes + max_document_bytes / 3 + 65536);

  server.route("POST", "/api/documents", http::SyncHandler([&k](const http::Request& req) {
    auto upload = read_upload(req);
    if (auto* error = std::get_if<http::Response>(&upload)) return std::move(*error);
    auto doc = k.add(std::move(std::get<knowledge::Upload>(upload)));
    if (!doc.ok()) return status_response(doc.status());
    http::Response r = http::Response::json(202, document_json(*doc).dump());
    r.headers.emplace_back("Location", fmt::format("/api/documents/{}", doc->id));
    return r;
  }));
  server.route("GET", "/api/documents", http::SyncHandler([&k](const http::Request& req) {
    store::DocumentFilter filter;
    filter.collection = query_value(req.query, "collection");
    auto docs = k.store().list_documents(filter);
    if (!docs.ok()) return status_response(docs.status());
    json data = json::array();
    for (const auto& d : *docs) data.push_back(document_json(d));
    return http::Response::json(200, json{{"object", "list"}, {"data", data}}.dump());
  }));
  server.route("GET", "/api/documents/{id}", http::SyncHandler([&k](const http::Request& req) {
    auto doc = owned_document(k, req, false);
    if (auto* error = std::get_if<http::Response>(&doc)) return std::move(*error);
    return http::Response::json(200, document_json(std::get<store::Document>(doc)).dump());
  }));
  server.route("PUT", "/api/documents/{id}", http::SyncHandler([&k](const http::Request& req) {
    auto doc = owned_document(k, req, true);
    if (auto* error = std::get_if<http::Response>(&doc)) return std::move(*error);
    auto upload = read_upload(req);
    if (auto* error = std::get_if<http::Response>(&upload)) return std::move(*error);
    auto& u = std::get<knowledge::Upload>(upload);
    if (u.name == "document") u.name = std::get<store::Document>(doc).content.name;
    auto replaced = k.replace(std::get<store::Document>(doc).id, std::move(u));
    if (!replaced.ok()) return status_response(replaced.status());
    return http::Response::json(202, document_json(*replaced).dump());
  }));
  server.route("DELETE", "/api/documents/{id}", http::SyncHandler([&k](const http::Request& req) {
    auto doc = owned_document(k, req, true);
    if (auto* error = std::get_if<http::Response>(&doc)) return std::move(*error);
    const int64_t id = std::get<store::Document>(doc).id;
    if (Status st = k.remove(id); !st.ok()) return status_response(st);
    return http::Response::json(200, json{{"id", id}, {"object", "document"}, {"deleted", true}}.dump());
  }));
  server.route("GET", "/api/collections", http::SyncHandler([&k](const http::Request&) {
    auto cols = k.store().list_collections();
    if (!cols.ok()) return status_response(cols.status());
    json data = json::array();
    for (const auto& c : *cols) {
      data.push_back({{"name", c.name},
                      {"object", "collection"},
                      {"owner", c.owner},
                      {"embedding_model", c.embedding_model},
                      {"dimensions", c.dims},
                      {"documents", c.document_count},
                      {"chunks", c.chunk_count},
                      {"created_at", millis_to_seconds(c.created_at_ms)}});
    }
    return http::Response::json(200, json{{"object", "list"}, {"data", data}}.dump());
  }));
  server.route("DELETE", "/api/collections/{name}", http::SyncHandler([&k](const http::Request& req) {
    if (!is_admin(req)) {
      return http::Response::error(403, "deleting a collection needs an admin key", "invalid_request_error",
                                   "forbidden");
    }
    std::string name(req.param("name"));
    if (Status st = k.remove_collection(name); !st.ok()) return status_response(st);
    return http::Response::json(200, json{{"name", name}, {"object", "collection"}, {"deleted", true}}.dump());
  }));
  server.route("POST", "/api/search", http::Handler([&k](const http::Request& req, http::Responder responder) {
    http::Response error;
    std::optional<json> body = parse_json_object(req, error);
    if (!body) return responder.send(std::move(error));
    const json& q = (*body)["query"];
    if (!q.is_string() || q.get_ref<const std::string&>().empty()) {
      return responder.send(invalid("'query' (a non-empty string) is required"));
    }
    if (q.get_ref<const std::string&>().size() > 8192) return responder.send(invalid("'query' is longer than 8192 bytes"));
    const json& c = (*body)["collection"];
    if (!c.is_string() || c.get_ref<const std::string&>().empty()) {
      return responder.send(invalid("'collection' (a string) is required"));
    }
    knowledge::RetrievalOptions options;
    if (body->contains("top_k")) {
      const json& t = (*body)["top_k"];
      if (!t.is_number_integer() || t.get<int64_t>() < 1 || t.get<int64_t>() > 100) {
        return responder.send(invalid("'top_k' must be an integer from 1 to 100"));
      }
      options.k = t.get<size_t>();
      options.candidates = std::max(options.candidates, options.k * 4);
    }
    const auto started = std::chrono::steady_clock::now();
    std::string collection = c.get<std::string>(), query = q.get<std::string>();
    k.search(collection, query, options,
             [responder, collection, query, started](Result<std::vector<knowledge::RetrievedChunk>> hits) mutable {
               if (!hits.ok()) return responder.send(status_response(hits.status()));
               json results = json::array();
               for (const auto& h : *hits) {
                 json item = {{"chunk_id", h.rank.id},          {"document_id", h.document_id},
                              {"document", h.document_name},    {"heading", h.heading},
                              {"page", h.page},                 {"text", h.text},
                              {"score", h.rank.score}};
                 item["keyword"] = h.rank.keyword_rank ? json{{"rank", h.rank.keyword_rank}, {"score", h.rank.keyword_score}}
                                                      : json(nullptr);
                 item["vector"] = h.rank.vector_rank ? json{{"rank", h.rank.vector_rank}, {"score", h.rank.vector_score}}
                                                    : json(nullptr);
                 results.push_back(std::move(item));
               }
               const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
               responder.send(http::Response::json(
                   200, json{{"object", "list"}, {"collection", collection}, {"query", query}, {"data", results}, {"took_ms", ms}}
                            .dump(-1, ' ', false, json::error_handler_t::replace)));
             });
  }));
}

}  // namespace infera::api
