// Decoders (llama, mistral, qwen2) as embedding models. Each input is prefilled
// afresh as a sequence of its own, from position 0 with causal attention, by an
// engine::Model this encoder owns (its KV cache sized for one longest input), and its
// final hidden states — after the output norm, before the output projection — are
// pooled: their mean over the input's tokens, or the last token's state. CLS pooling
// is refused: a causal model's first token has seen nothing but itself.
//
// Several inputs share a forward pass as separate sequences. The model computes every
// row the same way whatever else is in the batch (engine.h), and a sequence's K/V rows
// are read back from the cache whether they were written in this pass or an earlier
// chunk, so an input's vector depends neither on its companions nor on where a pass is
// split.
#include <algorithm>

#include "engine/encoder.h"
#include "engine/engine.h"
#include "engine/gguf.h"
#include "engine/linear.h"

namespace infera::engine {
namespace {

constexpr std::string_view kClsRefusal =
    "cls pooling takes the first token's state, which in a causal decoder has seen only "
    "itself; use mean or last";

class DecoderEncoder final : public Encoder {
 public:
  const EncoderInfo& info() const override { return info_; }
  const Tokenizer& tokenizer() const override { return model_->tokenizer(); }
  Status embed(std::span<const std::vector<int32_t>> inputs, Pooling pooling, float* out) override;

  static Result<std::unique_ptr<Encoder>> load(const std::string& path,
                                               const EncoderOptions& options);

 private:
  // Evaluates `inputs`, each begun in the KV cache as the sequence of its index, and
  // pools input i into out + i * dim.
  Status run_pass(std::span<const std::vector<int32_t>> inputs, Pooling pooling, float* out);

  std::unique_ptr<Model> model_;
  EncoderInfo info_;
  int pass_entries_ = 1;  // most entries in one eval_hidden()
  // Reused between calls.
  std::vector<BatchEntry> entries_;
  std::vector<const float*> rows_;
  std::vector<double> sums_;  // mean pooling: per input, dim sums
};

// The file's facts the model does not report: {arch}.pooling_type (1 mean, 2 cls,
// 3 last; anything else is none) and its context length (2048 when absent, as the
// model reads it).
struct FileFacts {
  std::string arch;
  std::optional<Pooling> pooling;
  int64_t context_length = 2048;
};

Result<FileFacts> read_facts(const std::string& path) {
  auto file = GgufFile::open(path, LoadMode::kMap);
  if (!file.ok()) return file.status();
  const GgufFile& f = **file;
  FileFacts facts;
  auto arch = f.get<std::string_view>("general.architecture");
  if (!arch.ok()) return arch.status();
  facts.arch = std::string(*arch);
  const std::string pooling_key = facts.arch + ".pooling_type";
  if (f.has(pooling_key)) {
    auto pooling = f.get_integer(pooling_key);
    if (!pooling.ok()) return pooling.status();
    if (*pooling == 1) facts.pooling = Pooling::kMean;
    if (*pooling == 2) facts.pooling = Pooling::kCls;
    if (*pooling == 3) facts.pooling = Pooling::kLast;
  }
  const std::string ctx_key = facts.arch + ".context_length";
  if (f.has(ctx_key)) {
    auto ctx = f.get_integer(ctx_key);
    if (!ctx.ok()) return ctx.status();
    if (*ctx <= 0 || *ctx > (int64_t{1} << 30)) {
      return Status::Corrupt(str(path, ": ", ctx_key, " = ", *ctx, " is out of range"));
    }
    facts.context_length = *ctx;
  }
  return facts;
}

Result<std::unique_ptr<Encoder>> DecoderEncoder::load(const std::string& path,
                                                      const EncoderOptions& options) {
  if (options.threads < 1 || options.max_batch_tokens < 1 || options.ctx_tokens < 0) {
    return Status::InvalidArgument(
        str(path, ": threads and max_batch_tokens must be positive, ctx_tokens positive or 0"));
  }
  auto facts = read_facts(path);
  if (!facts.ok()) return facts.status();
  const std::optional<Pooling> pooling = options.pooling ? options.pooling : facts->pooling;
  if (pooling == Pooling::kCls) {
    return Status::InvalidArgument(str(path, ": ",
                                       options.pooling
                                           ? std::string("the pooling asked for: ")
                                           : str("the file's ", facts->arch, ".pooling_type: "),
                                       kClsRefusal));
  }
  const int ctx = options.ctx_tokens > 0
                      ? options.ctx_tokens
                      : static_cast<int>(
                            std::min<int64_t>(facts->context_length, kDefaultDecoderContextTokens));
  ModelOptions model_options;
  model_options.threads = options.threads;
  model_options.ctx_tokens = ctx;
  model_options.max_batch = std::min(ctx, options.max_batch_tokens);
  model_options.ggml_attention_rounding = options.ggml_attention_rounding;
  auto model = Model::load(path, model_options);
  if (!model.ok()) return model.status();

  auto encoder = std::unique_ptr<DecoderEncoder>(new DecoderEncoder());
  encoder->model_ = std::move(model).value();
  encoder->pass_entries_ = model_options.max_batch;
  const ModelInfo& m = encoder->model_->info();
  EncoderInfo& info = encoder->info_;
  info.path = path;
  info.arch = m.arch;
  info.name = m.name;
  info.n_vocab = m.n_vocab;
  info.n_ctx_train = ctx;
  info.dim = m.dim;
  info.n_layers = m.n_layers;
  info.n_heads = m.n_heads;
  info.ffn_dim = m.ffn_dim;
  info.pooling = pooling;
  info.weight_type = m.weight_type;
  info.weight_bytes = m.weight_bytes;
  const KvUsage kv = encoder->model_->kv().usage();
  info.kv_bytes = static_cast<uint64_t>(kv.blocks_total) * static_cast<uint64_t>(kv.block_bytes);
  return std::unique_ptr<Encoder>(std::move(encoder));
}

Status DecoderEncoder::run_pass(std::span<const std::vector<int32_t>> inputs, Pooling pooling,
                                float* out) {
  const size_t d = static_cast<size_t>(info_.dim);
  const bool mean = pooling == Pooling::kMean;
  entries_.clear();
  for (size_t s = 0; s < inputs.size(); ++s) {
    const auto& in = inputs[s];
    for (size_t p = 0; p < in.size(); ++p) {
      entries_.push_back(
          {static_cast<int32_t>(s), in[p], static_cast<int32_t>(p), mean || p + 1 == in.size()});
    }
  }
  if (mean) sums_.assign(inputs.size() * d, 0.0);
  const std::span<const BatchEntry> all(entries_);
  const size_t step = static_cast<size_t>(pass_entries_);
  for (size_t start = 0; start < all.size(); start += step) {
    const auto chunk = all.subspan(start, std::min(step, all.size() - start));
    Status st = model_->eval_hidden(chunk, rows_);
    if (!st.ok()) return st;
    size_t row = 0;
    for (const BatchEntry& e : chunk) {
      if (!e.want_logits) continue;
      const float* h = rows_[row++];
      const size_t s = static_cast<size_t>(e.seq_id);
      if (mean) {
        double* sum = &sums_[s * d];
        for (size_t j = 0; j < d; ++j) sum[j] += h[j];
      } else {
        std::copy_n(h, d, out + s * d);
      }
    }
  }
  if (mean) {
    for (size_t s = 0; s < inputs.size(); ++s) {
      const double n = static_cast<double>(inputs[s].size());
      for (size_t j = 0; j < d; ++j) out[s * d + j] = static_cast<float>(sums_[s * d + j] / n);
    }
  }
  return Status::Ok();
}

Status DecoderEncoder::embed(std::span<const std::vector<int32_t>> inputs, Pooling pooling,
                             float* out) {
  if (pooling == Pooling::kCls) return Status::InvalidArgument(std::string(kClsRefusal));
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto& in = inputs[i];
    if (in.empty() || static_cast<int>(in.size()) > info_.n_ctx_train) {
      return Status::InvalidArgument(str("input ", i, " has ", in.size(),
                                         " tokens; this model takes 1 to ", info_.n_ctx_train));
    }
    for (int32_t id : in) {
      if (id < 0 || id >= info_.n_vocab) {
        return Status::InvalidArgument(str("input ", i, ": token id ", id,
                                           " is outside the vocabulary (", info_.n_vocab,
                                           " tokens)"));
      }
    }
  }
  // Whole inputs per pass, as many as the KV cache holds at once; one always fits.
  KvCache& kv = model_->kv();
  size_t begin = 0;
  while (begin < inputs.size()) {
    size_t end = begin;
    while (end < inputs.size() &&
           kv.begin_sequence(static_cast<int32_t>(end - begin), inputs[end]) >= 0) {
      ++end;
    }
    Status st = end == begin
                    ? Status::Internal(str("input ", begin, " does not fit an empty KV cache"))
                    : run_pass(inputs.subspan(begin, end - begin), pooling,
                               out + begin * static_cast<size_t>(info_.dim));
    for (size_t s = begin; s < end; ++s) kv.end_sequence(static_cast<int32_t>(s - begin));
    if (!st.ok()) return st;
    begin = end;
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Encoder>> load_decoder_encoder(const std::string& path,
                                                      const EncoderOptions& options) {
  return DecoderEncoder::load(path, options);
}

}  // namespace infera::engine
