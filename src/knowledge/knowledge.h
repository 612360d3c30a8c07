// The knowledge service: course documents in named collections, turned into
// searchable chunks in the background, and hybrid search over them.
//
//   Knowledge k(store, embedding, {.dir = data_dir / "vectors"}, metrics);
//   auto doc = k.add({.collection = "bio", .name = "cells.md", .bytes = body});  // queued
//   k.document(doc->id)          // status queued -> embedding -> ready (or failed), progress
//   k.search("bio", "what is a ribosome", {.k = 5}, on_chunks);
//
// An upload is stored at once (status "queued") and answered; one worker thread then
// extracts its text, chunks it by the embedding model's tokens, stores the chunks (the
// full-text index follows at once), embeds them in batches and adds them to the
// collection's vector index, so that GET /api/documents/{id} shows progress. A
// replacement re-indexes; a delete removes chunks from both indexes at once. Work
// interrupted by a restart resumes (chunks stored: embedding goes on) or fails with a
// reason (text not stored yet: upload again).
//
// Threads: every method may be called from any thread; search() never blocks on a model
// (its callback runs on the model's thread or the caller's).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"
#include "knowledge/chunker.h"
#include "knowledge/retriever.h"
#include "store/store.h"

namespace infera::obs {
class Registry;
}

namespace infera::knowledge {

// The embedding models, as the server provides them.
class Embedding {
 public:
  virtual ~Embedding() = default;
  // The model a collection uses when its first upload names none; empty when the server
  // has no embedding model (collections are then searched by keywords only).
  virtual std::string default_model() const = 0;
  // Unit-length vectors of `texts`, row after row; sets *dims. Blocks: worker threads only.
  virtual Result<std::vector<float>> embed(const std::string& model, std::vector<std::string> texts,
                                           int* dims) = 0;
  // One text without blocking; `done` runs on another thread or, on an immediate
  // failure, on the caller's.
  using EmbedDone = std::function<void(Result<std::vector<float>>)>;
  virtual void embed_async(const std::string& model, std::string text, EmbedDone done) = 0;
  // Counts tokens as `model` reads them (for chunking), and the longest input it takes.
  // The model stays loaded while the counter lives. Blocks.
  virtual Result<std::pair<TokenCounter, size_t>> token_counter(const std::string& model) = 0;
};

struct KnowledgeOptions {
  std::filesystem::path dir;        // REQUIRED: the vector index files
  ChunkOptions chunks;              // max_tokens is lowered to the model's input limit
  size_t embed_batch = 32;          // chunks per embedding call
  size_t max_document_bytes = 50u << 20;
  VectorIndexOptions index;         // dims comes from each collection
};

struct Upload {
  std::string collection;
  std::string owner;            // the API key's name ("" anonymous)
  std::string name;             // file name; gives the format with content_type
  std::string content_type;     // MIME type; may be empty
  std::string bytes;
  std::string embedding_model;  // empty: the collection's, else the default
};

class Knowledge {
 public:
  // `store` and `embedding` must outlive the service.
  Knowledge(store::Store& store, Embedding& embedding, KnowledgeOptions options,
            obs::Registry& metrics);
  ~Knowledge();  // finishes the current batch, saves the indexes
  Knowledge(const Knowledge&) = delete;
  Knowledge& operator=(const Knowledge&) = delete;

  // Stores the upload (queued) and schedules its indexing. InvalidArgument for an empty
  // or too large body, an unsupported format, an empty collection name, or an embedding
  // model other than the collection's.
  Result<store::Document> add(Upload upload);
  // Replaces a document's content (same collection); re-indexed in the background.
  Result<store::Document> replace(std::int64_t id, Upload upload);
  // Deletes a document; its chunks leave both indexes before this returns.
  Status remove(std::int64_t id);
  // Deletes a collection with its documents and index.
  Status remove_collection(std::string_view name);

  // Hybrid search (keywords + the collection's vectors, fused by reciprocal rank); by
  // keywords alone when the collection has no embeddings yet. NotFound for an unknown
  // collection.
  using SearchDone = std::function<void(Result<std::vector<RetrievedChunk>>)>;
  void search(std::string collection, std::string query, RetrievalOptions options,
              SearchDone done);

  // Called (on the worker or a request thread) after a collection's content changed:
  // a document became ready, was replaced or deleted. For cache invalidation.
  void on_change(std::function<void(std::string_view collection)> listener);

  // Documents waiting for or in indexing.
  size_t pending() const;
  store::Store& store() { return store_; }

 private:
  struct Impl;
  store::Store& store_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace infera::knowledge
