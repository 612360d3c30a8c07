// A vector index over one collection's chunk embeddings: ids are chunk ids, similarity
// is the inner product of L2-normalised vectors (cosine). Small indexes are searched
// exactly (a brute-force scan beats a graph there, see kDefaultExactThreshold); past the
// threshold the vectors move into an HNSW graph (Malkov & Yashunin, arXiv:1603.09320,
// through Debian's hnswlib) whose search is approximate.
//
//   VectorIndex index({.dims = 384});
//   index.add(ids, vectors);                       // row-major ids.size() x 384
//   auto hits = index.search(query_vector, 10);    // best first
//   index.save(dir / "biology.vindex");            // VectorIndex::load(...) later
//
// Thread-safety: search(), size(), ids() and save() may run concurrently from any
// thread; add(), remove() and rebuild() are serialised among themselves and hold off
// searches only briefly (graph insertions run in short slices).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "core/status.h"

namespace infera::knowledge {

// Measured with bench_retrieval --crossover --ef 256 (docs/BENCHMARKS.md, "Retrieval
// (issue 14)"): on 384 dimensions an exact scan costs less CPU than an HNSW search up to
// about 16k vectors (0.64 ms against 0.78 ms at 16,000; 1.6 against 0.83 at 32,000),
// and it is always exact.
inline constexpr std::size_t kDefaultExactThreshold = 16384;

struct VectorIndexOptions {
  int dims = 0;  // REQUIRED: > 0
  // At most this many vectors: exact scan. More: HNSW graph (kept when the count later
  // drops below again).
  std::size_t exact_threshold = kDefaultExactThreshold;
  // HNSW parameters: links per node, candidate list while building, candidate list while
  // searching (raised to k when k is larger). With these, bench_retrieval measures
  // recall@10 0.9999 on 100k 384-dimensional vectors in 200 clusters and 0.976 in 20
  // larger ones, at a P95 under 4 ms on 2 cores.
  int hnsw_m = 16;
  int hnsw_ef_construction = 200;
  int hnsw_ef_search = 256;
  // Threads that insert into the graph when it is built from many vectors at once (the
  // switch from exact, rebuild(), load of a flat file past the threshold). hnswlib's
  // concurrent insertion shares its level generator and reads the entry point unlocked
  // (benign races that only perturb the graph's shape, but races a TSan run reports),
  // hence opt-in (bench_retrieval builds on its --threads).
  int build_threads = 1;
};

struct VectorHit {
  std::int64_t id = 0;
  float score = 0;  // cosine similarity in [-1, 1]; higher is better
};

// Feeds (id, vector) pairs to a sink; the span is valid only during the call. Matches
// store::Store::for_each_embedding, so a store can be the source directly.
using VectorSink = std::function<void(std::int64_t id, std::span<const float> vector)>;
using VectorSource = std::function<Status(const VectorSink& sink)>;

class VectorIndex {
 public:
  explicit VectorIndex(const VectorIndexOptions& options);
  ~VectorIndex();
  VectorIndex(const VectorIndex&) = delete;
  VectorIndex& operator=(const VectorIndex&) = delete;

  // Reads a file written by save(). NotFound when it is missing; Corrupt when it is
  // damaged, truncated, of another format version or of other dims than options.dims
  // (the caller then rebuilds from the store).
  static Result<std::unique_ptr<VectorIndex>> load(const std::filesystem::path& file,
                                                   const VectorIndexOptions& options);

  int dims() const;
  // Live vectors.
  std::size_t size() const;
  // True once the vectors live in the HNSW graph.
  bool uses_graph() const;
  // Live ids, ascending.
  std::vector<std::int64_t> ids() const;

  // Adds vectors (row-major, ids.size() x dims; normalised here). An id already present
  // gets the new vector. InvalidArgument for a size mismatch or a zero, NaN or infinite
  // vector (nothing is added then).
  Status add(std::span<const std::int64_t> ids, std::span<const float> vectors);
  // Removes ids; unknown ids are ignored. Returns how many were present.
  std::size_t remove(std::span<const std::int64_t> ids);
  // Replaces the whole content with what `source` yields. The old content keeps serving
  // searches until the new one is complete; on error it stays.
  Status rebuild(const VectorSource& source);

  // At most k hits, best first. Exact below the threshold, approximate above it.
  // InvalidArgument for a query of other dims or a zero vector.
  Result<std::vector<VectorHit>> search(std::span<const float> query, std::size_t k) const;

  // Changes hnsw_ef_search (recall against speed) without rebuilding the graph.
  void set_ef_search(int ef);

  // Writes the index to `file` (and, for a graph, `file` + ".graph") through temporary
  // files renamed into place, so a crash leaves the old file or a detectably damaged one.
  Status save(const std::filesystem::path& file) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace infera::knowledge
