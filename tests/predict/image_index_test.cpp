// Reference image sets: durable across reopen (torn last lines dropped, compaction),
// hash filter then embedding score, names checked.
#include "predict/image_index.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

namespace infera::predict {
namespace {

namespace fs = std::filesystem;

class ImageIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("infera-images-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::unique_ptr<ImageIndex> open() {
    auto index = ImageIndex::open(dir_);
    EXPECT_TRUE(index.ok()) << index.status().message();
    return index.ok() ? std::move(index).value() : nullptr;
  }
  static ImageRef ref(std::string id, uint64_t phash, std::vector<float> e = {}) {
    std::string model = e.empty() ? "" : "cnn@1";
    return {std::move(id), {"tag"}, phash, std::move(e), std::move(model)};
  }
  fs::path dir_;
};

TEST_F(ImageIndexTest, FiltersByHashDistanceThenScoresByEmbedding) {
  auto index = open();
  const float s = 1 / std::sqrt(2.0f);
  ASSERT_TRUE(index->add("protected", {"a", {"logo"}, 0x0, {1, 0}, "cnn@1"}).ok());
  ASSERT_TRUE(index->add("protected", {"b", {}, 0x3, {s, s}, "cnn@1"}).ok());     // 2 bits away
  ASSERT_TRUE(index->add("protected", {"c", {}, ~0ull, {1, 0}, "cnn@1"}).ok());   // 64 bits away
  auto m = index->match("protected", 0x1, {1, 0}, "cnn@1", 10, 5);
  ASSERT_EQ(m.size(), 2u) << "c is filtered out by its hash";
  EXPECT_EQ(m[0].id, "a");
  EXPECT_NEAR(m[0].score, 1.0, 1e-6);
  EXPECT_TRUE(m[0].by_embedding);
  EXPECT_EQ(m[0].tags, std::vector<std::string>{"logo"});
  EXPECT_EQ(m[1].id, "b");
  EXPECT_EQ(m[1].distance, 1);
  EXPECT_NEAR(m[1].score, s, 1e-6);
  // Another model's embeddings are not compared: the hash scores instead.
  auto other = index->match("protected", 0x1, {1, 0}, "cnn@2", 10, 5);
  EXPECT_FALSE(other[0].by_embedding);
  EXPECT_NEAR(other[0].score, 1 - 1 / 64.0, 1e-9);
  EXPECT_EQ(index->match("protected", 0x1, {}, "", 10, 1).size(), 1u) << "top_k";
  EXPECT_TRUE(index->match("nosuch", 0, {}, "", 64, 5).empty());
}

TEST_F(ImageIndexTest, SurvivesReopenDropsATornLineAndCompacts) {
  {
    auto index = open();
    ASSERT_TRUE(index->add("s", ref("x", 7)).ok());
    ASSERT_TRUE(index->add("s", ref("y", 8)).ok());
    ASSERT_TRUE(index->add("s", ref("x", 9)).ok());  // replaces x
    ASSERT_TRUE(index->remove("s", "y").ok());
    EXPECT_EQ(index->remove("s", "y").code(), StatusCode::kNotFound);
    EXPECT_EQ(index->remove("t", "y").code(), StatusCode::kNotFound);
  }
  std::ofstream(dir_ / "s.jsonl", std::ios::app) << R"({"op":"add","id":"z","tags":[],"ph)";  // torn
  auto index = open();
  auto refs = index->list("s");
  ASSERT_EQ(refs.size(), 1u);
  EXPECT_EQ(refs[0].id, "x");
  EXPECT_EQ(refs[0].phash, 9u);
  const uint64_t g = index->generation("s");
  ASSERT_TRUE(index->add("s", ref("w", 1)).ok());
  EXPECT_NE(index->generation("s"), g);
  // Many removals: the file is rewritten with the live entries only.
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(index->add("s", ref("tmp" + std::to_string(i), 1)).ok());
    ASSERT_TRUE(index->remove("s", "tmp" + std::to_string(i)).ok());
  }
  std::ifstream in(dir_ / "s.jsonl");
  int lines = 0;
  for (std::string l; std::getline(in, l);) ++lines;
  EXPECT_LT(lines, 30);
  auto reopened = open();
  EXPECT_EQ(reopened->list("s").size(), 2u);
}

TEST_F(ImageIndexTest, RefusesBadNames) {
  auto index = open();
  EXPECT_EQ(index->add("../etc", ref("a", 1)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(index->add("s", ref("a b", 1)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(index->add("", ref("a", 1)).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(index->add("s", ref("img-1.png:v2", 1)).ok());
}

}  // namespace
}  // namespace infera::predict
