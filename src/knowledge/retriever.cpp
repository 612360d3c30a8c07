#include "knowledge/retriever.h"

#include <algorithm>
#include <unordered_map>
#include <utility>

namespace infera::knowledge {

namespace {

// A fused id may have lost its chunk since it was ranked (a document deleted meanwhile);
// fetching a few more than k keeps the answer full in that case.
constexpr std::size_t kSpareChunks = 8;

int best_rank(const FusedHit& h) {
  if (h.keyword_rank == 0) return h.vector_rank;
  if (h.vector_rank == 0) return h.keyword_rank;
  return std::min(h.keyword_rank, h.vector_rank);
}

}  // namespace

std::vector<FusedHit> fuse_rrf(std::span<const store::KeywordHit> keyword,
                               std::span<const VectorHit> vector, int rrf_k) {
  std::vector<FusedHit> fused;
  fused.reserve(keyword.size() + vector.size());
  std::unordered_map<std::int64_t, std::size_t> at;
  auto slot = [&](std::int64_t id) -> FusedHit& {
    auto [it, inserted] = at.try_emplace(id, fused.size());
    if (inserted) fused.push_back({.id = id});
    return fused[it->second];
  };
  // An id listed twice in one ranking counts once, at its better rank.
  for (std::size_t i = 0; i < keyword.size(); ++i) {
    FusedHit& h = slot(keyword[i].chunk_id);
    if (h.keyword_rank != 0) continue;
    h.keyword_rank = static_cast<int>(i + 1);
    h.keyword_score = keyword[i].score;
    h.score += 1.0 / (rrf_k + h.keyword_rank);
  }
  for (std::size_t i = 0; i < vector.size(); ++i) {
    FusedHit& h = slot(vector[i].id);
    if (h.vector_rank != 0) continue;
    h.vector_rank = static_cast<int>(i + 1);
    h.vector_score = vector[i].score;
    h.score += 1.0 / (rrf_k + h.vector_rank);
  }
  std::sort(fused.begin(), fused.end(), [](const FusedHit& a, const FusedHit& b) {
    if (a.score != b.score) return a.score > b.score;
    if (best_rank(a) != best_rank(b)) return best_rank(a) < best_rank(b);
    return a.id < b.id;
  });
  return fused;
}

Result<std::vector<RetrievedChunk>> Retriever::retrieve(std::string_view collection,
                                                        std::string_view query,
                                                        std::span<const float> query_embedding,
                                                        const RetrievalOptions& options) {
  std::vector<RetrievedChunk> out;
  if (options.k == 0) return out;
  const std::size_t candidates = std::max(options.candidates, options.k);

  Result<std::vector<store::KeywordHit>> keyword =
      store_.keyword_search(collection, query, candidates);
  if (!keyword.ok()) return keyword.status();

  std::vector<VectorHit> vector;
  if (!query_embedding.empty()) {
    Result<std::shared_ptr<VectorIndex>> index = indexes_.get(collection);
    if (!index.ok()) {
      if (index.status().code() == StatusCode::kNotFound) return out;
      return index.status();
    }
    if (*index) {
      Result<std::vector<VectorHit>> hits = (*index)->search(query_embedding, candidates);
      if (!hits.ok()) return hits.status();
      vector = std::move(hits).value();
    }
  }

  std::vector<FusedHit> fused = fuse_rrf(*keyword, vector, options.rrf_k);
  if (fused.size() > options.k + kSpareChunks) fused.resize(options.k + kSpareChunks);
  std::vector<std::int64_t> ids;
  ids.reserve(fused.size());
  for (const FusedHit& h : fused) ids.push_back(h.id);
  Result<std::vector<store::Chunk>> chunks = store_.get_chunks(ids);
  if (!chunks.ok()) return chunks.status();
  std::unordered_map<std::int64_t, store::Chunk*> by_id;
  for (store::Chunk& c : *chunks) by_id[c.id] = &c;
  for (const FusedHit& h : fused) {
    if (out.size() == options.k) break;
    auto it = by_id.find(h.id);
    if (it == by_id.end()) continue;
    store::Chunk& c = *it->second;
    out.push_back({h, c.document_id, std::move(c.document_name), std::move(c.heading), c.page,
                   std::move(c.text)});
  }
  return out;
}

}  // namespace infera::knowledge
