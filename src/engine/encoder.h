// The engine's embedding models: BERT-family encoders (bert: bge, MiniLM, e5;
// nomic-bert) read from GGUF and run with bidirectional attention over each input,
// and decoders (llama, mistral, qwen2) run with causal attention over each input
// alone; either way an input's last hidden states are pooled into one vector. Many
// inputs go through one forward pass; an input's vector does not depend on what else
// is in the batch.
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

// A decoder's longest input when EncoderOptions::ctx_tokens leaves it to the file:
// its context_length, capped here (the KV cache holds this many positions).
constexpr int kDefaultDecoderContextTokens = 4096;

struct EncoderOptions {
  int threads = 1;
  // Most tokens in one forward pass (a batch is split at input boundaries beyond it);
  // raised to the model's context length when smaller. A decoder's pass holds at most
  // its context; longer inputs run in chunks, with the same result.
  int max_batch_tokens = 2048;
  // Round attention as llama.cpp's CPU flash attention does (Q, K and V in F16, the
  // weighted sum of V rows kept in F16), so that pooled vectors can be compared with
  // llama.cpp's at float rounding. Off: attention in F32, which is more precise (and
  // differs from llama.cpp's by up to ~1.3e-3 on tiny-bert-bge).
  bool ggml_attention_rounding = false;
  // Overrides the file's {arch}.pooling_type (the models file's `pooling`). A decoder
  // refuses kCls, whichever says it: its first token has seen only itself.
  std::optional<Pooling> pooling;
  // Decoders only: the longest input, tokens, and so the positions of their own KV
  // cache (models file `ctx_size`); 0 = the file's context_length up to
  // kDefaultDecoderContextTokens. Encoders take their file's context_length.
  int ctx_tokens = 0;
  // Pin compute thread i to cpus[i % size]; empty: not pinned. (Last: positional inits.)
  std::vector<int> cpus;
};

struct EncoderInfo {
  std::string path;
  std::string arch;  // "bert", "nomic-bert"; decoders "llama", "mistral", "qwen2"
  std::string name;  // general.name, may be empty
  int32_t n_vocab = 0;
  int32_t n_ctx_train = 0;  // longest input, tokens (special tokens included)
  int32_t dim = 0;          // the embedding's length
  int32_t n_layers = 0;
  int32_t n_heads = 0;
  int32_t ffn_dim = 0;
  // EncoderOptions::pooling, else the file's {arch}.pooling_type; absent when neither
  // says (or the file says "none"), in which case callers must not guess.
  std::optional<Pooling> pooling;
  GgmlType weight_type = GgmlType::kF32;
  uint64_t weight_bytes = 0;
  uint64_t kv_bytes = 0;  // decoders: their KV cache when full, bytes; encoders 0
};

class Encoder {
 public:
  // Loads and validates, choosing the implementation by general.architecture (bert,
  // nomic-bert: load_bert_encoder; llama, mistral, qwen2: load_decoder_encoder); errors
  // name the file and the problem (architecture, missing or misshapen tensor,
  // unsupported type, cls pooling for a decoder).
  static Result<std::unique_ptr<Encoder>> load(const std::string& path,
                                               const EncoderOptions& options);
  virtual ~Encoder() = default;

  virtual const EncoderInfo& info() const = 0;
  virtual const Tokenizer& tokenizer() const = 0;

  // Token ids of `text` as the model reads it, with its own special tokens: [CLS]
  // text [SEP] for BERT, BOS text (and EOS if the file asks for it) for a decoder.
  std::vector<int32_t> tokenize(std::string_view text) const {
    return tokenizer().encode(text, /*add_bos=*/true, /*parse_special=*/false);
  }

  // Pools each input (token ids as tokenize() gives them; 1..n_ctx_train tokens, every
  // id in the vocabulary) into info().dim floats at out + i * dim, in order. Vectors
  // are not normalised (l2_normalize). InvalidArgument for an empty or too long input,
  // a bad id, or a pooling the model cannot do (kCls for a decoder).
  virtual Status embed(std::span<const std::vector<int32_t>> inputs, Pooling pooling,
                       float* out) = 0;
};

// The implementations Encoder::load chooses between (model_bert.cpp,
// model_decoder_embed.cpp). The decoder one owns an engine::Model with a KV cache of
// ctx_tokens positions and prefills each input afresh, its positions from 0.
Result<std::unique_ptr<Encoder>> load_bert_encoder(const std::string& path,
                                                   const EncoderOptions& options);
Result<std::unique_ptr<Encoder>> load_decoder_encoder(const std::string& path,
                                                      const EncoderOptions& options);

// Scales v to unit length (leaves an all-zero vector as it is).
void l2_normalize(float* v, int n);

}  // namespace infera::engine
