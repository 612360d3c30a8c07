// Synthetic models: named shapes, custom-shape overrides and their validation, and a
// custom shape written, read back and run by the llama forward.
#include "engine/synth.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/generate.h"
#include "engine/gguf.h"

namespace infera::engine {
namespace {

namespace fs = std::filesystem;

const std::string kModels = INFERA_SHARED_MODELS;

SynthShape stories15m() { return *synth_shape_by_name("stories15M"); }

TEST(Synth, NamedShapesHaveTheirPublishedDimensions) {
  const SynthShape tiny = *synth_shape_by_name("tinyllama");
  EXPECT_EQ(tiny.dim, 2048);
  EXPECT_EQ(tiny.n_layers, 22);
  EXPECT_EQ(tiny.n_heads, 32);
  EXPECT_EQ(tiny.n_kv_heads, 4);
  EXPECT_EQ(tiny.ffn_dim, 5632);
  EXPECT_FALSE(synth_shape_by_name("gpt5").has_value());
}

TEST(Synth, NoOverridesKeepTheNamedShapeAndItsName) {
  auto shape = apply_synth_overrides(stories15m(), {});
  ASSERT_TRUE(shape.ok()) << shape.status().message();
  EXPECT_EQ(shape->name, stories15m().name);
  EXPECT_EQ(shape->dim, 288);
  EXPECT_EQ(shape->ffn_dim, 768);
}

TEST(Synth, OverridesReplaceOnlyTheGivenDimensionsAndRenameTheShape) {
  auto shape = apply_synth_overrides(stories15m(), {.n_layers = 1, .n_kv_heads = 2});
  ASSERT_TRUE(shape.ok()) << shape.status().message();
  EXPECT_EQ(shape->dim, 288);
  EXPECT_EQ(shape->n_layers, 1);
  EXPECT_EQ(shape->n_heads, 6);
  EXPECT_EQ(shape->n_kv_heads, 2);
  EXPECT_EQ(shape->ffn_dim, 768);
  EXPECT_EQ(shape->name, "custom (synthetic): dim 288, 1 layers, 6 heads, 2 KV heads, FFN 768");
}

TEST(Synth, RejectsShapesTheForwardCannotRunWithTheReason) {
  struct Case {
    SynthShapeOverrides overrides;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{.dim = 250, .n_heads = 4}, "dim 250 is not a multiple of the head count 4"},
      {{.n_heads = 6, .n_kv_heads = 4}, "head count 6 is not a multiple of the KV head count 4"},
      {{.dim = 132, .n_heads = 4, .n_kv_heads = 4}, "head size dim / heads = 33 is odd"},
      {{.ffn_dim = -3}, "FFN size is -3; it must be from 1 to"},
      {{.n_layers = kMaxSynthDimension + 1}, "layers is 1048577"},
  };
  for (const Case& c : cases) {
    auto shape = apply_synth_overrides(stories15m(), c.overrides);
    ASSERT_FALSE(shape.ok()) << c.expected;
    EXPECT_EQ(shape.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(shape.status().message().find(c.expected), std::string::npos)
        << shape.status().message();
  }
  // The writer applies the same rules to shapes built without overrides.
  SynthShape zero_heads = stories15m();
  zero_heads.n_heads = 0;
  Status s = write_synthetic_model({.shape = zero_heads, .vocab_path = "unused.gguf"},
                                   "/nonexistent/out.gguf");
  EXPECT_NE(s.message().find("heads is 0"), std::string::npos) << s.message();
}

TEST(Synth, CustomShapeRoundTripsThroughGgufAndRuns) {
  const std::string vocab = kModels + "/stories260K.gguf";
  if (!fs::exists(vocab)) GTEST_SKIP() << "shared models absent: " << vocab;
  auto shape = apply_synth_overrides(
      stories15m(), {.dim = 256, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 768});
  ASSERT_TRUE(shape.ok()) << shape.status().message();
  const std::string path =
      (fs::temp_directory_path() / ("infera_synth_test_" + std::to_string(::getpid()) + ".gguf"))
          .string();
  Status written =
      write_synthetic_model({.shape = *shape, .type = GgmlType::kF16, .vocab_path = vocab}, path);
  ASSERT_TRUE(written.ok()) << written.message();

  {
    auto file = GgufFile::open(path);
    ASSERT_TRUE(file.ok()) << file.status().message();
    const GgufFile& f = **file;
    EXPECT_EQ(*f.get<std::string_view>("general.name"), shape->name);
    EXPECT_EQ(*f.get<uint32_t>("llama.embedding_length"), 256u);
    EXPECT_EQ(*f.get<uint32_t>("llama.block_count"), 2u);
    EXPECT_EQ(*f.get<uint32_t>("llama.attention.head_count"), 4u);
    EXPECT_EQ(*f.get<uint32_t>("llama.attention.head_count_kv"), 2u);
    EXPECT_EQ(*f.get<uint32_t>("llama.feed_forward_length"), 768u);
    EXPECT_EQ(*f.get<uint32_t>("llama.rope.dimension_count"), 64u);
    EXPECT_EQ(*f.get<uint32_t>("llama.vocab_size"), 512u);
    EXPECT_EQ(f.tensors().size(), 2u * 9 + 3);
    struct Expected {
      const char* name;
      GgmlType type;
      int64_t cols, rows;
    };
    for (const Expected& e : {Expected{"token_embd.weight", GgmlType::kF16, 256, 512},
                              Expected{"blk.1.attn_norm.weight", GgmlType::kF32, 256, 1},
                              Expected{"blk.0.attn_q.weight", GgmlType::kF16, 256, 256},
                              Expected{"blk.0.attn_k.weight", GgmlType::kF16, 256, 128},
                              Expected{"blk.1.attn_v.weight", GgmlType::kF16, 256, 128},
                              Expected{"blk.1.ffn_gate.weight", GgmlType::kF16, 256, 768},
                              Expected{"blk.1.ffn_down.weight", GgmlType::kF16, 768, 256},
                              Expected{"output.weight", GgmlType::kF16, 256, 512}}) {
      const GgufTensor* t = f.find_tensor(e.name);
      ASSERT_NE(t, nullptr) << e.name;
      EXPECT_EQ(t->type, e.type) << e.name;
      EXPECT_EQ(t->dims[0], e.cols) << e.name;
      EXPECT_EQ(t->dims[1], e.rows) << e.name;
    }
  }

  auto model = Model::load(path, {.threads = 2, .ctx_tokens = 64});
  ASSERT_TRUE(model.ok()) << model.status().message();
  const ModelInfo& info = (*model)->info();
  EXPECT_EQ(info.n_vocab, 512);
  EXPECT_EQ(info.dim, 256);
  EXPECT_EQ(info.n_layers, 2);
  EXPECT_EQ(info.n_kv_heads, 2);
  EXPECT_EQ(info.head_dim, 64);
  EXPECT_EQ(info.ffn_dim, 768);
  GenerateOptions options;
  options.max_tokens = 8;
  options.stop_at_end_of_generation = false;
  const std::vector<int32_t> prompt = {1, 300, 301};
  auto generated = generate(**model, prompt, options);
  ASSERT_TRUE(generated.ok()) << generated.status().message();
  ASSERT_EQ(generated->generated_ids.size(), 8u);
  for (int32_t id : generated->generated_ids) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, 512);
  }
  fs::remove(path);
}

}  // namespace
}  // namespace infera::engine
