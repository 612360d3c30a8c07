// Token sampling: greedy, temperature, top-k, top-p, min-p, and repetition /
// presence / frequency penalties over the recently generated tokens, with a
// seeded RNG (same seed and logits, same tokens).
//
// Order: penalties → greedy (temperature 0) or top-k → temperature softmax →
// top-p → min-p → draw. Buffers are sized once; sample() does not allocate.
//
// Thread: one sequence, one thread at a time.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <unordered_map>
#include <vector>

namespace infera::engine {

struct SamplerParams {
  float temperature = 1.0f;         // <= 0: greedy
  int top_k = 0;                    // 0: off
  float top_p = 1.0f;               // 1: off
  float min_p = 0.0f;               // 0: off
  float repetition_penalty = 1.0f;  // 1: off (llama.cpp's repeat_penalty)
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int penalty_last_n = 64;  // generated tokens the penalties look at
  uint64_t seed = 0;
};

class Sampler {
 public:
  Sampler(const SamplerParams& params, int32_t n_vocab);

  // Chooses the next token from n_vocab logits and remembers it for penalties.
  int32_t sample(const float* logits);

  // Remembers tokens the model saw without sampling them (the prompt), so the
  // penalties also cover them, as llama.cpp's samplers do.
  void accept(std::span<const int32_t> tokens);

 private:
  struct Candidate {
    int32_t id;
    float value;  // logit, then probability
  };
  void remember(int32_t token);

  SamplerParams params_;
  int32_t n_vocab_;
  std::mt19937_64 rng_;
  std::vector<Candidate> candidates_;
  std::vector<int32_t> recent_;  // ring of the last penalty_last_n tokens
  size_t recent_next_ = 0;
  std::unordered_map<int32_t, int> counts_;
};

}  // namespace infera::engine
