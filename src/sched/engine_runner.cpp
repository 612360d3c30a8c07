#include "sched/engine_runner.h"

#include <random>

#include "engine/engine.h"
#include "engine/sampler.h"

namespace infera::sched {
namespace {

class EngineSampler final : public TokenSampler {
 public:
  EngineSampler(const engine::SamplerParams& p, int32_t n_vocab, std::span<const int32_t> prompt)
      : sampler_(p, n_vocab) {
    sampler_.accept(prompt);
  }
  int32_t sample(const float* logits) override { return sampler_.sample(logits); }

 private:
  engine::Sampler sampler_;
};

class EngineText final : public TextStream {
 public:
  explicit EngineText(const engine::Tokenizer& t) : detok_(t) {}
  std::string push(int32_t token) override { return detok_.push(token); }
  std::string flush() override { return detok_.flush(); }

 private:
  engine::StreamingDetokenizer detok_;
};

class EngineRunner final : public ModelRunner {
 public:
  EngineRunner(engine::Model& model, int32_t n_ctx, bool prefix_cache)
      : model_(model), n_ctx_(n_ctx), prefix_cache_(prefix_cache) {}

  int32_t n_vocab() const override { return model_.info().n_vocab; }
  int32_t n_ctx() const override { return n_ctx_; }
  bool is_end_of_generation(int32_t token) const override { return model_.tokenizer().is_eog(token); }

  int32_t begin_sequence(int32_t seq_id, std::span<const int32_t> prompt) override {
    return model_.kv().begin_sequence(seq_id, prompt);
  }
  bool reserve(int32_t seq_id, int32_t n_tokens) override { return model_.kv().reserve(seq_id, n_tokens); }
  void publish_prefix(int32_t seq_id, std::span<const int32_t> prompt) override {
    if (prefix_cache_) model_.kv().publish_prefix(seq_id, prompt);
  }
  void end_sequence(int32_t seq_id) override { model_.kv().end_sequence(seq_id); }
  uint64_t drop_cached_prefixes() override { return model_.kv().drop_cached_prefixes(); }
  KvUsage kv_usage() const override {
    engine::KvUsage u = model_.kv().usage();
    return {u.blocks_total, u.blocks_used, u.block_tokens, u.block_bytes};
  }

  Status eval(std::span<const BatchEntry> batch, std::vector<const float*>& logits) override {
    entries_.clear();
    for (const auto& e : batch) entries_.push_back({e.seq_id, e.token, e.pos, e.want_logits});
    return model_.eval(entries_, logits);
  }

  std::unique_ptr<TokenSampler> make_sampler(const SamplingParams& p,
                                             std::span<const int32_t> prompt) override {
    engine::SamplerParams s;
    s.temperature = p.temperature;
    s.top_k = p.top_k;
    s.top_p = p.top_p;
    s.min_p = p.min_p;
    s.repetition_penalty = p.repetition_penalty;
    s.presence_penalty = p.presence_penalty;
    s.frequency_penalty = p.frequency_penalty;
    s.seed = p.has_seed ? p.seed : seeds_();
    return std::make_unique<EngineSampler>(s, n_vocab(), prompt);
  }
  std::unique_ptr<TextStream> make_text_stream() override {
    return std::make_unique<EngineText>(model_.tokenizer());
  }

 private:
  engine::Model& model_;
  int32_t n_ctx_;
  bool prefix_cache_;
  std::vector<engine::BatchEntry> entries_;
  std::mt19937_64 seeds_{std::random_device{}()};
};

}  // namespace

std::unique_ptr<ModelRunner> make_engine_runner(engine::Model& model, int32_t n_ctx,
                                                bool prefix_cache) {
  return std::make_unique<EngineRunner>(model, n_ctx, prefix_cache);
}

}  // namespace infera::sched
