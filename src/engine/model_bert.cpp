// Forward pass of the BERT family of embedding models: bert (bge, MiniLM, e5:
// absolute position embeddings, separate Q/K/V with biases, GELU feed-forward) and
// nomic-bert (fused QKV without biases, NeoX RoPE, SwiGLU feed-forward). Both are
// post-norm: LayerNorm after the embeddings, after each attention block's residual
// sum and after each feed-forward block's. Attention is bidirectional within each
// input; inputs never see each other, so a batch of inputs gives every input the
// vector it would get alone.
#include <algorithm>
#include <array>
#include <cmath>
#include <mutex>

#include <sys/mman.h>
#include <unistd.h>

#include "engine/encoder.h"
#include "engine/gguf.h"
#include "engine/kernels/block_types.h"
#include "engine/kernels/kernels.h"
#include "engine/linear.h"
#include "engine/thread_pool.h"

namespace infera::engine {

std::string_view pooling_name(Pooling pooling) {
  switch (pooling) {
    case Pooling::kMean:
      return "mean";
    case Pooling::kCls:
      return "cls";
    case Pooling::kLast:
      return "last";
  }
  return "mean";
}

std::optional<Pooling> pooling_from_name(std::string_view name) {
  if (name == "mean") return Pooling::kMean;
  if (name == "cls") return Pooling::kCls;
  if (name == "last") return Pooling::kLast;
  return std::nullopt;
}

void l2_normalize(float* v, int n) {
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += static_cast<double>(v[i]) * v[i];
  if (sum <= 0.0) return;
  const auto inv = static_cast<float>(1.0 / std::sqrt(sum));
  for (int i = 0; i < n; ++i) v[i] *= inv;
}

namespace {

namespace k = kernels;

#define INFERA_TRY(expr)     \
  do {                       \
    Status _s = (expr);      \
    if (!_s.ok()) return _s; \
  } while (0)

// GELU with tanh's approximation, looked up by the input's F16 value and rounded to
// F16, as ggml computes it: llama.cpp's embeddings (our cross-check) carry this
// rounding, and the table is also faster than tanh per element.
const float* gelu_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t i = 0; i < 65536; ++i) {
      const float x = k::fp16_to_f32(static_cast<uint16_t>(i));
      const float g = 0.5f * x *
                      (1.0f + std::tanh(0.7978845608028654f * x * (1.0f + 0.044715f * x * x)));
      t[i] = k::fp16_to_f32(k::f32_to_fp16(g));
    }
    return t;
  }();
  return table.data();
}

float round_f16(float x) { return k::fp16_to_f32(k::f32_to_fp16(x)); }

// Attention works on blocks of up to this many queries of one input and one head: a
// block's scores against all the input's keys (at most n_ctx_train) stay in cache.
constexpr int kQueryBlock = 64;

// Row-wise steps (bias, residual, LayerNorm, GELU) below this many elements run on the
// calling thread alone; above it the pool's wake-up costs less than it saves.
constexpr int64_t kMinParallelElements = 1 << 13;

struct Norm {
  const float* w = nullptr;
  const float* b = nullptr;
};

struct EncoderLayer {
  Matrix wq, wk, wv, wqkv, wo, w_up, w_gate, w_down;
  const float* bq = nullptr;
  const float* bk = nullptr;
  const float* bv = nullptr;
  const float* bo = nullptr;
  const float* b_up = nullptr;
  const float* b_down = nullptr;
  Norm attn_norm, ffn_norm;
};

class BertEncoder final : public Encoder {
 public:
  const EncoderInfo& info() const override { return info_; }
  const Tokenizer& tokenizer() const override { return *tokenizer_; }
  Status embed(std::span<const std::vector<int32_t>> inputs, Pooling pooling, float* out) override;

  static Result<std::unique_ptr<Encoder>> load(const std::string& path,
                                               const EncoderOptions& options);

 private:
  Status load_weights();
  // Copies the F16 layer matrices into the k-major tiles of matmul_f16_kmajor when the
  // kernel table has it (faster for a batch of tokens than the file's rows), and gives
  // the file mapping's pages of those rows back.
  void pack_weights();
  // One forward pass over inputs whose tokens fit the scratch.
  void forward(std::span<const std::vector<int32_t>> inputs, Pooling pooling, float* out);
  // round_out: round att_ to F16 values as written (the output projection's F16
  // weights would round it anyway; done while in cache).
  void attention(std::span<const std::vector<int32_t>> inputs, const std::vector<int>& starts,
                 bool round_out);
  // llama.cpp's flash-attention rounding (EncoderOptions::ggml_attention_rounding).
  void attention_ggml(std::span<const std::vector<int32_t>> inputs, const std::vector<int>& starts,
                      bool round_out);
  // fn(r0, r1, thread) over [0, rows) in ranges split across the pool, or on this
  // thread alone when rows * row_elements is small.
  template <typename Fn>
  void for_rows(int rows, int64_t row_elements, Fn&& fn);
  // Floats of attention scratch per thread: a block's scores (kQueryBlock x
  // n_ctx_train), then its input's keys and values for the head in the product's
  // layout (each up to (n_ctx_train + 16) x (head size + 16)).
  size_t attention_scratch_floats() const {
    const size_t ctx = static_cast<size_t>(info_.n_ctx_train);
    const size_t hd = static_cast<size_t>(info_.dim / info_.n_heads);
    return kQueryBlock * ctx + 2 * (ctx + k::kMatmulRowMultiple) * (hd + k::kMatmulRowMultiple);
  }
  Status matrix(const std::string& name, int rows, int cols, Matrix& out, bool optional = false) {
    return load_matrix(*file_, info_.path, name, rows, cols, out, optional);
  }
  Status vector(const std::string& name, int n, const float*& out, bool optional = false) {
    return load_vector(*file_, info_.path, name, n, out, optional);
  }
  Status norm(const std::string& name, Norm& out) {
    INFERA_TRY(vector(name + ".weight", info_.dim, out.w));
    return vector(name + ".bias", info_.dim, out.b);
  }
  // An embedding-table row (any type dequantize_row reads) as floats.
  Status table(const std::string& name, int rows, const GgufTensor*& out, bool optional = false);
  static void add_row(const GgufTensor* t, int row, int d, float* x, float* tmp);

  std::unique_ptr<GgufFile> file_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Linear> linear_;
  const k::Kernels* kernels_ = nullptr;
  EncoderInfo info_;
  EncoderOptions options_;
  bool nomic_ = false;
  float eps_ = 1e-12f;
  bool ggml_rounding_ = false;
  float rope_base_ = 10000.0f;
  const GgufTensor* tok_embd_ = nullptr;
  const GgufTensor* type_embd_ = nullptr;
  const GgufTensor* pos_embd_ = nullptr;
  Norm embd_norm_;
  std::vector<EncoderLayer> layers_;

  Scratch<uint8_t> packed_;  // pack_weights' tiles (from a 64-byte aligned offset)
  Scratch<float> x_, h_, q_, k_, v_, att_, up_, gate_, qkv_;
  Scratch<float> xr_;  // x_ rounded to F16 values, the input of F16 products
  Scratch<float> row_;     // per thread: dim
  Scratch<float> scores_;  // per thread: attention_scratch_floats()
  struct AttentionTask {
    int input, head, q0, nq;  // queries [q0, q0 + nq) of input, as token indices
  };
  std::vector<AttentionTask> attention_tasks_;  // reused by every pass
  Scratch<float> rope_cos_, rope_sin_;
};

Status BertEncoder::table(const std::string& name, int rows, const GgufTensor*& out,
                          bool optional) {
  const GgufTensor* t = file_->find_tensor(name);
  if (t == nullptr) {
    if (optional) return Status::Ok();
    return Status::Corrupt(str(info_.path, ": tensor ", name, " is missing"));
  }
  if (t->n_dims > 2 || t->dims[0] != info_.dim || t->dims[1] < rows) {
    return Status::Corrupt(str(info_.path, ": tensor ", name, " has shape [", t->dims[0], ", ",
                               t->dims[1], "], expected [", info_.dim, ", ", rows, "]"));
  }
  std::vector<float> probe(static_cast<size_t>(info_.dim));
  if (!k::dequantize_row(t->type, t->data, probe.data(), info_.dim)) {
    return Status::Unsupported(str(info_.path, ": tensor ", name, " has type ",
                                   ggml_type_info(t->type).name, ", which this engine does not read"));
  }
  out = t;
  return Status::Ok();
}

void BertEncoder::add_row(const GgufTensor* t, int row, int d, float* x, float* tmp) {
  const size_t row_bytes = row_bytes_of(t->type, d);
  (void)k::dequantize_row(t->type, t->data + row_bytes * static_cast<size_t>(row), tmp, d);
  for (int i = 0; i < d; ++i) x[i] += tmp[i];
}

Status BertEncoder::load_weights() {
  const int d = info_.dim, ffn = info_.ffn_dim;
  INFERA_TRY(table("token_embd.weight", info_.n_vocab, tok_embd_));
  INFERA_TRY(table("token_types.weight", 1, type_embd_, /*optional=*/true));
  if (!nomic_) INFERA_TRY(table("position_embd.weight", info_.n_ctx_train, pos_embd_));
  INFERA_TRY(norm("token_embd_norm", embd_norm_));
  layers_.resize(static_cast<size_t>(info_.n_layers));
  uint64_t bytes = 0;
  for (int l = 0; l < info_.n_layers; ++l) {
    EncoderLayer& L = layers_[static_cast<size_t>(l)];
    const std::string p = str("blk.", l, ".");
    if (nomic_) {
      INFERA_TRY(matrix(p + "attn_qkv.weight", 3 * d, d, L.wqkv));
      INFERA_TRY(matrix(p + "ffn_gate.weight", ffn, d, L.w_gate));
    } else {
      INFERA_TRY(matrix(p + "attn_q.weight", d, d, L.wq));
      INFERA_TRY(matrix(p + "attn_k.weight", d, d, L.wk));
      INFERA_TRY(matrix(p + "attn_v.weight", d, d, L.wv));
    }
    INFERA_TRY(vector(p + "attn_q.bias", d, L.bq, true));
    INFERA_TRY(vector(p + "attn_k.bias", d, L.bk, true));
    INFERA_TRY(vector(p + "attn_v.bias", d, L.bv, true));
    INFERA_TRY(matrix(p + "attn_output.weight", d, d, L.wo));
    INFERA_TRY(vector(p + "attn_output.bias", d, L.bo, true));
    INFERA_TRY(norm(p + "attn_output_norm", L.attn_norm));
    INFERA_TRY(matrix(p + "ffn_up.weight", ffn, d, L.w_up));
    INFERA_TRY(vector(p + "ffn_up.bias", ffn, L.b_up, true));
    INFERA_TRY(matrix(p + "ffn_down.weight", d, ffn, L.w_down));
    INFERA_TRY(vector(p + "ffn_down.bias", d, L.b_down, true));
    INFERA_TRY(norm(p + "layer_output_norm", L.ffn_norm));
    for (const Matrix* m : {&L.wq, &L.wk, &L.wv, &L.wqkv, &L.wo, &L.w_up, &L.w_gate, &L.w_down}) {
      bytes += m->row_bytes * static_cast<uint64_t>(m->rows);
    }
  }
  const EncoderLayer& first = layers_.front();
  info_.weight_type = nomic_ ? first.wqkv.type : first.wq.type;
  info_.weight_bytes = bytes;
  return Status::Ok();
}

Result<std::unique_ptr<Encoder>> BertEncoder::load(const std::string& path,
                                                   const EncoderOptions& options) {
  if (options.threads < 1 || options.max_batch_tokens < 1) {
    return Status::InvalidArgument(str(path, ": threads and max_batch_tokens must be positive"));
  }
  auto file = GgufFile::open(path, LoadMode::kMap);
  if (!file.ok()) return file.status();
  auto model = std::unique_ptr<BertEncoder>(new BertEncoder());
  model->file_ = std::move(file).value();
  model->options_ = options;
  GgufFile& f = *model->file_;
  EncoderInfo& info = model->info_;
  info.path = path;
  auto arch = f.get<std::string_view>("general.architecture");
  if (!arch.ok()) return arch.status();
  info.arch = std::string(*arch);
  if (info.arch != "bert" && info.arch != "nomic-bert") {
    return Status::Unsupported(str(path, ": architecture '", info.arch,
                                   "' is not an encoder this engine runs (bert and nomic-bert "
                                   "are)"));
  }
  model->nomic_ = info.arch == "nomic-bert";
  auto get_int = [&](const std::string& key) -> Result<int32_t> {
    auto v = f.get_integer(info.arch + "." + key);
    if (!v.ok()) return v.status();
    if (*v <= 0 || *v > (int64_t{1} << 24)) {
      return Status::Corrupt(str(path, ": ", info.arch, ".", key, " = ", *v, " is out of range"));
    }
    return static_cast<int32_t>(*v);
  };
  auto dim = get_int("embedding_length");
  auto layers = get_int("block_count");
  auto ffn = get_int("feed_forward_length");
  auto heads = get_int("attention.head_count");
  auto ctx = get_int("context_length");
  for (auto* r : {&dim, &layers, &ffn, &heads, &ctx}) {
    if (!r->ok()) return r->status();
  }
  info.dim = *dim;
  info.n_layers = *layers;
  info.ffn_dim = *ffn;
  info.n_heads = *heads;
  info.n_ctx_train = *ctx;
  if (info.dim % info.n_heads != 0) {
    return Status::Corrupt(str(path, ": ", info.n_heads, " heads do not divide dim ", info.dim));
  }
  if (auto causal = f.get_or<bool>(info.arch + ".attention.causal", false); !causal.ok()) {
    return causal.status();
  } else if (*causal) {
    return Status::Unsupported(str(path, ": ", info.arch, ".attention.causal is true; encoders "
                                   "here attend both ways"));
  }
  if (auto eps = f.get_or<float>(info.arch + ".attention.layer_norm_epsilon", 1e-12f); eps.ok()) {
    model->eps_ = *eps;
  } else {
    return eps.status();
  }
  if (auto base = f.get_or<float>(info.arch + ".rope.freq_base", 10000.0f); base.ok()) {
    model->rope_base_ = *base;
  } else {
    return base.status();
  }
  const std::string pooling_key = info.arch + ".pooling_type";
  if (auto pooling = f.has(pooling_key) ? f.get_integer(pooling_key) : Result<int64_t>(int64_t{0});
      !pooling.ok()) {
    return pooling.status();
  } else if (*pooling == 1) {
    info.pooling = Pooling::kMean;
  } else if (*pooling == 2) {
    info.pooling = Pooling::kCls;
  } else if (*pooling == 3) {
    info.pooling = Pooling::kLast;
  }
  if (options.pooling) info.pooling = options.pooling;
  if (auto name = f.get_or<std::string_view>("general.name", ""); name.ok())
    info.name = std::string(*name);
  auto tok = Tokenizer::from_gguf(f);
  if (!tok.ok()) return tok.status();
  model->tokenizer_ = std::move(tok).value();
  info.n_vocab = model->tokenizer_->n_vocab();
  f.prefault();
  INFERA_TRY(model->load_weights());

  model->kernels_ = &k::active();
  model->pool_ = std::make_unique<ThreadPool>(options.threads, 50, options.cpus);
  model->options_.max_batch_tokens = std::max(options.max_batch_tokens, info.n_ctx_train);
  model->ggml_rounding_ = options.ggml_attention_rounding;
  const size_t nb = static_cast<size_t>(model->options_.max_batch_tokens);
  const size_t d = static_cast<size_t>(info.dim);
  const size_t ff = static_cast<size_t>(info.ffn_dim);
  model->pack_weights();
  model->linear_ = std::make_unique<Linear>(*model->kernels_, *model->pool_);
  model->linear_->reserve(nb, std::max(d, ff));
  for (auto* s : {&model->x_, &model->xr_, &model->h_, &model->q_, &model->k_, &model->v_, &model->att_})
    s->resize(nb * d);
  model->up_.resize(nb * ff);
  if (model->nomic_) {
    model->gate_.resize(nb * ff);
    model->qkv_.resize(nb * 3 * d);
    const size_t half = d / static_cast<size_t>(info.n_heads) / 2 + 1;
    model->rope_cos_.resize(nb * half);
    model->rope_sin_.resize(nb * half);
  }
  const size_t threads = static_cast<size_t>(model->pool_->size());
  model->row_.resize(threads * d);
  model->scores_.resize(threads * model->attention_scratch_floats());
  return std::unique_ptr<Encoder>(std::move(model));
}

void BertEncoder::pack_weights() {
  // The scalar table's k-major product is the reference (std::fma per element), far
  // slower than its plain one.
  if (kernels_->matmul_f16_kmajor == nullptr || kernels_->level == k::Level::kScalar) return;
  constexpr int kTile = k::kMatmulRowMultiple;
  std::vector<Matrix*> todo;
  std::vector<size_t> offsets;
  size_t total = 0;
  for (EncoderLayer& L : layers_) {
    for (Matrix* m : {&L.wq, &L.wk, &L.wv, &L.wqkv, &L.wo, &L.w_up, &L.w_gate, &L.w_down}) {
      if (m->data == nullptr || m->type != GgmlType::kF16) continue;
      todo.push_back(m);
      offsets.push_back(total);
      const size_t tiles = static_cast<size_t>((m->rows + kTile - 1) / kTile);
      total += (k::f16_kmajor_tile_bytes(m->cols) * tiles + 63) / 64 * 64;
    }
  }
  if (todo.empty()) return;
  packed_.resize(total + 64);
  uint8_t* base = packed_.data() + (64 - reinterpret_cast<uintptr_t>(packed_.data()) % 64) % 64;
  struct Task {
    size_t matrix;
    int r0, r1;
  };
  std::vector<Task> tasks;
  for (size_t i = 0; i < todo.size(); ++i) {
    for (int r = 0; r < todo[i]->rows; r += 16 * kTile)
      tasks.push_back({i, r, std::min(todo[i]->rows, r + 16 * kTile)});
  }
  pool_->parallel_for(static_cast<int>(tasks.size()), [&](int t, int) {
    const Task& task = tasks[static_cast<size_t>(t)];
    const Matrix& m = *todo[task.matrix];
    k::pack_f16_kmajor(m.data, m.row_bytes, m.rows, m.cols, task.r0, task.r1, base + offsets[task.matrix]);
  });
  // The file's rows are no longer read: drop the mapping's whole pages of them (the
  // page cache keeps the file).
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  for (size_t i = 0; i < todo.size(); ++i) {
    Matrix& m = *todo[i];
    const uintptr_t lo = reinterpret_cast<uintptr_t>(m.data);
    const uintptr_t hi = lo + m.row_bytes * static_cast<size_t>(m.rows);
    const uintptr_t first = (lo + page - 1) / page * page, last = hi / page * page;
    if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
    m.data = base + offsets[i];
    m.tile_bytes = k::f16_kmajor_tile_bytes(m.cols);
    m.tiles_fn = kernels_->matmul_f16_kmajor;
  }
}

template <typename Fn>
void BertEncoder::for_rows(int rows, int64_t row_elements, Fn&& fn) {
  const int threads = pool_->size();
  if (threads == 1 || rows < 2 || rows * row_elements < kMinParallelElements) {
    fn(0, rows, 0);
    return;
  }
  const int tasks = std::min(rows, threads * 4);
  pool_->parallel_for(tasks, [&](int task, int thread) {
    fn(static_cast<int>(static_cast<int64_t>(rows) * task / tasks),
       static_cast<int>(static_cast<int64_t>(rows) * (task + 1) / tasks), thread);
  });
}

// Per (input, head, block of queries): the block's scores against all the input's
// keys as one small matrix product (queries x keys, k = head size), a softmax per
// row, then the weighted sum of the values as another (queries x head size, k = the
// input's length). With the table's k-major F32 product the keys and values are first
// copied into its tiles; without it, the keys are read in place and the values
// transposed. Either way the kernels sum each (row, column) pair in a fixed order, so
// an input's vector does not depend on what else is in the batch.
void BertEncoder::attention(std::span<const std::vector<int32_t>> inputs,
                            const std::vector<int>& starts, bool round_out) {
  if (ggml_rounding_) return attention_ggml(inputs, starts, round_out);
  const int d = info_.dim, n_heads = info_.n_heads, hd = d / n_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const size_t ctx = static_cast<size_t>(info_.n_ctx_train);
  const size_t per_thread = attention_scratch_floats();
  const size_t row_bytes = static_cast<size_t>(d) * sizeof(float);
  const k::MatmulFn kmajor =
      kernels_->level == k::Level::kScalar ? nullptr : kernels_->matmul_f32_kmajor;  // see pack_weights
  constexpr int kTile = k::kMatmulRowMultiple;
  attention_tasks_.clear();
  int64_t work = 0;
  for (size_t s = 0; s < inputs.size(); ++s) {
    const int len = starts[s + 1] - starts[s];
    work += static_cast<int64_t>(len) * len * d;
    for (int h = 0; h < n_heads; ++h) {
      for (int q = 0; q < len; q += kQueryBlock) {
        attention_tasks_.push_back(
            {static_cast<int>(s), h, starts[s] + q, std::min(kQueryBlock, len - q)});
      }
    }
  }
  auto task = [&](int idx, int thread) {
    const AttentionTask& a = attention_tasks_[static_cast<size_t>(idx)];
    const int first = starts[static_cast<size_t>(a.input)];
    const int len = starts[static_cast<size_t>(a.input) + 1] - first;
    const size_t col = static_cast<size_t>(a.head) * static_cast<size_t>(hd);
    float* scores = scores_.data() + static_cast<size_t>(thread) * per_thread;
    float* keys = scores + static_cast<size_t>(kQueryBlock) * ctx;
    float* values = keys + (ctx + kTile) * static_cast<size_t>(hd);
    const size_t score_bytes = static_cast<size_t>(len) * sizeof(float);
    const float* k0 = &k_[static_cast<size_t>(first) * d + col];
    const float* v0 = &v_[static_cast<size_t>(first) * d + col];
    // scores[i][j] = q_i . k_j
    k::MatmulArgs qk{k0, row_bytes, &q_[static_cast<size_t>(a.q0) * d + col], row_bytes,
                     scores, score_bytes, a.nq, hd};
    if (kmajor != nullptr) {
      k::pack_f32_kmajor(k0, row_bytes, len, hd, 0, len, keys);
      qk.w = keys;
      qk.w_stride = k::f32_kmajor_tile_bytes(hd);
      kmajor(qk, 0, len);
    } else {
      kernels_->matmul_f32(qk, 0, len);
    }
    for (int i = 0; i < a.nq; ++i) {
      float* row = scores + static_cast<size_t>(i) * static_cast<size_t>(len);
      kernels_->scale(row, scale, len);
      kernels_->softmax(row, len);
    }
    // out_i[c] = sum_j p_ij v_j[c]: the "weight rows" are the head's value columns.
    k::MatmulArgs pv{values, 0, scores, score_bytes, &att_[static_cast<size_t>(a.q0) * d + col],
                     row_bytes, a.nq, len};
    if (kmajor != nullptr) {
      // Tile t, column j: value row j's columns 16t .. 16t + 15 (the last repeated).
      for (int t = 0; t * kTile < hd; ++t) {
        float* tile = values + static_cast<size_t>(t) * static_cast<size_t>(len) * kTile;
        for (int j = 0; j < len; ++j) {
          const float* vr = v0 + static_cast<size_t>(j) * d;
          for (int l = 0; l < kTile; ++l) {
            tile[static_cast<size_t>(j) * kTile + static_cast<size_t>(l)] = vr[std::min(t * kTile + l, hd - 1)];
          }
        }
      }
      pv.w_stride = k::f32_kmajor_tile_bytes(len);
      kmajor(pv, 0, hd);
    } else {
      for (int j = 0; j < len; ++j) {
        const float* vr = v0 + static_cast<size_t>(j) * d;
        for (int c = 0; c < hd; ++c) values[static_cast<size_t>(c) * static_cast<size_t>(len) + static_cast<size_t>(j)] = vr[c];
      }
      pv.w_stride = score_bytes;
      kernels_->matmul_f32(pv, 0, hd);
    }
    if (round_out) {
      for (int i = 0; i < a.nq; ++i) {
        float* o = &att_[static_cast<size_t>(a.q0 + i) * d + col];
        kernels_->round_f16(o, o, hd);
      }
    }
  };
  const int tasks = static_cast<int>(attention_tasks_.size());
  if (work < kMinParallelWork) {
    for (int i = 0; i < tasks; ++i) task(i, 0);
  } else {
    pool_->parallel_for(tasks, std::move(task));
  }
}

void BertEncoder::attention_ggml(std::span<const std::vector<int32_t>> inputs,
                                 const std::vector<int>& starts, bool round_out) {
  const int d = info_.dim, n_heads = info_.n_heads, hd = d / n_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int total_tokens = starts.back();
  const size_t per_thread = attention_scratch_floats();
  // llama.cpp's CPU flash attention casts K and V to F16 and Q to K's type.
  for_rows(total_tokens, 3 * d, [&](int t0, int t1, int) {
    const size_t first = static_cast<size_t>(t0) * d;
    const int count = (t1 - t0) * d;
    for (float* m : {q_.data(), k_.data(), v_.data()}) kernels_->round_f16(m + first, m + first, count);
  });
  // One task per (token, head): its scores against every token of its input.
  std::vector<int> owner(static_cast<size_t>(total_tokens));
  for (size_t s = 0; s < inputs.size(); ++s) {
    std::fill(owner.begin() + starts[s], owner.begin() + starts[s + 1], static_cast<int>(s));
  }
  auto task = [&](int idx, int thread) {
    const int t = idx / n_heads, h = idx % n_heads;
    const int s = owner[static_cast<size_t>(t)];
    const int first = starts[static_cast<size_t>(s)];
    const int len = starts[static_cast<size_t>(s) + 1] - first;
    float* scores = scores_.data() + static_cast<size_t>(thread) * per_thread;
    const float* q = &q_[static_cast<size_t>(t) * d + static_cast<size_t>(h) * hd];
    for (int j = 0; j < len; ++j) {
      const float* kr = &k_[static_cast<size_t>(first + j) * d + static_cast<size_t>(h) * hd];
      scores[j] = kernels_->dot_f32(q, kr, hd) * scale;
    }
    // ggml's online softmax: the weighted sum of V rows is kept in F16, rounded
    // after every position; the weights' sum in F32.
    float* o = &att_[static_cast<size_t>(t) * d + static_cast<size_t>(h) * hd];
    float max = -INFINITY, sum = 0.0f;
    std::fill(o, o + hd, 0.0f);
    for (int j = 0; j < len; ++j) {
      float old_scale = 1.0f, weight = 1.0f;
      if (scores[j] > max) {
        old_scale = std::exp(max - scores[j]);
        max = scores[j];
        for (int c = 0; c < hd; ++c) o[c] = round_f16(o[c] * old_scale);
      } else {
        weight = std::exp(scores[j] - max);
      }
      const float* vr = &v_[static_cast<size_t>(first + j) * d + static_cast<size_t>(h) * hd];
      for (int c = 0; c < hd; ++c) o[c] = round_f16(o[c] + vr[c] * weight);
      sum = sum * old_scale + weight;
    }
    for (int c = 0; c < hd; ++c) o[c] /= sum;
    if (round_out) kernels_->round_f16(o, o, hd);
  };
  int64_t work = 0;
  for (const auto& in : inputs) work += static_cast<int64_t>(in.size()) * in.size() * d;
  const int tasks = total_tokens * n_heads;
  if (work < kMinParallelWork) {
    for (int i = 0; i < tasks; ++i) task(i, 0);
  } else {
    pool_->parallel_for(tasks, std::move(task));
  }
}

void BertEncoder::forward(std::span<const std::vector<int32_t>> inputs, Pooling pooling,
                          float* out) {
  const int d = info_.dim, ffn = info_.ffn_dim, hd = d / info_.n_heads;
  std::vector<int> starts{0};
  for (const auto& in : inputs) starts.push_back(starts.back() + static_cast<int>(in.size()));
  const int n = starts.back();
  const size_t rope_stride = static_cast<size_t>(hd / 2 + 1);
  // Products with F16 weights round their input to F16 values first. Where every
  // matrix reading an input is F16, the step writing the input rounds it while its
  // rows are in cache (x_ keeps full precision for the residual sum in xr_'s copy).
  auto all_f16 = [](std::initializer_list<const Matrix*> ms) {
    for (const Matrix* m : ms) {
      if (m->data != nullptr && m->type != GgmlType::kF16) return false;
    }
    return true;
  };
  auto qkv_f16 = [&](const EncoderLayer& L) { return all_f16({&L.wq, &L.wk, &L.wv, &L.wqkv}); };
  const bool round_embd = qkv_f16(layers_.front());
  // Embeddings and their LayerNorm, token by token.
  for_rows(n, 4 * static_cast<int64_t>(d), [&](int t0, int t1, int thread) {
    float* tmp = &row_[static_cast<size_t>(thread) * d];
    size_t s = static_cast<size_t>(std::upper_bound(starts.begin(), starts.end(), t0) - starts.begin()) - 1;
    for (int t = t0; t < t1; ++t) {
      while (t >= starts[s + 1]) ++s;
      const int p = t - starts[s];
      float* x = &x_[static_cast<size_t>(t) * d];
      std::fill(x, x + d, 0.0f);
      add_row(tok_embd_, inputs[s][static_cast<size_t>(p)], d, x, tmp);
      if (type_embd_ != nullptr) add_row(type_embd_, 0, d, x, tmp);
      if (pos_embd_ != nullptr) add_row(pos_embd_, p, d, x, tmp);
      if (nomic_) {
        k::rope_angles(p, hd, rope_base_, 1.0f, &rope_cos_[static_cast<size_t>(t) * rope_stride],
                       &rope_sin_[static_cast<size_t>(t) * rope_stride]);
      }
      kernels_->layer_norm(x, embd_norm_.w, embd_norm_.b, x, d, eps_);
      if (round_embd) kernels_->round_f16(x, &xr_[static_cast<size_t>(t) * d], d);
    }
  });
  // x = LayerNorm(x + h), h already holding its bias; xr_ its F16 copy if round.
  auto residual_norm = [&](const Norm& norm, bool round) {
    for_rows(n, 2 * static_cast<int64_t>(d), [&](int t0, int t1, int) {
      for (int t = t0; t < t1; ++t) {
        float* x = &x_[static_cast<size_t>(t) * d];
        kernels_->add(x, &h_[static_cast<size_t>(t) * d], x, d);
        kernels_->layer_norm(x, norm.w, norm.b, x, d, eps_);
        if (round) kernels_->round_f16(x, &xr_[static_cast<size_t>(t) * d], d);
      }
    });
  };
  bool round_x = round_embd;  // xr_ holds x_ rounded
  for (size_t l = 0; l < layers_.size(); ++l) {
    const EncoderLayer& L = layers_[l];
    const float* x_in = round_x ? xr_.data() : x_.data();  // reassigned for the FFN
    if (nomic_) {
      linear_->matmul({{&L.wqkv, qkv_.data()}}, x_in, n, round_x);
      for_rows(n, 3 * static_cast<int64_t>(d), [&](int t0, int t1, int) {
        for (int t = t0; t < t1; ++t) {
          const float* row = &qkv_[static_cast<size_t>(t) * 3 * d];
          float* q = &q_[static_cast<size_t>(t) * d];
          float* kk = &k_[static_cast<size_t>(t) * d];
          float* v = &v_[static_cast<size_t>(t) * d];
          std::copy_n(row, d, q);
          std::copy_n(row + d, d, kk);
          std::copy_n(row + 2 * d, d, v);
          const float* cos = &rope_cos_[static_cast<size_t>(t) * rope_stride];
          const float* sin = &rope_sin_[static_cast<size_t>(t) * rope_stride];
          kernels_->rope(q, info_.n_heads, hd, hd, cos, sin, k::RopeStyle::kNeox);
          kernels_->rope(kk, info_.n_heads, hd, hd, cos, sin, k::RopeStyle::kNeox);
          if (L.bq != nullptr) kernels_->add(q, L.bq, q, d);
          if (L.bk != nullptr) kernels_->add(kk, L.bk, kk, d);
          if (L.bv != nullptr) kernels_->add(v, L.bv, v, d);
        }
      });
    } else {
      linear_->matmul({{&L.wq, q_.data(), L.bq}, {&L.wk, k_.data(), L.bk}, {&L.wv, v_.data(), L.bv}},
                      x_in, n, round_x);
    }
    const bool round_att = all_f16({&L.wo});
    attention(inputs, starts, round_att);
    linear_->matmul({{&L.wo, h_.data(), L.bo}}, att_.data(), n, round_att);
    round_x = all_f16({&L.w_up, &L.w_gate});
    residual_norm(L.attn_norm, round_x);
    x_in = round_x ? xr_.data() : x_.data();
    bool down_f16 = false;  // the FFN's output already holds F16 values
    if (nomic_) {
      linear_->matmul({{&L.w_gate, gate_.data()}, {&L.w_up, up_.data()}}, x_in, n, round_x);
      for_rows(n, ffn, [&](int t0, int t1, int) {
        const size_t first = static_cast<size_t>(t0) * ffn;
        kernels_->silu_mul(&gate_[first], &up_[first], &up_[first], (t1 - t0) * ffn);
      });
    } else {
      linear_->matmul({{&L.w_up, up_.data(), L.b_up}}, x_in, n, round_x);
      down_f16 = L.w_down.type == GgmlType::kF16;
      const float* table = gelu_table();
      for_rows(n, ffn, [&](int t0, int t1, int) {
        for (int t = t0; t < t1; ++t) {
          float* row = &up_[static_cast<size_t>(t) * ffn];
          kernels_->gelu_f16_table(table, row, ffn);
          // The product rounds its input to F16 for F16 weights: done here while the
          // row is in cache (only the inputs >= 10 GELU passes through change).
          if (down_f16) kernels_->round_f16(row, row, ffn);
        }
      });
    }
    linear_->matmul({{&L.w_down, h_.data(), L.b_down}}, up_.data(), n, /*x_is_f16=*/down_f16);
    round_x = l + 1 < layers_.size() && qkv_f16(layers_[l + 1]);
    residual_norm(L.ffn_norm, round_x);
  }
  for (size_t s = 0; s < inputs.size(); ++s) {
    float* o = out + s * static_cast<size_t>(d);
    const int first = starts[s], len = starts[s + 1] - starts[s];
    switch (pooling) {
      case Pooling::kCls:
        std::copy_n(&x_[static_cast<size_t>(first) * d], d, o);
        break;
      case Pooling::kLast:
        std::copy_n(&x_[static_cast<size_t>(first + len - 1) * d], d, o);
        break;
      case Pooling::kMean: {
        std::fill(o, o + d, 0.0f);
        for (int t = first; t < first + len; ++t) {
          kernels_->add(o, &x_[static_cast<size_t>(t) * d], o, d);
        }
        kernels_->scale(o, 1.0f / static_cast<float>(len), d);
        break;
      }
    }
  }
}

Status BertEncoder::embed(std::span<const std::vector<int32_t>> inputs, Pooling pooling,
                          float* out) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto& in = inputs[i];
    if (in.empty() || static_cast<int>(in.size()) > info_.n_ctx_train) {
      return Status::InvalidArgument(str("input ", i, " has ", in.size(), " tokens; this model takes 1 to ",
                                         info_.n_ctx_train));
    }
    for (int32_t id : in) {
      if (id < 0 || id >= info_.n_vocab) {
        return Status::InvalidArgument(
            str("input ", i, ": token id ", id, " is outside the vocabulary (", info_.n_vocab,
                " tokens)"));
      }
    }
  }
  // Whole inputs per pass, as many as fit the scratch.
  size_t begin = 0;
  while (begin < inputs.size()) {
    size_t end = begin;
    size_t tokens = 0;
    while (end < inputs.size() &&
           tokens + inputs[end].size() <= static_cast<size_t>(options_.max_batch_tokens)) {
      tokens += inputs[end].size();
      ++end;
    }
    forward(inputs.subspan(begin, end - begin), pooling, out + begin * static_cast<size_t>(info_.dim));
    begin = end;
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Encoder>> load_bert_encoder(const std::string& path,
                                                   const EncoderOptions& options) {
  return BertEncoder::load(path, options);
}

Result<std::unique_ptr<Encoder>> Encoder::load(const std::string& path,
                                               const EncoderOptions& options) {
  std::string arch;
  {
    auto file = GgufFile::open(path, LoadMode::kMap);
    if (!file.ok()) return file.status();
    auto name = (*file)->get<std::string_view>("general.architecture");
    if (!name.ok()) return name.status();
    arch = std::string(*name);
  }
  if (arch == "bert" || arch == "nomic-bert") return BertEncoder::load(path, options);
  if (arch == "llama" || arch == "mistral" || arch == "qwen2") {
    return load_decoder_encoder(path, options);
  }
  return Status::Unsupported(str(path, ": architecture '", arch,
                                 "' is not an embedding model this engine runs (bert and "
                                 "nomic-bert encoders are; llama, mistral and qwen2 decoders "
                                 "are with last or mean pooling)"));
}

}  // namespace infera::engine
