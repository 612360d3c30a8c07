// Forward pass of the llama family (Llama 2/3, TinyLlama, Mistral, SmolLM) and qwen2:
// RMSNorm, RoPE (adjacent pairs for llama, NeoX halves for qwen2), grouped-query
// attention over the paged F16 KV cache, SwiGLU FFN, optional QKV bias (qwen2),
// tied embeddings when output.weight is absent.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <sstream>

#include "engine/engine.h"
#include "engine/gguf.h"
#include "engine/kernels/block_types.h"
#include "engine/kernels/kernels.h"
#include "engine/linear.h"
#include "engine/packed_matrices.h"
#include "engine/thread_pool.h"

namespace infera::engine {
namespace {

namespace k = kernels;

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

struct Layer {
  const float* attn_norm = nullptr;
  const float* ffn_norm = nullptr;
  Matrix wq, wk, wv, wo, w_gate, w_up, w_down;
  const float* bq = nullptr;
  const float* bk = nullptr;
  const float* bv = nullptr;
};



class LlamaModel final : public Model {
 public:
  const ModelInfo& info() const override { return info_; }
  const Tokenizer& tokenizer() const override { return *tokenizer_; }
  KvCache& kv() override { return *kv_; }
  Status eval(std::span<const BatchEntry> batch, std::vector<const float*>& logits) override {
    Evaluating mark(*this);
    return forward(batch, logits, /*hidden=*/false);
  }
  Status eval_hidden(std::span<const BatchEntry> batch,
                     std::vector<const float*>& hidden) override {
    Evaluating mark(*this);
    return forward(batch, hidden, /*hidden=*/true);
  }
  LoadReport load_report() const override {
    LoadReport report = packed_->report();
    report.load_ms = load_ms_;
    return report;
  }
  void wait_for_background_work() override { packed_->wait_for_background_work(); }

  static Result<std::unique_ptr<Model>> load(const std::string& path, const ModelOptions& options);

 private:
  Status load_weights();
  // Tells the packed matrices when an eval() runs (a promotion copies while idle and is
  // adopted at the next one).
  class Evaluating {
   public:
    explicit Evaluating(LlamaModel& m) : m_(m) { m_.packed_->begin_eval(); }
    ~Evaluating() { m_.packed_->end_eval(); }
    Evaluating(const Evaluating&) = delete;
    Evaluating& operator=(const Evaluating&) = delete;

   private:
    LlamaModel& m_;
  };
  Status matrix(const std::string& name, int rows, int cols, Matrix& out, bool optional = false) {
    return load_matrix(*file_, info_.path, name, rows, cols, out, optional);
  }
  Status vector(const std::string& name, int n, const float*& out, bool optional = false) {
    return load_vector(*file_, info_.path, name, n, out, optional);
  }
  void matmul(std::initializer_list<Linear::Job> jobs, const float* x, int n) {
    linear_->matmul(jobs, x, n);
  }
  void attention(std::span<const BatchEntry> batch, int layer);
  // eval() (rows of logits) or eval_hidden() (rows of output-normed hidden states).
  Status forward(std::span<const BatchEntry> batch, std::vector<const float*>& out, bool hidden);

  std::unique_ptr<GgufFile> file_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<KvCache> kv_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Linear> linear_;
  // After file_ and pool_, which it uses until destroyed.
  std::unique_ptr<PackedMatrices> packed_;
  double load_ms_ = 0;
  const k::Kernels* kernels_ = nullptr;
  ModelInfo info_;
  ModelOptions options_;
  float rms_eps_ = 1e-5f;
  float rope_base_ = 10000.0f;
  int rope_dims_ = 0;
  bool rope_neox_ = false;
  Matrix embeddings_, output_;
  const float* output_norm_ = nullptr;
  std::vector<Layer> layers_;

  // Scratch, sized for options_.max_batch entries.
  Scratch<float> x_, xn_, q_, kk_, vv_, att_, gate_, up_, logits_;
  Scratch<float> scores_;      // per thread: ctx positions
  Scratch<float> qhalf_;       // per thread: one head of q rounded to F16
  Scratch<uint16_t> qhalf16_;  // per thread: the same head in F16
  // Per thread, ggml_attention_rounding only: the F16 sum of V rows, and two f32 rows.
  Scratch<uint16_t> vacc16_;
  Scratch<float> vtmp_;
  Scratch<float> rope_cos_, rope_sin_;
};


#define INFERA_TRY(expr)     \
  do {                       \
    Status _s = (expr);      \
    if (!_s.ok()) return _s; \
  } while (0)

Status LlamaModel::load_weights() {
  const int d = info_.dim, hd = info_.head_dim, kvd = info_.n_kv_heads * hd;
  INFERA_TRY(matrix("token_embd.weight", info_.n_vocab, d, embeddings_));
  INFERA_TRY(vector("output_norm.weight", d, output_norm_));
  INFERA_TRY(matrix("output.weight", info_.n_vocab, d, output_, /*optional=*/true));
  if (output_.data == nullptr) output_ = embeddings_;  // tied embeddings
  layers_.resize(static_cast<size_t>(info_.n_layers));
  uint64_t bytes = output_.row_bytes * static_cast<uint64_t>(output_.rows);
  for (int l = 0; l < info_.n_layers; ++l) {
    Layer& L = layers_[static_cast<size_t>(l)];
    std::string p = str("blk.", l, ".");
    INFERA_TRY(vector(p + "attn_norm.weight", d, L.attn_norm));
    INFERA_TRY(vector(p + "ffn_norm.weight", d, L.ffn_norm));
    INFERA_TRY(matrix(p + "attn_q.weight", info_.n_heads * hd, d, L.wq));
    INFERA_TRY(matrix(p + "attn_k.weight", kvd, d, L.wk));
    INFERA_TRY(matrix(p + "attn_v.weight", kvd, d, L.wv));
    INFERA_TRY(matrix(p + "attn_output.weight", d, info_.n_heads * hd, L.wo));
    INFERA_TRY(matrix(p + "ffn_gate.weight", info_.ffn_dim, d, L.w_gate));
    INFERA_TRY(matrix(p + "ffn_up.weight", info_.ffn_dim, d, L.w_up));
    INFERA_TRY(matrix(p + "ffn_down.weight", d, info_.ffn_dim, L.w_down));
    INFERA_TRY(vector(p + "attn_q.bias", info_.n_heads * hd, L.bq, true));
    INFERA_TRY(vector(p + "attn_k.bias", kvd, L.bk, true));
    INFERA_TRY(vector(p + "attn_v.bias", kvd, L.bv, true));
    for (const Matrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) {
      bytes += m->row_bytes * static_cast<uint64_t>(m->rows);
    }
  }
  info_.weight_type = layers_.empty() ? output_.type : layers_[0].wq.type;
  info_.weight_bytes = bytes;
  return Status::Ok();
}

Result<std::unique_ptr<Model>> LlamaModel::load(const std::string& path,
                                                const ModelOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  if (options.kv_type != GgmlType::kF16) {
    return Status::Unsupported(str(path, ": KV cache type ", ggml_type_info(options.kv_type).name,
                                   " is not implemented (F16 is)"));
  }
  if (options.threads < 1 || options.ctx_tokens < 1 || options.block_tokens < 1 ||
      options.max_batch < 1) {
    return Status::InvalidArgument(
        str(path, ": threads, ctx_tokens, block_tokens and max_batch must be positive"));
  }
  auto file =
      GgufFile::open(path, options.read_into_memory ? LoadMode::kReadIntoMemory : LoadMode::kMap);
  if (!file.ok()) return file.status();
  auto model = std::unique_ptr<LlamaModel>(new LlamaModel());
  model->file_ = std::move(file).value();
  model->options_ = options;
  GgufFile& f = *model->file_;
  ModelInfo& info = model->info_;
  info.path = path;
  auto arch = f.get<std::string_view>("general.architecture");
  if (!arch.ok()) return arch.status();
  info.arch = std::string(*arch);
  if (info.arch != "llama" && info.arch != "qwen2" && info.arch != "mistral") {
    return Status::Unsupported(str(path, ": architecture '", info.arch,
                                   "' is not supported (llama, mistral and qwen2 are)"));
  }
  model->rope_neox_ = info.arch == "qwen2";
  auto get_int = [&](const std::string& key, int64_t fallback, bool required) -> Result<int32_t> {
    auto v = f.get_integer(info.arch + "." + key);
    if (!v.ok()) {
      if (!required && v.status().code() == StatusCode::kNotFound)
        return static_cast<int32_t>(fallback);
      return v.status();
    }
    if (*v <= 0 || *v > (int64_t{1} << 30)) {
      return Status::Corrupt(str(path, ": ", info.arch, ".", key, " = ", *v, " is out of range"));
    }
    return static_cast<int32_t>(*v);
  };
  auto dim = get_int("embedding_length", 0, true);
  auto layers = get_int("block_count", 0, true);
  auto ffn = get_int("feed_forward_length", 0, true);
  auto heads = get_int("attention.head_count", 0, true);
  for (auto* r : {&dim, &layers, &ffn, &heads}) {
    if (!r->ok()) return r->status();
  }
  info.dim = *dim;
  info.n_layers = *layers;
  info.ffn_dim = *ffn;
  info.n_heads = *heads;
  auto kv_heads = get_int("attention.head_count_kv", info.n_heads, false);
  auto ctx = get_int("context_length", 2048, false);
  if (!kv_heads.ok()) return kv_heads.status();
  if (!ctx.ok()) return ctx.status();
  info.n_kv_heads = *kv_heads;
  info.n_ctx_train = *ctx;
  if (info.dim % info.n_heads != 0 || info.n_heads % info.n_kv_heads != 0) {
    return Status::Corrupt(str(path, ": ", info.n_heads, " heads and ", info.n_kv_heads,
                               " KV heads do not divide dim ", info.dim));
  }
  info.head_dim = info.dim / info.n_heads;
  auto rope_dims = get_int("rope.dimension_count", info.head_dim, false);
  if (!rope_dims.ok()) return rope_dims.status();
  model->rope_dims_ = std::min(*rope_dims, info.head_dim);
  if (auto eps = f.get_or<float>(info.arch + ".attention.layer_norm_rms_epsilon", 1e-5f);
      eps.ok()) {
    model->rms_eps_ = *eps;
  } else {
    return eps.status();
  }
  if (auto base = f.get_or<float>(info.arch + ".rope.freq_base", 10000.0f); base.ok()) {
    model->rope_base_ = *base;
  } else {
    return base.status();
  }
  if (auto name = f.get_or<std::string_view>("general.name", ""); name.ok())
    info.name = std::string(*name);
  if (auto tmpl = f.get_or<std::string_view>("tokenizer.chat_template", ""); tmpl.ok()) {
    info.chat_template = std::string(*tmpl);
  }
  auto tok = Tokenizer::from_gguf(f);
  if (!tok.ok()) return tok.status();
  model->tokenizer_ = std::move(tok).value();
  info.n_vocab = model->tokenizer_->n_vocab();
  if (const GgufTensor* emb = f.find_tensor("token_embd.weight");
      emb != nullptr && emb->dims[1] != info.n_vocab) {
    info.n_vocab = static_cast<int32_t>(emb->dims[1]);
  }
  INFERA_TRY(model->load_weights());

  model->kernels_ = options.ggml_kernel_order ? &k::ggml_order(k::active()) : &k::active();
  model->pool_ = std::make_unique<ThreadPool>(std::max(1, options.threads), 50, options.cpus);
  model->packed_ = std::make_unique<PackedMatrices>(f, path, *model->kernels_, *model->pool_,
                                                    options, model->embeddings_.data);
  {
    std::vector<Matrix*> candidates;
    for (Layer& L : model->layers_) {
      for (Matrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
        candidates.push_back(m);
    }
    candidates.push_back(&model->output_);  // a tied output keeps embeddings_ (row reads)
    model->packed_->place(candidates);
  }
  int64_t blocks = (options.ctx_tokens + options.block_tokens - 1) / options.block_tokens;
  model->kv_ = std::make_unique<KvCache>(info.n_layers, info.n_kv_heads * info.head_dim, blocks,
                                         options.block_tokens);
  const size_t nb = static_cast<size_t>(options.max_batch);
  const size_t d = static_cast<size_t>(info.dim);
  const size_t qd = static_cast<size_t>(info.n_heads * info.head_dim);
  const size_t kvd = static_cast<size_t>(info.n_kv_heads * info.head_dim);
  const size_t widest = std::max({d, qd, static_cast<size_t>(info.ffn_dim)});
  model->x_.resize(nb * d);
  model->xn_.resize(nb * widest);
  model->q_.resize(nb * qd);
  model->kk_.resize(nb * kvd);
  model->vv_.resize(nb * kvd);
  model->att_.resize(nb * qd);
  model->gate_.resize(nb * static_cast<size_t>(info.ffn_dim));
  model->up_.resize(nb * static_cast<size_t>(info.ffn_dim));
  model->linear_ = std::make_unique<Linear>(*model->kernels_, *model->pool_);
  model->linear_->reserve(nb, widest);
  model->scores_.resize(static_cast<size_t>(model->pool_->size()) *
                        static_cast<size_t>(blocks * options.block_tokens));
  model->qhalf_.resize(static_cast<size_t>(model->pool_->size()) *
                       static_cast<size_t>(info.head_dim));
  // RoPE angles of every entry, computed once per eval() for all layers.
  model->rope_cos_.resize(nb * static_cast<size_t>(model->rope_dims_ / 2 + 1));
  model->rope_sin_.resize(nb * static_cast<size_t>(model->rope_dims_ / 2 + 1));
  model->qhalf16_.resize(model->qhalf_.size());
  if (options.ggml_attention_rounding) {
    model->vacc16_.resize(model->qhalf_.size());
    model->vtmp_.resize(2 * model->qhalf_.size());
  }
  model->load_ms_ = ms_since(start);
  return std::unique_ptr<Model>(std::move(model));
}

void LlamaModel::attention(std::span<const BatchEntry> batch, int layer) {
  const int hd = info_.head_dim, n_heads = info_.n_heads;
  const int group = info_.n_heads / info_.n_kv_heads;
  const int kvd = info_.n_kv_heads * hd;
  const int bt = kv_->block_tokens();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int total = static_cast<int>(batch.size()) * n_heads;
  const size_t per_thread = scores_.size() / static_cast<size_t>(pool_->size());
  const size_t kv_stride = static_cast<size_t>(kvd) * sizeof(uint16_t);
  auto head = [&](int idx, int thread) {
    float* scores = scores_.data() + static_cast<size_t>(thread) * per_thread;
    float* qh = qhalf_.data() + static_cast<size_t>(thread) * static_cast<size_t>(hd);
    const int i = idx / n_heads, h = idx % n_heads;
    const BatchEntry& entry = batch[static_cast<size_t>(i)];
    const size_t head_offset = static_cast<size_t>(h / group) * static_cast<size_t>(hd);
    const float* q = &q_[static_cast<size_t>(i) * n_heads * hd + static_cast<size_t>(h) * hd];
    // K is stored in F16; round q the same way, as ggml does for F16 dot products.
    uint16_t* q16 = qhalf16_.data() + static_cast<size_t>(thread) * static_cast<size_t>(hd);
    kernels_->f32_to_f16(q, q16, hd);
    kernels_->f16_to_f32(q16, qh, hd);
    const auto& table = kv_->table(entry.seq_id);
    const int n_pos = entry.pos + 1;
    for (int p0 = 0; p0 < n_pos; p0 += bt) {
      const int rows = std::min(bt, n_pos - p0);
      const uint16_t* kb = kv_->k_block(layer, table[static_cast<size_t>(p0 / bt)]) + head_offset;
      kernels_->dot_f16_rows(qh, kb, kv_stride, rows, hd, scale, scores + p0);
    }
    float* out = &att_[static_cast<size_t>(i) * n_heads * hd + static_cast<size_t>(h) * hd];
    if (options_.ggml_attention_rounding) {
      uint16_t* acc = vacc16_.data() + static_cast<size_t>(thread) * static_cast<size_t>(hd);
      float* sum = vtmp_.data() + static_cast<size_t>(thread) * 2 * static_cast<size_t>(hd);
      float* v = sum + hd;
      std::fill(acc, acc + hd, uint16_t{0});
      float max = -INFINITY, total = 0.0f;
      for (int p = 0; p < n_pos; ++p) {
        const float s = scores[p];
        float old_scale = 1.0f, weight = 1.0f;
        kernels_->f16_to_f32(acc, sum, hd);
        if (s > max) {  // a new maximum rescales what is summed so far, rounded again
          old_scale = std::exp(max - s);
          max = s;
          for (int d = 0; d < hd; ++d) sum[d] *= old_scale;
          kernels_->f32_to_f16(sum, acc, hd);
          kernels_->f16_to_f32(acc, sum, hd);
        } else {
          weight = std::exp(s - max);
        }
        const uint16_t* row = kv_->v_block(layer, table[static_cast<size_t>(p / bt)]) +
                              head_offset + static_cast<size_t>(p % bt) * static_cast<size_t>(kvd);
        kernels_->f16_to_f32(row, v, hd);
        for (int d = 0; d < hd; ++d) sum[d] = std::fma(v[d], weight, sum[d]);
        kernels_->f32_to_f16(sum, acc, hd);
        total = std::fma(total, old_scale, weight);  // as ggml's S = S * ms + vs
      }
      kernels_->f16_to_f32(acc, out, hd);
      kernels_->scale(out, 1.0f / total, hd);
      return;
    }
    kernels_->softmax(scores, n_pos);
    std::fill(out, out + hd, 0.0f);
    for (int p0 = 0; p0 < n_pos; p0 += bt) {
      const int rows = std::min(bt, n_pos - p0);
      const uint16_t* vb = kv_->v_block(layer, table[static_cast<size_t>(p0 / bt)]) + head_offset;
      kernels_->axpy_f16_rows(scores + p0, vb, kv_stride, rows, hd, out);
    }
  };
  int64_t work = 0;
  for (const auto& e : batch) work += static_cast<int64_t>(e.pos + 1) * n_heads * hd;
  if (work < kMinParallelWork) {
    for (int idx = 0; idx < total; ++idx) head(idx, 0);
  } else {
    pool_->parallel_for(total, std::move(head));
  }
}

Status LlamaModel::forward(std::span<const BatchEntry> batch, std::vector<const float*>& logits,
                           bool hidden) {
  logits.clear();
  if (batch.empty()) return Status::Ok();
  if (static_cast<int>(batch.size()) > options_.max_batch) {
    // Split into chunks that fit the scratch buffers; positions stay in order.
    std::vector<const float*> part;
    Scratch<float> kept;
    std::vector<size_t> offsets;
    const int width = hidden ? info_.dim : info_.n_vocab;
    for (size_t start = 0; start < batch.size(); start += static_cast<size_t>(options_.max_batch)) {
      size_t n = std::min(batch.size() - start, static_cast<size_t>(options_.max_batch));
      INFERA_TRY(forward(batch.subspan(start, n), part, hidden));
      for (const float* l : part) {
        offsets.push_back(kept.size());
        kept.insert(kept.end(), l, l + width);
      }
    }
    logits_ = std::move(kept);
    for (size_t off : offsets) logits.push_back(logits_.data() + off);
    return Status::Ok();
  }
  const int n = static_cast<int>(batch.size());
  const int d = info_.dim, hd = info_.head_dim, qd = info_.n_heads * hd,
            kvd = info_.n_kv_heads * hd;
  for (const auto& e : batch) {
    if (e.token < 0 || e.token >= info_.n_vocab) {
      return Status::InvalidArgument(
          str("token id ", e.token, " is outside the vocabulary (", info_.n_vocab, " tokens)"));
    }
    if (e.pos < 0 || !kv_->has_sequence(e.seq_id) ||
        static_cast<size_t>(e.pos / kv_->block_tokens()) >= kv_->table(e.seq_id).size()) {
      return Status::InvalidArgument(
          str("sequence ", e.seq_id, " has no KV room for position ", e.pos));
    }
  }
  for (int i = 0; i < n; ++i) {
    const BatchEntry& e = batch[static_cast<size_t>(i)];
    (void)k::dequantize_row(embeddings_.type,
                            embeddings_.data + static_cast<size_t>(e.token) * embeddings_.row_bytes,
                            &x_[static_cast<size_t>(i) * d], d);
  }
  const size_t rope_stride = static_cast<size_t>(rope_dims_ / 2 + 1);
  for (int i = 0; i < n; ++i) {
    k::rope_angles(batch[static_cast<size_t>(i)].pos, rope_dims_, rope_base_, 1.0f,
                   &rope_cos_[static_cast<size_t>(i) * rope_stride],
                   &rope_sin_[static_cast<size_t>(i) * rope_stride]);
  }
  const auto style = rope_neox_ ? k::RopeStyle::kNeox : k::RopeStyle::kNormal;
  for (int l = 0; l < info_.n_layers; ++l) {
    const Layer& L = layers_[static_cast<size_t>(l)];
    for (int i = 0; i < n; ++i)
      kernels_->rmsnorm(&x_[static_cast<size_t>(i) * d], L.attn_norm,
                        &xn_[static_cast<size_t>(i) * d], d, rms_eps_);
    matmul({{&L.wq, q_.data()}, {&L.wk, kk_.data()}, {&L.wv, vv_.data()}}, xn_.data(), n);
    for (int i = 0; i < n; ++i) {
      float* q = &q_[static_cast<size_t>(i) * qd];
      float* kr = &kk_[static_cast<size_t>(i) * kvd];
      float* vr = &vv_[static_cast<size_t>(i) * kvd];
      if (L.bq)
        for (int j = 0; j < qd; ++j) q[j] += L.bq[j];
      if (L.bk)
        for (int j = 0; j < kvd; ++j) kr[j] += L.bk[j];
      if (L.bv)
        for (int j = 0; j < kvd; ++j) vr[j] += L.bv[j];
      const float* cos = &rope_cos_[static_cast<size_t>(i) * rope_stride];
      const float* sin = &rope_sin_[static_cast<size_t>(i) * rope_stride];
      kernels_->rope(q, info_.n_heads, hd, rope_dims_, cos, sin, style);
      kernels_->rope(kr, info_.n_kv_heads, hd, rope_dims_, cos, sin, style);
      const BatchEntry& e = batch[static_cast<size_t>(i)];
      kernels_->f32_to_f16(kr, kv_->k_row(l, e.seq_id, e.pos), kvd);
      kernels_->f32_to_f16(vr, kv_->v_row(l, e.seq_id, e.pos), kvd);
    }
    attention(batch, l);
    matmul({{&L.wo, xn_.data()}}, att_.data(), n);
    int rows = n;
    if (l + 1 == info_.n_layers) {
      // The last layer's feed-forward only matters for the rows that want logits:
      // keep those (in order) and drop the rest, as llama.cpp does. Besides the work
      // saved, its batch-dependent products (ggml_kernel_order) then see its batches.
      rows = 0;
      for (int i = 0; i < n; ++i) {
        if (!batch[static_cast<size_t>(i)].want_logits) continue;
        if (rows != i) {
          std::copy_n(&x_[static_cast<size_t>(i) * d], d, &x_[static_cast<size_t>(rows) * d]);
          std::copy_n(&xn_[static_cast<size_t>(i) * d], d, &xn_[static_cast<size_t>(rows) * d]);
        }
        ++rows;
      }
      if (rows == 0) break;
    }
    kernels_->add(x_.data(), xn_.data(), x_.data(), rows * d);
    for (int i = 0; i < rows; ++i)
      kernels_->rmsnorm(&x_[static_cast<size_t>(i) * d], L.ffn_norm,
                        &xn_[static_cast<size_t>(i) * d], d, rms_eps_);
    matmul({{&L.w_gate, gate_.data()}, {&L.w_up, up_.data()}}, xn_.data(), rows);
    // Row by row: a kernel's vector loop and its scalar tail round exp differently, so
    // over the whole batch a row whose length is not a multiple of the vector width
    // (tiny models' FFN) would round by where it sits in the batch.
    const size_t ffn = static_cast<size_t>(info_.ffn_dim);
    for (int i = 0; i < rows; ++i) {
      float* g = gate_.data() + static_cast<size_t>(i) * ffn;
      kernels_->silu_mul(g, up_.data() + static_cast<size_t>(i) * ffn, g, info_.ffn_dim);
    }
    matmul({{&L.w_down, xn_.data()}}, gate_.data(), rows);
    kernels_->add(x_.data(), xn_.data(), x_.data(), rows * d);
  }
  // Final norm and output for the rows that want logits (the first ones of x_ now).
  int n_out = 0;
  for (int i = 0; i < n; ++i) n_out += batch[static_cast<size_t>(i)].want_logits ? 1 : 0;
  for (int i = 0; i < n_out; ++i) {
    kernels_->rmsnorm(&x_[static_cast<size_t>(i) * d], output_norm_,
                      &xn_[static_cast<size_t>(i) * d], d, rms_eps_);
  }
  if (hidden) {
    for (int i = 0; i < n_out; ++i) logits.push_back(xn_.data() + static_cast<size_t>(i) * d);
    return Status::Ok();
  }
  logits_.resize(static_cast<size_t>(n_out) * info_.n_vocab);
  if (n_out > 0) matmul({{&output_, logits_.data()}}, xn_.data(), n_out);
  for (int i = 0; i < n_out; ++i)
    logits.push_back(logits_.data() + static_cast<size_t>(i) * info_.n_vocab);
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Model>> Model::load(const std::string& path, const ModelOptions& options) {
  return LlamaModel::load(path, options);
}

}  // namespace infera::engine
