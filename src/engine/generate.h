// Single-sequence generation over an engine Model (the `infera generate` loop and
// tests), and a llama-bench-like measurement of prompt and generation speed.
//
// Thread: the caller's; uses the model's compute pool. The model must not be
// evaluated by anyone else during a call.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "engine/engine.h"
#include "engine/sampler.h"

namespace infera::engine {

struct GenerateOptions {
  int max_tokens = 32;
  SamplerParams sampler{.temperature = 0.0f};
  bool stop_at_end_of_generation = true;  // stop at EOS/EOT
  int32_t seq_id = 0;                     // KV sequence used (freed at the end)
};

struct GenerateTimings {
  int prompt_tokens = 0;
  int generated_tokens = 0;
  double prompt_ms = 0;      // evaluating the prompt, up to the first logits
  double generation_ms = 0;  // every later token (sampling included)
  double prompt_tokens_per_second() const;
  double generation_tokens_per_second() const;  // over generated_tokens - 1 steps
};

struct GenerateResult {
  std::vector<int32_t> generated_ids;
  std::string text;  // detokenized generation (valid UTF-8)
  GenerateTimings timings;
};

// Called after each generated token with the text it completes (may be empty);
// returning false ends the generation (e.g. a stop sequence). At the end, text
// still held back by the detokenizer comes with token -1.
using TokenCallback = std::function<bool(int32_t token, std::string_view text)>;

// Evaluates `prompt_ids` in one batch, then samples up to max_tokens tokens. The
// prompt counts for the sampler's penalties.
// Errors: empty prompt, not enough KV room, eval failures.
Result<GenerateResult> generate(Model& model, std::span<const int32_t> prompt_ids,
                                const GenerateOptions& options, const TokenCallback& on_token = {});

// llama-bench's pp/tg tests: `prompt_tokens` tokens in one batch into an empty
// sequence, and separately `gen_tokens` tokens evaluated one at a time; each
// repeated `repetitions` times after one warm-up run. Tokens/s are means over the
// repetitions, with their sample standard deviations (0 for one repetition).
struct SpeedResult {
  double prompt_tokens_per_second = 0;
  double generation_tokens_per_second = 0;
  double prompt_stddev = 0;
  double generation_stddev = 0;
};
Result<SpeedResult> measure_speed(Model& model, int prompt_tokens, int gen_tokens, int repetitions);

}  // namespace infera::engine
