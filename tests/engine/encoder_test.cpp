// The BERT encoder against llama.cpp's pooled vectors for ../shared/models/
// tiny-bert-bge.gguf, batch against single inputs, and its refusals.
#include "engine/encoder.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/gguf.h"
#include "engine/gguf_writer.h"

namespace infera::engine {
namespace {

const std::string kModels = std::string(INFERA_SOURCE_DIR) + "/../shared/models";
const std::string kTinyBert = kModels + "/tiny-bert-bge.gguf";

struct Reference {
  std::string input;
  std::vector<int32_t> tokens;  // without [CLS] / [SEP]
  std::vector<float> embedding;
};

std::vector<Reference> references() {
  std::vector<Reference> out;
  std::ifstream in(kModels + "/reference-embeddings.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    out.push_back({j["input"], j["tokens"], j["embedding"]});
  }
  return out;
}

double cosine(const float* a, const float* b, int n) {
  double ab = 0, aa = 0, bb = 0;
  for (int i = 0; i < n; ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

std::unique_ptr<Encoder> load_tiny(int threads = 1, int max_batch_tokens = 2048,
                                   bool ggml_rounding = false) {
  auto enc = Encoder::load(kTinyBert, {threads, max_batch_tokens, ggml_rounding});
  EXPECT_TRUE(enc.ok()) << enc.status().message();
  return enc.ok() ? std::move(enc).value() : nullptr;
}

// tiny-bert-bge.gguf rewritten with its metadata changed by `edit`.
std::string rewritten(const std::string& name, const std::function<void(GgufWriter&)>& edit) {
  auto src = GgufFile::open(kTinyBert, LoadMode::kMap);
  EXPECT_TRUE(src.ok());
  GgufWriter w;
  w.copy_metadata(**src);
  for (const GgufTensor& t : (*src)->tensors()) {
    std::vector<int64_t> dims(t.dims.begin(), t.dims.begin() + t.n_dims);
    EXPECT_TRUE(w.add_tensor(t.name, t.type, dims, std::span<const uint8_t>(t.data, t.n_bytes)).ok());
  }
  edit(w);
  const std::string path = (std::filesystem::temp_directory_path() / name).string();
  EXPECT_TRUE(w.write(path).ok());
  return path;
}

#define REQUIRE_SHARED()                                                           \
  if (!std::filesystem::exists(kTinyBert))                                         \
  GTEST_SKIP() << kTinyBert << " not found (../shared/models absent)"

TEST(Encoder, ReadsTinyBertMetadata) {
  REQUIRE_SHARED();
  auto enc = load_tiny();
  ASSERT_NE(enc, nullptr);
  const EncoderInfo& info = enc->info();
  EXPECT_EQ(info.arch, "bert");
  EXPECT_EQ(info.dim, 64);
  EXPECT_EQ(info.n_layers, 2);
  EXPECT_EQ(info.n_heads, 2);
  EXPECT_EQ(info.ffn_dim, 128);
  EXPECT_EQ(info.n_ctx_train, 512);
  EXPECT_EQ(info.n_vocab, 30522);
  ASSERT_TRUE(info.pooling.has_value());
  EXPECT_EQ(*info.pooling, Pooling::kMean);
}

// With llama.cpp's attention rounding the pooled vectors are llama.cpp's to float
// rounding; infera's default F32 attention stays within cosine 0.9999 of them.
TEST(Encoder, MatchesLlamaCppPooledVectors) {
  REQUIRE_SHARED();
  const auto refs = references();
  ASSERT_GE(refs.size(), 2u);
  for (bool ggml_rounding : {true, false}) {
    auto enc = load_tiny(1, 2048, ggml_rounding);
    ASSERT_NE(enc, nullptr);
    for (const Reference& ref : refs) {
      std::vector<int32_t> ids = enc->tokenize(ref.input);
      ASSERT_EQ(ids.size(), ref.tokens.size() + 2);
      EXPECT_EQ(ids.front(), 101);  // [CLS]
      EXPECT_EQ(ids.back(), 102);   // [SEP]
      EXPECT_EQ(std::vector<int32_t>(ids.begin() + 1, ids.end() - 1), ref.tokens) << ref.input;
      std::vector<float> out(64);
      std::vector<std::vector<int32_t>> inputs{ids};
      ASSERT_TRUE(enc->embed(inputs, Pooling::kMean, out.data()).ok());
      float worst = 0;
      for (int i = 0; i < 64; ++i) worst = std::max(worst, std::fabs(out[i] - ref.embedding[i]));
      EXPECT_LE(worst, ggml_rounding ? 1e-3f : 2e-3f) << ref.input << " ggml rounding " << ggml_rounding;
      EXPECT_GE(cosine(out.data(), ref.embedding.data(), 64), 0.9999) << ref.input;
    }
  }
}

TEST(Encoder, BatchEqualsSingleAtAnyThreadCountAndSplit) {
  REQUIRE_SHARED();
  const std::vector<std::string> texts = {
      "Hello world", "Photosynthesis converts light energy into chemical energy.",
      "a", "The mitochondria is the powerhouse of the cell, and cells divide by mitosis."};
  auto single = load_tiny(1);
  ASSERT_NE(single, nullptr);
  std::vector<std::vector<int32_t>> inputs;
  for (const auto& t : texts) inputs.push_back(single->tokenize(t));
  std::vector<float> alone(texts.size() * 64);
  for (size_t i = 0; i < texts.size(); ++i) {
    ASSERT_TRUE(single->embed(std::span(inputs).subspan(i, 1), Pooling::kMean, &alone[i * 64]).ok());
  }
  // Two threads, and a scratch too small for all inputs at once (split into passes).
  for (auto [threads, max_tokens] : {std::pair{1, 2048}, std::pair{2, 2048}, std::pair{2, 1}}) {
    auto enc = load_tiny(threads, max_tokens);
    ASSERT_NE(enc, nullptr);
    std::vector<float> batch(texts.size() * 64);
    ASSERT_TRUE(enc->embed(inputs, Pooling::kMean, batch.data()).ok());
    for (size_t i = 0; i < batch.size(); ++i) {
      ASSERT_NEAR(batch[i], alone[i], 1e-5f) << "threads " << threads << " element " << i;
    }
  }
}

TEST(Encoder, PoolingModesDiffer) {
  REQUIRE_SHARED();
  auto enc = load_tiny();
  ASSERT_NE(enc, nullptr);
  std::vector<std::vector<int32_t>> inputs{enc->tokenize("pooling picks different rows")};
  std::vector<float> mean(64), cls(64), last(64);
  ASSERT_TRUE(enc->embed(inputs, Pooling::kMean, mean.data()).ok());
  ASSERT_TRUE(enc->embed(inputs, Pooling::kCls, cls.data()).ok());
  ASSERT_TRUE(enc->embed(inputs, Pooling::kLast, last.data()).ok());
  EXPECT_LT(cosine(mean.data(), cls.data(), 64), 0.999);
  EXPECT_LT(cosine(cls.data(), last.data(), 64), 0.999);
  l2_normalize(mean.data(), 64);
  double norm = 0;
  for (float v : mean) norm += static_cast<double>(v) * v;
  EXPECT_NEAR(norm, 1.0, 1e-6);
}

TEST(Encoder, RefusesBadInputs) {
  REQUIRE_SHARED();
  auto enc = load_tiny();
  ASSERT_NE(enc, nullptr);
  std::vector<float> out(64 * 2);
  std::vector<std::vector<int32_t>> empty{{}};
  EXPECT_EQ(enc->embed(empty, Pooling::kMean, out.data()).code(), StatusCode::kInvalidArgument);
  std::vector<std::vector<int32_t>> too_long{std::vector<int32_t>(513, 1000)};
  const Status s = enc->embed(too_long, Pooling::kMean, out.data());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("513 tokens"), std::string::npos) << s.message();
  std::vector<std::vector<int32_t>> bad_id{{101, 40000, 102}};
  EXPECT_EQ(enc->embed(bad_id, Pooling::kMean, out.data()).code(), StatusCode::kInvalidArgument);
}

TEST(Encoder, FileWithoutPoolingTypeSaysSo) {
  REQUIRE_SHARED();
  const std::string path = rewritten("infera-bert-nopool.gguf", [](GgufWriter& w) {
    w.remove("bert.pooling_type");
  });
  auto enc = Encoder::load(path, {});
  ASSERT_TRUE(enc.ok()) << enc.status().message();
  EXPECT_FALSE((*enc)->info().pooling.has_value());
  std::filesystem::remove(path);
}

TEST(Encoder, RefusesNonEncoderAndBrokenFiles) {
  REQUIRE_SHARED();
  // An architecture no encoder runs (llama and qwen2 files are decoder embedders).
  const std::string gpt2 = rewritten("infera-bert-gpt2.gguf", [](GgufWriter& w) {
    w.set_string("general.architecture", "gpt2");
  });
  auto wrong = Encoder::load(gpt2, {});
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("'gpt2'"), std::string::npos) << wrong.status().message();
  EXPECT_NE(wrong.status().message().find(gpt2), std::string::npos) << wrong.status().message();
  std::filesystem::remove(gpt2);

  const std::string causal = rewritten("infera-bert-causal.gguf", [](GgufWriter& w) {
    w.set<bool>("bert.attention.causal", true);
  });
  auto c = Encoder::load(causal, {});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("causal"), std::string::npos);
  std::filesystem::remove(causal);

  // A layer tensor missing: the error names the file and the tensor.
  auto src = GgufFile::open(kTinyBert, LoadMode::kMap);
  ASSERT_TRUE(src.ok());
  GgufWriter w;
  w.copy_metadata(**src);
  for (const GgufTensor& t : (*src)->tensors()) {
    if (t.name == "blk.1.ffn_up.weight") continue;
    std::vector<int64_t> dims(t.dims.begin(), t.dims.begin() + t.n_dims);
    ASSERT_TRUE(w.add_tensor(t.name, t.type, dims, std::span<const uint8_t>(t.data, t.n_bytes)).ok());
  }
  const std::string missing = (std::filesystem::temp_directory_path() / "infera-bert-missing.gguf").string();
  ASSERT_TRUE(w.write(missing).ok());
  auto m = Encoder::load(missing, {});
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("blk.1.ffn_up.weight"), std::string::npos);
  EXPECT_NE(m.status().message().find(missing), std::string::npos);
  std::filesystem::remove(missing);
}

}  // namespace
}  // namespace infera::engine
