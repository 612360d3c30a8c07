// The semantic cache: answers to single-turn questions, found again for a question
// that means the same. A cached answer is reused only when (1) it was given in the same
// scope — model, embedder, role or system prompt, retrieved context and every setting
// that shapes the answer, all folded into `scope` by the caller — (2) the two questions'
// embeddings are at least `threshold` similar (cosine) or their normalised forms are
// equal, and (3) the semantic guard finds nothing that could make the answers differ
// (numbers, negations, opposites, entities, wording, order). A collection's entries are
// dropped when its documents change.
//
//   SemanticCache cache({.threshold = 0.95});
//   if (auto hit = cache.lookup(scope, question, vector)) answer(hit->value);
//   else ... cache.insert(scope, question, vector, answer_bytes, collection);
//
// In memory (bounded; the oldest entries leave first). Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace infera::knowledge {

struct SemanticCacheOptions {
  float threshold = 0.95f;     // least cosine similarity of two questions' embeddings
  size_t max_entries = 10000;  // all scopes together
};

struct SemanticHit {
  std::string value;             // what insert() stored
  float similarity = 0;          // of the two questions (1 for equal normalised forms)
  std::string cached_question;
};

struct SemanticCacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t guard_refusals = 0;  // similar enough, refused by the guard
  uint64_t entries = 0;
  uint64_t invalidated = 0;     // dropped because their collection changed
};

class SemanticCache {
 public:
  explicit SemanticCache(SemanticCacheOptions options);
  ~SemanticCache();
  SemanticCache(const SemanticCache&) = delete;
  SemanticCache& operator=(const SemanticCache&) = delete;

  // The best compatible entry of `scope` for `question` (its unit-length `vector`).
  std::optional<SemanticHit> lookup(std::string_view scope, std::string_view question,
                                    std::span<const float> vector);
  // Stores an answer; `collection` (may be empty) is what invalidates it.
  void insert(std::string_view scope, std::string_view question, std::span<const float> vector,
              std::string value, std::string_view collection = {});
  // Drops every entry answered from `collection`.
  void invalidate_collection(std::string_view collection);
  void clear();
  SemanticCacheStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace infera::knowledge
