// Model forward: llama.cpp's greedy ids on the shared models, batch invariance,
// prefix sharing, and quantized forwards against an F32 one on synthetic models.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <new>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/generate.h"
#include "engine/gguf.h"
#include "engine/gguf_writer.h"
#include "engine/synth.h"
#include "logits_testing.h"

// Counts heap allocations made while `g_count_allocations` is set (hot-path test).
std::atomic<bool> g_count_allocations{false};
std::atomic<int64_t> g_allocations{0};

// Every unaligned new and delete is replaced, so that each pair matches whichever
// runtime the binary links: under AddressSanitizer a delete left to ASan reports a block
// this malloc() made as an alloc-dealloc mismatch, and a new[] left to it is not counted.
// The deletes are not inlined, so GCC does not see free() of an operator-new pointer
// (-Wmismatched-new-delete).
static void* counted_malloc(size_t size) noexcept {
  if (g_count_allocations.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  return std::malloc(size == 0 ? 1 : size);
}
void* operator new(size_t size) {
  if (void* p = counted_malloc(size)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t size) { return operator new(size); }
void* operator new(size_t size, const std::nothrow_t&) noexcept { return counted_malloc(size); }
void* operator new[](size_t size, const std::nothrow_t&) noexcept { return counted_malloc(size); }
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

namespace infera::engine {
namespace {

namespace fs = std::filesystem;

const std::string kModels = INFERA_SHARED_MODELS;

std::unique_ptr<Model> load_or_fail(const std::string& path, ModelOptions options = {}) {
  auto model = Model::load(path, options);
  EXPECT_TRUE(model.ok()) << model.status().message();
  return model.ok() ? std::move(model).value() : nullptr;
}

std::vector<int32_t> greedy(Model& model, const std::vector<int32_t>& prompt, int n,
                            int32_t seq = 0) {
  GenerateOptions options;
  options.max_tokens = n;
  options.stop_at_end_of_generation = false;
  options.seq_id = seq;
  auto result = generate(model, prompt, options);
  EXPECT_TRUE(result.ok()) << result.status().message();
  return result.ok() ? result->generated_ids : std::vector<int32_t>{};
}

// Every line of the shared reference-greedy.jsonl (llama.cpp's ids) with these options.
void expect_llama_cpp_reference_ids(const ModelOptions& options) {
  const std::string ref_path = kModels + "/reference-greedy.jsonl";
  std::map<std::string, std::unique_ptr<Model>> models;
  std::ifstream in(ref_path);
  std::string line;
  int checked = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto ref = nlohmann::json::parse(line);
    const std::string name = ref["model"];
    auto& model = models[name];
    if (!model) model = load_or_fail(kModels + "/" + name + ".gguf", options);
    ASSERT_NE(model, nullptr);
    const std::string prompt = ref["prompt"];
    auto ids = model->tokenizer().encode(prompt, /*add_bos=*/true, /*parse_special=*/false);
    auto expected = ref["tokens"].get<std::vector<int32_t>>();
    EXPECT_EQ(greedy(*model, ids, static_cast<int>(expected.size())), expected)
        << name << " prompt \"" << prompt << "\"";
    ++checked;
  }
  EXPECT_GE(checked, 7);
}

TEST(Model, GreedyMatchesLlamaCppReference) {
  const std::string ref_path = kModels + "/reference-greedy.jsonl";
  if (!fs::exists(ref_path)) GTEST_SKIP() << "shared models absent: " << ref_path;
  expect_llama_cpp_reference_ids({.threads = 2});
}

// Runs several sequences together: their prompts in chunks interleaved with the
// decode steps of sequences already generating.
std::vector<std::vector<int32_t>> greedy_batched(Model& model,
                                                 const std::vector<std::vector<int32_t>>& prompts,
                                                 int n, int chunk) {
  const size_t m = prompts.size();
  std::vector<std::vector<int32_t>> out(m);
  std::vector<int32_t> fed(m, 0);  // prompt tokens evaluated
  std::vector<int32_t> next_token(m, -1);
  for (size_t s = 0; s < m; ++s) {
    EXPECT_EQ(model.kv().begin_sequence(static_cast<int32_t>(s), {}), 0);
    EXPECT_TRUE(
        model.kv().reserve(static_cast<int32_t>(s), static_cast<int32_t>(prompts[s].size()) + n));
  }
  std::vector<BatchEntry> batch;
  std::vector<const float*> logits;
  for (int step = 0; step < 1000; ++step) {
    batch.clear();
    std::vector<size_t> owners;
    for (size_t s = 0; s < m; ++s) {
      const int32_t seq = static_cast<int32_t>(s);
      const int32_t np = static_cast<int32_t>(prompts[s].size());
      // Sequence s starts s steps late, so prefill and decode mix.
      if (step < static_cast<int>(s) || static_cast<int>(out[s].size()) >= n) continue;
      if (fed[s] < np) {
        const int32_t end = std::min(np, fed[s] + chunk);
        for (int32_t p = fed[s]; p < end; ++p)
          batch.push_back({seq, prompts[s][static_cast<size_t>(p)], p, p == np - 1});
        if (end == np) owners.push_back(s);
        fed[s] = end;
      } else {
        batch.push_back({seq, next_token[s], np + static_cast<int32_t>(out[s].size()) - 1, true});
        owners.push_back(s);
      }
    }
    if (batch.empty()) break;
    Status st = model.eval(batch, logits);
    EXPECT_TRUE(st.ok()) << st.message();
    if (!st.ok()) break;
    EXPECT_EQ(logits.size(), owners.size());
    for (size_t i = 0; i < owners.size(); ++i) {
      const float* l = logits[i];
      int32_t best = 0;
      for (int32_t v = 1; v < model.info().n_vocab; ++v) {
        if (l[v] > l[best]) best = v;
      }
      out[owners[i]].push_back(best);
      next_token[owners[i]] = best;
    }
  }
  for (size_t s = 0; s < m; ++s) model.kv().end_sequence(static_cast<int32_t>(s));
  return out;
}

TEST(Model, ReadIntoMemoryGivesTheSameTokensAsMapping) {
  const std::string path = kModels + "/stories260K.gguf";
  if (!fs::exists(path)) GTEST_SKIP() << "shared models absent: " << path;
  auto mapped = load_or_fail(path, {.threads = 2});
  auto copied = load_or_fail(path, {.threads = 2, .read_into_memory = true});
  ASSERT_NE(mapped, nullptr);
  ASSERT_NE(copied, nullptr);
  auto ids = mapped->tokenizer().encode("Once upon a time", true, false);
  EXPECT_EQ(greedy(*copied, ids, 24), greedy(*mapped, ids, 24));
}

TEST(Model, GreedyOutputDoesNotDependOnTheBatch) {
  const std::string path = kModels + "/stories260K.gguf";
  if (!fs::exists(path)) GTEST_SKIP() << "shared models absent: " << path;
  auto model = load_or_fail(path, {.threads = 2, .ctx_tokens = 2048, .block_tokens = 16});
  ASSERT_NE(model, nullptr);
  const std::vector<std::string> texts = {"Once upon a time", "",
                                          "The little dog ran to the park and", "Lily",
                                          "One day, a girl named Sue found a big red ball"};
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& t : texts) prompts.push_back(model->tokenizer().encode(t, true, false));
  std::vector<std::vector<int32_t>> alone;
  for (const auto& p : prompts) alone.push_back(greedy(*model, p, 24));
  for (int chunk : {1, 3, 64}) {
    EXPECT_EQ(greedy_batched(*model, prompts, 24, chunk), alone) << "prefill chunk " << chunk;
  }
  EXPECT_EQ(model->kv().usage().blocks_used, 0);
}

TEST(Model, SharedPrefixGivesTheSameTokensAsRecomputing) {
  const std::string path = kModels + "/stories260K.gguf";
  if (!fs::exists(path)) GTEST_SKIP() << "shared models absent: " << path;
  auto model = load_or_fail(path, {.threads = 2, .ctx_tokens = 1024, .block_tokens = 4});
  ASSERT_NE(model, nullptr);
  auto prompt = model->tokenizer().encode("Once upon a time there was a little girl named Lily who",
                                          true, false);
  const auto fresh = greedy(*model, prompt, 16, 0);
  // Publish the prompt's blocks, then start another sequence with the same prompt.
  KvCache& kv = model->kv();
  ASSERT_EQ(kv.begin_sequence(1, prompt), 0);
  std::vector<BatchEntry> batch;
  for (size_t i = 0; i < prompt.size(); ++i)
    batch.push_back({1, prompt[i], static_cast<int32_t>(i), false});
  std::vector<const float*> logits;
  ASSERT_TRUE(model->eval(batch, logits).ok());
  kv.publish_prefix(1, prompt);
  kv.end_sequence(1);
  EXPECT_GT(kv.usage().blocks_cached, 0);
  GenerateOptions options;
  options.max_tokens = 16;
  options.stop_at_end_of_generation = false;
  options.seq_id = 2;
  auto shared = generate(*model, prompt, options);
  ASSERT_TRUE(shared.ok());
  EXPECT_LT(shared->timings.prompt_tokens, static_cast<int>(prompt.size()));  // blocks were reused
  EXPECT_EQ(shared->generated_ids, fresh);
}

TEST(Model, DecodeAndPrefillStepsDoNotAllocate) {
  const std::string path = kModels + "/stories260K.gguf";
  if (!fs::exists(path)) GTEST_SKIP() << "shared models absent: " << path;
  auto model = load_or_fail(path, {.threads = 2, .ctx_tokens = 512});
  ASSERT_NE(model, nullptr);
  for (int32_t seq = 0; seq < 2; ++seq) {
    ASSERT_EQ(model->kv().begin_sequence(seq, {}), 0);
    ASSERT_TRUE(model->kv().reserve(seq, 200));
  }
  std::vector<BatchEntry> batch;
  batch.reserve(64);
  std::vector<const float*> logits;
  logits.reserve(64);
  // First a 32-token prefill, then decode steps of both sequences together.
  // The logits buffer grows to the most rows ever asked for (2 here), then stays.
  for (int32_t i = 0; i < 32; ++i) batch.push_back({0, 10 + i, i, i >= 30});
  ASSERT_TRUE(model->eval(batch, logits).ok());
  int32_t pos = 0;
  g_allocations = 0;
  g_count_allocations = true;
  batch.clear();
  for (int32_t i = 0; i < 32; ++i) batch.push_back({1, 10 + i, i, i == 31});
  Status prefill = model->eval(batch, logits);
  for (pos = 32; pos < 64 && prefill.ok(); ++pos) {
    batch.clear();
    batch.push_back({0, 5, pos, true});
    batch.push_back({1, 6, pos, true});
    if (!model->eval(batch, logits).ok()) break;
  }
  g_count_allocations = false;
  ASSERT_TRUE(prefill.ok());
  EXPECT_EQ(pos, 64);
  EXPECT_EQ(g_allocations.load(), 0);
}

TEST(Model, RejectsTokensOutsideTheVocabularyAndUnreservedPositions) {
  const std::string path = kModels + "/stories260K.gguf";
  if (!fs::exists(path)) GTEST_SKIP() << "shared models absent: " << path;
  auto model = load_or_fail(path);
  ASSERT_NE(model, nullptr);
  ASSERT_EQ(model->kv().begin_sequence(0, {}), 0);
  ASSERT_TRUE(model->kv().reserve(0, 4));
  std::vector<const float*> logits;
  BatchEntry bad_token{0, model->info().n_vocab, 0, true};
  EXPECT_EQ(model->eval(std::span(&bad_token, 1), logits).code(), StatusCode::kInvalidArgument);
  BatchEntry no_room{0, 1, 100, true};
  EXPECT_EQ(model->eval(std::span(&no_room, 1), logits).code(), StatusCode::kInvalidArgument);
  BatchEntry negative{0, 1, -1, true};
  EXPECT_EQ(model->eval(std::span(&negative, 1), logits).code(), StatusCode::kInvalidArgument);
  BatchEntry no_seq{7, 1, 0, true};
  EXPECT_EQ(model->eval(std::span(&no_seq, 1), logits).code(), StatusCode::kInvalidArgument);
}

TEST(Model, LoadReportsAMissingFile) {
  auto model = Model::load("/nonexistent/model.gguf", {});
  ASSERT_FALSE(model.ok());
  EXPECT_NE(model.status().message().find("/nonexistent/model.gguf"), std::string::npos);
}

// Logits of the last prompt position for a synthetic model of `type`.
std::vector<float> last_logits(const std::string& path, const std::vector<int32_t>& prompt,
                               bool ggml_attention_rounding = false) {
  ModelOptions options{.threads = 2, .ctx_tokens = 256};
  options.ggml_attention_rounding = ggml_attention_rounding;
  auto model = load_or_fail(path, options);
  if (!model) return {};
  return test_util::last_logits(*model, prompt);
}

using test_util::relative_rms_error;

// ModelOptions::ggml_attention_rounding changes attention's rounding only: with one
// position there is nothing to round (the F16 sum of one V row is that row), with more
// the logits move by a little, and llama.cpp's greedy ids (made with the same rounding)
// still come out.
TEST(Model, GgmlAttentionRoundingOnlyRoundsTheAttentionSum) {
  const std::string ref_path = kModels + "/reference-greedy.jsonl";
  if (!fs::exists(ref_path)) GTEST_SKIP() << "shared models absent: " << ref_path;
  const std::string path = kModels + "/stories260K.gguf";
  auto model = load_or_fail(path, {.threads = 2});
  ASSERT_NE(model, nullptr);
  const std::vector<int32_t> bos = {model->tokenizer().bos()};
  EXPECT_EQ(last_logits(path, bos, true), last_logits(path, bos, false));
  const auto ids = model->tokenizer().encode("Once upon a time, there was", true, false);
  const std::vector<float> rounded = last_logits(path, ids, true), exact = last_logits(path, ids, false);
  EXPECT_NE(rounded, exact);
  EXPECT_LT(relative_rms_error(exact, rounded), 1e-2);

  ModelOptions options{.threads = 2};
  options.ggml_attention_rounding = true;
  expect_llama_cpp_reference_ids(options);
}

TEST(Model, QuantizedModelsAreBatchInvariantToo) {
  const std::string vocab = kModels + "/ggml-vocab-llama-spm.gguf";
  if (!fs::exists(vocab)) GTEST_SKIP() << "shared models absent: " << vocab;
  const fs::path dir =
      fs::temp_directory_path() / ("infera_model_test_bi_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  // Wide enough that products run on the pool with several row ranges and tiles.
  SynthShape shape{
      .name = "test", .dim = 256, .n_layers = 2, .n_heads = 8, .n_kv_heads = 2, .ffn_dim = 512};
  for (GgmlType type : {GgmlType::kQ4_0, GgmlType::kQ8_0, GgmlType::kF16, GgmlType::kBF16}) {
    const std::string path = (dir / (std::string(ggml_type_info(type).name) + ".gguf")).string();
    Status s =
        write_synthetic_model({.shape = shape, .type = type, .vocab_path = vocab, .seed = 9}, path);
    ASSERT_TRUE(s.ok()) << s.message();
    auto model = load_or_fail(path, {.threads = 2, .ctx_tokens = 1024});
    ASSERT_NE(model, nullptr);
    std::vector<std::vector<int32_t>> prompts;
    for (int p = 0; p < 4; ++p) {
      std::vector<int32_t> prompt{1};
      for (int i = 0; i < 5 + 7 * p; ++i) prompt.push_back(2 + (p * 977 + i * 7919) % 31990);
      prompts.push_back(prompt);
    }
    std::vector<std::vector<int32_t>> alone;
    for (const auto& p : prompts) alone.push_back(greedy(*model, p, 12));
    EXPECT_EQ(greedy_batched(*model, prompts, 12, 5), alone) << ggml_type_info(type).name;
    // Weights repacked at load (where the kernel table does it) change nothing.
    auto unpacked = load_or_fail(path, {.threads = 2, .ctx_tokens = 1024, .repack_weights = false});
    ASSERT_NE(unpacked, nullptr);
    for (size_t p = 0; p < prompts.size(); ++p)
      EXPECT_EQ(greedy(*unpacked, prompts[p], 12), alone[p]) << ggml_type_info(type).name;
  }
  fs::remove_all(dir);
}

// A tied output (no output.weight) is repacked while the embedding table it shares
// stays readable, also from a --no-mmap copy whose repacked pages are released.
TEST(Model, RepackedTiedOutputKeepsTheEmbeddings) {
  const std::string vocab = kModels + "/ggml-vocab-llama-spm.gguf";
  if (!fs::exists(vocab)) GTEST_SKIP() << "shared models absent: " << vocab;
  const fs::path dir = fs::temp_directory_path() / ("infera_model_test_tied_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  SynthShape shape{
      .name = "test", .dim = 256, .n_layers = 1, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 512,
      .n_vocab = 4000, .tied_embeddings = true};
  for (GgmlType type : {GgmlType::kQ4_0, GgmlType::kQ8_0}) {
    const std::string path = (dir / (std::string(ggml_type_info(type).name) + ".gguf")).string();
    Status s = write_synthetic_model(
        {.shape = shape, .type = type, .vocab_path = vocab, .seed = 3}, path);
    ASSERT_TRUE(s.ok()) << s.message();
    auto plain = load_or_fail(path, {.threads = 2, .ctx_tokens = 256, .repack_weights = false});
    auto copied = load_or_fail(path, {.threads = 2, .ctx_tokens = 256, .read_into_memory = true});
    ASSERT_NE(plain, nullptr);
    ASSERT_NE(copied, nullptr);
    const std::vector<int32_t> prompt{1, 450, 4996, 17354, 1701, 29916};
    EXPECT_EQ(greedy(*copied, prompt, 16), greedy(*plain, prompt, 16)) << ggml_type_info(type).name;
  }
  fs::remove_all(dir);
}

// Writes `src` (an F32 llama model of `shape`) as architecture `arch` with random
// Q/K/V biases. For qwen2 (NeoX RoPE: pairs (i, i + half)), Q and K rows and biases
// are reordered so that its rotation pairs hold what llama's (2i, 2i + 1) hold.
Status write_variant(const GgufFile& src, const SynthShape& shape, const std::string& arch,
                     const std::string& path) {
  GgufWriter w;
  w.copy_metadata(src, [](std::string_view key) {
    return key.starts_with("tokenizer.") || key == "general.name";
  });
  w.set_string("general.architecture", arch);
  const std::string p = arch + ".";
  w.set<uint32_t>(p + "context_length", 2048);
  w.set<uint32_t>(p + "embedding_length", static_cast<uint32_t>(shape.dim));
  w.set<uint32_t>(p + "block_count", static_cast<uint32_t>(shape.n_layers));
  w.set<uint32_t>(p + "feed_forward_length", static_cast<uint32_t>(shape.ffn_dim));
  w.set<uint32_t>(p + "attention.head_count", static_cast<uint32_t>(shape.n_heads));
  w.set<uint32_t>(p + "attention.head_count_kv", static_cast<uint32_t>(shape.n_kv_heads));
  w.set<float>(p + "attention.layer_norm_rms_epsilon", 1e-5f);
  w.set<float>(p + "rope.freq_base", 10000.0f);
  const int hd = shape.dim / shape.n_heads, half = hd / 2;
  const bool neox = arch == "qwen2";
  // Row r of the qwen2 tensor comes from llama row source_row(r).
  auto source_row = [&](int r) {
    const int head = r / hd, i = r % hd;
    return head * hd + (i < half ? 2 * i : 2 * (i - half) + 1);
  };
  for (const GgufTensor& t : src.tensors()) {
    const std::string name(t.name);
    const bool rotated = name.ends_with("attn_q.weight") || name.ends_with("attn_k.weight");
    std::vector<uint8_t> bytes(t.bytes().begin(), t.bytes().end());
    if (neox && rotated) {
      const size_t row = static_cast<size_t>(t.dims[0]) * sizeof(float);
      for (int r = 0; r < t.dims[1]; ++r) {
        std::memcpy(&bytes[static_cast<size_t>(r) * row],
                    t.data + static_cast<size_t>(source_row(r)) * row, row);
      }
    }
    std::vector<int64_t> dims(t.dims.begin(), t.dims.begin() + t.n_dims);
    if (Status s = w.add_tensor(name, t.type, dims, bytes); !s.ok()) return s;
    for (const char* which : {"attn_q", "attn_k", "attn_v"}) {
      if (!name.ends_with(std::string(which) + ".weight")) continue;
      const int rows = static_cast<int>(t.dims[1]);
      std::vector<float> bias(static_cast<size_t>(rows));
      for (int r = 0; r < rows; ++r) {
        const int from = neox && std::string(which) != "attn_v" ? source_row(r) : r;
        bias[static_cast<size_t>(r)] =
            0.3f * std::sin(static_cast<float>(from) * 1.7f + name.size());
      }
      const std::string bias_name = name.substr(0, name.size() - 6) + "bias";
      const int64_t bias_dims[] = {rows};
      if (Status s = w.add_tensor(bias_name, GgmlType::kF32, bias_dims,
                                  std::span(reinterpret_cast<const uint8_t*>(bias.data()),
                                            bias.size() * sizeof(float)));
          !s.ok()) {
        return s;
      }
    }
  }
  return w.write(path);
}

TEST(Model, Qwen2NeoxRopeAndBiasesMatchAPermutedLlama) {
  const std::string vocab = kModels + "/ggml-vocab-llama-spm.gguf";
  if (!fs::exists(vocab)) GTEST_SKIP() << "shared models absent: " << vocab;
  const fs::path dir =
      fs::temp_directory_path() / ("infera_model_test_qw_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  SynthShape shape{
      .name = "test", .dim = 128, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 256};
  const std::string base = (dir / "base.gguf").string();
  ASSERT_TRUE(
      write_synthetic_model({.shape = shape, .type = GgmlType::kF32, .vocab_path = vocab}, base)
          .ok());
  auto src = GgufFile::open(base);
  ASSERT_TRUE(src.ok());
  const std::string llama = (dir / "llama.gguf").string(), qwen = (dir / "qwen2.gguf").string();
  ASSERT_TRUE(write_variant(**src, shape, "llama", llama).ok());
  Status s = write_variant(**src, shape, "qwen2", qwen);
  ASSERT_TRUE(s.ok()) << s.message();
  std::vector<int32_t> prompt;
  for (int i = 0; i < 30; ++i) prompt.push_back(1 + (i * 4099) % 31999);
  const auto a = last_logits(llama, prompt), b = last_logits(qwen, prompt),
             plain = last_logits(base, prompt);
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());
  EXPECT_LT(relative_rms_error(a, b), 1e-4);
  EXPECT_GT(relative_rms_error(plain, a), 1e-3);  // the biases do take part
  fs::remove_all(dir);
}

TEST(Model, QuantizedForwardsAgreeWithF32) {
  const std::string vocab = kModels + "/ggml-vocab-llama-spm.gguf";
  if (!fs::exists(vocab)) GTEST_SKIP() << "shared models absent: " << vocab;
  const fs::path dir =
      fs::temp_directory_path() / ("infera_model_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  SynthShape shape{
      .name = "test", .dim = 128, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .ffn_dim = 256};
  std::map<GgmlType, std::vector<float>> logits;
  std::vector<int32_t> prompt;
  for (int i = 0; i < 40; ++i) prompt.push_back(1 + (i * 7919) % 31999);
  for (GgmlType type :
       {GgmlType::kF32, GgmlType::kF16, GgmlType::kBF16, GgmlType::kQ8_0, GgmlType::kQ4_0}) {
    const std::string path = (dir / (std::string(ggml_type_info(type).name) + ".gguf")).string();
    SynthOptions options{.shape = shape, .type = type, .vocab_path = vocab, .seed = 5};
    Status s = write_synthetic_model(options, path);
    ASSERT_TRUE(s.ok()) << s.message();
    logits[type] = last_logits(path, prompt);
    ASSERT_FALSE(logits[type].empty());
  }
  fs::remove_all(dir);
  // Bounds: a few times the error each type's rounding of weights and activations
  // causes in one layer (F16 ~2^-11, BF16 ~2^-8, Q8_0 ~1/254 per weight and per
  // activation, Q4_0 ~1/16 per weight, compounding over ~15 matmuls in quadrature),
  // measured on this model (F16 0.0007, BF16 0.006, Q8_0 0.021, Q4_0 0.21) with margin.
  const std::map<GgmlType, double> bound = {{GgmlType::kF16, 0.005},
                                            {GgmlType::kBF16, 0.03},
                                            {GgmlType::kQ8_0, 0.03},
                                            {GgmlType::kQ4_0, 0.30}};
  for (const auto& [type, max_error] : bound) {
    const double error = relative_rms_error(logits[GgmlType::kF32], logits[type]);
    EXPECT_LT(error, max_error) << ggml_type_info(type).name;
    std::printf("%s: relative RMS error of logits vs F32 = %.5f (bound %.3f)\n",
                std::string(ggml_type_info(type).name).c_str(), error, max_error);
  }
}

}  // namespace
}  // namespace infera::engine
