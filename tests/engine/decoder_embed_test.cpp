// Decoders as embedding models (Encoder::load on llama files): last-token pooling is
// the hidden state the normal forward pass reaches at the last position (its logits
// are that state times the output matrix), mean pooling averages every position,
// batches and chunked passes give each input its single vector, and the refusals
// (cls pooling, over-long input, unknown architecture).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "engine/encoder.h"
#include "engine/engine.h"
#include "engine/gguf.h"
#include "engine/gguf_writer.h"
#include "engine/kernels/kernels.h"

namespace infera::engine {
namespace {

namespace fs = std::filesystem;

const std::string kStories = std::string(INFERA_SOURCE_DIR) + "/models/stories260K-tok512.gguf";
const std::string kTinyRandom = std::string(INFERA_SHARED_MODELS) + "/llama-2-tiny-random.gguf";

const std::vector<std::string> kTexts = {
    "Once upon a time there was a little girl named Lily.",
    "The cat sat on the mat.",
    "Tom",
    "She loved to play outside in the park with her friends, and every day she ran to the big "
    "tree by the pond to look at the ducks.",
};

std::unique_ptr<Encoder> load(const std::string& path, EncoderOptions options = {}) {
  auto enc = Encoder::load(path, options);
  EXPECT_TRUE(enc.ok()) << enc.status().message();
  return enc.ok() ? std::move(enc).value() : nullptr;
}

EncoderOptions with_pooling(Pooling pooling) {
  EncoderOptions options;
  options.pooling = pooling;
  return options;
}

std::vector<float> embed_all(Encoder& enc, const std::vector<std::vector<int32_t>>& inputs,
                             Pooling pooling) {
  std::vector<float> out(inputs.size() * static_cast<size_t>(enc.info().dim));
  Status st = enc.embed(inputs, pooling, out.data());
  EXPECT_TRUE(st.ok()) << st.message();
  return out;
}

std::vector<std::vector<int32_t>> tokenize_all(const Encoder& enc) {
  std::vector<std::vector<int32_t>> out;
  for (const auto& t : kTexts) out.push_back(enc.tokenize(t));
  return out;
}

// `src` rewritten with its metadata changed by `edit`.
std::string rewritten(const std::string& src_path, const std::string& name,
                      const std::function<void(GgufWriter&)>& edit) {
  auto src = GgufFile::open(src_path, LoadMode::kMap);
  EXPECT_TRUE(src.ok());
  GgufWriter w;
  w.copy_metadata(**src);
  for (const GgufTensor& t : (*src)->tensors()) {
    std::vector<int64_t> dims(t.dims.begin(), t.dims.begin() + t.n_dims);
    EXPECT_TRUE(
        w.add_tensor(t.name, t.type, dims, std::span<const uint8_t>(t.data, t.n_bytes)).ok());
  }
  edit(w);
  const std::string path =
      (fs::temp_directory_path() / (std::to_string(::getpid()) + "-" + name)).string();
  EXPECT_TRUE(w.write(path).ok());
  return path;
}

// Every model file the tests run on: the repository's own, and the shared tiny random
// Llama-2 (F16, the full 32k vocabulary) when ../shared/models is present.
class DecoderEmbed : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!fs::exists(GetParam())) GTEST_SKIP() << GetParam() << " not found";
  }
};

INSTANTIATE_TEST_SUITE_P(Files, DecoderEmbed, ::testing::Values(kStories, kTinyRandom),
                         [](const auto& info) {
                           return info.param == kStories ? std::string("stories260K")
                                                         : std::string("tiny_random");
                         });

TEST_P(DecoderEmbed, ReadsTheDecodersShapeAndLeavesPoolingToTheFile) {
  auto enc = load(GetParam());
  ASSERT_NE(enc, nullptr);
  auto model = Model::load(GetParam(), {});
  ASSERT_TRUE(model.ok()) << model.status().message();
  const ModelInfo& m = (*model)->info();
  const EncoderInfo& info = enc->info();
  EXPECT_EQ(info.arch, m.arch);
  EXPECT_EQ(info.dim, m.dim);
  EXPECT_EQ(info.n_layers, m.n_layers);
  EXPECT_EQ(info.n_vocab, m.n_vocab);
  EXPECT_EQ(info.n_ctx_train, std::min(m.n_ctx_train, kDefaultDecoderContextTokens));
  EXPECT_GT(info.kv_bytes, 0u);
  // Neither file declares llama.pooling_type: no pooling until one is given.
  EXPECT_FALSE(info.pooling.has_value());
  // The tokens a generation prompt gets: BOS, then the text.
  EXPECT_EQ(enc->tokenize("Once upon a time"),
            (*model)->tokenizer().encode("Once upon a time", true, false));
}

// The vector of last pooling is the state the engine's own forward pass reaches at the
// last position: its logits for that position are this state times the output matrix
// (read here from the file, independently of the engine).
TEST_P(DecoderEmbed, LastPoolingIsTheStateTheLogitsComeFrom) {
  auto enc = load(GetParam(), with_pooling(Pooling::kLast));
  ASSERT_NE(enc, nullptr);
  ASSERT_EQ(enc->info().pooling, Pooling::kLast);
  auto loaded = Model::load(GetParam(), {});
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  Model& model = **loaded;
  auto file = GgufFile::open(GetParam());
  ASSERT_TRUE(file.ok());
  const GgufTensor* out_w = (*file)->find_tensor("output.weight");
  if (out_w == nullptr) out_w = (*file)->find_tensor("token_embd.weight");  // tied
  ASSERT_NE(out_w, nullptr);
  const int d = model.info().dim, n_vocab = model.info().n_vocab;
  const size_t row_bytes = out_w->n_bytes / static_cast<size_t>(out_w->dims[1]);

  for (const std::string& text : kTexts) {
    SCOPED_TRACE(text);
    const std::vector<int32_t> ids = enc->tokenize(text);
    const std::vector<float> v = embed_all(*enc, {ids}, Pooling::kLast);

    // The normal path: a prefill asking for the last position's logits.
    ASSERT_GE(model.kv().begin_sequence(0, ids), 0);
    std::vector<BatchEntry> batch;
    for (size_t p = 0; p < ids.size(); ++p)
      batch.push_back({0, ids[p], static_cast<int32_t>(p), p + 1 == ids.size()});
    std::vector<const float*> rows;
    ASSERT_TRUE(model.eval(batch, rows).ok());
    ASSERT_EQ(rows.size(), 1u);
    const std::vector<float> logits(rows[0], rows[0] + n_vocab);
    model.kv().end_sequence(0);

    std::vector<float> w(static_cast<size_t>(d));
    double worst = 0;
    for (int t = 0; t < n_vocab; ++t) {
      ASSERT_TRUE(kernels::dequantize_row(out_w->type, out_w->data + row_bytes * t, w.data(), d));
      double dot = 0, magnitude = 0;
      for (int j = 0; j < d; ++j) {
        dot += static_cast<double>(v[j]) * w[j];
        magnitude += std::fabs(static_cast<double>(v[j]) * w[j]);
      }
      // The engine rounds the state to the weights' type first (F16 for tiny-random).
      const double tolerance = 1e-3 * magnitude + 1e-5;
      worst = std::max(worst, std::fabs(dot - logits[t]) / tolerance);
      ASSERT_NEAR(logits[t], dot, tolerance) << "token " << t;
    }
    RecordProperty("worst_error_over_tolerance", std::to_string(worst));
  }
}

// Mean pooling averages the states eval_hidden() gives for every position, and is not
// the last position's state.
TEST_P(DecoderEmbed, MeanPoolingAveragesEveryPositionAndDiffersFromLast) {
  auto enc = load(GetParam());
  ASSERT_NE(enc, nullptr);
  auto loaded = Model::load(GetParam(), {});
  ASSERT_TRUE(loaded.ok());
  Model& model = **loaded;
  const int d = enc->info().dim;
  for (const std::string& text : kTexts) {
    SCOPED_TRACE(text);
    const std::vector<int32_t> ids = enc->tokenize(text);
    const std::vector<float> mean = embed_all(*enc, {ids}, Pooling::kMean);
    const std::vector<float> last = embed_all(*enc, {ids}, Pooling::kLast);

    ASSERT_GE(model.kv().begin_sequence(3, ids), 0);
    std::vector<BatchEntry> batch;
    for (size_t p = 0; p < ids.size(); ++p)
      batch.push_back({3, ids[p], static_cast<int32_t>(p), true});
    std::vector<const float*> rows;
    ASSERT_TRUE(model.eval_hidden(batch, rows).ok());
    ASSERT_EQ(rows.size(), ids.size());
    for (int j = 0; j < d; ++j) {
      double sum = 0;
      for (const float* r : rows) sum += r[j];
      EXPECT_FLOAT_EQ(mean[j], static_cast<float>(sum / static_cast<double>(ids.size())));
      EXPECT_EQ(last[j], rows.back()[j]);
    }
    model.kv().end_sequence(3);
    if (ids.size() > 1) {
      double diff = 0;
      for (int j = 0; j < d; ++j) diff += std::fabs(mean[j] - last[j]);
      EXPECT_GT(diff, 1e-4);
    }
  }
}

// An input's vector is the same alone, in a batch, split over several passes (a small
// KV cache) or over chunks of a pass (a small max_batch_tokens), bit for bit.
TEST_P(DecoderEmbed, BatchEqualsSingle) {
  for (Pooling pooling : {Pooling::kMean, Pooling::kLast}) {
    SCOPED_TRACE(std::string(pooling_name(pooling)));
    auto enc = load(GetParam());
    ASSERT_NE(enc, nullptr);
    const auto inputs = tokenize_all(*enc);
    const size_t d = static_cast<size_t>(enc->info().dim);
    std::vector<float> singles;
    for (const auto& in : inputs) {
      const auto v = embed_all(*enc, {in}, pooling);
      singles.insert(singles.end(), v.begin(), v.end());
    }
    EXPECT_EQ(embed_all(*enc, inputs, pooling), singles);
    // The batch in reverse order gives the same rows reversed.
    std::vector<std::vector<int32_t>> reversed(inputs.rbegin(), inputs.rend());
    const auto back = embed_all(*enc, reversed, pooling);
    for (size_t i = 0; i < inputs.size(); ++i) {
      EXPECT_TRUE(std::equal(back.begin() + static_cast<ptrdiff_t>((inputs.size() - 1 - i) * d),
                             back.begin() + static_cast<ptrdiff_t>((inputs.size() - i) * d),
                             singles.begin() + static_cast<ptrdiff_t>(i * d)))
          << "input " << i;
    }
    EncoderOptions small;
    small.ctx_tokens = 64;       // room for one or two inputs per pass
    small.max_batch_tokens = 5;  // passes in chunks of 5 positions
    auto chunked = load(GetParam(), small);
    ASSERT_NE(chunked, nullptr);
    EXPECT_EQ(embed_all(*chunked, inputs, pooling), singles);
  }
}

TEST_P(DecoderEmbed, RefusesClsPooling) {
  auto enc = load(GetParam(), with_pooling(Pooling::kLast));
  ASSERT_NE(enc, nullptr);
  std::vector<float> out(static_cast<size_t>(enc->info().dim));
  const std::vector<std::vector<int32_t>> inputs{enc->tokenize("Tom")};
  Status st = enc->embed(inputs, Pooling::kCls, out.data());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("cls"), std::string::npos) << st.message();

  auto asked = Encoder::load(GetParam(), with_pooling(Pooling::kCls));
  ASSERT_FALSE(asked.ok());
  EXPECT_NE(asked.status().message().find(GetParam()), std::string::npos);
  EXPECT_NE(asked.status().message().find("cls"), std::string::npos);
}

TEST(DecoderEmbedFile, PoolingTypeOfTheFileAndTheOverride) {
  const std::string mean_file = rewritten(kStories, "stories-mean.gguf", [](GgufWriter& w) {
    w.set<uint32_t>("llama.pooling_type", 1);
  });
  auto enc = load(mean_file);
  ASSERT_NE(enc, nullptr);
  EXPECT_EQ(enc->info().pooling, Pooling::kMean);
  auto overridden = load(mean_file, with_pooling(Pooling::kLast));
  ASSERT_NE(overridden, nullptr);
  EXPECT_EQ(overridden->info().pooling, Pooling::kLast);
  fs::remove(mean_file);

  const std::string cls_file = rewritten(kStories, "stories-cls.gguf", [](GgufWriter& w) {
    w.set<uint32_t>("llama.pooling_type", 2);
  });
  auto refused = Encoder::load(cls_file, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("llama.pooling_type"), std::string::npos)
      << refused.status().message();
  auto rescued = load(cls_file, with_pooling(Pooling::kMean));  // the override wins
  ASSERT_NE(rescued, nullptr);
  EXPECT_EQ(rescued->info().pooling, Pooling::kMean);
  fs::remove(cls_file);
}

TEST(DecoderEmbedFile, RefusesInputsLongerThanItsContext) {
  EncoderOptions options = with_pooling(Pooling::kMean);
  options.ctx_tokens = 16;
  auto enc = load(kStories, options);
  ASSERT_NE(enc, nullptr);
  EXPECT_EQ(enc->info().n_ctx_train, 16);
  std::vector<int32_t> ids = enc->tokenize(kTexts[3]);
  ASSERT_GT(ids.size(), 17u);
  ids.resize(17);
  std::vector<float> out(static_cast<size_t>(enc->info().dim));
  const std::vector<std::vector<int32_t>> too_long{ids};
  Status st = enc->embed(too_long, Pooling::kMean, out.data());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("1 to 16"), std::string::npos) << st.message();
  ids.resize(16);
  const std::vector<std::vector<int32_t>> fits{ids};
  EXPECT_TRUE(enc->embed(fits, Pooling::kMean, out.data()).ok());

  const std::vector<std::vector<int32_t>> bad_id{{1, 512}};
  EXPECT_EQ(enc->embed(bad_id, Pooling::kMean, out.data()).code(), StatusCode::kInvalidArgument);
  const std::vector<std::vector<int32_t>> empty{{}};
  EXPECT_EQ(enc->embed(empty, Pooling::kMean, out.data()).code(), StatusCode::kInvalidArgument);
}

TEST(DecoderEmbedFile, RefusesArchitecturesItDoesNotRun) {
  const std::string gpt2 = rewritten(kStories, "stories-gpt2.gguf", [](GgufWriter& w) {
    w.set_string("general.architecture", "gpt2");
  });
  auto refused = Encoder::load(gpt2, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(refused.status().message().find("'gpt2'"), std::string::npos);
  EXPECT_NE(refused.status().message().find(gpt2), std::string::npos);
  fs::remove(gpt2);
}

}  // namespace
}  // namespace infera::engine
