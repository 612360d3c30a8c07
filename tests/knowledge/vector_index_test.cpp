#include "knowledge/vector_index.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <thread>
#include <vector>

namespace infera::knowledge {
namespace {

class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "infera-vindex-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data()) != nullptr ? pattern : std::string();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// n vectors around `clusters` random centres (unnormalised: the index normalises).
std::vector<float> clustered(std::size_t n, int dims, int clusters, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> gauss(0, 1);
  std::vector<float> centres(static_cast<std::size_t>(clusters) * dims);
  for (float& x : centres) x = gauss(rng);
  std::vector<float> out(n * dims);
  std::uniform_int_distribution<int> pick(0, clusters - 1);
  for (std::size_t i = 0; i < n; ++i) {
    int c = pick(rng);
    for (int d = 0; d < dims; ++d) out[i * dims + d] = centres[c * dims + d] + 0.7f * gauss(rng);
  }
  return out;
}

std::vector<std::int64_t> sequential_ids(std::size_t n, std::int64_t first = 1) {
  std::vector<std::int64_t> ids(n);
  for (std::size_t i = 0; i < n; ++i) ids[i] = first + static_cast<std::int64_t>(i);
  return ids;
}

std::vector<std::int64_t> hit_ids(const Result<std::vector<VectorHit>>& hits) {
  std::vector<std::int64_t> ids;
  EXPECT_TRUE(hits.ok()) << hits.status().message();
  if (hits.ok()) {
    for (const VectorHit& h : *hits) ids.push_back(h.id);
  }
  return ids;
}

VectorIndexOptions exact_options(int dims) {
  return {.dims = dims, .exact_threshold = std::numeric_limits<std::size_t>::max()};
}

VectorIndexOptions graph_options(int dims) { return {.dims = dims, .exact_threshold = 0}; }

TEST(VectorIndex, ExactSearchRanksByCosine) {
  VectorIndex index(exact_options(3));
  const std::int64_t ids[] = {10, 20, 30, 40};
  const float vectors[] = {1,  0, 0,   // 10
                           0,  1, 0,   // 20
                           5,  5, 0,   // 30: 45 degrees, scale does not matter
                           -1, 0, 0};  // 40
  ASSERT_TRUE(index.add(ids, vectors).ok());
  EXPECT_FALSE(index.uses_graph());
  const float query[] = {2, 0.1f, 0};
  Result<std::vector<VectorHit>> hits = index.search(query, 3);
  ASSERT_TRUE(hits.ok());
  EXPECT_EQ(hit_ids(hits), (std::vector<std::int64_t>{10, 30, 20}));
  EXPECT_NEAR((*hits)[0].score, 2 / std::sqrt(4.01), 1e-5);
  EXPECT_NEAR((*hits)[1].score, (2 + 0.1) / std::sqrt(2) / std::sqrt(4.01), 1e-5);
  EXPECT_EQ(index.search(query, 10)->size(), 4u);
  EXPECT_NEAR(index.search(query, 10)->back().score, -2 / std::sqrt(4.01), 1e-5);
  EXPECT_TRUE(index.search(query, 0)->empty());
}

TEST(VectorIndex, RejectsMalformedVectors) {
  VectorIndex index(exact_options(2));
  const std::int64_t ids[] = {1, 2};
  const float short_vectors[] = {1, 0, 1};
  EXPECT_EQ(index.add(ids, short_vectors).code(), StatusCode::kInvalidArgument);
  const float zero[] = {1, 0, 0, 0};
  EXPECT_EQ(index.add(ids, zero).code(), StatusCode::kInvalidArgument);
  const float nan[] = {1, 0, std::nanf(""), 1};
  EXPECT_EQ(index.add(ids, nan).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(index.size(), 0u);  // nothing of a refused batch is added
  const float wrong_dims[] = {1, 0, 0};
  EXPECT_EQ(index.search(wrong_dims, 1).status().code(), StatusCode::kInvalidArgument);
  const float zero_query[] = {0, 0};
  EXPECT_EQ(index.search(zero_query, 1).status().code(), StatusCode::kInvalidArgument);
}

TEST(VectorIndex, GraphAgreesWithExactSearch) {
  constexpr int kDims = 64;
  constexpr std::size_t kN = 5000;
  std::vector<float> data = clustered(kN, kDims, 40, 1);
  std::vector<std::int64_t> ids = sequential_ids(kN, 1000);
  VectorIndex exact(exact_options(kDims));
  VectorIndex graph(graph_options(kDims));
  ASSERT_TRUE(exact.add(ids, data).ok());
  ASSERT_TRUE(graph.add(ids, data).ok());
  EXPECT_FALSE(exact.uses_graph());
  EXPECT_TRUE(graph.uses_graph());
  EXPECT_EQ(graph.size(), kN);

  std::vector<float> queries = clustered(200, kDims, 40, 2);
  std::size_t found = 0;
  for (std::size_t q = 0; q < 200; ++q) {
    std::span<const float> query(queries.data() + q * kDims, kDims);
    std::vector<std::int64_t> truth = hit_ids(exact.search(query, 10));
    std::vector<std::int64_t> approx = hit_ids(graph.search(query, 10));
    ASSERT_EQ(truth.size(), 10u);
    std::set<std::int64_t> t(truth.begin(), truth.end());
    for (std::int64_t id : approx) found += t.count(id);
  }
  double recall = static_cast<double>(found) / (200 * 10);
  EXPECT_GE(recall, 0.95);
}

double recall_at_10(const VectorIndex& exact, const VectorIndex& approx,
                    const std::vector<float>& queries, int dims) {
  std::size_t n = queries.size() / dims, found = 0;
  for (std::size_t q = 0; q < n; ++q) {
    std::span<const float> query(queries.data() + q * dims, dims);
    std::vector<std::int64_t> truth = hit_ids(exact.search(query, 10));
    std::set<std::int64_t> t(truth.begin(), truth.end());
    for (std::int64_t id : hit_ids(approx.search(query, 10))) found += t.count(id);
  }
  return static_cast<double>(found) / (n * 10);
}

TEST(VectorIndex, SearchEffortCanChangeWithoutARebuild) {
  constexpr int kDims = 64;
  std::vector<float> data = clustered(4000, kDims, 2, 11);
  std::vector<std::int64_t> ids = sequential_ids(4000);
  VectorIndex exact(exact_options(kDims));
  VectorIndexOptions options = graph_options(kDims);
  options.hnsw_ef_search = 1;  // k = 10 still searches with 10 candidates
  VectorIndex graph(options);
  ASSERT_TRUE(exact.add(ids, data).ok());
  ASSERT_TRUE(graph.add(ids, data).ok());
  std::vector<float> queries = clustered(100, kDims, 2, 12);
  double low = recall_at_10(exact, graph, queries, kDims);
  graph.set_ef_search(400);
  double high = recall_at_10(exact, graph, queries, kDims);
  EXPECT_LT(low, 0.9);
  EXPECT_GE(high, 0.95);
  EXPECT_GT(high, low + 0.1);
}

TEST(VectorIndex, MovesIntoAGraphPastTheThreshold) {
  constexpr int kDims = 16;
  VectorIndex index({.dims = kDims, .exact_threshold = 100});
  std::vector<float> data = clustered(150, kDims, 5, 3);
  std::vector<std::int64_t> ids = sequential_ids(150);
  ASSERT_TRUE(index.add(std::span(ids).first(100), std::span(data).first(100 * kDims)).ok());
  EXPECT_FALSE(index.uses_graph());
  ASSERT_TRUE(index.add(std::span(ids).subspan(100), std::span(data).subspan(100 * kDims)).ok());
  EXPECT_TRUE(index.uses_graph());
  EXPECT_EQ(index.size(), 150u);
  EXPECT_EQ(index.ids(), ids);
  // Every stored vector finds itself first.
  for (std::size_t i = 0; i < 150; i += 7) {
    Result<std::vector<VectorHit>> hits =
        index.search(std::span(data).subspan(i * kDims, kDims), 1);
    ASSERT_TRUE(hits.ok());
    ASSERT_EQ(hits->size(), 1u);
    EXPECT_EQ((*hits)[0].id, ids[i]);
    EXPECT_NEAR((*hits)[0].score, 1.0f, 1e-4);
  }
}

void check_remove(VectorIndex& index, int dims) {
  std::vector<float> data = clustered(300, dims, 10, 4);
  std::vector<std::int64_t> ids = sequential_ids(300);
  ASSERT_TRUE(index.add(ids, data).ok());
  std::vector<std::int64_t> gone = {1, 50, 299, 12345};
  EXPECT_EQ(index.remove(gone), 3u);
  EXPECT_EQ(index.size(), 297u);
  EXPECT_EQ(index.remove(gone), 0u);
  for (std::int64_t id : {1, 50, 299}) {
    std::span<const float> own(data.data() + (id - 1) * dims, dims);
    std::vector<std::int64_t> hits = hit_ids(index.search(own, 20));
    EXPECT_EQ(std::count(hits.begin(), hits.end(), id), 0) << id;
    EXPECT_FALSE(hits.empty());
  }
  std::vector<std::int64_t> all = index.ids();
  EXPECT_EQ(all.size(), 297u);
  EXPECT_FALSE(std::binary_search(all.begin(), all.end(), 50));
  // Added again, an id is found again.
  const std::int64_t back[] = {50};
  ASSERT_TRUE(index.add(back, std::span(data).subspan(49 * dims, dims)).ok());
  EXPECT_EQ(hit_ids(index.search(std::span(data).subspan(49 * dims, dims), 1)),
            std::vector<std::int64_t>{50});
  EXPECT_EQ(index.size(), 298u);
}

TEST(VectorIndex, RemoveWorksInExactMode) {
  VectorIndex index(exact_options(8));
  check_remove(index, 8);
  EXPECT_FALSE(index.uses_graph());
}

TEST(VectorIndex, RemoveWorksInGraphMode) {
  VectorIndex index(graph_options(8));
  check_remove(index, 8);
  EXPECT_TRUE(index.uses_graph());
}

TEST(VectorIndex, AGraphWithMostNodesDeletedIsCompactedWhenItGrows) {
  constexpr int kDims = 8;
  VectorIndex index(graph_options(kDims));
  std::vector<float> data = clustered(2000, kDims, 10, 5);
  std::vector<std::int64_t> ids = sequential_ids(2000);
  ASSERT_TRUE(index.add(std::span(ids).first(200), std::span(data).first(200 * kDims)).ok());
  ASSERT_EQ(index.remove(std::span(ids).first(180)), 180u);
  // Growing past the capacity (300) with 90% deleted rebuilds the graph from live points.
  ASSERT_TRUE(index.add(std::span(ids).subspan(200), std::span(data).subspan(200 * kDims)).ok());
  EXPECT_EQ(index.size(), 1820u);
  std::vector<std::int64_t> all = index.ids();
  ASSERT_EQ(all.size(), 1820u);
  EXPECT_EQ(all.front(), 181);
  EXPECT_EQ(hit_ids(index.search(std::span(data).subspan(190 * kDims, kDims), 1)),
            std::vector<std::int64_t>{191});
}

void check_round_trip(const VectorIndexOptions& options, bool graph) {
  TempDir dir;
  const int dims = options.dims;
  std::vector<float> data = clustered(500, dims, 10, 6);
  std::vector<std::int64_t> ids = sequential_ids(500, 7);
  VectorIndex index(options);
  ASSERT_TRUE(index.add(ids, data).ok());
  ASSERT_EQ(index.remove(std::vector<std::int64_t>{7, 8}), 2u);
  ASSERT_EQ(index.uses_graph(), graph);
  std::filesystem::path file = dir.path() / "sub" / "c.vindex";
  ASSERT_TRUE(index.save(file).ok());
  EXPECT_EQ(std::filesystem::exists(dir.path() / "sub" / "c.vindex.graph"), graph);
  Result<std::unique_ptr<VectorIndex>> loaded = VectorIndex::load(file, options);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  EXPECT_EQ((*loaded)->uses_graph(), graph);
  EXPECT_EQ((*loaded)->size(), 498u);
  EXPECT_EQ((*loaded)->ids(), index.ids());
  std::vector<float> queries = clustered(20, dims, 10, 7);
  for (int q = 0; q < 20; ++q) {
    std::span<const float> query(queries.data() + q * dims, dims);
    EXPECT_EQ(hit_ids((*loaded)->search(query, 10)), hit_ids(index.search(query, 10)));
  }
}

TEST(VectorIndex, SaveAndLoadRoundTripExact) { check_round_trip(exact_options(12), false); }

TEST(VectorIndex, SaveAndLoadRoundTripGraph) { check_round_trip(graph_options(12), true); }

void flip_byte(const std::filesystem::path& file, std::uintmax_t offset) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  f.seekp(static_cast<std::streamoff>(offset));
  c = static_cast<char>(c ^ 0x10);
  f.write(&c, 1);
}

TEST(VectorIndex, DetectsMissingAndDamagedFiles) {
  TempDir dir;
  constexpr int kDims = 8;
  std::vector<float> data = clustered(100, kDims, 4, 8);
  std::vector<std::int64_t> ids = sequential_ids(100);
  std::filesystem::path file = dir.path() / "c.vindex";
  auto fresh_exact = [&] {
    VectorIndex index(exact_options(kDims));
    ASSERT_TRUE(index.add(ids, data).ok());
    ASSERT_TRUE(index.save(file).ok());
  };
  auto code = [&](const VectorIndexOptions& o) {
    return VectorIndex::load(file, o).status().code();
  };

  EXPECT_EQ(code(exact_options(kDims)), StatusCode::kNotFound);
  fresh_exact();
  ASSERT_EQ(code(exact_options(kDims)), StatusCode::kOk);
  EXPECT_EQ(code(exact_options(kDims + 1)), StatusCode::kCorrupt);  // other dims

  flip_byte(file, std::filesystem::file_size(file) - 3);  // a vector byte
  EXPECT_EQ(code(exact_options(kDims)), StatusCode::kCorrupt);
  fresh_exact();
  flip_byte(file, 80);  // an id byte
  EXPECT_EQ(code(exact_options(kDims)), StatusCode::kCorrupt);
  fresh_exact();
  flip_byte(file, 20);  // the header
  EXPECT_EQ(code(exact_options(kDims)), StatusCode::kCorrupt);
  fresh_exact();
  std::filesystem::resize_file(file, std::filesystem::file_size(file) - 4);
  EXPECT_EQ(code(exact_options(kDims)), StatusCode::kCorrupt);
  std::filesystem::resize_file(file, 10);
  EXPECT_EQ(code(exact_options(kDims)), StatusCode::kCorrupt);
  std::ofstream(file, std::ios::trunc) << "not an index at all, but long enough to have a header"
                                          " of seventy-two bytes";
  EXPECT_EQ(code(exact_options(kDims)), StatusCode::kCorrupt);

  // Graph: the graph file damaged, truncated, missing, or from another save.
  VectorIndex graph(graph_options(kDims));
  ASSERT_TRUE(graph.add(ids, data).ok());
  ASSERT_TRUE(graph.save(file).ok());
  std::filesystem::path graph_file = file.string() + ".graph";
  ASSERT_EQ(code(graph_options(kDims)), StatusCode::kOk);
  flip_byte(graph_file, std::filesystem::file_size(graph_file) / 2);
  EXPECT_EQ(code(graph_options(kDims)), StatusCode::kCorrupt);
  ASSERT_TRUE(graph.save(file).ok());
  std::filesystem::resize_file(graph_file, std::filesystem::file_size(graph_file) - 1);
  EXPECT_EQ(code(graph_options(kDims)), StatusCode::kCorrupt);
  ASSERT_TRUE(graph.save(file).ok());
  std::filesystem::remove(graph_file);
  EXPECT_EQ(code(graph_options(kDims)), StatusCode::kCorrupt);
  ASSERT_TRUE(graph.save(file).ok());
  std::filesystem::path old_header = dir.path() / "old";
  std::filesystem::copy_file(file, old_header);
  ASSERT_EQ(graph.remove(std::vector<std::int64_t>{5}), 1u);
  ASSERT_TRUE(graph.save(file).ok());
  std::filesystem::copy_file(old_header, file, std::filesystem::copy_options::overwrite_existing);
  EXPECT_EQ(code(graph_options(kDims)), StatusCode::kCorrupt);
}

TEST(VectorIndex, RebuildReplacesTheContent) {
  constexpr int kDims = 4;
  VectorIndex index({.dims = kDims, .exact_threshold = 50});
  std::vector<float> data = clustered(100, kDims, 3, 9);
  std::vector<std::int64_t> ids = sequential_ids(100, 500);
  ASSERT_TRUE(index.add(std::span(ids).first(10), std::span(data).first(10 * kDims)).ok());
  Status s = index.rebuild([&](const VectorSink& sink) {
    for (std::size_t i = 20; i < 100; ++i) sink(ids[i], std::span(data).subspan(i * kDims, kDims));
    return Status::Ok();
  });
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_TRUE(index.uses_graph());
  EXPECT_EQ(index.ids(), std::vector<std::int64_t>(ids.begin() + 20, ids.end()));

  // A failing source leaves the index as it was.
  EXPECT_EQ(index.rebuild([](const VectorSink&) { return Status::IoError("disk"); }).code(),
            StatusCode::kIoError);
  const float wrong[] = {1, 2};
  EXPECT_EQ(index
                .rebuild([&](const VectorSink& sink) {
                  sink(1, wrong);
                  return Status::Ok();
                })
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(index.size(), 80u);
  // Rebuilt small, it searches exactly again.
  ASSERT_TRUE(index
                  .rebuild([&](const VectorSink& sink) {
                    sink(ids[0], std::span(data).first(kDims));
                    return Status::Ok();
                  })
                  .ok());
  EXPECT_FALSE(index.uses_graph());
  EXPECT_EQ(index.ids(), std::vector<std::int64_t>{ids[0]});
}

TEST(VectorIndex, SearchesRunWhileVectorsAreAdded) {
  constexpr int kDims = 32;
  VectorIndex index({.dims = kDims, .exact_threshold = 500});
  std::vector<float> data = clustered(3000, kDims, 20, 10);
  std::vector<std::int64_t> ids = sequential_ids(3000);
  ASSERT_TRUE(index.add(std::span(ids).first(100), std::span(data).first(100 * kDims)).ok());
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&, t] {
      std::size_t i = static_cast<std::size_t>(t);
      while (!done) {
        Result<std::vector<VectorHit>> hits =
            index.search(std::span(data).subspan((i % 100) * kDims, kDims), 5);
        if (!hits.ok() || hits->empty()) ++failures;
        ++i;
      }
    });
  }
  for (std::size_t begin = 100; begin < 3000; begin += 100) {
    ASSERT_TRUE(index
                    .add(std::span(ids).subspan(begin, 100),
                         std::span(data).subspan(begin * kDims, 100 * kDims))
                    .ok());
  }
  index.remove(std::span(ids).subspan(2000, 10));
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(index.size(), 2990u);
  EXPECT_TRUE(index.uses_graph());
}

}  // namespace
}  // namespace infera::knowledge
