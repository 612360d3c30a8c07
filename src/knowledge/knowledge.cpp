#include "knowledge/knowledge.h"

#include <fmt/format.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

#include "core/log.h"
#include "knowledge/extract.h"
#include "knowledge/vector_indexes.h"
#include "obs/metrics.h"

namespace infera::knowledge {
namespace {

using Clock = std::chrono::steady_clock;

// One document's indexing: with bytes, its text is (re)extracted and its chunks
// replaced first; without, its stored chunks that lack embeddings are embedded.
struct Task {
  std::int64_t id = 0;
  std::optional<Upload> upload;
};

// What tells the format: a known file extension (clients label uploads loosely:
// curl sends application/octet-stream, browsers text/plain for Markdown), else the
// MIME type, else the name.
std::string format_hint(const Upload& u) {
  std::string ext = std::filesystem::path(u.name).extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* known : {".md", ".markdown", ".html", ".htm", ".pdf", ".txt", ".text"}) {
    if (ext == known) return u.name;
  }
  return u.content_type.empty() ? u.name : u.content_type;
}

}  // namespace

struct Knowledge::Impl {
  Impl(store::Store& s, Embedding& e, KnowledgeOptions o, obs::Registry& metrics)
      : store(s),
        embedding(e),
        options(std::move(o)),
        indexes(s, VectorIndexesOptions{options.dir, options.index}),
        retriever(s, indexes),
        documents_done(metrics.counter("infera_knowledge_documents_total",
                                       "Documents indexed, by outcome", {{"outcome", "ready"}})),
        documents_failed(metrics.counter("infera_knowledge_documents_total",
                                         "Documents indexed, by outcome", {{"outcome", "failed"}})),
        chunks_embedded(metrics.counter("infera_knowledge_chunks_embedded_total",
                                        "Document chunks embedded")),
        search_seconds(metrics.histogram("infera_knowledge_search_seconds",
                                         "Hybrid search time, query embedding included")) {}

  store::Store& store;
  Embedding& embedding;
  KnowledgeOptions options;
  VectorIndexes indexes;
  Retriever retriever;
  obs::Counter& documents_done;
  obs::Counter& documents_failed;
  obs::Counter& chunks_embedded;
  obs::Histogram& search_seconds;

  // Held while chunks enter or leave the vector indexes together with the store, so a
  // delete never races an embedding batch of the same chunks.
  std::mutex index_mu;

  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<Task> queue;
  bool busy = false;
  bool stop = false;
  std::vector<std::function<void(std::string_view)>> listeners;
  std::thread worker;

  void changed(std::string_view collection) {
    std::vector<std::function<void(std::string_view)>> copy;
    {
      std::lock_guard lock(mu);
      copy = listeners;
    }
    for (auto& l : copy) l(collection);
  }

  void enqueue(Task task) {
    {
      std::lock_guard lock(mu);
      queue.push_back(std::move(task));
    }
    cv.notify_one();
  }

  void run() {
    auto last_save = Clock::now();
    for (;;) {
      Task task;
      {
        std::unique_lock lock(mu);
        cv.wait_for(lock, std::chrono::seconds(30), [&] { return stop || !queue.empty(); });
        if (stop) return;
        if (queue.empty()) {
          lock.unlock();
          save_indexes();
          last_save = Clock::now();
          continue;
        }
        task = std::move(queue.front());
        queue.pop_front();
        busy = true;
      }
      index(std::move(task));
      if (Clock::now() - last_save > std::chrono::seconds(30)) {
        save_indexes();
        last_save = Clock::now();
      }
      std::lock_guard lock(mu);
      busy = false;
    }
  }

  void save_indexes() {
    if (Status st = indexes.save_dirty(); !st.ok()) {
      log::warn("knowledge.index_save_failed", "{}", st.message());
    }
  }

  bool stopping() {
    std::lock_guard lock(mu);
    return stop;
  }

  void fail(std::int64_t id, const std::string& why) {
    documents_failed.inc();
    log::warn("knowledge.document_failed", "document {}: {}", id, why);
    (void)store.set_document_status(id, store::DocumentStatus::kFailed, why);
  }

  void index(Task task) {
    auto doc = store.get_document(task.id);
    if (!doc.ok()) return;  // deleted meanwhile
    auto collection = store.get_collection(doc->collection);
    if (!collection.ok()) return;
    const std::string model = collection->embedding_model;
    if (task.upload) {
      if (Status st = store_text(*doc, model, *task.upload); !st.ok()) {
        return fail(task.id, st.message());
      }
    }
    if (!model.empty()) {
      if (Status st = embed_chunks(task.id, doc->collection, model); !st.ok()) {
        if (stopping()) return;  // resumes after the restart
        return fail(task.id, st.message());
      }
    }
    if (store.get_document(task.id).ok()) {
      (void)store.set_document_status(task.id, store::DocumentStatus::kReady, "");
      documents_done.inc();
    }
    changed(doc->collection);
  }

  // Extracts, chunks and stores the upload's text (replacing earlier chunks).
  Status store_text(const store::Document& doc, const std::string& model, const Upload& upload) {
    auto text = extract(upload.bytes, format_hint(upload));
    if (!text.ok()) return text.status();
    ChunkOptions chunk_options = options.chunks;
    TokenCounter counter;
    if (!model.empty()) {
      auto made = embedding.token_counter(model);
      if (!made.ok()) return made.status();
      counter = std::move(made->first);
      chunk_options.max_tokens = std::min(chunk_options.max_tokens, made->second);
      chunk_options.overlap_tokens = std::min(chunk_options.overlap_tokens, chunk_options.max_tokens / 2);
    } else {
      // No embedding model: chunks are for keyword search only; words stand in for tokens.
      counter = [](std::string_view s) {
        size_t words = 0;
        bool in_word = false;
        for (char c : s) {
          const bool space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
          if (!space && !in_word) ++words;
          in_word = !space;
        }
        return words;
      };
    }
    auto chunks = chunk_text(*text, counter, chunk_options);
    if (!chunks.ok()) return chunks.status();
    if (chunks->empty()) return Status::InvalidArgument(fmt::format("{}: no text to index", upload.name));
    std::vector<store::NewChunk> rows;
    rows.reserve(chunks->size());
    for (size_t i = 0; i < chunks->size(); ++i) {
      const Chunk& c = (*chunks)[i];
      rows.push_back({static_cast<int>(i), c.text, c.heading, c.page, static_cast<int>(c.token_count)});
    }
    store::DocumentContent content{upload.name, std::string(format_name(text->format)), text->title,
                                   static_cast<std::int64_t>(upload.bytes.size())};
    std::lock_guard lock(index_mu);
    auto change = store.replace_document_content(doc.id, content, rows);
    if (!change.ok()) return change.status();
    indexes.remove(doc.collection, change->removed_ids);
    return store.set_document_status(doc.id, store::DocumentStatus::kEmbedding, "");
  }

  Status embed_chunks(std::int64_t id, const std::string& collection, const std::string& model) {
    auto chunks = store.document_chunks(id);
    if (!chunks.ok()) return chunks.status();
    std::vector<const store::Chunk*> todo;
    for (const auto& c : *chunks) {
      if (!c.has_embedding) todo.push_back(&c);
    }
    bool dims_known = false;
    for (size_t begin = 0; begin < todo.size(); begin += options.embed_batch) {
      if (stopping()) return Status::Cancelled("stopping");
      const size_t end = std::min(todo.size(), begin + options.embed_batch);
      std::vector<std::string> texts;
      std::vector<std::int64_t> ids;
      for (size_t i = begin; i < end; ++i) {
        // The heading is part of what a chunk means ("Photosynthesis > Light reactions").
        const store::Chunk& c = *todo[i];
        texts.push_back(c.heading.empty() ? c.text : c.heading + "\n" + c.text);
        ids.push_back(c.id);
      }
      int dims = 0;
      auto vectors = embedding.embed(model, std::move(texts), &dims);
      if (!vectors.ok()) return vectors.status();
      if (!dims_known) {
        auto col = store.ensure_collection({collection, "", model, dims});
        if (!col.ok()) return col.status();
        dims_known = true;
      }
      std::vector<store::ChunkEmbedding> rows;
      for (size_t i = 0; i < ids.size(); ++i) {
        rows.push_back({ids[i], std::span<const float>(vectors->data() + i * static_cast<size_t>(dims),
                                                       static_cast<size_t>(dims))});
      }
      std::lock_guard lock(index_mu);
      auto stored = store.set_embeddings(rows);
      if (!stored.ok()) return stored.status();
      if (static_cast<size_t>(*stored) != ids.size()) {
        // Some chunks went away meanwhile (replaced or deleted): index only the rest.
        auto alive = store.get_chunks(ids);
        if (!alive.ok()) return alive.status();
        std::vector<std::int64_t> keep_ids;
        std::vector<float> keep;
        for (const auto& c : *alive) {
          for (size_t i = 0; i < ids.size(); ++i) {
            if (ids[i] != c.id) continue;
            keep_ids.push_back(c.id);
            keep.insert(keep.end(), vectors->begin() + static_cast<std::ptrdiff_t>(i * dims),
                        vectors->begin() + static_cast<std::ptrdiff_t>((i + 1) * dims));
          }
        }
        if (Status st = indexes.add(collection, keep_ids, keep); !st.ok()) return st;
      } else if (Status st = indexes.add(collection, ids, *vectors); !st.ok()) {
        return st;
      }
      chunks_embedded.inc(static_cast<uint64_t>(*stored));
    }
    return Status::Ok();
  }

  // Restart: documents left queued or embedding.
  void resume() {
    auto docs = store.list_documents({});
    if (!docs.ok()) return;
    for (const auto& d : *docs) {
      if (d.status != store::DocumentStatus::kQueued && d.status != store::DocumentStatus::kEmbedding)
        continue;
      if (d.chunks_total > 0) {
        enqueue(Task{d.id, std::nullopt});
      } else {
        fail(d.id, "indexing was interrupted before the text was stored; upload the document again");
      }
    }
  }
};

Knowledge::Knowledge(store::Store& store, Embedding& embedding, KnowledgeOptions options,
                     obs::Registry& metrics)
    : store_(store), impl_(std::make_unique<Impl>(store, embedding, std::move(options), metrics)) {
  impl_->resume();
  impl_->worker = std::thread([this] { impl_->run(); });
}

Knowledge::~Knowledge() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->cv.notify_all();
  impl_->worker.join();
  impl_->save_indexes();
}

namespace {

Status check_upload(const Upload& u, size_t max_bytes) {
  if (u.collection.empty()) return Status::InvalidArgument("a document needs a collection");
  if (u.collection.size() > 200) return Status::InvalidArgument("the collection name is longer than 200 bytes");
  if (u.bytes.empty()) return Status::InvalidArgument("the document is empty");
  if (u.bytes.size() > max_bytes) {
    return Status::InvalidArgument(fmt::format("the document is {} bytes; at most {} are accepted",
                                               u.bytes.size(), max_bytes));
  }
  auto format = detect_format(u.bytes, format_hint(u));
  if (!format.ok()) return Status::InvalidArgument(format.status().message());
  return Status::Ok();
}

}  // namespace

Result<store::Document> Knowledge::add(Upload upload) {
  if (Status st = check_upload(upload, impl_->options.max_document_bytes); !st.ok()) return st;
  std::string model = upload.embedding_model;
  auto existing = store_.get_collection(upload.collection);
  if (existing.ok() && !existing->embedding_model.empty()) {
    if (!model.empty() && model != existing->embedding_model) {
      return Status::InvalidArgument(fmt::format(
          "collection '{}' is embedded with model '{}', not '{}'", upload.collection,
          existing->embedding_model, model));
    }
    model = existing->embedding_model;
  }
  if (model.empty()) model = impl_->embedding.default_model();
  auto col = store_.ensure_collection({upload.collection, upload.owner, model, 0});
  if (!col.ok()) return col.status();
  auto format = detect_format(upload.bytes, format_hint(upload));
  store::NewDocument nd{upload.collection, upload.owner,
                        {upload.name, std::string(format_name(*format)), "",
                         static_cast<std::int64_t>(upload.bytes.size())}};
  auto doc = store_.create_document(nd);
  if (!doc.ok()) return doc.status();
  impl_->enqueue(Task{doc->id, std::move(upload)});
  return doc;
}

Result<store::Document> Knowledge::replace(std::int64_t id, Upload upload) {
  auto doc = store_.get_document(id);
  if (!doc.ok()) return doc.status();
  upload.collection = doc->collection;
  if (Status st = check_upload(upload, impl_->options.max_document_bytes); !st.ok()) return st;
  if (Status st = store_.set_document_status(id, store::DocumentStatus::kQueued, ""); !st.ok()) return st;
  impl_->enqueue(Task{id, std::move(upload)});
  return store_.get_document(id);
}

Status Knowledge::remove(std::int64_t id) {
  auto doc = store_.get_document(id);
  if (!doc.ok()) return doc.status();
  {
    std::lock_guard lock(impl_->index_mu);
    auto removed = store_.delete_document(id);
    if (!removed.ok()) return removed.status();
    impl_->indexes.remove(doc->collection, *removed);
  }
  impl_->changed(doc->collection);
  return Status::Ok();
}

Status Knowledge::remove_collection(std::string_view name) {
  {
    std::lock_guard lock(impl_->index_mu);
    if (Status st = store_.delete_collection(name); !st.ok()) return st;
    impl_->indexes.drop(name);
  }
  impl_->changed(name);
  return Status::Ok();
}

void Knowledge::search(std::string collection, std::string query, RetrievalOptions options,
                       SearchDone done) {
  auto col = store_.get_collection(collection);
  if (!col.ok()) return done(col.status());
  const auto started = Clock::now();
  Impl* impl = impl_.get();
  auto finish = [impl, collection, query, options, started,
                 done](std::span<const float> vector) {
    auto hits = impl->retriever.retrieve(collection, query, vector, options);
    impl->search_seconds.observe(std::chrono::duration<double>(Clock::now() - started).count());
    done(std::move(hits));
  };
  if (col->embedding_model.empty() || col->dims == 0) return finish({});
  impl_->embedding.embed_async(col->embedding_model, query,
                               [finish](Result<std::vector<float>> vector) {
                                 if (!vector.ok()) return finish({});  // keywords still answer
                                 finish(*vector);
                               });
}

void Knowledge::on_change(std::function<void(std::string_view)> listener) {
  std::lock_guard lock(impl_->mu);
  impl_->listeners.push_back(std::move(listener));
}

size_t Knowledge::pending() const {
  std::lock_guard lock(impl_->mu);
  return impl_->queue.size() + (impl_->busy ? 1 : 0);
}

}  // namespace infera::knowledge
