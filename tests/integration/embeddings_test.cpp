// POST /v1/embeddings on a real `infera serve` over real HTTP, with the shared
// tiny-bert-bge.gguf (skipped when ../shared/models is absent): llama.cpp's vectors,
// batching, formats, dimensions, truncation, the cache, and every refusal.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "integration/server_support.h"

namespace infera::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const std::string kTinyBert = std::string(INFERA_SHARED_MODELS) + "/tiny-bert-bge.gguf";
const std::string kReferences = std::string(INFERA_SHARED_MODELS) + "/reference-embeddings.jsonl";
const std::string kStories = std::string(INFERA_SOURCE_DIR) + "/models/stories260K-tok512.gguf";

#define REQUIRE_SHARED()                \
  if (!fs::exists(kTinyBert))           \
  GTEST_SKIP() << kTinyBert << " not found (../shared/models absent)"

std::optional<HttpResponse> post(int port, const json& body,
                                 std::map<std::string, std::string> headers = {}) {
  headers["Content-Type"] = "application/json";
  return http_request(port, "POST", "/v1/embeddings", body.dump(), headers);
}

std::vector<float> vec(const json& j) { return j.get<std::vector<float>>(); }

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

std::vector<float> decode_base64(const std::string& text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
  };
  std::string bytes;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = value(c);
    if (v < 0) break;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  std::vector<float> out(bytes.size() / 4);
  std::memcpy(out.data(), bytes.data(), out.size() * 4);
  return out;
}

class Embeddings : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kTinyBert)) GTEST_SKIP() << kTinyBert << " not found (../shared/models absent)";
    dir_ = fs::temp_directory_path() / ("infera-emb-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    std::ofstream(dir_ / "models.toml") << "[[models]]\nname = \"bge\"\npath = \"" << kTinyBert
                                        << "\"\n\n[[models]]\nname = \"bge-short\"\nkind = "
                                           "\"embedding\"\npath = \""
                                        << kTinyBert << "\"\ndimensions = [32, 16]\n\n[[models]]\nname = "
                                           "\"stories\"\npath = \""
                                        << kStories << "\"\n";
    server_ = std::make_unique<ServerProcess>(std::vector<std::string>{
        "--models-file", (dir_ / "models.toml").string(), "--max-workers", "2"});
    port_ = server_->port();
    ASSERT_NE(port_, 0);
  }
  void TearDown() override {
    server_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path dir_;
  std::unique_ptr<ServerProcess> server_;
  int port_ = 0;
};

TEST_F(Embeddings, MatchLlamaCppReferencesOverHttp) {
  std::ifstream in(kReferences);
  std::string line;
  int checked = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json ref = json::parse(line);
    auto r = post(port_, {{"model", "bge"}, {"input", ref["input"]}});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    json body = json::parse(r->body);
    EXPECT_EQ(body["object"], "list");
    EXPECT_EQ(body["model"], "bge");
    std::vector<float> got = vec(body["data"][0]["embedding"]);
    std::vector<float> want = vec(ref["embedding"]);
    ASSERT_EQ(got.size(), 64u);
    EXPECT_NEAR(dot(got, got), 1.0, 1e-5);  // unit length
    EXPECT_GE(dot(got, want) / std::sqrt(dot(want, want)), 0.9999) << ref["input"];
    EXPECT_EQ(body["usage"]["prompt_tokens"], ref["tokens"].size() + 2);
    EXPECT_EQ(body["usage"]["total_tokens"], ref["tokens"].size() + 2);
    ++checked;
  }
  EXPECT_GE(checked, 2);
}

TEST_F(Embeddings, BatchEqualsSingleAndTokenInputsEqualText) {
  const std::vector<std::string> texts = {"Hello world", "The mitochondria is the powerhouse of the cell.",
                                          "Paris is the capital of France.", "x"};
  auto batch = post(port_, {{"model", "bge"}, {"input", texts}}, {{"Cache-Control", "no-cache"}});
  ASSERT_TRUE(batch);
  ASSERT_EQ(batch->status, 200) << batch->body;
  json b = json::parse(batch->body);
  ASSERT_EQ(b["data"].size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(b["data"][i]["index"], i);
    auto one = post(port_, {{"model", "bge"}, {"input", texts[i]}}, {{"Cache-Control", "no-cache"}});
    ASSERT_TRUE(one);
    ASSERT_EQ(one->status, 200);
    std::vector<float> a = vec(b["data"][i]["embedding"]);
    std::vector<float> s = vec(json::parse(one->body)["data"][0]["embedding"]);
    for (size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(a[k], s[k], 1e-6) << texts[i];
  }
  // "Hello world" as token ids ([CLS] hello world [SEP]) is the same input.
  auto ids = post(port_, {{"model", "bge"}, {"input", json::array({101, 7592, 2088, 102})}});
  ASSERT_TRUE(ids);
  ASSERT_EQ(ids->status, 200) << ids->body;
  std::vector<float> t = vec(json::parse(ids->body)["data"][0]["embedding"]);
  std::vector<float> h = vec(b["data"][0]["embedding"]);
  for (size_t k = 0; k < t.size(); ++k) EXPECT_NEAR(t[k], h[k], 1e-6);
  auto many = post(port_, {{"model", "bge"}, {"input", json::array({json::array({101, 7592, 102}), json::array({101, 2088, 102})})}});
  ASSERT_TRUE(many);
  ASSERT_EQ(many->status, 200) << many->body;
  EXPECT_EQ(json::parse(many->body)["data"].size(), 2u);
  EXPECT_EQ(json::parse(many->body)["usage"]["prompt_tokens"], 6);
}

TEST_F(Embeddings, Base64IsTheSameFloats) {
  auto f = post(port_, {{"model", "bge"}, {"input", "Base sixty-four"}});
  auto b = post(port_, {{"model", "bge"}, {"input", "Base sixty-four"}, {"encoding_format", "base64"}});
  ASSERT_TRUE(f && b);
  ASSERT_EQ(b->status, 200) << b->body;
  std::vector<float> floats = vec(json::parse(f->body)["data"][0]["embedding"]);
  std::vector<float> decoded = decode_base64(json::parse(b->body)["data"][0]["embedding"].get<std::string>());
  ASSERT_EQ(decoded.size(), floats.size());
  for (size_t k = 0; k < floats.size(); ++k) EXPECT_FLOAT_EQ(decoded[k], floats[k]);
}

TEST_F(Embeddings, DimensionsOnlyWhereDeclared) {
  auto refused = post(port_, {{"model", "bge"}, {"input", "cut me"}, {"dimensions", 32}});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 400);
  EXPECT_NE(refused->body.find("dimensions=32"), std::string::npos) << refused->body;
  EXPECT_EQ(json::parse(refused->body)["error"]["param"], "dimensions");
  // The full length is always fine.
  auto full = post(port_, {{"model", "bge"}, {"input", "cut me"}, {"dimensions", 64}});
  ASSERT_TRUE(full);
  EXPECT_EQ(full->status, 200);
  auto cut = post(port_, {{"model", "bge-short"}, {"input", "cut me"}, {"dimensions", 32}});
  ASSERT_TRUE(cut);
  ASSERT_EQ(cut->status, 200) << cut->body;
  std::vector<float> c = vec(json::parse(cut->body)["data"][0]["embedding"]);
  std::vector<float> whole = vec(json::parse(full->body)["data"][0]["embedding"]);
  ASSERT_EQ(c.size(), 32u);
  EXPECT_NEAR(dot(c, c), 1.0, 1e-5);
  // The prefix of the full vector, made unit length again.
  std::vector<float> prefix(whole.begin(), whole.begin() + 32);
  const double norm = std::sqrt(dot(prefix, prefix));
  for (size_t k = 0; k < 32; ++k) EXPECT_NEAR(c[k], prefix[k] / norm, 1e-5);
  auto undeclared = post(port_, {{"model", "bge-short"}, {"input", "cut me"}, {"dimensions", 48}});
  ASSERT_TRUE(undeclared);
  EXPECT_EQ(undeclared->status, 400);
}

TEST_F(Embeddings, LongInputRefusedUnlessTruncated) {
  std::string text;
  for (int i = 0; i < 700; ++i) text += "word ";
  auto refused = post(port_, {{"model", "bge"}, {"input", text}});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 400);
  EXPECT_NE(refused->body.find("512"), std::string::npos) << refused->body;
  auto cut = post(port_, {{"model", "bge"}, {"input", text}, {"truncate", true}});
  ASSERT_TRUE(cut);
  ASSERT_EQ(cut->status, 200) << cut->body;
  EXPECT_EQ(json::parse(cut->body)["usage"]["prompt_tokens"], 512);
  std::vector<int> ids(600, 2773);
  auto long_ids = post(port_, {{"model", "bge"}, {"input", ids}});
  ASSERT_TRUE(long_ids);
  EXPECT_EQ(long_ids->status, 400);
}

TEST_F(Embeddings, CachedByTextAcrossRequests) {
  auto first = post(port_, {{"model", "bge"}, {"input", json::array({"cache me", "and me"})}});
  ASSERT_TRUE(first);
  ASSERT_EQ(first->status, 200);
  EXPECT_EQ(first->header("x-cache"), "MISS");
  auto second = post(port_, {{"model", "bge"}, {"input", json::array({"and me", "cache me"})}});
  ASSERT_TRUE(second);
  EXPECT_EQ(second->header("x-cache"), "HIT-L1");
  EXPECT_EQ(second->header("x-cache-inputs"), "2/2");
  // The cached vectors are the computed ones, in the new order.
  json a = json::parse(first->body), b = json::parse(second->body);
  EXPECT_EQ(a["data"][0]["embedding"], b["data"][1]["embedding"]);
  EXPECT_EQ(a["usage"], b["usage"]);
  auto mixed = post(port_, {{"model", "bge"}, {"input", json::array({"cache me", "new text"})}});
  ASSERT_TRUE(mixed);
  EXPECT_EQ(mixed->header("x-cache"), "MISS");
  EXPECT_EQ(mixed->header("x-cache-inputs"), "1/2");
  auto bypass = post(port_, {{"model", "bge"}, {"input", "cache me"}}, {{"Cache-Control", "no-cache"}});
  ASSERT_TRUE(bypass);
  EXPECT_EQ(bypass->header("x-cache"), "MISS");
}

TEST_F(Embeddings, RefusalsAreClear) {
  struct Case {
    json body;
    int status;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{{"model", "nope"}, {"input", "x"}}, 404, "nope"},
      {{{"model", "stories"}, {"input", "x"}}, 400, "does not embed"},
      {{{"model", "bge"}}, 400, "'input' is required"},
      {{{"model", "bge"}, {"input", ""}}, 400, "empty"},
      {{{"model", "bge"}, {"input", json::array()}}, 400, "non-empty"},
      {{{"model", "bge"}, {"input", json::array({"a", json::array({1})})}}, 400, "mixes"},
      {{{"model", "bge"}, {"input", json::array({1, "a"})}}, 400, "mixes"},
      {{{"model", "bge"}, {"input", json::array({-5})}}, 400, "input"},
      {{{"model", "bge"}, {"input", json::array({99999999})}}, 400, "vocabulary"},
      {{{"model", "bge"}, {"input", 42}}, 400, "input"},
      {{{"model", "bge"}, {"input", "x"}, {"encoding_format", "int8"}}, 400, "encoding_format"},
      {{{"model", "bge"}, {"input", "x"}, {"dimensions", 0}}, 400, "dimensions"},
      {{{"model", "bge"}, {"input", "x"}, {"truncate", "yes"}}, 400, "truncate"},
      {{{"model", 7}, {"input", "x"}}, 400, "model"},
  };
  for (const Case& c : cases) {
    auto r = post(port_, c.body);
    ASSERT_TRUE(r) << c.body.dump();
    EXPECT_EQ(r->status, c.status) << c.body.dump() << " -> " << r->body;
    EXPECT_NE(r->body.find(c.says), std::string::npos) << c.body.dump() << " -> " << r->body;
    EXPECT_TRUE(json::parse(r->body).contains("error")) << r->body;
  }
  auto broken = http_request(port_, "POST", "/v1/embeddings", "{\"input\": [", {});
  ASSERT_TRUE(broken);
  EXPECT_EQ(broken->status, 400);
  // Generation without a model still goes to the text model, not the first declared.
  auto chat = http_request(port_, "POST", "/v1/completions",
                           json{{"prompt", "Once"}, {"max_tokens", 2}}.dump(), {});
  ASSERT_TRUE(chat);
  EXPECT_EQ(chat->status, 200) << chat->body;
  EXPECT_EQ(json::parse(chat->body)["model"], "stories");
}

// A file whose pooling_type key is gone: the route says so, naming the file.
TEST(EmbeddingsNoPooling, FileWithoutPoolingTypeGetsAClearError) {
  REQUIRE_SHARED();
  const fs::path dir = fs::temp_directory_path() / ("infera-emb-np-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ifstream in(kTinyBert, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  const std::string key = "bert.pooling_type";
  auto at = bytes.find(key);
  ASSERT_NE(at, std::string::npos);
  bytes[at + key.size() - 1] = 'X';  // same length: a key nobody reads
  const std::string path = (dir / "nopool.gguf").string();
  std::ofstream(path, std::ios::binary) << bytes;
  ServerProcess server({"--model", "nopool=" + path});
  ASSERT_NE(server.port(), 0);
  auto r = post(server.port(), {{"model", "nopool"}, {"input", "x"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_NE(r->body.find("pooling"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("nopool.gguf"), std::string::npos) << r->body;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace infera::testing
