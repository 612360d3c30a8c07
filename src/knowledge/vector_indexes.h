// The vector indexes of all collections, one VectorIndex each, kept as files under one
// directory and in step with the store, which holds the embeddings of record.
//
//   VectorIndexes indexes(store, {.dir = data_dir / "vectors"});
//   store.set_embeddings(batch);  indexes.add("bio", ids, vectors);   // ingestion
//   store.delete_document(id);    indexes.remove("bio", removed_ids);
//   auto index = indexes.get("bio");                                  // search
//   indexes.save_dirty();                                             // maintenance, shutdown
//
// An index is loaded on first use: from its file, then reconciled with the store (ids the
// file lacks are added, ids the store no longer has are removed — so an index saved
// before a crash only needs the difference); rebuilt from the store when the file is
// missing or damaged. add() and remove() only touch indexes already in memory: one not
// loaded yet catches up when it is. Thread-safe: any thread may call anything; a load
// holds up only calls for the same collection.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

#include "core/status.h"
#include "knowledge/vector_index.h"
#include "store/store.h"

namespace infera::knowledge {

struct VectorIndexesOptions {
  std::filesystem::path dir;  // REQUIRED: where the index files live (created if needed)
  VectorIndexOptions index;   // for every collection; dims comes from the collection
};

class VectorIndexes {
 public:
  // `store` must outlive this object.
  VectorIndexes(store::Store& store, VectorIndexesOptions options);
  ~VectorIndexes();
  VectorIndexes(const VectorIndexes&) = delete;
  VectorIndexes& operator=(const VectorIndexes&) = delete;

  // The collection's index, loading or rebuilding it as described above. nullptr when
  // the collection has no embeddings yet; NotFound when it does not exist.
  Result<std::shared_ptr<VectorIndex>> get(std::string_view collection);
  // Call after store::Store::set_embeddings with the same vectors (row-major). Creates
  // the index when the collection had none.
  Status add(std::string_view collection, std::span<const std::int64_t> ids,
             std::span<const float> vectors);
  // Call after the store removed chunks (document deleted or replaced).
  void remove(std::string_view collection, std::span<const std::int64_t> ids);
  // Forgets the collection's index and deletes its files (the collection was deleted).
  void drop(std::string_view collection);
  // Saves every index changed since it was last saved; the first error is returned after
  // trying them all.
  Status save_dirty();

  // The file of a collection's index: its name made safe for a file name plus a hash of
  // the exact name, so that "a/b" and "a_b" never share a file.
  std::filesystem::path file_for(std::string_view collection) const;

 private:
  struct Entry;
  std::shared_ptr<Entry> entry(std::string_view collection, bool create);
  // REQUIRES: entry.mutex held.
  Status load(std::string_view collection, Entry& entry);

  store::Store& store_;
  VectorIndexesOptions options_;
  std::mutex mutex_;  // guards entries_
  std::map<std::string, std::shared_ptr<Entry>, std::less<>> entries_;
};

}  // namespace infera::knowledge
