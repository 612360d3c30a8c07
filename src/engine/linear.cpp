#include "engine/linear.h"

#include <algorithm>
#include <array>

#include "engine/gguf.h"
#include "engine/kernels/block_types.h"
#include "engine/thread_pool.h"

namespace infera::engine {

namespace k = kernels;

size_t row_bytes_of(GgmlType type, int cols) {
  const GgmlTypeInfo& info = ggml_type_info(type);
  return static_cast<size_t>(cols) / info.block_size * info.bytes_per_block;
}

Status load_vector(const GgufFile& file, const std::string& path, const std::string& name, int n,
                   const float*& out, bool optional) {
  const GgufTensor* t = file.find_tensor(name);
  if (t == nullptr) {
    if (optional) return Status::Ok();
    return Status::Corrupt(str(path, ": tensor ", name, " is missing"));
  }
  if (t->type != GgmlType::kF32 || t->n_elements() != n) {
    return Status::Corrupt(
        str(path, ": tensor ", name, " must be F32 with ", n, " elements"));
  }
  out = reinterpret_cast<const float*>(t->data);
  return Status::Ok();
}

Status load_matrix(const GgufFile& file, const std::string& path, const std::string& name, int rows,
                   int cols, Matrix& out, bool optional) {
  const GgufTensor* t = file.find_tensor(name);
  if (t == nullptr) {
    if (optional) return Status::Ok();
    return Status::Corrupt(str(path, ": tensor ", name, " is missing"));
  }
  if (t->dims[0] != cols || t->dims[1] != rows || t->n_dims > 2) {
    return Status::Corrupt(str(path, ": tensor ", name, " has shape [", t->dims[0], ", ",
                               t->dims[1], "], expected [", cols, ", ", rows, "]"));
  }
  if (k::matmul_for(k::active(), t->type) == nullptr) {
    return Status::Unsupported(str(path, ": tensor ", name, " has type ",
                                   ggml_type_info(t->type).name,
                                   ", which this engine does not run yet"));
  }
  if (cols % static_cast<int>(ggml_type_info(t->type).block_size) != 0) {
    return Status::Corrupt(str(path, ": tensor ", name, " rows are not whole blocks"));
  }
  out = Matrix{t->data, t->type, rows, cols, row_bytes_of(t->type, cols)};
  return Status::Ok();
}

void Linear::reserve(size_t rows, size_t widest) {
  // Q8 / Q8K activation rows, or F16 copies of the activations for F16 weights.
  xq_.resize(rows * std::max({k::q8_row_bytes(static_cast<int>((widest + 31) / 32 * 32)),
                              k::q8k_row_bytes(static_cast<int>((widest + 255) / 256 * 256)),
                              widest * sizeof(uint16_t)}));
  xround_.resize(rows * widest);
}

const void* Linear::prepare_input(GgmlType type, const float* x, int n, int cols,
                                      size_t& x_stride) {
  x_stride = static_cast<size_t>(cols) * sizeof(float);
  const k::MatmulInput input = k::matmul_input(type);
  const bool rounded = type == GgmlType::kF16 || type == GgmlType::kBF16;
  if (input == k::MatmulInput::kF32 && !rounded) return x;
  const bool q8k = input == k::MatmulInput::kQ8K;
  if (input != k::MatmulInput::kF32) x_stride = q8k ? k::q8k_row_bytes(cols) : k::q8_row_bytes(cols);
  // Rows [r0, r1) of the encoded input. Quantized rows are shared read-only by every
  // thread and matrix. F16 / BF16: ggml rounds activations to the weight's 16-bit
  // type before the dot product; doing the same keeps results close to llama.cpp's.
  auto encode = [&](int r0, int r1) {
    const size_t first = static_cast<size_t>(r0) * static_cast<size_t>(cols);
    if (input != k::MatmulInput::kF32) {
      for (int i = r0; i < r1; ++i) {
        (q8k ? kernels_->quantize_q8k : kernels_->quantize_q8)(
            x + static_cast<size_t>(i) * cols, xq_.data() + static_cast<size_t>(i) * x_stride, cols);
      }
    } else if (type == GgmlType::kF16) {
      kernels_->round_f16(x + first, xround_.data() + first, (r1 - r0) * cols);
    } else {
      const size_t end = static_cast<size_t>(r1) * static_cast<size_t>(cols);
      for (size_t i = first; i < end; ++i) xround_[i] = k::bf16_to_f32(k::f32_to_bf16(x[i]));
    }
  };
  // A prefill's input (hundreds of rows) is worth splitting; a decode step's is not.
  constexpr int64_t kMinParallelElements = 1 << 15;
  const int threads = pool_->size();
  if (threads > 1 && static_cast<int64_t>(n) * cols >= kMinParallelElements) {
    const int tasks = std::min(n, threads * 2);
    pool_->parallel_for(tasks, [&](int task, int) {
      encode(static_cast<int>(static_cast<int64_t>(n) * task / tasks),
             static_cast<int>(static_cast<int64_t>(n) * (task + 1) / tasks));
    });
  } else {
    encode(0, n);
  }
  return input != k::MatmulInput::kF32 ? static_cast<const void*>(xq_.data())
                                       : static_cast<const void*>(xround_.data());
}

void Linear::matmul(std::initializer_list<Job> jobs, const float* x, int n, bool x_is_f16) {
  const Matrix& first = *jobs.begin()->m;
  // Types share an input when it is the same quantized encoding (Q4_K beside Q6_K).
  auto same_input = [](GgmlType a, GgmlType b) {
    return a == b ||
           (k::matmul_input(a) != k::MatmulInput::kF32 && k::matmul_input(a) == k::matmul_input(b));
  };
  for (const Job& job : jobs) {
    if (!same_input(job.m->type, first.type) || job.m->cols != first.cols) {
      // Mixed input encodings: one product at a time.
      for (const Job& one : jobs) matmul({one}, x, n, x_is_f16);
      return;
    }
  }
  size_t x_stride = 0;
  const void* xin = x_is_f16 && first.type == GgmlType::kF16
                        ? x
                        : prepare_input(first.type, x, n, first.cols, x_stride);
  if (xin == x) x_stride = static_cast<size_t>(first.cols) * sizeof(float);
  const int unit = k::kMatmulRowMultiple;
  std::array<k::MatmulArgs, 4> args;
  std::array<k::MatmulFn, 4> fns{};
  std::array<int, 5> unit_start{};  // first tile unit of each job in the joint row space
  size_t n_jobs = 0;
  int64_t rows_total = 0;
  for (const Job& job : jobs) {
    const bool packed = job.m->tile_bytes > 0;
    args[n_jobs] = k::MatmulArgs{
        job.m->data, packed ? job.m->tile_bytes : job.m->row_bytes,    xin, x_stride,
        job.y,       static_cast<size_t>(job.m->rows) * sizeof(float), n,   job.m->cols};
    fns[n_jobs] = job.m->tiles_fn != nullptr ? job.m->tiles_fn
                  : packed                   ? kernels_->packed_matmul(job.m->type)
                                             : k::matmul_for(*kernels_, job.m->type);
    unit_start[n_jobs + 1] = unit_start[n_jobs] + (job.m->rows + unit - 1) / unit;
    rows_total += job.m->rows;
    ++n_jobs;
  }
  const int units = unit_start[n_jobs];
  // Runs joint units [u0, u1): each job's overlapping rows as one long range.
  auto run_units = [&](int u0, int u1) {
    for (size_t j = 0; j < n_jobs; ++j) {
      const int a = std::max(u0, unit_start[j]), b = std::min(u1, unit_start[j + 1]);
      if (a >= b) continue;
      const int r0 = (a - unit_start[j]) * unit;
      const Job& job = jobs.begin()[j];
      const int r1 = std::min((b - unit_start[j]) * unit, job.m->rows);
      if (job.bias == nullptr) {
        fns[j](args[j], r0, r1);
        continue;
      }
      // Blocks of activation rows, each block's outputs biased while still in cache
      // (any split of the rows gives the same products).
      constexpr int kBiasBlockRows = 64;
      for (int i0 = 0; i0 < n; i0 += kBiasBlockRows) {
        k::MatmulArgs block = args[j];
        block.x = static_cast<const uint8_t*>(block.x) + static_cast<size_t>(i0) * block.x_stride;
        block.y = job.y + static_cast<size_t>(i0) * static_cast<size_t>(job.m->rows);
        block.n = std::min(kBiasBlockRows, n - i0);
        fns[j](block, r0, r1);
        for (int i = 0; i < block.n; ++i) {
          float* y = block.y + static_cast<size_t>(i) * static_cast<size_t>(job.m->rows) + r0;
          kernels_->add(y, job.bias + r0, y, r1 - r0);
        }
      }
    }
  };
  // Small products (tiny models, single tokens) cost less than waking the pool.
  if (rows_total * first.cols * n < kMinParallelWork) {
    run_units(0, units);
    return;
  }
  // Decode streams weights: one long range per thread lets the kernels prefetch
  // ahead. Prefill is compute bound: a few ranges per thread balance better.
  const int threads = pool_->size();
  const int n_tasks = std::min(units, n <= 4 ? threads : threads * 4);
  pool_->parallel_for(n_tasks, [&](int task, int) {
    run_units(static_cast<int>(static_cast<int64_t>(units) * task / n_tasks),
              static_cast<int>(static_cast<int64_t>(units) * (task + 1) / n_tasks));
  });
}

}  // namespace infera::engine
