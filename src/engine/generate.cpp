#include "engine/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include "engine/tokenizer.h"

namespace infera::engine {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Ends a KV sequence on every path out of a function.
class SequenceGuard {
 public:
  SequenceGuard(KvCache& kv, int32_t seq) : kv_(kv), seq_(seq) {}
  ~SequenceGuard() { kv_.end_sequence(seq_); }
  SequenceGuard(const SequenceGuard&) = delete;
  SequenceGuard& operator=(const SequenceGuard&) = delete;

 private:
  KvCache& kv_;
  int32_t seq_;
};

}  // namespace

double GenerateTimings::prompt_tokens_per_second() const {
  return prompt_ms > 0 ? prompt_tokens * 1000.0 / prompt_ms : 0.0;
}

double GenerateTimings::generation_tokens_per_second() const {
  return generation_ms > 0 && generated_tokens > 1 ? (generated_tokens - 1) * 1000.0 / generation_ms
                                                   : 0.0;
}

Result<GenerateResult> generate(Model& model, std::span<const int32_t> prompt_ids,
                                const GenerateOptions& options, const TokenCallback& on_token) {
  if (prompt_ids.empty()) return Status::InvalidArgument("generate: the prompt has no tokens");
  KvCache& kv = model.kv();
  const int32_t seq = options.seq_id;
  const int32_t n_prompt = static_cast<int32_t>(prompt_ids.size());
  const int32_t reused = kv.begin_sequence(seq, prompt_ids);
  if (reused < 0) {
    return Status::ResourceExhausted("generate: the KV cache has no room for a prompt of " +
                                     std::to_string(n_prompt) + " tokens");
  }
  SequenceGuard guard(kv, seq);
  const int32_t max_tokens = std::max(0, options.max_tokens);
  if (!kv.reserve(seq, n_prompt + max_tokens)) {
    return Status::ResourceExhausted("generate: the KV cache has no room for " +
                                     std::to_string(n_prompt + max_tokens) + " positions");
  }

  GenerateResult result;
  result.generated_ids.reserve(static_cast<size_t>(max_tokens));
  result.timings.prompt_tokens = n_prompt - reused;
  Sampler sampler(options.sampler, model.info().n_vocab);
  sampler.accept(prompt_ids);
  StreamingDetokenizer detok(model.tokenizer());
  std::vector<BatchEntry> batch;
  batch.reserve(prompt_ids.size());
  for (int32_t i = reused; i < n_prompt; ++i) {
    batch.push_back({seq, prompt_ids[static_cast<size_t>(i)], i, i == n_prompt - 1});
  }
  std::vector<const float*> logits;
  auto start = Clock::now();
  if (Status s = model.eval(batch, logits); !s.ok()) return s;
  result.timings.prompt_ms = ms_since(start);

  start = Clock::now();
  for (int32_t step = 0; step < max_tokens; ++step) {
    const int32_t token = sampler.sample(logits[0]);
    result.generated_ids.push_back(token);
    std::string text = detok.push(token);
    result.text += text;
    if (on_token && !on_token(token, text)) break;
    if (options.stop_at_end_of_generation && model.tokenizer().is_eog(token)) break;
    if (step + 1 == max_tokens) break;
    const BatchEntry next{seq, token, n_prompt + step, true};
    if (Status s = model.eval(std::span(&next, 1), logits); !s.ok()) return s;
  }
  std::string rest = detok.flush();
  result.text += rest;
  if (on_token && !rest.empty()) (void)on_token(-1, rest);
  result.timings.generated_tokens = static_cast<int>(result.generated_ids.size());
  result.timings.generation_ms = ms_since(start);
  return result;
}

Result<SpeedResult> measure_speed(Model& model, int prompt_tokens, int gen_tokens,
                                  int repetitions) {
  KvCache& kv = model.kv();
  const int32_t seq = 0;
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> any_token(0, model.info().n_vocab - 1);
  std::vector<BatchEntry> batch;
  std::vector<const float*> logits;
  std::vector<int32_t> none;
  SpeedResult out;
  auto run = [&](int n, bool one_at_a_time) -> Result<double> {
    if (kv.begin_sequence(seq, none) < 0 || !kv.reserve(seq, n)) {
      kv.end_sequence(seq);
      return Status::ResourceExhausted("bench: the KV cache has no room for " + std::to_string(n) +
                                       " positions");
    }
    SequenceGuard guard(kv, seq);
    batch.clear();
    for (int i = 0; i < n; ++i)
      batch.push_back({seq, any_token(rng), i, i == n - 1 || one_at_a_time});
    const auto start = Clock::now();
    if (one_at_a_time) {
      for (int i = 0; i < n; ++i) {
        if (Status s = model.eval(std::span(&batch[static_cast<size_t>(i)], 1), logits); !s.ok())
          return s;
      }
    } else if (Status s = model.eval(batch, logits); !s.ok()) {
      return s;
    }
    return ms_since(start);
  };
  for (int pass = 0; pass < 2; ++pass) {
    const bool gen = pass == 1;
    const int n = gen ? gen_tokens : prompt_tokens;
    if (n <= 0) continue;
    if (auto warm = run(n, gen); !warm.ok()) return warm.status();
    const int reps = std::max(1, repetitions);
    double sum = 0, sum_sq = 0;
    for (int r = 0; r < reps; ++r) {
      auto ms = run(n, gen);
      if (!ms.ok()) return ms.status();
      const double tps = n * 1000.0 / std::max(*ms, 1e-6);
      sum += tps;
      sum_sq += tps * tps;
    }
    const double mean = sum / reps;
    const double var = reps > 1 ? std::max(0.0, (sum_sq - reps * mean * mean) / (reps - 1)) : 0.0;
    (gen ? out.generation_tokens_per_second : out.prompt_tokens_per_second) = mean;
    (gen ? out.generation_stddev : out.prompt_stddev) = std::sqrt(var);
  }
  return out;
}

}  // namespace infera::engine
