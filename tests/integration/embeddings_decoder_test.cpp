// POST /v1/embeddings on a decoder served as an embedding model, through the real
// binary: the repository's stories260K declared kind "embedding" in a models file with
// a `pooling`, unit-length vectors of its width, batches equal to single inputs, its
// context (`ctx_size`) as the input limit, and a clear 400 when no pooling is given.
// The same file declared without a kind stays a text generator.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "integration/server_support.h"

namespace infera::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const std::string kStories = std::string(INFERA_SOURCE_DIR) + "/models/stories260K-tok512.gguf";

std::optional<HttpResponse> post(int port, const json& body) {
  return http_request(port, "POST", "/v1/embeddings", body.dump(),
                      {{"Content-Type", "application/json"}});
}

std::vector<float> vec(const json& j) { return j.get<std::vector<float>>(); }

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

class DecoderEmbeddings : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("infera-emb-dec-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    std::ofstream(dir_ / "models.toml")
        << "[[models]]\nname = \"stories-last\"\nkind = \"embedding\"\npooling = \"last\"\n"
        << "path = \"" << kStories << "\"\n\n"
        << "[[models]]\nname = \"stories-mean\"\nkind = \"embedding\"\npooling = \"mean\"\n"
        << "ctx_size = 32\npath = \"" << kStories << "\"\n\n"
        << "[[models]]\nname = \"stories-nopool\"\nkind = \"embedding\"\npath = \"" << kStories
        << "\"\n\n"
        << "[[models]]\nname = \"stories\"\npath = \"" << kStories << "\"\n";
    server_ = new ServerProcess({"--models-file", (dir_ / "models.toml").string()});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void SetUp() override {
    port_ = server_->port();
    ASSERT_NE(port_, 0);
  }

  static fs::path dir_;
  static ServerProcess* server_;
  int port_ = 0;
};

fs::path DecoderEmbeddings::dir_;
ServerProcess* DecoderEmbeddings::server_ = nullptr;

TEST_F(DecoderEmbeddings, LastPoolingAnswersUnitVectorsOfTheModelsWidth) {
  auto r = post(port_, {{"model", "stories-last"}, {"input", "Once upon a time"}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json body = json::parse(r->body);
  EXPECT_EQ(body["model"], "stories-last");
  const std::vector<float> v = vec(body["data"][0]["embedding"]);
  ASSERT_EQ(v.size(), 64u);  // stories260K's dim
  EXPECT_NEAR(dot(v, v), 1.0, 1e-5);
  // BOS and the four tokens of "Once upon a time".
  EXPECT_EQ(body["usage"]["prompt_tokens"], 5);
}

TEST_F(DecoderEmbeddings, BatchEqualsSingleAndMeanDiffersFromLast) {
  const std::vector<std::string> texts = {"Once upon a time", "The cat sat on the mat.",
                                          "Lily loved to play in the park."};
  auto batch = post(port_, {{"model", "stories-last"}, {"input", texts}});
  ASSERT_TRUE(batch);
  ASSERT_EQ(batch->status, 200) << batch->body;
  const json rows = json::parse(batch->body)["data"];
  ASSERT_EQ(rows.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    auto single = post(port_, {{"model", "stories-last"}, {"input", texts[i]}});
    ASSERT_TRUE(single);
    ASSERT_EQ(single->status, 200) << single->body;
    const std::vector<float> alone = vec(json::parse(single->body)["data"][0]["embedding"]);
    const std::vector<float> together = vec(rows[i]["embedding"]);
    EXPECT_NEAR(dot(alone, together), 1.0, 1e-6) << texts[i];

    auto mean = post(port_, {{"model", "stories-mean"}, {"input", texts[i]}});
    ASSERT_TRUE(mean);
    ASSERT_EQ(mean->status, 200) << mean->body;
    const std::vector<float> m = vec(json::parse(mean->body)["data"][0]["embedding"]);
    ASSERT_EQ(m.size(), 64u);
    EXPECT_NEAR(dot(m, m), 1.0, 1e-5);
    EXPECT_LT(dot(m, alone), 0.999) << texts[i];
  }
}

TEST_F(DecoderEmbeddings, ItsContextIsTheInputLimit) {
  std::string text;
  for (int i = 0; i < 20; ++i) text += "The little dog ran to the park. ";
  auto refused = post(port_, {{"model", "stories-mean"}, {"input", text}});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 400) << refused->body;
  EXPECT_NE(refused->body.find("32 tokens"), std::string::npos) << refused->body;
  auto cut = post(port_, {{"model", "stories-mean"}, {"input", text}, {"truncate", true}});
  ASSERT_TRUE(cut);
  ASSERT_EQ(cut->status, 200) << cut->body;
  EXPECT_EQ(json::parse(cut->body)["usage"]["prompt_tokens"], 32);
}

TEST_F(DecoderEmbeddings, WithoutPoolingTheRouteNamesTheMissingPoolingType) {
  auto r = post(port_, {{"model", "stories-nopool"}, {"input", "Once upon a time"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_NE(r->body.find("pooling_type"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("stories260K-tok512.gguf"), std::string::npos) << r->body;
}

TEST_F(DecoderEmbeddings, TheSameFileWithoutAKindStaysATextGenerator) {
  auto r = post(port_, {{"model", "stories"}, {"input", "Once upon a time"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_NE(r->body.find("does not embed"), std::string::npos) << r->body;
  auto completion =
      http_request(port_, "POST", "/v1/completions",
                   json{{"model", "stories"}, {"prompt", "Once"}, {"max_tokens", 2}}.dump(),
                   {{"Content-Type", "application/json"}});
  ASSERT_TRUE(completion);
  EXPECT_EQ(completion->status, 200) << completion->body;
}

}  // namespace
}  // namespace infera::testing
