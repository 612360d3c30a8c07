// Microbenchmark of the matmul kernels on TinyLlama-1.1B shapes: decode (n = 1,
// bandwidth bound: GB/s of weights streamed) and prefill (n = 128, compute bound:
// GFLOP/s), per kernel table and thread count, beside a plain read-bandwidth figure.
//
// Not part of the CMake build (it only needs infera_engine):
//   cmake --build build --target infera_engine
//   g++ -std=c++20 -O3 -Isrc bench/kernels_bench.cpp build/libinfera_engine.a -pthread -o
//   kernels_bench
//   ./kernels_bench [threads=1] [tables=avx2,avx512 or neon,neondot] [types=Q4_0,Q4_K,...]
// Rates are per CPU second (process CPU time / threads), so that other processes on a
// shared machine do not distort them. Decode streams distinct matrices (more than the L3 cache) so
// weights come from memory, as in a real forward pass.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "engine/kernels/kernels.h"
#include "engine/thread_pool.h"

namespace kern = infera::engine::kernels;
using infera::engine::GgmlType;
using infera::engine::ThreadPool;

namespace {

// CPU seconds of this process (all threads), divided by the thread count: on a shared
// machine wall time counts other processes' time slices, CPU time does not.
int g_threads = 1;
double now_s() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec)) / g_threads;
}

size_t row_bytes(GgmlType type, int k) { return infera::engine::ggml_row_bytes(type, k).value(); }

std::string type_name(GgmlType t) { return std::string(infera::engine::ggml_type_name(t)); }

struct Matrix {
  std::vector<uint8_t> bytes;
  size_t stride;
};

Matrix make_matrix(GgmlType type, int rows, int k, std::mt19937& rng) {
  Matrix m{std::vector<uint8_t>(row_bytes(type, k) * static_cast<size_t>(rows)),
           row_bytes(type, k)};
  std::normal_distribution<float> dist(0.0f, 0.02f);
  std::vector<float> src(static_cast<size_t>(k));
  for (int r = 0; r < rows; ++r) {
    for (float& f : src) f = dist(rng);
    kern::quantize_row(type, src.data(), m.bytes.data() + m.stride * static_cast<size_t>(r), k);
  }
  return m;
}

// The matrix in `table`'s packed layout when it has one for the type (as the model
// loads it), else unchanged.
Matrix pack_matrix(const kern::Kernels& table, GgmlType type, Matrix m, int rows, int k) {
  const size_t tile =
      table.packed_tile_bytes != nullptr ? table.packed_tile_bytes(type, k) : size_t{0};
  if (tile == 0) return m;
  const int unit = kern::kMatmulRowMultiple;
  Matrix p{std::vector<uint8_t>(tile * static_cast<size_t>((rows + unit - 1) / unit)), tile};
  table.pack_tiles(type, m.bytes.data(), m.stride, rows, k, 0, rows, p.bytes.data());
  return p;
}

// One matmul split in row tasks of 64 rows over the pool.
void matmul(ThreadPool& pool, kern::MatmulFn fn, const kern::MatmulArgs& args, int rows) {
  const int per_task = 64;
  const int tasks = (rows + per_task - 1) / per_task;
  pool.parallel_for(
      tasks, [&](int t, int) { fn(args, t * per_task, std::min(rows, (t + 1) * per_task)); });
}

void bench_table(const kern::Kernels& table, ThreadPool& pool, double read_gbs,
                 const std::vector<GgmlType>& types) {
  std::mt19937 rng(1);
  const int k = 2048, rows = 5632;  // TinyLlama FFN up/gate shape
  std::printf("\n== %s, %d thread(s), W %d x %d ==\n", table.name, pool.size(), rows, k);
  for (GgmlType type : types) {
    // Decode: n = 1 over distinct matrices (> L3) so each read comes from DRAM.
    const size_t mat_bytes = row_bytes(type, k) * rows;
    const int copies = static_cast<int>(std::max<size_t>(2, (size_t{160} << 20) / mat_bytes));
    std::vector<Matrix> mats;
    for (int c = 0; c < copies; ++c)
      mats.push_back(pack_matrix(table, type, make_matrix(type, rows, k, rng), rows, k));
    const bool packed =
        table.packed_tile_bytes != nullptr && table.packed_tile_bytes(type, k) != 0;
    const int n_max = 128;
    std::vector<float> x(static_cast<size_t>(n_max) * k);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    for (float& f : x) f = dist(rng);
    const kern::MatmulInput input = kern::matmul_input(type);
    const bool q8 = input != kern::MatmulInput::kF32;
    const auto quantize = input == kern::MatmulInput::kQ8K ? table.quantize_q8k : table.quantize_q8;
    const size_t qstride =
        input == kern::MatmulInput::kQ8K ? kern::q8k_row_bytes(k) : kern::q8_row_bytes(k);
    std::vector<uint8_t> xq(qstride * n_max);
    for (int i = 0; i < n_max; ++i)
      quantize(x.data() + static_cast<size_t>(i) * k, xq.data() + qstride * i, k);
    std::vector<float> y(static_cast<size_t>(n_max) * rows);
    kern::MatmulFn fn = packed ? table.packed_matmul(type) : kern::matmul_for(table, type);
    auto args_for = [&](const Matrix& m, int n) {
      kern::MatmulArgs a{};
      a.w = m.bytes.data();
      a.w_stride = m.stride;
      a.x = q8 ? static_cast<const void*>(xq.data()) : static_cast<const void*>(x.data());
      a.x_stride = q8 ? qstride : 4 * static_cast<size_t>(k);
      a.y = y.data();
      a.y_stride = 4 * static_cast<size_t>(rows);
      a.n = n;
      a.k = k;
      return a;
    };
    const bool slow = table.level == kern::Level::kScalar;
    // Decode. Each figure is the best of several passes: on a shared machine that is
    // the closest to the uncontended speed.
    const int reps = slow ? 1 : 5;
    for (const Matrix& m : mats) matmul(pool, fn, args_for(m, 1), rows);  // warm-up
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
      const double t0 = now_s();
      for (const Matrix& m : mats) matmul(pool, fn, args_for(m, 1), rows);
      best = std::min(best, now_s() - t0);
    }
    const double decode_gbs = static_cast<double>(mat_bytes) * copies / best / 1e9;
    // Decode from cache (one matrix repeatedly): the kernel's own ceiling.
    best = 1e30;
    for (int r = 0; r < (slow ? 2 : 40); ++r) {
      const double t0 = now_s();
      matmul(pool, fn, args_for(mats[0], 1), rows);
      best = std::min(best, now_s() - t0);
    }
    const double hot_gbs = static_cast<double>(mat_bytes) / best / 1e9;
    // Prefill n = 128 (activation quantization included for quantized types).
    const int n = slow ? 8 : n_max;
    best = 1e30;
    for (int r = 0; r < (slow ? 1 : 3); ++r) {
      const double t0 = now_s();
      if (q8) {
        pool.parallel_for(n, [&](int i, int) {
          quantize(x.data() + static_cast<size_t>(i) * k, xq.data() + qstride * i, k);
        });
      }
      matmul(pool, fn, args_for(mats[static_cast<size_t>(r) % mats.size()], n), rows);
      best = std::min(best, now_s() - t0);
    }
    const double gflops = 2.0 * n * rows * static_cast<double>(k) / best / 1e9;
    std::printf(
        "%-5s%s decode n=1: %5.1f GB/s from memory = %3.0f%% of read bandwidth (%5.1f GB/s "
        "from cache) | prefill n=%d: %6.1f GFLOP/s\n",
        type_name(type).c_str(), packed ? " (packed)" : "", decode_gbs, 100.0 * decode_gbs / read_gbs, hot_gbs, n, gflops);
  }
}

// Plain read bandwidth: sum of a 512 MiB f32 buffer with dot_f32 against itself in
// pool-sized slices (two loads of the same line: one stream).
double bench_read(const kern::Kernels& table, ThreadPool& pool) {
  const size_t n = size_t{128} << 20;
  std::vector<float> buf(n, 1.0f);
  const int tasks = 64;
  const size_t per = n / tasks;
  std::vector<float> out(tasks);
  double best = 0;
  for (int r = 0; r < 5; ++r) {
    const double t0 = now_s();
    pool.parallel_for(tasks, [&](int t, int) {
      out[static_cast<size_t>(t)] =
          table.dot_f32(buf.data() + per * t, buf.data() + per * t, static_cast<int>(per));
    });
    best = std::max(best, 4.0 * static_cast<double>(n) / (now_s() - t0) / 1e9);
  }
  std::printf("read bandwidth (%s dot_f32 over 512 MiB, %d thread(s)): %.1f GB/s\n", table.name,
              pool.size(), best);
  return best;
}

}  // namespace

// Splits "a,b,c".
std::vector<std::string> split(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t end = std::min(list.find(',', start), list.size());
    out.push_back(list.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  // By default every SIMD table this CPU runs (x86: avx2, avx512; ARM: neon, neondot).
  std::string names = argc > 2 ? argv[2] : "";
  if (names.empty()) {
    for (const char* name : {"avx2", "avx512", "neon", "neondot"}) {
      if (kern::by_name(name) == nullptr) continue;
      if (!names.empty()) names += ',';
      names += name;
    }
  }
  const std::string type_list =
      argc > 3 ? argv[3] : "Q4_0,Q4_1,Q5_0,Q5_1,Q8_0,Q2_K,Q3_K,Q4_K,Q5_K,Q6_K,F16,BF16,F32";
  std::vector<GgmlType> types;
  for (const std::string& name : split(type_list)) {
    bool found = false;
    for (const auto& info : infera::engine::kGgmlTypes) {
      if (info.name == name && kern::matmul_for(kern::active(), info.type) != nullptr) {
        types.push_back(info.type);
        found = true;
      }
    }
    if (!found) std::printf("type %s: unknown or not supported\n", name.c_str());
  }
  g_threads = threads;
  ThreadPool pool(threads, 0);  // no spinning: idle spin would count as CPU time
  const double read_gbs = bench_read(kern::active(), pool);
  for (const std::string& name : split(names)) {
    if (const kern::Kernels* t = kern::by_name(name)) {
      bench_table(*t, pool, read_gbs, types);
    } else {
      std::printf("\n== %s: not supported here ==\n", name.c_str());
    }
  }
  return 0;
}
