#include "knowledge/vector_indexes.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <iterator>
#include <utility>
#include <vector>

#include "core/log.h"

namespace infera::knowledge {

namespace {

constexpr std::size_t kCatchUpBatch = 1024;
constexpr std::size_t kMaxNameChars = 48;

std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace

struct VectorIndexes::Entry {
  std::mutex mutex;  // held while loading; guards loaded and index
  bool loaded = false;
  std::shared_ptr<VectorIndex> index;  // null while the collection has no embeddings
  std::atomic<bool> dirty{false};
};

VectorIndexes::VectorIndexes(store::Store& store, VectorIndexesOptions options)
    : store_(store), options_(std::move(options)) {}

VectorIndexes::~VectorIndexes() = default;

std::filesystem::path VectorIndexes::file_for(std::string_view collection) const {
  std::string name;
  for (unsigned char c : collection.substr(0, kMaxNameChars)) {
    name += std::isalnum(c) != 0 || c == '-' || c == '_' ? static_cast<char>(c) : '_';
  }
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(fnv1a(collection)));
  return options_.dir / (name + "-" + hash + ".vindex");
}

std::shared_ptr<VectorIndexes::Entry> VectorIndexes::entry(std::string_view collection,
                                                           bool create) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(collection);
  if (it != entries_.end()) return it->second;
  if (!create) return nullptr;
  auto e = std::make_shared<Entry>();
  entries_.emplace(std::string(collection), e);
  return e;
}

Status VectorIndexes::load(std::string_view collection, Entry& e) {
  Result<store::Collection> info = store_.get_collection(collection);
  if (!info.ok()) return info.status();
  Result<std::vector<std::int64_t>> stored = store_.embedded_chunk_ids(collection);
  if (!stored.ok()) return stored.status();
  if (stored->empty()) {
    e.index.reset();
    e.loaded = true;
    return Status::Ok();
  }
  int dims = info->dims;
  if (dims <= 0) {
    // The collection never recorded its dims: the embeddings themselves tell.
    Status s = store_.for_each_embedding(
        std::span(stored->data(), 1),
        [&](std::int64_t, std::span<const float> v) { dims = static_cast<int>(v.size()); });
    if (!s.ok()) return s;
  }
  VectorIndexOptions options = options_.index;
  options.dims = dims;
  const std::filesystem::path file = file_for(collection);
  const auto started = std::chrono::steady_clock::now();
  Result<std::unique_ptr<VectorIndex>> from_file = VectorIndex::load(file, options);
  std::shared_ptr<VectorIndex> index;
  if (from_file.ok()) {
    index = std::move(from_file).value();
    std::vector<std::int64_t> have = index->ids();
    std::vector<std::int64_t> missing, extra;
    std::set_difference(stored->begin(), stored->end(), have.begin(), have.end(),
                        std::back_inserter(missing));
    std::set_difference(have.begin(), have.end(), stored->begin(), stored->end(),
                        std::back_inserter(extra));
    index->remove(extra);
    std::vector<std::int64_t> ids;
    std::vector<float> vectors;
    for (std::size_t begin = 0; begin < missing.size(); begin += kCatchUpBatch) {
      auto batch =
          std::span(missing).subspan(begin, std::min(kCatchUpBatch, missing.size() - begin));
      ids.clear();
      vectors.clear();
      Status s = store_.for_each_embedding(batch, [&](std::int64_t id, std::span<const float> v) {
        ids.push_back(id);
        vectors.insert(vectors.end(), v.begin(), v.end());
      });
      if (s.ok()) s = index->add(ids, vectors);
      if (!s.ok()) return s;
    }
    if (!missing.empty() || !extra.empty()) {
      e.dirty = true;
      log::info("knowledge.index_caught_up",
                "collection {}: index file {} lacked {} and had {} "
                "stale vectors",
                collection, file.string(), missing.size(), extra.size());
    }
  } else {
    if (from_file.status().code() != StatusCode::kNotFound) {
      log::warn("knowledge.index_damaged", "collection {}: {}; rebuilding from the store",
                collection, from_file.status().message());
    }
    index = std::make_shared<VectorIndex>(options);
    Status s = index->rebuild(
        [&](const VectorSink& sink) { return store_.for_each_embedding(collection, sink); });
    if (!s.ok()) return s;
    e.dirty = true;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - started)
                  .count();
    log::info("knowledge.index_rebuilt", "collection {}: {} vectors in {} ms", collection,
              index->size(), ms);
  }
  e.index = std::move(index);
  e.loaded = true;
  return Status::Ok();
}

Result<std::shared_ptr<VectorIndex>> VectorIndexes::get(std::string_view collection) {
  std::shared_ptr<Entry> e = entry(collection, true);
  std::unique_lock lock(e->mutex);
  if (!e->loaded) {
    Status s = load(collection, *e);
    if (!s.ok()) {
      lock.unlock();
      // Do not keep entries for names that are not collections (any request can ask).
      std::lock_guard map_lock(mutex_);
      auto it = entries_.find(collection);
      if (it != entries_.end() && it->second == e && !e->loaded) entries_.erase(it);
      return s;
    }
  }
  return e->index;
}

Status VectorIndexes::add(std::string_view collection, std::span<const std::int64_t> ids,
                          std::span<const float> vectors) {
  if (ids.empty()) return Status::Ok();
  std::shared_ptr<Entry> e = entry(collection, false);
  if (!e) return Status::Ok();  // not in memory: it catches up from the store when loaded
  std::shared_ptr<VectorIndex> index;
  {
    std::lock_guard lock(e->mutex);
    if (!e->loaded) return Status::Ok();
    if (!e->index) {
      if (vectors.size() % ids.size() != 0 || vectors.empty()) {
        return Status::InvalidArgument("vector index: " + std::to_string(vectors.size()) +
                                       " floats for " + std::to_string(ids.size()) + " ids");
      }
      VectorIndexOptions options = options_.index;
      options.dims = static_cast<int>(vectors.size() / ids.size());
      e->index = std::make_shared<VectorIndex>(options);
    }
    index = e->index;
  }
  Status s = index->add(ids, vectors);
  if (s.ok()) e->dirty = true;
  return s;
}

void VectorIndexes::remove(std::string_view collection, std::span<const std::int64_t> ids) {
  std::shared_ptr<Entry> e = entry(collection, false);
  if (!e) return;
  std::shared_ptr<VectorIndex> index;
  {
    std::lock_guard lock(e->mutex);
    index = e->index;
  }
  if (index && index->remove(ids) > 0) e->dirty = true;
}

void VectorIndexes::drop(std::string_view collection) {
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(collection);
    if (it != entries_.end()) entries_.erase(it);
  }
  std::error_code ec;
  std::filesystem::path file = file_for(collection);
  std::filesystem::remove(file, ec);
  std::filesystem::remove(file.string() + ".graph", ec);
}

Status VectorIndexes::save_dirty() {
  std::vector<std::pair<std::string, std::shared_ptr<Entry>>> entries;
  {
    std::lock_guard lock(mutex_);
    entries.assign(entries_.begin(), entries_.end());
  }
  Status first_error;
  for (auto& [collection, e] : entries) {
    if (!e->dirty.exchange(false)) continue;
    std::shared_ptr<VectorIndex> index;
    {
      std::lock_guard lock(e->mutex);
      index = e->index;
    }
    if (!index) continue;
    Status s = index->save(file_for(collection));
    if (!s.ok()) {
      e->dirty = true;
      log::warn("knowledge.index_save_failed", "collection {}: {}", collection, s.message());
      if (first_error.ok()) first_error = s;
    }
  }
  return first_error;
}

}  // namespace infera::knowledge
