// Internal to the engine: what the forward passes (decoder and encoder) share —
// scratch buffers, weight matrices read from a GGUF file with their checks, and the
// batched matrix products that encode the input once for the weight type and split
// the rows of several matrices over the compute pool in one parallel loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/status.h"
#include "engine/ggml_types.h"
#include "engine/kernels/kernels.h"

namespace infera::engine {

class GgufFile;
class ThreadPool;

// Allocates without value-initialising: the forward pass's scratch is sized for the
// largest batch at load, but a pass writes only the rows it uses, so pages a large
// buffer never needs are never touched (zeroing them all cost ~90 ms of a TinyLlama
// load, kernel zero-fill included).
template <typename T>
struct UninitAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = UninitAllocator<U>;
  };
  UninitAllocator() = default;
  template <typename U>
  UninitAllocator(const UninitAllocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
template <typename T>
using Scratch = std::vector<T, UninitAllocator<T>>;

template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

// A weight matrix: rows of `cols` elements in `type`, zero-copy from the file, or
// repacked at load into tiles of kMatmulRowMultiple rows (tile_bytes > 0), read by
// the table's packed_matmul or by tiles_fn.
struct Matrix {
  const uint8_t* data = nullptr;
  GgmlType type = GgmlType::kF32;
  int rows = 0;
  int cols = 0;
  size_t row_bytes = 0;
  size_t tile_bytes = 0;
  // Set when data is in a layout of the model's choosing that only this kernel reads
  // (tiles tile_bytes apart, e.g. the F16 k-major tiles of Kernels::matmul_f16_kmajor);
  // otherwise the table's packed_matmul (tile_bytes > 0) or matmul_for reads it.
  kernels::MatmulFn tiles_fn = nullptr;
};

// Below this many multiply-adds a step runs on the calling thread alone.
constexpr int64_t kMinParallelWork = 1 << 17;

size_t row_bytes_of(GgmlType type, int cols);

// A tensor of `file` checked for shape and type; errors name `path` and the tensor.
// An absent optional tensor leaves `out` empty (data == nullptr) and is Ok.
Status load_matrix(const GgufFile& file, const std::string& path, const std::string& name, int rows,
                   int cols, Matrix& out, bool optional = false);
Status load_vector(const GgufFile& file, const std::string& path, const std::string& name, int n,
                   const float*& out, bool optional = false);

// Products of activations with weight matrices. One per model, used by its eval thread.
class Linear {
 public:
  Linear(const kernels::Kernels& kernels, ThreadPool& pool) : kernels_(&kernels), pool_(&pool) {}
  // Sizes the input-encoding buffers for up to `rows` inputs of up to `widest` columns.
  void reserve(size_t rows, size_t widest);

  struct Job {
    const Matrix* m;
    float* y;                     // n rows of m->rows floats
    const float* bias = nullptr;  // m->rows floats added to every row of y, or none
  };
  // For each job (at most 4, sharing the input x[n][cols]): y[n][m.rows] = x . m^T
  // (+ bias). The input is encoded for the weight type once (split over the pool when
  // large), and all the jobs' rows are split over the pool in one parallel loop; each
  // task adds the bias to the outputs it wrote while they are in cache. x_is_f16: every
  // value of x is already an F16 value (e.g. looked up in an F16 table), so F16
  // weights use x as it is.
  void matmul(std::initializer_list<Job> jobs, const float* x, int n, bool x_is_f16 = false);

 private:
  // Encodes x for matrices of `type`: Q8 rows, values rounded to F16/BF16, or x.
  const void* prepare_input(GgmlType type, const float* x, int n, int cols, size_t& x_stride);

  const kernels::Kernels* kernels_;
  ThreadPool* pool_;
  Scratch<uint8_t> xq_;  // Q8 activation rows
  Scratch<float> xround_;
};

}  // namespace infera::engine
