// Synthetic llama-architecture models: random weights of a realistic shape with a
// real vocabulary copied from another GGUF file, for benchmarks (`infera synth`)
// and for tests that compare quantized forwards with an F32 one.
//
// The weights depend only on the shape and the seed, never on the output type:
// the same (shape, seed) written as F32 and as Q4_0 holds the same numbers before
// quantization, so their forwards can be compared. Tensors are generated and
// quantized while the file is written, one tensor at a time, so a 1.1B-parameter
// model never sits in memory.
//
// Thread: any; uses up to `threads` short-lived threads per tensor.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"
#include "engine/ggml_types.h"

namespace infera::engine {

struct SynthShape {
  std::string name;  // written as general.name
  int dim = 0;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int ffn_dim = 0;
  int n_ctx_train = 2048;
  // 0: the vocabulary size of the vocab file; smaller keeps only the first ids
  // (tests use this for tiny models).
  int n_vocab = 0;
  bool tied_embeddings = false;  // no output.weight
};

// "stories15M" (dim 288, 6 layers, 6 heads, FFN 768) and "tinyllama" (dim 2048,
// 22 layers, 32 heads, 4 KV heads, FFN 5632); nullopt for other names.
std::optional<SynthShape> synth_shape_by_name(std::string_view name);

// Dimensions that replace a named shape's; 0 keeps the named shape's value.
struct SynthShapeOverrides {
  int dim = 0;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int ffn_dim = 0;

  bool any() const { return dim || n_layers || n_heads || n_kv_heads || ffn_dim; }
};

// `base` with `overrides` applied, validated by validate_synth_shape. When any
// dimension is overridden the name becomes "custom (synthetic): dim 256, 2 layers,
// 4 heads, 2 KV heads, FFN 768", so general.name tells the file apart from the
// named shape. Errors: InvalidArgument naming the offending dimensions.
Result<SynthShape> apply_synth_overrides(SynthShape base, const SynthShapeOverrides& overrides);

// Ok when the llama forward can run `shape`: every dimension positive and at most
// kMaxSynthDimension, heads dividing dim, KV heads dividing heads, and an even head
// size (RoPE rotates pairs). Block sizes of the output type are checked when writing.
Status validate_synth_shape(const SynthShape& shape);
inline constexpr int kMaxSynthDimension = 1 << 20;

struct SynthOptions {
  SynthShape shape;
  GgmlType type = GgmlType::kF16;  // of the 2-D matrices; norms stay F32
  std::string vocab_path;          // GGUF whose tokenizer.* metadata is copied
  uint64_t seed = 1;
  int threads = 2;
};

// Writes the model to `out_path`. Errors: unreadable vocab file, a type the
// kernels cannot encode, a shape whose rows are not whole blocks, I/O failures.
Status write_synthetic_model(const SynthOptions& options, const std::string& out_path);

// llama.cpp's general.file_type for a model whose matrices are all `type`.
uint32_t llama_file_type_of(GgmlType type);

}  // namespace infera::engine
