#include "models/gguf_model.h"

#include <fmt/format.h>

#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/log.h"
#include "engine/gguf.h"
#include "sched/engine_runner.h"

namespace infera::models {
namespace {

// Shape figures that decide a model's memory besides its file.
struct Shape {
  int64_t n_layers = 0, dim = 0, n_heads = 0, n_kv_heads = 0, ffn_dim = 0, n_vocab = 0;
};

// Bytes beyond the file: the F16 KV cache for `ctx` positions and the scratch of
// one batch of `max_batch` rows (activations and logits, F32).
uint64_t runtime_bytes(const Shape& s, int64_t ctx, int64_t max_batch) {
  if (s.n_heads == 0) return 0;
  const int64_t kv_dim = s.dim / s.n_heads * s.n_kv_heads;
  const uint64_t kv = 2ull * static_cast<uint64_t>(s.n_layers * ctx * kv_dim) * 2;
  const uint64_t scratch = static_cast<uint64_t>(max_batch) *
                           static_cast<uint64_t>(6 * s.dim + 2 * s.ffn_dim + s.n_vocab) * 4;
  return kv + scratch;
}

class GgufModel final : public LoadedModel, public TextGenerator {
 public:
  GgufModel(std::unique_ptr<engine::Model> model, const GgufKindConfig& config,
            const ModelSpec& spec, obs::Registry& metrics)
      : model_(std::move(model)) {
    const engine::ModelInfo& info = model_->info();
    const int ctx = spec.ctx_size > 0 ? spec.ctx_size : config.engine.ctx_tokens;
    runner_ = sched::make_engine_runner(*model_, ctx, config.prefix_cache);
    sched::SchedulerConfig sc = config.scheduler;
    if (spec.max_seqs > 0) sc.max_seqs = spec.max_seqs;
    sc.model_name = spec.name;
    scheduler_ = std::make_unique<sched::Scheduler>(sc, *runner_, metrics);
    Shape shape{info.n_layers, info.dim, info.n_heads, info.n_kv_heads, info.ffn_dim, info.n_vocab};
    bytes_ = model_file_bytes(info.path) + runtime_bytes(shape, ctx, config.engine.max_batch);
    ctx_ = ctx;
  }
  ~GgufModel() override {
    scheduler_.reset();  // joins the engine loop before the model goes
    runner_.reset();
  }

  uint64_t bytes() const override { return bytes_; }

  Status warm_up() override {
    auto job = std::make_unique<sched::Job>();
    // One forward pass of one token (BOS) touches every weight; more would only add
    // to the cold start.
    job->prompt = model_->tokenizer().encode("", /*add_bos=*/true, /*parse_special=*/false);
    if (job->prompt.empty()) job->prompt = tokenize("Hello");
    job->max_tokens = 1;
    job->sampling.temperature = 0;
    auto done = std::make_shared<std::promise<sched::Completion>>();
    auto result = done->get_future();
    job->on_done = [done](const sched::Completion& c) { done->set_value(c); };
    if (Status st = scheduler_->submit(std::move(job)); !st.ok()) return st;
    sched::Completion c = result.get();
    if (c.reason == sched::FinishReason::kError) return Status::Internal(c.error);
    return Status::Ok();
  }

  Progress progress() const override {
    sched::SchedulerStats s = scheduler_->stats();
    return {s.running + s.waiting, s.steps_completed};
  }

  uint64_t drop_caches() override {
    return scheduler_->drop_cached_prefixes(std::chrono::seconds(1));
  }

  TextGenerator* text_generator() override { return this; }

  nlohmann::json describe() const override {
    const engine::ModelInfo& info = model_->info();
    const sched::SchedulerStats stats = scheduler_->stats();
    return {{"architecture", info.arch},
            {"name", info.name},
            {"quantization", engine::ggml_type_info(info.weight_type).name},
            {"layers", info.n_layers},
            {"embedding_length", info.dim},
            {"vocab_size", info.n_vocab},
            {"context_length", ctx_},
            {"context_length_trained", info.n_ctx_train},
            {"weight_bytes", info.weight_bytes},
            {"max_seqs", stats.max_seqs},
            {"max_batch_tokens", stats.max_batch_tokens},
            {"sequences_running", stats.running},
            {"sequences_waiting", stats.waiting}};
  }

  sched::Scheduler& scheduler() override { return *scheduler_; }
  std::vector<int32_t> tokenize(const std::string& text) const override {
    return model_->tokenizer().encode(text, /*add_bos=*/true, /*parse_special=*/true);
  }
  const std::string& chat_template_text() const override { return model_->info().chat_template; }
  int context_length() const override { return ctx_; }

 private:
  std::unique_ptr<engine::Model> model_;
  std::unique_ptr<sched::ModelRunner> runner_;
  std::unique_ptr<sched::Scheduler> scheduler_;
  uint64_t bytes_ = 0;
  int ctx_ = 0;
};

class GgufKind final : public ModelKind {
 public:
  GgufKind(GgufKindConfig config, obs::Registry& metrics)
      : config_(std::move(config)), metrics_(metrics) {}

  std::string name() const override { return "gguf"; }
  bool generates_text() const override { return true; }

  Status validate(const ModelSpec& spec) const override {
    std::error_code ec;
    if (spec.path.empty())
      return Status::InvalidArgument(fmt::format("model '{}': no path given", spec.name));
    if (!std::filesystem::is_regular_file(spec.path, ec)) {
      return Status::InvalidArgument(
          fmt::format("model '{}': {}: no such file", spec.name, spec.path));
    }
    return Status::Ok();
  }

  // Cached per file identity and context: /api/models asks for every unloaded model.
  uint64_t estimate_bytes(const ModelSpec& spec) const override {
    const std::string key = identity(spec) + "#" + std::to_string(spec.ctx_size);
    {
      std::lock_guard lock(estimates_mu_);
      if (auto it = estimates_.find(key); it != estimates_.end()) return it->second;
    }
    const uint64_t bytes = compute_estimate(spec);
    std::lock_guard lock(estimates_mu_);
    estimates_[key] = bytes;
    return bytes;
  }

  uint64_t compute_estimate(const ModelSpec& spec) const {
    const int ctx = spec.ctx_size > 0 ? spec.ctx_size : config_.engine.ctx_tokens;
    Shape shape;
    if (auto f = engine::GgufFile::open(spec.path); f.ok()) {
      const engine::GgufFile& g = **f;
      auto arch_name = g.get_or<std::string_view>("general.architecture", "llama");
      const std::string arch(arch_name.ok() ? *arch_name : "llama");
      auto num = [&](const std::string& key) {
        auto v = g.get_integer(arch + "." + key);
        return v.ok() ? *v : 0;
      };
      shape.n_layers = num("block_count");
      shape.dim = num("embedding_length");
      shape.n_heads = num("attention.head_count");
      shape.n_kv_heads = num("attention.head_count_kv");
      if (shape.n_kv_heads == 0) shape.n_kv_heads = shape.n_heads;
      shape.ffn_dim = num("feed_forward_length");
      if (auto tokens = g.find("tokenizer.ggml.tokens"))
        shape.n_vocab = static_cast<int64_t>(tokens->array_count);
    }
    return model_file_bytes(spec.path) + runtime_bytes(shape, ctx, config_.engine.max_batch);
  }

  std::string identity(const ModelSpec& spec) const override { return model_file_identity(spec.path); }

  uint64_t release_spare_memory() override {
    const uint64_t bytes = engine::spare_weight_memory_bytes();
    engine::release_spare_weight_memory();
    return bytes;
  }

  Result<std::unique_ptr<LoadedModel>> load(const ModelSpec& spec) override {
    engine::ModelOptions options = config_.engine;
    if (spec.ctx_size > 0) options.ctx_tokens = spec.ctx_size;
    if (!options.packed_cache_warning) {
      options.packed_cache_warning = [name = spec.name](const std::string& message) {
        log::warn("model.packed_image", "{}: {}", name, message);
      };
    }
    auto model = engine::Model::load(spec.path, options);
    if (!model.ok()) return model.status();
    const engine::LoadReport report = (*model)->load_report();
    if (!report.image_path.empty() && report.weights != engine::PackedWeights::kNone) {
      log::info("model.packed_weights", "{}: {} in {:.1f} ms of a {:.1f} ms load ({})", spec.name,
                report.weights == engine::PackedWeights::kImage ? "mapped its packed image"
                                                                : "repacked, writing its image",
                report.pack_ms, report.load_ms, report.image_path);
    }
    return std::unique_ptr<LoadedModel>(
        std::make_unique<GgufModel>(std::move(model).value(), config_, spec, metrics_));
  }

 private:
  GgufKindConfig config_;
  obs::Registry& metrics_;
  mutable std::mutex estimates_mu_;
  mutable std::map<std::string, uint64_t> estimates_;
};

}  // namespace

std::unique_ptr<ModelKind> make_gguf_kind(GgufKindConfig config, obs::Registry& metrics) {
  return std::make_unique<GgufKind>(std::move(config), metrics);
}

}  // namespace infera::models
