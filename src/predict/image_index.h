// Named sets of reference images (protected content) for image matching: each reference
// keeps its id, tags, 64-bit perceptual hash and, when an embedding model is configured,
// its CNN embedding (unit length) and the identity of the model that made it. Matching
// filters by Hamming distance of the hashes first, then scores the survivors by cosine
// similarity of embeddings (or by the hash alone when either side has none).
//
// Durable: every change is appended to <dir>/<set>.jsonl and fdatasync'ed before the
// call returns; open() replays the files (a torn last line, from a crash mid-write, is
// dropped) and rewrites a file whose removed entries outnumber the live ones.
//
// Threads: every method may be called from any thread (one mutex; match() scans a set
// under it, ~1 us per 1,000 references).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/status.h"

namespace infera::predict {

struct ImageRef {
  std::string id;
  std::vector<std::string> tags;
  uint64_t phash = 0;
  std::vector<float> embedding;  // empty without an embedding model
  std::string model;             // the embedding model's name and file identity
};

struct ImageMatch {
  std::string id;
  std::vector<std::string> tags;
  int distance = 0;      // Hamming distance of the perceptual hashes, 0..64
  double score = 0;      // cosine similarity of embeddings, or 1 - distance / 64
  bool by_embedding = false;
};

class ImageIndex {
 public:
  static Result<std::unique_ptr<ImageIndex>> open(const std::filesystem::path& dir);

  // Set names and ids: 1-128 characters of letters, digits, '_', '-', '.', ':' (ids) and
  // 1-64 of letters, digits, '_', '-' (sets). InvalidArgument otherwise.
  static Status check_set_name(const std::string& set);
  static Status check_id(const std::string& id);

  // Adds or replaces `ref` in `set` (created on first use). IoError when it cannot be
  // made durable (nothing changes then).
  Status add(const std::string& set, ImageRef ref);
  // NotFound for an unknown set or id.
  Status remove(const std::string& set, const std::string& id);
  std::vector<ImageRef> list(const std::string& set) const;
  std::vector<std::pair<std::string, size_t>> sets() const;  // name, references
  // Changes whenever the set changes (cache keys of match answers include it).
  uint64_t generation(const std::string& set) const;

  // References of `set` within `max_distance` of `phash`, best first, at most `top_k`.
  // `embedding` (may be empty) is compared with references made by the same `model`.
  std::vector<ImageMatch> match(const std::string& set, uint64_t phash,
                                const std::vector<float>& embedding, const std::string& model,
                                int max_distance, size_t top_k) const;

 private:
  struct Set {
    std::vector<ImageRef> refs;
    size_t lines = 0;  // in its file
    uint64_t generation = 0;
  };
  explicit ImageIndex(std::filesystem::path dir) : dir_(std::move(dir)) {}
  Status append(const std::string& set, const std::string& line);
  Status rewrite(const std::string& set, Set& s);

  std::filesystem::path dir_;
  mutable std::mutex mu_;
  std::map<std::string, Set> sets_;
  uint64_t next_generation_ = 1;
};

}  // namespace infera::predict
