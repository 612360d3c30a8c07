// The engine's embedding models: BERT-family encoders (bert: bge, MiniLM, e5;
// nomic-bert) read from GGUF and run with bidirectional attention over each input,
// whose last hidden states are pooled into one vector per input. Many inputs go
// through one forward pass; an input's vector does not depend on what else is in
// the batch.
//
// Thread: one thread at a time calls embed(); it uses the encoder's own compute pool.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "engine/ggml_types.h"
#include "engine/tokenizer.h"

namespace infera::engine {

// How an input's token states become one vector (GGUF {arch}.pooling_type: 1 mean,
// 2 cls, 3 last).
enum class Pooling { kMean, kCls, kLast };
std::string_view pooling_name(Pooling pooling);
std::optional<Pooling> pooling_from_name(std::string_view name);

struct EncoderOptions {
  int threads = 1;
  // Most tokens in one forward pass (a batch is split at input boundaries beyond it);
  // raised to the model's context length when smaller.
  int max_batch_tokens = 2048;
  // Round attention as llama.cpp's CPU flash attention does (Q, K and V in F16, the
  // weighted sum of V rows kept in F16), so that pooled vectors can be compared with
  // llama.cpp's at float rounding. Off: attention in F32, which is more precise (and
  // differs from llama.cpp's by up to ~1.3e-3 on tiny-bert-bge).
  bool ggml_attention_rounding = false;
};

struct EncoderInfo {
  std::string path;
  std::string arch;  // "bert" or "nomic-bert"
  std::string name;  // general.name, may be empty
  int32_t n_vocab = 0;
  int32_t n_ctx_train = 0;  // longest input, tokens ([CLS] and [SEP] included)
  int32_t dim = 0;          // the embedding's length
  int32_t n_layers = 0;
  int32_t n_heads = 0;
  int32_t ffn_dim = 0;
  // The file's {arch}.pooling_type; absent when the file declares none (or "none"),
  // in which case embed() refuses to guess.
  std::optional<Pooling> pooling;
  GgmlType weight_type = GgmlType::kF32;
  uint64_t weight_bytes = 0;
};

class Encoder {
 public:
  // Loads and validates; errors name the file and the problem (architecture,
  // missing or misshapen tensor, unsupported type).
  static Result<std::unique_ptr<Encoder>> load(const std::string& path,
                                               const EncoderOptions& options);
  virtual ~Encoder() = default;

  virtual const EncoderInfo& info() const = 0;
  virtual const Tokenizer& tokenizer() const = 0;

  // Token ids of `text` as the model reads it: [CLS] text [SEP].
  std::vector<int32_t> tokenize(std::string_view text) const {
    return tokenizer().encode(text, /*add_bos=*/true, /*parse_special=*/false);
  }

  // Pools each input (token ids as tokenize() gives them; 1..n_ctx_train tokens, every
  // id in the vocabulary) into info().dim floats at out + i * dim, in order. Vectors
  // are not normalised (l2_normalize). InvalidArgument for an empty or too long input
  // or a bad id.
  virtual Status embed(std::span<const std::vector<int32_t>> inputs, Pooling pooling,
                       float* out) = 0;
};

// Scales v to unit length (leaves an all-zero vector as it is).
void l2_normalize(float* v, int n);

}  // namespace infera::engine
