// The port through which the scheduler drives a model: batched evaluation over a
// paged KV cache, per-sequence samplers and detokenizers. engine/ provides the
// real implementation (sched/engine_runner.cpp adapts engine.h); tests may use a
// small deterministic model.
//
// Thread: every method is called from the scheduler's engine-loop thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace infera::sched {

struct SamplingParams {
  float temperature = 1.0f;  // 0 = greedy
  float top_p = 1.0f;
  int top_k = 0;             // 0 = off
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  uint64_t seed = 0;
  bool has_seed = false;     // without a seed, the runner picks a random one
};

// Chooses the next token of one sequence; remembers the tokens it has seen for
// penalties and owns the sequence's RNG.
class TokenSampler {
 public:
  virtual ~TokenSampler() = default;
  virtual int32_t sample(const float* logits) = 0;
};

// Turns one sequence's tokens into valid UTF-8 text, piece by piece.
class TextStream {
 public:
  virtual ~TextStream() = default;
  virtual std::string push(int32_t token) = 0;
  virtual std::string flush() = 0;
};

struct BatchEntry {
  int32_t seq_id;
  int32_t token;
  int32_t pos;
  bool want_logits;
};

struct KvUsage {
  int64_t blocks_total = 0;
  int64_t blocks_used = 0;
  int32_t block_tokens = 0;
  int64_t block_bytes = 0;
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;

  virtual int32_t n_vocab() const = 0;
  virtual int32_t n_ctx() const = 0;  // most positions a sequence may hold
  virtual bool is_end_of_generation(int32_t token) const = 0;

  // Starts a sequence for `prompt`: attaches cached KV blocks for its longest
  // known prefix and returns how many prompt tokens they cover (0..prompt.size()-1;
  // at least the last prompt token is always evaluated, to get logits). Returns -1
  // (and holds nothing) when the KV cache cannot take the sequence now.
  virtual int32_t begin_sequence(int32_t seq_id, std::span<const int32_t> prompt) = 0;
  // Makes room for `n_tokens` positions in total; false when the cache is full.
  virtual bool reserve(int32_t seq_id, int32_t n_tokens) = 0;
  // Records the evaluated prompt so later sequences can share its blocks.
  virtual void publish_prefix(int32_t seq_id, std::span<const int32_t> prompt) = 0;
  // Frees the sequence's blocks (shared prefix blocks stay while referenced).
  virtual void end_sequence(int32_t seq_id) = 0;
  virtual KvUsage kv_usage() const = 0;
  // Frees prefix-cache blocks no live sequence holds (memory pressure); returns the
  // bytes given back. Runners without a prefix cache free nothing.
  virtual uint64_t drop_cached_prefixes() { return 0; }

  // Evaluates one batch; `logits` receives one pointer (n_vocab floats, valid until
  // the next eval) per entry with want_logits, in batch order.
  virtual Status eval(std::span<const BatchEntry> batch, std::vector<const float*>& logits) = 0;

  // A sampler for one sequence; `prompt` counts for the penalties' window.
  virtual std::unique_ptr<TokenSampler> make_sampler(const SamplingParams& params,
                                                     std::span<const int32_t> prompt) = 0;
  virtual std::unique_ptr<TextStream> make_text_stream() = 0;
};

}  // namespace infera::sched
