// --semantic-cache on a real `infera serve` over real HTTP: same questions in other
// words hit (X-Cache: HIT-SEMANTIC with the similarity), the labelled traps never do —
// even with the similarity threshold lowered to 0.5 — sessions and other roles never
// share, and a collection's answers leave when its documents change. Needs the shared
// tiny-bert-bge.gguf (skipped without ../shared/models).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "integration/server_support.h"

namespace infera::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

const std::string kTinyBert = std::string(INFERA_SHARED_MODELS) + "/tiny-bert-bge.gguf";
const std::string kStories = std::string(INFERA_SOURCE_DIR) + "/models/stories260K-tok512.gguf";

class SemanticCacheHttp : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kTinyBert)) GTEST_SKIP() << kTinyBert << " not found (../shared/models absent)";
    char tmpl[] = "/tmp/infera-semantic-XXXXXX";
    dir_ = mkdtemp(tmpl);
    server_ = std::make_unique<ServerProcess>(std::vector<std::string>{
        "--model", "bge=" + kTinyBert, "--model", "stories=" + kStories, "--data-dir", dir_,
        "--semantic-cache", "--semantic-threshold", "0.5", "--default-max-tokens", "4"});
    port_ = server_->port();
    ASSERT_NE(port_, 0);
  }
  void TearDown() override {
    server_.reset();
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  std::optional<HttpResponse> ask(const json& body) {
    return http_request(port_, "POST", "/api/chat", body.dump(), {{"Content-Type", "application/json"}});
  }
  std::string x_cache(const json& body) {
    auto r = ask(body);
    if (!r) return "no response";
    EXPECT_EQ(r->status, 200) << r->body;
    return r->header("x-cache");
  }
  std::string dir_;
  std::unique_ptr<ServerProcess> server_;
  int port_ = 0;
};

TEST_F(SemanticCacheHttp, SameQuestionHitsTrapsNever) {
  EXPECT_EQ(x_cache({{"question", "What is photosynthesis?"}}), "MISS");
  auto hit = ask({{"question", "Can you tell me what is photosynthesis, please?"}});
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->header("x-cache"), "HIT-SEMANTIC");
  EXPECT_FALSE(hit->header("x-semantic-similarity").empty());
  auto first = ask({{"question", "What is photosynthesis?"}});  // the exact cache
  ASSERT_TRUE(first);
  EXPECT_EQ(json::parse(hit->body)["answer"], json::parse(first->body)["answer"]);

  // The labelled traps: cache each pair's first question, then ask the second.
  std::ifstream in(std::string(INFERA_SOURCE_DIR) + "/tests/data/semantic_pairs.jsonl");
  std::string line;
  int traps = 0;
  while (std::getline(in, line) && traps < 40) {
    json pair = json::parse(line);
    if (pair["expect"] != "miss") continue;
    ++traps;
    (void)x_cache({{"question", pair["a"]}});
    const std::string c = x_cache({{"question", pair["b"]}});
    EXPECT_NE(c, "HIT-SEMANTIC") << line;
  }
  EXPECT_EQ(traps, 40);

  // Another role (another system prompt) and sessions do not share answers.
  EXPECT_NE(x_cache({{"question", "what is photosynthesis"}, {"role", "teacher"}}), "HIT-SEMANTIC");
  EXPECT_NE(x_cache({{"question", "what is photosynthesis"}, {"session_id", "s1"}}), "HIT-SEMANTIC");

  auto stats = http_request(port_, "GET", "/api/cache/stats");
  ASSERT_TRUE(stats);
  json s = json::parse(stats->body)["semantic"];
  EXPECT_EQ(s["enabled"], true);
  EXPECT_GE(s["hits"].get<int>(), 1);
  EXPECT_GE(s["guard_refusals"].get<int>(), 1);
}

TEST_F(SemanticCacheHttp, CollectionChangeInvalidates) {
  auto up = http_request(port_, "POST", "/api/documents?collection=bio&name=cells.txt",
                         "The ribosome builds proteins.", {{"Content-Type", "text/plain"}});
  ASSERT_TRUE(up);
  ASSERT_EQ(up->status, 202) << up->body;
  const int64_t id = json::parse(up->body)["id"];
  for (int i = 0; i < 200; ++i) {
    auto d = http_request(port_, "GET", "/api/documents/" + std::to_string(id));
    if (d && json::parse(d->body)["status"] == "ready") break;
    std::this_thread::sleep_for(25ms);
  }
  EXPECT_EQ(x_cache({{"question", "What builds proteins?"}, {"collection", "bio"}}), "MISS");
  EXPECT_EQ(x_cache({{"question", "what builds proteins"}, {"collection", "bio"}}), "HIT-SEMANTIC");
  // A new document in the collection: its cached answers are gone.
  auto more = http_request(port_, "POST", "/api/documents?collection=bio&name=more.txt",
                           "Mitochondria make ATP.", {{"Content-Type", "text/plain"}});
  ASSERT_TRUE(more);
  const int64_t more_id = json::parse(more->body)["id"];
  for (int i = 0; i < 200; ++i) {
    auto d = http_request(port_, "GET", "/api/documents/" + std::to_string(more_id));
    if (d && json::parse(d->body)["status"] == "ready") break;
    std::this_thread::sleep_for(25ms);
  }
  auto stats = http_request(port_, "GET", "/api/cache/stats");
  ASSERT_TRUE(stats);
  EXPECT_GE(json::parse(stats->body)["semantic"]["invalidated"].get<int>(), 1) << stats->body;
}

TEST(SemanticCacheStart, RefusedWithoutAnEmbeddingModel) {
  char tmpl[] = "/tmp/infera-semantic-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  auto r = run_command(std::string(INFERA_BINARY) + " serve --port 0 --data-dir " + dir +
                       " --model stories=" + kStories + " --semantic-cache 2>&1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--semantic-cache"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("embedding model"), std::string::npos) << r.output;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace infera::testing
