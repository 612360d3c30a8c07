#include "engine/synth.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "engine/gguf.h"
#include "engine/gguf_writer.h"
#include "engine/kernels/kernels.h"

namespace infera::engine {
namespace {

// SplitMix64 (Steele, Lea, Flood 2014): a tiny, fast generator whose streams can be
// started anywhere, so every row of every tensor gets its own reproducible stream.
struct SplitMix {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1).
  float symmetric() { return static_cast<float>(next() >> 40) * (2.0f / 16777216.0f) - 1.0f; }
};

uint64_t stream_seed(uint64_t seed, uint64_t tensor, uint64_t row) {
  SplitMix s{seed * 0x100000001b3ull ^ (tensor << 32) ^ row};
  return s.next();
}

struct TensorPlan {
  std::string name;
  int cols = 0;
  int rows = 1;  // 1 for vectors
  bool is_norm = false;
  float amplitude = 1.0f;  // values uniform in [-amplitude, amplitude)
};

std::vector<TensorPlan> plan_tensors(const SynthShape& s, int n_vocab) {
  const int hd = s.dim / s.n_heads;
  const int kvd = s.n_kv_heads * hd;
  auto amp = [](int cols) { return std::sqrt(3.0f / static_cast<float>(cols)); };
  std::vector<TensorPlan> plan;
  plan.push_back({"token_embd.weight", s.dim, n_vocab, false, 1.0f});
  for (int l = 0; l < s.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    plan.push_back({p + "attn_norm.weight", s.dim, 1, true, 0.0f});
    plan.push_back({p + "attn_q.weight", s.dim, s.dim, false, amp(s.dim)});
    plan.push_back({p + "attn_k.weight", s.dim, kvd, false, amp(s.dim)});
    plan.push_back({p + "attn_v.weight", s.dim, kvd, false, amp(s.dim)});
    plan.push_back({p + "attn_output.weight", s.dim, s.dim, false, amp(s.dim)});
    plan.push_back({p + "ffn_norm.weight", s.dim, 1, true, 0.0f});
    plan.push_back({p + "ffn_gate.weight", s.dim, s.ffn_dim, false, amp(s.dim)});
    plan.push_back({p + "ffn_down.weight", s.ffn_dim, s.dim, false, amp(s.ffn_dim)});
    plan.push_back({p + "ffn_up.weight", s.dim, s.ffn_dim, false, amp(s.dim)});
  }
  plan.push_back({"output_norm.weight", s.dim, 1, true, 0.0f});
  if (!s.tied_embeddings) plan.push_back({"output.weight", s.dim, n_vocab, false, amp(s.dim)});
  return plan;
}

// Fills rows [r0, r1) of one tensor: random floats, encoded as `type`.
void fill_rows(const TensorPlan& t, uint64_t seed, uint64_t index, GgmlType type, size_t row_bytes,
               int r0, int r1, uint8_t* out) {
  std::vector<float> row(static_cast<size_t>(t.cols));
  for (int r = r0; r < r1; ++r) {
    SplitMix rng{stream_seed(seed, index, static_cast<uint64_t>(r))};
    if (t.is_norm) {
      for (float& v : row) v = 1.0f + 0.2f * rng.symmetric();
    } else {
      for (float& v : row) v = t.amplitude * rng.symmetric();
    }
    (void)kernels::quantize_row(type, row.data(), out + static_cast<size_t>(r) * row_bytes, t.cols);
  }
}

}  // namespace

std::optional<SynthShape> synth_shape_by_name(std::string_view name) {
  if (name == "stories15M") {
    return SynthShape{.name = "stories15M (synthetic)",
                      .dim = 288,
                      .n_layers = 6,
                      .n_heads = 6,
                      .n_kv_heads = 6,
                      .ffn_dim = 768};
  }
  if (name == "tinyllama") {
    return SynthShape{.name = "TinyLlama-1.1B (synthetic)",
                      .dim = 2048,
                      .n_layers = 22,
                      .n_heads = 32,
                      .n_kv_heads = 4,
                      .ffn_dim = 5632};
  }
  return std::nullopt;
}

Status validate_synth_shape(const SynthShape& s) {
  const std::pair<const char*, int> dims[] = {{"dim", s.dim},
                                              {"layers", s.n_layers},
                                              {"heads", s.n_heads},
                                              {"KV heads", s.n_kv_heads},
                                              {"FFN size", s.ffn_dim}};
  for (const auto& [what, value] : dims) {
    if (value <= 0 || value > kMaxSynthDimension) {
      return Status::InvalidArgument("synth: " + std::string(what) + " is " +
                                     std::to_string(value) + "; it must be from 1 to " +
                                     std::to_string(kMaxSynthDimension));
    }
  }
  if (s.dim % s.n_heads != 0) {
    return Status::InvalidArgument("synth: dim " + std::to_string(s.dim) +
                                   " is not a multiple of the head count " +
                                   std::to_string(s.n_heads));
  }
  if (s.n_heads % s.n_kv_heads != 0) {
    return Status::InvalidArgument("synth: the head count " + std::to_string(s.n_heads) +
                                   " is not a multiple of the KV head count " +
                                   std::to_string(s.n_kv_heads));
  }
  if ((s.dim / s.n_heads) % 2 != 0) {
    return Status::InvalidArgument(
        "synth: the head size dim / heads = " + std::to_string(s.dim / s.n_heads) +
        " is odd; RoPE needs an even head size");
  }
  return Status::Ok();
}

Result<SynthShape> apply_synth_overrides(SynthShape base, const SynthShapeOverrides& overrides) {
  if (!overrides.any()) return base;
  if (overrides.dim != 0) base.dim = overrides.dim;
  if (overrides.n_layers != 0) base.n_layers = overrides.n_layers;
  if (overrides.n_heads != 0) base.n_heads = overrides.n_heads;
  if (overrides.n_kv_heads != 0) base.n_kv_heads = overrides.n_kv_heads;
  if (overrides.ffn_dim != 0) base.ffn_dim = overrides.ffn_dim;
  base.name = "custom (synthetic): dim " + std::to_string(base.dim) + ", " +
              std::to_string(base.n_layers) + " layers, " + std::to_string(base.n_heads) +
              " heads, " + std::to_string(base.n_kv_heads) + " KV heads, FFN " +
              std::to_string(base.ffn_dim);
  if (Status s = validate_synth_shape(base); !s.ok()) return s;
  return base;
}

uint32_t llama_file_type_of(GgmlType type) {
  switch (type) {
    case GgmlType::kF32:
      return 0;  // LLAMA_FTYPE_ALL_F32
    case GgmlType::kF16:
      return 1;  // MOSTLY_F16
    case GgmlType::kQ4_0:
      return 2;  // MOSTLY_Q4_0
    case GgmlType::kQ8_0:
      return 7;  // MOSTLY_Q8_0
    case GgmlType::kBF16:
      return 32;  // MOSTLY_BF16
    default:
      return 0;
  }
}

Status write_synthetic_model(const SynthOptions& options, const std::string& out_path) {
  const SynthShape& s = options.shape;
  if (Status valid = validate_synth_shape(s); !valid.ok()) return valid;
  const GgmlType type = options.type;
  if (type != GgmlType::kF32 && type != GgmlType::kF16 && type != GgmlType::kBF16 &&
      type != GgmlType::kQ8_0 && type != GgmlType::kQ4_0) {
    return Status::Unsupported(std::string("synth: cannot write type ") +
                               std::string(ggml_type_info(type).name) +
                               " (f32, f16, bf16, q8_0 and q4_0 are supported)");
  }
  const uint32_t block = ggml_type_info(type).block_size;
  if (s.dim % static_cast<int>(block) != 0 || s.ffn_dim % static_cast<int>(block) != 0) {
    return Status::InvalidArgument("synth: dim and FFN size must be multiples of " +
                                   std::to_string(block) + " for " +
                                   std::string(ggml_type_info(type).name));
  }
  auto vocab_file = GgufFile::open(options.vocab_path);
  if (!vocab_file.ok()) return vocab_file.status();
  const GgufFile& vocab = **vocab_file;
  auto tokens = vocab.find("tokenizer.ggml.tokens");
  if (tokens == nullptr || tokens->type != GgufType::kArray || tokens->array_count == 0) {
    return Status::InvalidArgument(options.vocab_path + ": no tokenizer.ggml.tokens array");
  }
  const int n_vocab = static_cast<int>(tokens->array_count);

  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", s.name);
  w.set<uint32_t>("general.file_type", llama_file_type_of(type));
  w.set<uint32_t>("llama.context_length", static_cast<uint32_t>(s.n_ctx_train));
  w.set<uint32_t>("llama.embedding_length", static_cast<uint32_t>(s.dim));
  w.set<uint32_t>("llama.block_count", static_cast<uint32_t>(s.n_layers));
  w.set<uint32_t>("llama.feed_forward_length", static_cast<uint32_t>(s.ffn_dim));
  w.set<uint32_t>("llama.attention.head_count", static_cast<uint32_t>(s.n_heads));
  w.set<uint32_t>("llama.attention.head_count_kv", static_cast<uint32_t>(s.n_kv_heads));
  w.set<uint32_t>("llama.rope.dimension_count", static_cast<uint32_t>(s.dim / s.n_heads));
  w.set<float>("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set<float>("llama.rope.freq_base", 10000.0f);
  w.set<uint32_t>("llama.vocab_size", static_cast<uint32_t>(n_vocab));
  w.copy_metadata(vocab, [](std::string_view key) { return key.starts_with("tokenizer."); });

  const std::vector<TensorPlan> plan = plan_tensors(s, n_vocab);
  const int threads = std::max(1, options.threads);
  for (size_t i = 0; i < plan.size(); ++i) {
    const TensorPlan& t = plan[i];
    const GgmlType tt = t.is_norm ? GgmlType::kF32 : type;
    const GgmlTypeInfo& info = ggml_type_info(tt);
    const size_t row_bytes = static_cast<size_t>(t.cols) / info.block_size * info.bytes_per_block;
    std::vector<int64_t> dims{t.cols};
    if (!t.is_norm) dims.push_back(t.rows);
    const uint64_t seed = options.seed;
    Status added = w.add_tensor(
        t.name, tt, dims, [t, tt, row_bytes, seed, i, threads](std::span<uint8_t> out) {
          const int n_workers = std::min(threads, std::max(1, t.rows / 64));
          std::vector<std::thread> workers;
          for (int k = 1; k < n_workers; ++k) {
            workers.emplace_back([&, k] {
              fill_rows(t, seed, i, tt, row_bytes, t.rows * k / n_workers,
                        t.rows * (k + 1) / n_workers, out.data());
            });
          }
          fill_rows(t, seed, i, tt, row_bytes, 0, t.rows / n_workers, out.data());
          for (auto& worker : workers) worker.join();
        });
    if (!added.ok()) return added;
  }
  return w.write(out_path);
}

}  // namespace infera::engine
