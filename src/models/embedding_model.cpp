#include "models/embedding_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "engine/encoder.h"
#include "engine/gguf.h"
#include "obs/metrics.h"

namespace infera::models {
namespace {

// Activations of one forward pass of `tokens` rows (F32): hidden state and its F16
// copy, Q/K/V, attention output, feed-forward (two for SwiGLU); per thread a block of
// 64 queries' scores and one head's keys and values (bounded here by dim).
uint64_t scratch_bytes(int64_t tokens, int64_t dim, int64_t ffn, int64_t ctx, int threads) {
  const int64_t per_thread = 64 * ctx + 2 * (ctx + 16) * (dim + 16);
  return static_cast<uint64_t>(tokens * (7 * dim + 2 * ffn) + threads * per_thread) * 4;
}

class EmbeddingModel final : public LoadedModel, public TextEmbedder {
 public:
  EmbeddingModel(std::unique_ptr<engine::Encoder> encoder, const EmbeddingKindConfig& config,
                 const ModelSpec& spec, obs::Registry& metrics)
      : encoder_(std::move(encoder)),
        max_batch_tokens_(std::max(config.max_batch_tokens, encoder_->info().n_ctx_train)),
        inputs_(metrics.counter("infera_embedding_inputs_total", "Texts embedded",
                                {{"model", spec.name}})),
        tokens_(metrics.counter("infera_embedding_tokens_total", "Tokens embedded",
                                {{"model", spec.name}})),
        pass_inputs_(metrics.histogram("infera_embedding_batch_inputs",
                                       "Inputs per encoder forward pass", {{"model", spec.name}})),
        pass_seconds_(metrics.histogram("infera_embedding_pass_seconds",
                                        "Encoder forward pass time", {{"model", spec.name}})) {
    const engine::EncoderInfo& info = encoder_->info();
    bytes_ =
        model_file_bytes(info.path) + info.kv_bytes +
        scratch_bytes(max_batch_tokens_, info.dim, info.ffn_dim, info.n_ctx_train, config.threads);
    worker_ = std::thread([this] { run(); });
  }

  ~EmbeddingModel() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  uint64_t bytes() const override { return bytes_; }

  Status warm_up() override {
    std::vector<int32_t> ids = encoder_->tokenize("Hello");
    std::vector<float> out(static_cast<size_t>(encoder_->info().dim));
    std::vector<std::vector<int32_t>> inputs{std::move(ids)};
    return encoder_->embed(inputs, encoder_->info().pooling.value_or(engine::Pooling::kMean),
                           out.data());
  }

  Progress progress() const override {
    std::lock_guard lock(mu_);
    return {static_cast<int64_t>(queue_.size()) + (busy_ ? 1 : 0), passes_};
  }

  uint64_t drop_caches() override { return 0; }

  TextEmbedder* text_embedder() override { return this; }

  nlohmann::json describe() const override {
    const engine::EncoderInfo& info = encoder_->info();
    std::lock_guard lock(mu_);
    return {{"architecture", info.arch},
            {"name", info.name},
            {"quantization", engine::ggml_type_info(info.weight_type).name},
            {"layers", info.n_layers},
            {"embedding_length", info.dim},
            {"vocab_size", info.n_vocab},
            {"context_length", info.n_ctx_train},
            {"pooling", pooling()},
            {"weight_bytes", info.weight_bytes},
            {"max_batch_tokens", max_batch_tokens_},
            {"requests_waiting", queue_.size()},
            {"forward_passes", passes_}};
  }

  int dimensions() const override { return encoder_->info().dim; }
  int max_tokens() const override { return encoder_->info().n_ctx_train; }
  std::string pooling() const override {
    const auto& p = encoder_->info().pooling;
    return p ? std::string(engine::pooling_name(*p)) : std::string();
  }

  Result<std::vector<int32_t>> tokenize(std::string_view text, bool truncate) const override {
    std::vector<int32_t> ids = encoder_->tokenize(text);
    const size_t limit = static_cast<size_t>(max_tokens());
    if (ids.size() <= limit) return ids;
    if (!truncate) {
      return Status::InvalidArgument(fmt::format(
          "input is {} tokens, longer than the model's context of {} tokens by {}; "
          "shorten it or ask for truncation",
          ids.size(), limit, ids.size() - limit));
    }
    const int32_t last = ids.back();
    ids.resize(limit);
    if (encoder_->tokenizer().add_eos_default()) ids.back() = last;
    return ids;
  }

  size_t count_tokens(std::string_view text) const override {
    return encoder_->tokenize(text).size();
  }

  void embed(std::vector<std::vector<int32_t>> inputs, EmbedCallback done) override {
    const engine::EncoderInfo& info = encoder_->info();
    if (!info.pooling) {
      return done(Status::FailedPrecondition(fmt::format(
          "{}: the file declares no pooling type ({}.pooling_type), so it cannot say how "
          "token states become one vector; set it in the file or give the model a "
          "`pooling` in the models file",
          info.path, info.arch)));
    }
    if (inputs.empty()) return done(Status::InvalidArgument("no input to embed"));
    size_t tokens = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
      const auto& in = inputs[i];
      if (in.empty()) return done(Status::InvalidArgument(fmt::format("input {} is empty", i)));
      if (in.size() > static_cast<size_t>(info.n_ctx_train)) {
        return done(Status::InvalidArgument(
            fmt::format("input {} is {} tokens, longer than the model's context of {} tokens", i,
                        in.size(), info.n_ctx_train)));
      }
      for (int32_t id : in) {
        if (id < 0 || id >= info.n_vocab) {
          return done(Status::InvalidArgument(fmt::format(
              "input {}: token id {} is outside the vocabulary (0..{})", i, id, info.n_vocab - 1)));
        }
      }
      tokens += in.size();
    }
    {
      std::lock_guard lock(mu_);
      if (stop_) return done(Status::Unavailable("the model is unloading"));
      queue_.push_back(Job{std::move(inputs), std::move(done), tokens});
    }
    cv_.notify_one();
  }

 private:
  struct Job {
    std::vector<std::vector<int32_t>> inputs;
    EmbedCallback done;
    size_t tokens = 0;
  };

  // Takes the jobs waiting now (at least one, then while they fit max_batch_tokens)
  // and runs them as one forward pass.
  void run() {
    const int dim = encoder_->info().dim;
    const engine::Pooling pooling = encoder_->info().pooling.value_or(engine::Pooling::kMean);
    std::vector<std::vector<int32_t>> batch;
    std::vector<float> out;
    for (;;) {
      std::vector<Job> jobs;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) {
          return;  // stopping, nothing left
        }
        size_t tokens = 0;
        while (!queue_.empty() &&
               (jobs.empty() || tokens + queue_.front().tokens <= static_cast<size_t>(max_batch_tokens_))) {
          tokens += queue_.front().tokens;
          jobs.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        busy_ = true;
      }
      batch.clear();
      size_t tokens = 0;
      for (Job& j : jobs) {
        tokens += j.tokens;
        for (auto& in : j.inputs) batch.push_back(std::move(in));
      }
      out.resize(batch.size() * static_cast<size_t>(dim));
      const auto t0 = std::chrono::steady_clock::now();
      Status st = encoder_->embed(batch, pooling, out.data());
      pass_seconds_.observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      pass_inputs_.observe(static_cast<double>(batch.size()));
      if (st.ok()) {
        inputs_.inc(batch.size());
        tokens_.inc(tokens);
      }
      size_t row = 0;
      for (Job& j : jobs) {
        const size_t n = j.inputs.size();
        if (!st.ok()) {
          j.done(st);
        } else {
          std::vector<float> v(out.begin() + static_cast<std::ptrdiff_t>(row * dim),
                               out.begin() + static_cast<std::ptrdiff_t>((row + n) * dim));
          for (size_t i = 0; i < n; ++i) engine::l2_normalize(v.data() + i * dim, dim);
          j.done(std::move(v));
        }
        row += n;
      }
      std::lock_guard lock(mu_);
      busy_ = false;
      ++passes_;
    }
  }

  std::unique_ptr<engine::Encoder> encoder_;
  const int max_batch_tokens_;
  obs::Counter& inputs_;
  obs::Counter& tokens_;
  obs::Histogram& pass_inputs_;
  obs::Histogram& pass_seconds_;
  uint64_t bytes_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool busy_ = false;
  bool stop_ = false;
  int64_t passes_ = 0;
  std::thread worker_;
};

class EmbeddingKind final : public ModelKind {
 public:
  EmbeddingKind(EmbeddingKindConfig config, obs::Registry& metrics)
      : config_(config), metrics_(metrics) {}

  std::string name() const override { return "embedding"; }

  Status validate(const ModelSpec& spec) const override {
    std::error_code ec;
    if (spec.path.empty())
      return Status::InvalidArgument(fmt::format("model '{}': no path given", spec.name));
    if (!std::filesystem::is_regular_file(spec.path, ec)) {
      return Status::InvalidArgument(
          fmt::format("model '{}': {}: no such file", spec.name, spec.path));
    }
    for (int d : spec.dimensions) {
      if (d < 1) {
        return Status::InvalidArgument(
            fmt::format("model '{}': dimensions must be positive", spec.name));
      }
    }
    if (!spec.pooling.empty() && !engine::pooling_from_name(spec.pooling)) {
      return Status::InvalidArgument(fmt::format(
          "model '{}': pooling '{}' is not mean, last or cls", spec.name, spec.pooling));
    }
    return Status::Ok();
  }

  uint64_t estimate_bytes(const ModelSpec& spec) const override {
    int64_t dim = 0, ffn = 0, ctx = 512, kv_bytes = 0;
    if (auto f = engine::GgufFile::open(spec.path); f.ok()) {
      const engine::GgufFile& g = **f;
      auto arch_name = g.get_or<std::string_view>("general.architecture", "bert");
      const std::string arch(arch_name.ok() ? *arch_name : "bert");
      auto num = [&](const std::string& key, int64_t fallback) {
        auto v = g.get_integer(arch + "." + key);
        return v.ok() ? *v : fallback;
      };
      dim = num("embedding_length", 0);
      ffn = num("feed_forward_length", 0);
      ctx = num("context_length", 512);
      if (arch != "bert" && arch != "nomic-bert") {
        // A decoder: its own context (engine::EncoderOptions::ctx_tokens) and a KV
        // cache of that many F16 K and V rows per layer.
        ctx = spec.ctx_size > 0 ? spec.ctx_size
                                : std::min<int64_t>(num("context_length", 2048),
                                                    engine::kDefaultDecoderContextTokens);
        const int64_t heads = std::max<int64_t>(1, num("attention.head_count", 1));
        const int64_t kv_dim = num("attention.head_count_kv", heads) * (dim / heads);
        kv_bytes = num("block_count", 0) * 2 * ctx * kv_dim * 2;
      }
    }
    const int64_t batch = std::max<int64_t>(config_.max_batch_tokens, ctx);
    return model_file_bytes(spec.path) + static_cast<uint64_t>(kv_bytes) +
           scratch_bytes(batch, dim, ffn, ctx, config_.threads);
  }

  std::string identity(const ModelSpec& spec) const override { return model_file_identity(spec.path); }

  Result<std::unique_ptr<LoadedModel>> load(const ModelSpec& spec) override {
    engine::EncoderOptions options;
    options.threads = config_.threads;
    options.cpus = config_.cpus;
    options.max_batch_tokens = config_.max_batch_tokens;
    options.ctx_tokens = spec.ctx_size;
    if (!spec.pooling.empty()) {
      options.pooling = engine::pooling_from_name(spec.pooling);
      if (!options.pooling) {
        return Status::InvalidArgument(fmt::format(
            "model '{}': pooling '{}' is not mean, last or cls", spec.name, spec.pooling));
      }
    }
    auto encoder = engine::Encoder::load(spec.path, options);
    if (!encoder.ok()) return encoder.status();
    if (!spec.dimensions.empty()) {
      const int full = (*encoder)->info().dim;
      for (int d : spec.dimensions) {
        if (d > full) {
          return Status::InvalidArgument(fmt::format(
              "model '{}': dimensions lists {}, longer than the model's {}", spec.name, d, full));
        }
      }
    }
    return std::unique_ptr<LoadedModel>(
        std::make_unique<EmbeddingModel>(std::move(encoder).value(), config_, spec, metrics_));
  }

 private:
  EmbeddingKindConfig config_;
  obs::Registry& metrics_;
};

}  // namespace

std::unique_ptr<ModelKind> make_embedding_kind(EmbeddingKindConfig config,
                                               obs::Registry& metrics) {
  return std::make_unique<EmbeddingKind>(config, metrics);
}

bool is_encoder_file(const std::string& path) {
  auto f = engine::GgufFile::open(path);
  if (!f.ok()) return false;
  auto arch = (*f)->get_or<std::string_view>("general.architecture", "");
  return arch.ok() && (*arch == "bert" || *arch == "nomic-bert");
}

}  // namespace infera::models
