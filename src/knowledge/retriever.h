// Hybrid retrieval: the chunks of a collection that best answer a question, found by
// keywords (BM25 over the store's full-text index) and by meaning (the collection's
// vector index), the two rankings fused by reciprocal rank (Cormack, Clarke & Büttcher,
// SIGIR 2009: score = sum over rankings of 1 / (k + rank), rank 1-based, k = 60).
//
//   Retriever retriever(store, indexes);
//   auto chunks = retriever.retrieve("biology", question, question_embedding, {.k = 5});
//
// The caller embeds the question (the retriever never calls a model); an empty embedding
// means keywords only. Thread-safe: any thread may call retrieve().
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "knowledge/vector_index.h"
#include "knowledge/vector_indexes.h"
#include "store/store.h"

namespace infera::knowledge {

struct RetrievalOptions {
  std::size_t k = 5;            // chunks returned
  std::size_t candidates = 50;  // taken from each ranking before fusion
  int rrf_k = 60;               // the fusion constant
};

// One id's place in the two rankings and its fused score. Rank 0: not in that ranking.
struct FusedHit {
  std::int64_t id = 0;
  double score = 0;
  int keyword_rank = 0;
  double keyword_score = 0;  // BM25, higher is better
  int vector_rank = 0;
  float vector_score = 0;  // cosine similarity
};

// Reciprocal rank fusion of two best-first lists: every id of either, best fused score
// first; ties go to the better single rank, then the smaller id.
std::vector<FusedHit> fuse_rrf(std::span<const store::KeywordHit> keyword,
                               std::span<const VectorHit> vector, int rrf_k = 60);

struct RetrievedChunk {
  FusedHit rank;
  std::int64_t document_id = 0;
  std::string document_name;
  std::string heading;  // "Intro > Setup"
  int page = 0;         // 0 without pages
  std::string text;
};

class Retriever {
 public:
  // Both must outlive the retriever.
  Retriever(store::Store& store, VectorIndexes& indexes) : store_(store), indexes_(indexes) {}

  // At most options.k chunks, best first; none for an unknown collection or a query that
  // matches nothing. InvalidArgument when the embedding's dims differ from the
  // collection's (the question was embedded by another model).
  Result<std::vector<RetrievedChunk>> retrieve(std::string_view collection, std::string_view query,
                                               std::span<const float> query_embedding,
                                               const RetrievalOptions& options = {});

 private:
  store::Store& store_;
  VectorIndexes& indexes_;
};

}  // namespace infera::knowledge
