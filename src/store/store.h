// Durable state for knowledge and conversations: collections, documents, their chunks
// (text, a full-text index, embeddings) and chat sessions with their messages.
//
//   auto store = store::open_sqlite(data_dir);               // or a PostgreSQL backend
//   auto doc = (*store)->create_document({.collection = "bio", .name = "cells.md", ...});
//   auto ids = (*store)->replace_document_content(doc->id, content, chunks);
//   auto hits = (*store)->keyword_search("bio", user_query, 50);
//
// Store is the interface every backend implements (SQLite here, PostgreSQL later); one
// test suite (tests/store/) runs against each. Times are Unix milliseconds. Every method
// may be called from any thread; implementations serialise writes themselves. Failures
// are Status values: NotFound for a missing row (and for a row another owner holds: a
// session never reveals that it exists to another API key), InvalidArgument for bad
// input, IoError / Corrupt for the database itself.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace infera::store {

enum class DocumentStatus { kQueued, kEmbedding, kReady, kFailed };

std::string_view status_name(DocumentStatus status);  // "queued", "embedding", ...
std::optional<DocumentStatus> parse_status(std::string_view name);

// A named set of documents searched together. All its embeddings come from one model:
// the first non-empty model/dims given win, and a different one later is refused.
struct NewCollection {
  std::string name;
  std::string owner;            // API key name that created it; "" for anonymous
  std::string embedding_model;  // may be empty until known
  int dims = 0;                 // 0 until known
};

struct Collection {
  std::string name;
  std::string owner;
  std::string embedding_model;
  int dims = 0;
  std::int64_t document_count = 0;
  std::int64_t chunk_count = 0;
  std::int64_t created_at_ms = 0;
};

// What describes a document's current content (replaced together with its chunks).
struct DocumentContent {
  std::string name;    // file name as uploaded
  std::string format;  // "text", "markdown", "html", "pdf"
  std::string title;
  std::int64_t bytes = 0;
};

struct NewDocument {
  std::string collection;  // must exist (ensure_collection)
  std::string owner;
  DocumentContent content;
};

struct Document {
  std::int64_t id = 0;  // stable; never reused
  std::string collection;
  std::string owner;
  DocumentContent content;
  DocumentStatus status = DocumentStatus::kQueued;
  std::int64_t chunks_total = 0;
  std::int64_t chunks_done = 0;  // chunks that have an embedding
  std::string error;             // set with kFailed
  std::int64_t created_at_ms = 0;
  std::int64_t updated_at_ms = 0;
};

struct DocumentFilter {
  std::optional<std::string> collection;  // nullopt: every collection
  std::optional<std::string> owner;       // nullopt: every owner
};

struct NewChunk {
  int ordinal = 0;  // position in the document, 0-based
  std::string text;
  std::string heading;  // "Intro > Setup"; may be empty
  int page = 0;         // 1-based PDF page; 0 without pages
  int token_count = 0;
};

struct Chunk {
  std::int64_t id = 0;  // stable; never reused (the vector index's label)
  std::int64_t document_id = 0;
  std::string document_name;
  std::string collection;
  int ordinal = 0;
  std::string text;
  std::string heading;
  int page = 0;
  int token_count = 0;
  bool has_embedding = false;
};

// Chunk ids a content change removed and added, so that vector indexes can follow.
struct ChunkChange {
  std::vector<std::int64_t> removed_ids;
  std::vector<std::int64_t> added_ids;  // in ordinal order
};

struct ChunkEmbedding {
  std::int64_t chunk_id = 0;
  std::span<const float> vector;
};

// A keyword (BM25) match; higher score is better.
struct KeywordHit {
  std::int64_t chunk_id = 0;
  double score = 0;
};

using EmbeddingSink = std::function<void(std::int64_t chunk_id, std::span<const float> vector)>;

struct NewSession {
  std::string id;  // empty: the store makes a random one
  std::string owner;
  std::string title;
  std::int64_t expires_at_ms = 0;  // 0: kept until deleted
};

struct Session {
  std::string id;
  std::string owner;
  std::string title;
  std::int64_t created_at_ms = 0;
  std::int64_t updated_at_ms = 0;
  std::int64_t expires_at_ms = 0;
  std::int64_t message_count = 0;
};

struct SessionMatch {
  Session session;
  std::string snippet;  // the best matching message with [matched] terms; "" without a query
};

struct NewMessage {
  std::string role;  // "user", "assistant", "system"
  std::string content;
  std::string sources_json;                // the answer's sources as JSON text; may be empty
  std::int64_t session_expires_at_ms = 0;  // >0: the session's new expiry (retention TTL)
};

struct Message {
  std::int64_t id = 0;  // increasing in append order
  std::string session_id;
  std::string role;
  std::string content;
  std::string sources_json;
  std::int64_t created_at_ms = 0;
};

class Store {
 public:
  virtual ~Store() = default;

  // --- collections ---
  // Returns the collection, creating it if absent. InvalidArgument for an empty name or
  // when it already has a different embedding model or dims.
  virtual Result<Collection> ensure_collection(const NewCollection& collection) = 0;
  virtual Result<Collection> get_collection(std::string_view name) = 0;
  virtual Result<std::vector<Collection>> list_collections() = 0;
  // Deletes the collection with its documents and chunks. NotFound when absent.
  virtual Status delete_collection(std::string_view name) = 0;

  // --- documents ---
  // A queued document without chunks. NotFound when the collection does not exist.
  virtual Result<Document> create_document(const NewDocument& document) = 0;
  virtual Result<Document> get_document(std::int64_t id) = 0;
  // Ordered by id.
  virtual Result<std::vector<Document>> list_documents(const DocumentFilter& filter) = 0;
  // Sets status and error (error is cleared unless kFailed).
  virtual Status set_document_status(std::int64_t id, DocumentStatus status,
                                     std::string_view error) = 0;
  // Replaces the document's description and all its chunks in one transaction: status
  // becomes queued, chunks_total the number of chunks, chunks_done 0. Used for the first
  // content too. Chunks have no embedding yet.
  virtual Result<ChunkChange> replace_document_content(std::int64_t id,
                                                       const DocumentContent& content,
                                                       std::span<const NewChunk> chunks) = 0;
  // Deletes the document and its chunks; returns the removed chunk ids.
  virtual Result<std::vector<std::int64_t>> delete_document(std::int64_t id) = 0;

  // --- chunks ---
  // The document's chunks in ordinal order (text included, embeddings not).
  virtual Result<std::vector<Chunk>> document_chunks(std::int64_t document_id) = 0;
  // Chunks by id, in the order asked; ids that no longer exist are skipped.
  virtual Result<std::vector<Chunk>> get_chunks(std::span<const std::int64_t> ids) = 0;
  // Stores embeddings in one transaction and updates each document's chunks_done.
  // Chunks deleted meanwhile are skipped (a background worker may race a delete);
  // returns how many were stored. InvalidArgument for an empty vector.
  virtual Result<std::int64_t> set_embeddings(std::span<const ChunkEmbedding> embeddings) = 0;
  // Calls `sink` with every embedded chunk of the collection, in id order (for building
  // a vector index). The span is valid only during the call.
  virtual Status for_each_embedding(std::string_view collection, const EmbeddingSink& sink) = 0;
  // The same for chosen chunk ids (those without an embedding are skipped).
  virtual Status for_each_embedding(std::span<const std::int64_t> chunk_ids,
                                    const EmbeddingSink& sink) = 0;
  // Ids of the collection's chunks that have an embedding, ascending.
  virtual Result<std::vector<std::int64_t>> embedded_chunk_ids(std::string_view collection) = 0;
  // BM25 over chunk text and headings, best first, at most k. Any user text is safe as
  // `query`: it is reduced to its words, each matched literally (no operators, no
  // syntax errors); a query without words matches nothing.
  virtual Result<std::vector<KeywordHit>> keyword_search(std::string_view collection,
                                                         std::string_view query, std::size_t k) = 0;

  // --- sessions and messages ---
  // Returns the owner's session with that id, creating it if absent (an empty title is
  // filled from the new one). Sessions are keyed by (owner, id): another owner's session
  // with the same id is a different session and stays invisible.
  virtual Result<Session> ensure_session(const NewSession& session) = 0;
  virtual Result<Session> get_session(std::string_view owner, std::string_view id) = 0;
  // Appends a message and returns its id only after the commit is durable (it survives
  // the process being killed, and power loss where the disk honours fsync). NotFound
  // unless `owner` owns the session.
  virtual Result<std::int64_t> append_message(std::string_view owner, std::string_view session_id,
                                              const NewMessage& message) = 0;
  // Messages in append order; with last_n > 0 only the last n (still oldest first).
  // NotFound unless `owner` owns the session.
  virtual Result<std::vector<Message>> list_messages(std::string_view owner,
                                                     std::string_view session_id,
                                                     std::size_t last_n = 0) = 0;
  // The owner's sessions, most recently updated first; with a query, only sessions with
  // a message matching it (same rules as keyword_search), best match first.
  virtual Result<std::vector<SessionMatch>> list_sessions(std::string_view owner,
                                                          std::string_view query,
                                                          std::size_t limit) = 0;
  // NotFound unless `owner` owns the session.
  virtual Status delete_session(std::string_view owner, std::string_view id) = 0;
  // Deletes sessions whose expiry is set and <= now_ms; returns how many.
  virtual Result<std::int64_t> purge_expired(std::int64_t now_ms) = 0;
};

// SQLite backend: opens (creating the directory, the file and the schema as needed)
// `dir`/knowledge.sqlite3 in WAL mode. Unsupported when the file's schema is newer than
// this build; IoError when it cannot be opened.
Result<std::unique_ptr<Store>> open_sqlite(const std::filesystem::path& dir);

// The full-text expression a user's text becomes: its words (letters, digits and any
// non-ASCII bytes), each quoted, joined by OR; at most 64 distinct words. "" when the
// text has none. Exposed for tests and for other FTS backends.
std::string fts_query(std::string_view text);

}  // namespace infera::store
