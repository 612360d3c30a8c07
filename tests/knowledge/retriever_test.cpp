#include "knowledge/retriever.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "knowledge/vector_indexes.h"
#include "store/store.h"

namespace infera::knowledge {
namespace {

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "infera-retr-XXXXXX").string();
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

std::vector<std::int64_t> ids_of(const std::vector<FusedHit>& hits) {
  std::vector<std::int64_t> ids;
  for (const FusedHit& h : hits) ids.push_back(h.id);
  return ids;
}

TEST(FuseRrf, ScoresAreSumsOfReciprocalRanks) {
  const store::KeywordHit keyword[] = {{10, 9.5}, {20, 4.0}, {30, 1.0}};
  const VectorHit vector[] = {{30, 0.9f}, {40, 0.8f}, {10, 0.7f}, {50, 0.1f}};
  std::vector<FusedHit> fused = fuse_rrf(keyword, vector, 60);
  // 10 and 30 tie (1/61 + 1/63), as do 20 and 40 (1/62): ties go to the smaller id.
  ASSERT_EQ(ids_of(fused), (std::vector<std::int64_t>{10, 30, 20, 40, 50}));
  EXPECT_DOUBLE_EQ(fused[0].score, 1.0 / 61 + 1.0 / 63);
  EXPECT_EQ(fused[0].keyword_rank, 1);
  EXPECT_DOUBLE_EQ(fused[0].keyword_score, 9.5);
  EXPECT_EQ(fused[0].vector_rank, 3);
  EXPECT_FLOAT_EQ(fused[0].vector_score, 0.7f);
  EXPECT_DOUBLE_EQ(fused[2].score, 1.0 / 62);
  EXPECT_EQ(fused[2].vector_rank, 0);  // 20 is a keyword hit only
  EXPECT_EQ(fused[3].keyword_rank, 0);
  EXPECT_DOUBLE_EQ(fused[4].score, 1.0 / 64);
}

TEST(FuseRrf, AgreementBeatsASingleTopRank) {
  // 2 is second in both lists, 1 first in one: 2/62 > 1/61.
  const store::KeywordHit keyword[] = {{1, 5}, {2, 4}};
  const VectorHit vector[] = {{3, 0.9f}, {2, 0.8f}};
  EXPECT_EQ(ids_of(fuse_rrf(keyword, vector)), (std::vector<std::int64_t>{2, 1, 3}));
  // The constant matters: with k = 0 all three score 1 (1/1, 1/2 + 1/2, 1/1); ties go to
  // the better single rank, then the smaller id.
  std::vector<FusedHit> sharp = fuse_rrf(keyword, vector, 0);
  EXPECT_EQ(ids_of(sharp), (std::vector<std::int64_t>{1, 3, 2}));
  EXPECT_DOUBLE_EQ(sharp[2].score, 1.0);
}

TEST(FuseRrf, AnIdRepeatedInOneListCountsOnce) {
  const store::KeywordHit keyword[] = {{7, 3}, {7, 2}};
  std::vector<FusedHit> fused = fuse_rrf(keyword, {}, 60);
  ASSERT_EQ(fused.size(), 1u);
  EXPECT_DOUBLE_EQ(fused[0].score, 1.0 / 61);
  EXPECT_TRUE(fuse_rrf({}, {}).empty());
}

constexpr int kDims = 32;
const char* const kFiller[] = {"lecture", "notes",   "exam",   "chapter", "review",  "summary",
                               "example", "problem", "answer", "course",  "student", "week"};

std::vector<float> random_vector(std::mt19937& rng) {
  std::normal_distribution<float> gauss(0, 1);
  std::vector<float> v(kDims);
  for (float& x : v) x = gauss(rng);
  return v;
}

// A store with one collection of 300 filler chunks and one planted passage, embedded,
// and its vector indexes (a graph past 100 vectors, so both index kinds are exercised).
class RetrieverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = store::open_sqlite(dir_.path() / "db");
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_ = std::move(s).value();
    indexes_ = make_indexes();
    ASSERT_TRUE(store_->ensure_collection({"course", "", "test-embedder", kDims}).ok());
    // Loaded while still empty: the adds below then build the index in memory.
    Result<std::shared_ptr<VectorIndex>> empty = indexes_->get("course");
    ASSERT_TRUE(empty.ok());
    ASSERT_EQ(*empty, nullptr);

    std::mt19937 rng(42);
    std::vector<store::NewChunk> filler;
    std::uniform_int_distribution<int> word(0, std::size(kFiller) - 1);
    for (int i = 0; i < 300; ++i) {
      std::string text;
      for (int w = 0; w < 12; ++w) text += std::string(kFiller[word(rng)]) + " ";
      filler.push_back({i, text, "Week " + std::to_string(i / 30), 0, 12});
    }
    filler_doc_ = add_document("filler.md", filler, rng);
    planted_vector_ = random_vector(rng);
    std::vector<store::NewChunk> planted = {
        {0, "The mitochondrial ribosome assembles inside the matrix.", "Cells > Organelles", 7, 9}};
    planted_doc_ = add_document("biology.pdf", planted, rng, &planted_vector_);
    planted_chunk_ = store_->document_chunks(planted_doc_)->at(0).id;
  }

  std::unique_ptr<VectorIndexes> make_indexes() {
    VectorIndexOptions index;
    index.exact_threshold = 100;
    return std::make_unique<VectorIndexes>(*store_,
                                           VectorIndexesOptions{dir_.path() / "vectors", index});
  }

  // Stores the document and its embeddings (random unless `first` is given for chunk 0)
  // and tells the indexes, as ingestion does.
  std::int64_t add_document(const std::string& name, const std::vector<store::NewChunk>& chunks,
                            std::mt19937& rng, const std::vector<float>* first = nullptr) {
    Result<store::Document> doc = store_->create_document({"course", "", {name, "text", "", 1}});
    EXPECT_TRUE(doc.ok());
    Result<store::ChunkChange> change =
        store_->replace_document_content(doc->id, doc->content, chunks);
    EXPECT_TRUE(change.ok());
    std::vector<float> vectors;
    for (std::size_t i = 0; i < chunks.size(); ++i) {
      std::vector<float> v = i == 0 && first != nullptr ? *first : random_vector(rng);
      vectors.insert(vectors.end(), v.begin(), v.end());
    }
    std::vector<store::ChunkEmbedding> embeddings;
    for (std::size_t i = 0; i < chunks.size(); ++i) {
      embeddings.push_back({change->added_ids[i], std::span(vectors).subspan(i * kDims, kDims)});
    }
    EXPECT_TRUE(store_->set_embeddings(embeddings).ok());
    EXPECT_TRUE(indexes_->add("course", change->added_ids, vectors).ok());
    return doc->id;
  }

  std::vector<float> near_planted() {
    std::mt19937 rng(7);
    std::normal_distribution<float> noise(0, 0.05f);
    std::vector<float> q = planted_vector_;
    for (float& x : q) x += noise(rng);
    return q;
  }

  TempDir dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<VectorIndexes> indexes_;
  std::vector<float> planted_vector_;
  std::int64_t filler_doc_ = 0, planted_doc_ = 0, planted_chunk_ = 0;
};

TEST_F(RetrieverTest, FindsThePlantedPassageByKeyword) {
  Retriever retriever(*store_, *indexes_);
  Result<std::vector<RetrievedChunk>> got =
      retriever.retrieve("course", "where does the mitochondrial ribosome assemble?", {});
  ASSERT_TRUE(got.ok()) << got.status().message();
  ASSERT_FALSE(got->empty());
  const RetrievedChunk& top = (*got)[0];
  EXPECT_EQ(top.rank.id, planted_chunk_);
  EXPECT_EQ(top.rank.keyword_rank, 1);
  EXPECT_EQ(top.rank.vector_rank, 0);
  EXPECT_EQ(top.document_id, planted_doc_);
  EXPECT_EQ(top.document_name, "biology.pdf");
  EXPECT_EQ(top.heading, "Cells > Organelles");
  EXPECT_EQ(top.page, 7);
  EXPECT_EQ(top.text, "The mitochondrial ribosome assembles inside the matrix.");
}

TEST_F(RetrieverTest, FindsThePlantedPassageByVector) {
  Retriever retriever(*store_, *indexes_);
  std::vector<float> q = near_planted();
  // No word of this question occurs in the collection.
  Result<std::vector<RetrievedChunk>> got =
      retriever.retrieve("course", "protein factory location", q);
  ASSERT_TRUE(got.ok()) << got.status().message();
  ASSERT_EQ(got->size(), 5u);
  EXPECT_EQ((*got)[0].rank.id, planted_chunk_);
  EXPECT_EQ((*got)[0].rank.vector_rank, 1);
  EXPECT_EQ((*got)[0].rank.keyword_rank, 0);
  EXPECT_GT((*got)[0].rank.vector_score, 0.99f);
  Result<std::shared_ptr<VectorIndex>> index = indexes_->get("course");
  ASSERT_TRUE(index.ok());
  EXPECT_TRUE((*index)->uses_graph());
}

TEST_F(RetrieverTest, BothRankingsTogetherFuse) {
  Retriever retriever(*store_, *indexes_);
  Result<std::vector<RetrievedChunk>> got =
      retriever.retrieve("course", "mitochondrial ribosome", near_planted(), {.k = 3});
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 3u);
  EXPECT_EQ((*got)[0].rank.id, planted_chunk_);
  EXPECT_DOUBLE_EQ((*got)[0].rank.score, 2.0 / 61);
  EXPECT_LT((*got)[1].rank.score, (*got)[0].rank.score);
}

TEST_F(RetrieverTest, ADeletedDocumentLeavesTheResults) {
  Retriever retriever(*store_, *indexes_);
  Result<std::shared_ptr<VectorIndex>> index = indexes_->get("course");
  ASSERT_TRUE(index.ok());
  ASSERT_EQ((*index)->size(), 301u);
  Result<std::vector<std::int64_t>> removed = store_->delete_document(planted_doc_);
  ASSERT_TRUE(removed.ok());
  indexes_->remove("course", *removed);
  EXPECT_EQ((*index)->size(), 300u);
  Result<std::vector<RetrievedChunk>> got =
      retriever.retrieve("course", "mitochondrial ribosome", near_planted(), {.k = 10});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->size(), 10u);
  for (const RetrievedChunk& c : *got) EXPECT_NE(c.document_id, planted_doc_);
}

TEST_F(RetrieverTest, UnknownCollectionsAndForeignEmbeddings) {
  Retriever retriever(*store_, *indexes_);
  Result<std::vector<RetrievedChunk>> none = retriever.retrieve("nope", "ribosome", near_planted());
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(indexes_->get("nope").status().code(), StatusCode::kNotFound);
  std::vector<float> other_model(kDims + 1, 0.5f);
  EXPECT_EQ(retriever.retrieve("course", "ribosome", other_model).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(retriever.retrieve("course", "ribosome", {}, {.k = 0})->empty());
}

TEST_F(RetrieverTest, IndexesComeBackFromTheirFilesAndCatchUp) {
  ASSERT_TRUE(indexes_->get("course").ok());
  ASSERT_TRUE(indexes_->save_dirty().ok());
  std::filesystem::path file = indexes_->file_for("course");
  ASSERT_TRUE(std::filesystem::exists(file));
  ASSERT_TRUE(std::filesystem::exists(file.string() + ".graph"));

  // While no index is in memory, the store changes: the reopened index must follow it.
  indexes_.reset();
  ASSERT_TRUE(store_->delete_document(planted_doc_).ok());
  std::mt19937 rng(9);
  std::vector<float> fresh = random_vector(rng);
  indexes_ = make_indexes();
  std::int64_t late_doc = add_document("late.md", {{0, "late addition", "", 0, 2}}, rng, &fresh);
  Result<std::shared_ptr<VectorIndex>> index = indexes_->get("course");
  ASSERT_TRUE(index.ok()) << index.status().message();
  EXPECT_EQ((*index)->ids(), *store_->embedded_chunk_ids("course"));
  std::int64_t late_chunk = store_->document_chunks(late_doc)->at(0).id;
  EXPECT_EQ((*index)->search(fresh, 1)->at(0).id, late_chunk);

  // A damaged file is rebuilt from the store.
  ASSERT_TRUE(indexes_->save_dirty().ok());
  indexes_.reset();
  std::filesystem::resize_file(file.string() + ".graph", 100);
  indexes_ = make_indexes();
  index = indexes_->get("course");
  ASSERT_TRUE(index.ok()) << index.status().message();
  EXPECT_EQ((*index)->ids(), *store_->embedded_chunk_ids("course"));
  EXPECT_EQ((*index)->search(fresh, 1)->at(0).id, late_chunk);

  indexes_->drop("course");
  EXPECT_FALSE(std::filesystem::exists(file));
}

TEST(VectorIndexes, FileNamesAreSafeAndDistinct) {
  TempDir dir;
  auto s = store::open_sqlite(dir.path());
  ASSERT_TRUE(s.ok());
  VectorIndexes indexes(**s, {dir.path() / "v", {}});
  std::filesystem::path a = indexes.file_for("a/b");
  std::filesystem::path b = indexes.file_for("a_b");
  EXPECT_NE(a, b);
  EXPECT_EQ(a.parent_path(), dir.path() / "v");
  EXPECT_EQ(indexes.file_for("../../etc/passwd").parent_path(), dir.path() / "v");
  EXPECT_EQ(indexes.file_for("a/b"), a);  // stable
}

}  // namespace
}  // namespace infera::knowledge
