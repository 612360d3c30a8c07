// The knowledge routes: documents into collections, their indexing progress, and
// search. Uploads are answered 202 once stored; indexing runs in the background.
//
//   POST   /api/documents            multipart/form-data (file, collection), JSON
//                                    ({collection, name, text | content_base64}), or a raw
//                                    body with ?collection=&name= and its Content-Type
//   GET    /api/documents[?collection=]        list
//   GET    /api/documents/{id}                 status and progress
//   PUT    /api/documents/{id}                 new content, re-indexed
//   DELETE /api/documents/{id}                 gone from search at once
//   GET    /api/collections
//   DELETE /api/collections/{name}             (admin)
//   POST   /api/search               {query, collection, top_k}: hybrid search
//
// A document may be changed or deleted by the key that uploaded it or an admin.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace infera::http {
class Server;
struct Request;
}
namespace infera::models {
class Registry;
}
namespace infera::knowledge {
class Embedding;
class Knowledge;
}
namespace infera::store {
class Store;
}

namespace infera::api {

class Embedder;

// The knowledge service's view of the server's embedding models.
// REQUIRES: both outlive the returned object.
std::unique_ptr<knowledge::Embedding> make_knowledge_embedding(Embedder& embedder,
                                                               models::Registry& models);

// REQUIRES: `knowledge` outlives the server. `max_document_bytes` raises the body limit
// of the document routes.
void register_knowledge_routes(http::Server& server, knowledge::Knowledge& knowledge,
                               uint64_t max_document_bytes);

// The conversation routes, each limited to the calling key's own sessions (another
// key's session is 404, as if it did not exist):
//   GET    /api/sessions[?q=words&limit=n]   newest first; with q, full-text over messages
//   GET    /api/sessions/{id}/messages
//   DELETE /api/sessions/{id}
// REQUIRES: `store` outlives the server.
void register_session_routes(http::Server& server, store::Store& store);

// One part of a multipart/form-data body.
struct FormPart {
  std::string name;          // the form field
  std::string filename;      // empty for plain fields
  std::string content_type;  // empty when the part names none
  std::string_view data;     // into the body
};
// Splits a multipart/form-data body (RFC 7578); InvalidArgument when malformed.
Result<std::vector<FormPart>> parse_multipart(std::string_view content_type, std::string_view body);

// The value of `key` in a query string ("a=1&b=x%20y"), percent- and '+'-decoded.
std::optional<std::string> query_value(std::string_view query, std::string_view key);

}  // namespace infera::api
