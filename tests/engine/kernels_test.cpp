// Every SIMD kernel against its scalar reference on random data, odd sizes and
// several row counts; the scalar reference against a double-precision dequantized
// product; fp16/bf16 conversions against F16C and ARM's FCVT; dispatch.
//
// Tolerances: quantized products compute exact integer block dots, so SIMD and scalar
// differ only in float summation order: |simd - ref| <= 2e-6 * sum_j |w_j * x_j|.
// Float products accumulate in f32 in different orders: 1e-5 * sum |w x|. Small ops
// with exp: relative 1e-5.
#include "engine/kernels/kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/kernels/tables.h"  // the scalar ggml-order pieces

namespace infera::engine::kernels {
namespace {

std::vector<const Kernels*> simd_tables() {
  std::vector<const Kernels*> out;
  for (const char* name : {"avx2", "avx512", "neon", "neondot"}) {
    if (const Kernels* k = by_name(name)) out.push_back(k);
  }
  return out;
}

const Kernels& ref() { return *by_level(Level::kScalar); }

std::vector<float> random_floats(std::mt19937& rng, size_t n, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

size_t row_bytes(GgmlType type, int k) { return ggml_row_bytes(type, k).value_or(0); }

// A weight matrix of `rows` rows with a padded stride (to exercise strides), plus
// its dequantized values.
struct Weights {
  std::vector<uint8_t> bytes;
  size_t stride = 0;
  std::vector<float> values;  // rows x k, dequantized
};

Weights make_weights(std::mt19937& rng, GgmlType type, int rows, int k) {
  Weights w;
  w.stride = row_bytes(type, k) + 6;
  w.bytes.assign(w.stride * static_cast<size_t>(rows), 0);
  w.values.resize(static_cast<size_t>(rows) * static_cast<size_t>(k));
  for (int r = 0; r < rows; ++r) {
    std::vector<float> src = random_floats(rng, static_cast<size_t>(k), 0.05f);
    EXPECT_TRUE(
        quantize_row(type, src.data(), w.bytes.data() + w.stride * static_cast<size_t>(r), k));
    EXPECT_TRUE(dequantize_row(type, w.bytes.data() + w.stride * static_cast<size_t>(r),
                               w.values.data() + static_cast<size_t>(r) * static_cast<size_t>(k),
                               k));
  }
  return w;
}

// Activations: f32 rows (stride padded) and their Q8 and Q8K rows quantized by
// `table` (when k allows).
struct Activations {
  std::vector<float> f32;
  size_t f32_stride = 0;  // bytes
  std::vector<uint8_t> q8;
  size_t q8_stride = 0;
  std::vector<uint8_t> q8k;
  size_t q8k_stride = 0;
};

Activations make_activations(std::mt19937& rng, const Kernels& table, int n, int k) {
  Activations a;
  const size_t floats_per_row = static_cast<size_t>(k) + 3;
  a.f32_stride = 4 * floats_per_row;
  a.f32 = random_floats(rng, floats_per_row * static_cast<size_t>(n));
  if (k % 32 == 0) {
    a.q8_stride = q8_row_bytes(k) + 64;
    a.q8.assign(a.q8_stride * static_cast<size_t>(n), 0);
    for (int i = 0; i < n; ++i) {
      table.quantize_q8(a.f32.data() + floats_per_row * static_cast<size_t>(i),
                        a.q8.data() + a.q8_stride * static_cast<size_t>(i), k);
    }
  }
  if (k % 256 == 0) {
    a.q8k_stride = q8k_row_bytes(k) + 64;
    a.q8k.assign(a.q8k_stride * static_cast<size_t>(n), 0);
    for (int i = 0; i < n; ++i) {
      table.quantize_q8k(a.f32.data() + floats_per_row * static_cast<size_t>(i),
                         a.q8k.data() + a.q8k_stride * static_cast<size_t>(i), k);
    }
  }
  return a;
}

// Rows [first, first + m) of x in every encoding it has.
Activations slice(const Activations& x, int first, int m) {
  auto part = [&](const auto& v, size_t stride) {
    using V = std::decay_t<decltype(v)>;
    if (v.empty()) return V{};
    return V(v.begin() + static_cast<ptrdiff_t>(stride * static_cast<size_t>(first)),
             v.begin() + static_cast<ptrdiff_t>(stride * static_cast<size_t>(first + m)));
  };
  Activations out;
  out.f32_stride = x.f32_stride;
  out.f32 = part(x.f32, x.f32_stride / 4);
  out.q8_stride = x.q8_stride;
  out.q8 = part(x.q8, x.q8_stride);
  out.q8k_stride = x.q8k_stride;
  out.q8k = part(x.q8k, x.q8k_stride);
  return out;
}

// y (n x rows, stride rows + 2 floats) from `table`'s matmul on rows [r0, r1).
std::vector<float> run_matmul(const Kernels& table, GgmlType type, const Weights& w,
                              const Activations& x, int n, int rows, int k, int r0, int r1) {
  const size_t ldy = static_cast<size_t>(rows) + 2;
  std::vector<float> y(ldy * static_cast<size_t>(n), -12345.0f);
  MatmulArgs args{};
  args.w = w.bytes.data();
  args.w_stride = w.stride;
  switch (matmul_input(type)) {
    case MatmulInput::kF32:
      args.x = x.f32.data();
      args.x_stride = x.f32_stride;
      break;
    case MatmulInput::kQ8:
      args.x = x.q8.data();
      args.x_stride = x.q8_stride;
      break;
    case MatmulInput::kQ8K:
      args.x = x.q8k.data();
      args.x_stride = x.q8k_stride;
      break;
  }
  args.y = y.data();
  args.y_stride = 4 * ldy;
  args.n = n;
  args.k = k;
  matmul_for(table, type)(args, r0, r1);
  return y;
}

// sum_j |w_j x_j| for the tolerance.
double abs_dot(const Weights& w, const Activations& x, int i, int r, int k) {
  double s = 0;
  const float* xr = x.f32.data() + (x.f32_stride / 4) * static_cast<size_t>(i);
  for (int j = 0; j < k; ++j)
    s += std::fabs(
        w.values[static_cast<size_t>(r) * static_cast<size_t>(k) + static_cast<size_t>(j)] * xr[j]);
  return s;
}

const GgmlType kTypes[] = {GgmlType::kF32,  GgmlType::kF16,  GgmlType::kBF16, GgmlType::kQ8_0,
                           GgmlType::kQ4_0, GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1,
                           GgmlType::kQ2_K, GgmlType::kQ3_K, GgmlType::kQ4_K, GgmlType::kQ5_K,
                           GgmlType::kQ6_K};

bool quantized(GgmlType type) { return matmul_input(type) != MatmulInput::kF32; }

std::string type_name(GgmlType type) { return std::string(ggml_type_name(type)); }

std::vector<int> ks_for(GgmlType type) {
  switch (matmul_input(type)) {
    case MatmulInput::kQ8:
      return {32, 64, 96, 288, 544, 2048, 2592};
    case MatmulInput::kQ8K:
      return {256, 512, 768, 2048, 2816};
    default:
      return {1, 7, 8, 17, 33, 100, 288};
  }
}
// A k every type of the test takes, for tests that use one.
int common_k(GgmlType type) { return matmul_input(type) == MatmulInput::kQ8K ? 768 : 544; }

// The test data (quantizing the weights dominates) is made once per shape for all
// tables: the ARM tests run this under qemu.
TEST(Kernels, EverySimdMatmulMatchesScalarOnOddShapes) {
  std::mt19937 rng(42);
  const std::vector<const Kernels*> tables = simd_tables();
  if (tables.empty()) GTEST_SKIP() << "no SIMD table on this CPU";
  for (GgmlType type : kTypes) {
    const double tol = quantized(type) ? 2e-6 : 1e-5;
    for (int k : ks_for(type)) {
      for (int n : {1, 2, 3, 4, 5, 7, 9}) {
        for (int rows : {1, 3, 4, 5, 7, 13, 16, 33}) {
          Weights w = make_weights(rng, type, rows, k);
          Activations x = make_activations(rng, ref(), n, k);
          std::vector<float> want = run_matmul(ref(), type, w, x, n, rows, k, 0, rows);
          for (const Kernels* simd : tables) {
            SCOPED_TRACE(std::string(simd->name) + " type " + type_name(type) + " k " +
                         std::to_string(k) + " n " + std::to_string(n) + " rows " +
                         std::to_string(rows));
            std::vector<float> got = run_matmul(*simd, type, w, x, n, rows, k, 0, rows);
            const size_t ldy = static_cast<size_t>(rows) + 2;
            for (int i = 0; i < n; ++i) {
              for (int r = 0; r < rows; ++r) {
                const size_t at = static_cast<size_t>(i) * ldy + static_cast<size_t>(r);
                ASSERT_NEAR(got[at], want[at], tol * abs_dot(w, x, i, r, k) + 1e-30)
                    << "i " << i << " r " << r;
              }
              // Columns past `rows` (the y stride padding) are untouched.
              ASSERT_EQ(got[static_cast<size_t>(i) * ldy + static_cast<size_t>(rows)], -12345.0f);
            }
          }
        }
      }
    }
  }
}

TEST(Kernels, RowRangesWriteOnlyTheirColumnsAndResultsDoNotDependOnTheBatch) {
  std::mt19937 rng(7);
  std::vector<const Kernels*> tables = simd_tables();
  tables.push_back(&ref());
  for (const Kernels* t : tables) {
    for (GgmlType type : kTypes) {
      const int k = common_k(type), rows = 11, n = 9;
      SCOPED_TRACE(std::string(t->name) + " type " + type_name(type));
      Weights w = make_weights(rng, type, rows, k);
      Activations x = make_activations(rng, *t, n, k);
      std::vector<float> full = run_matmul(*t, type, w, x, n, rows, k, 0, rows);
      std::vector<float> part = run_matmul(*t, type, w, x, n, rows, k, 2, 7);
      const size_t ldy = static_cast<size_t>(rows) + 2;
      for (int i = 0; i < n; ++i) {
        for (int r = 0; r < rows; ++r) {
          const size_t at = static_cast<size_t>(i) * ldy + static_cast<size_t>(r);
          if (r >= 2 && r < 7) {
            ASSERT_EQ(part[at], full[at]);
          } else {
            ASSERT_EQ(part[at], -12345.0f);
          }
        }
      }
      // Each activation row alone gives bit-identical results to the batch.
      for (int i = 0; i < n; ++i) {
        const Activations one = slice(x, i, 1);
        std::vector<float> alone = run_matmul(*t, type, w, one, 1, rows, k, 0, rows);
        for (int r = 0; r < rows; ++r) {
          ASSERT_EQ(alone[static_cast<size_t>(r)],
                    full[static_cast<size_t>(i) * ldy + static_cast<size_t>(r)])
              << "i " << i << " r " << r;
        }
      }
    }
  }
}

// Lengths with partial 16- and 64-element groups (float weights) and several blocks
// (quantized): prefill tiles, leftover rows and single rows all compute each dot
// product the same way.
std::vector<int> odd_ks_for(GgmlType type) {
  switch (matmul_input(type)) {
    case MatmulInput::kQ8:
      return {96, 544};
    case MatmulInput::kQ8K:
      return {256, 768};
    default:
      return {17, 100, 551, 1040};
  }
}

TEST(Kernels, MatmulResultsDoNotDependOnTheBatchOnOddLengths) {
  std::mt19937 rng(11);
  std::vector<const Kernels*> tables = simd_tables();
  tables.push_back(&ref());
  for (const Kernels* t : tables) {
    for (GgmlType type : kTypes) {
      for (int k : odd_ks_for(type)) {
        const int rows = 9, n = 11;
        SCOPED_TRACE(std::string(t->name) + " type " + type_name(type) + " k " + std::to_string(k));
        Weights w = make_weights(rng, type, rows, k);
        Activations x = make_activations(rng, *t, n, k);
        const std::vector<float> full = run_matmul(*t, type, w, x, n, rows, k, 0, rows);
        const size_t ldy = static_cast<size_t>(rows) + 2;
        for (int first = 0; first < n; first += 3) {
          for (int m : {1, 2, 3, 4, 5, 6}) {
            if (first + m > n) continue;
            const Activations some = slice(x, first, m);
            const std::vector<float> part = run_matmul(*t, type, w, some, m, rows, k, 0, rows);
            for (int i = 0; i < m; ++i)
              for (int r = 0; r < rows; ++r)
                ASSERT_EQ(part[static_cast<size_t>(i) * ldy + static_cast<size_t>(r)],
                          full[static_cast<size_t>(first + i) * ldy + static_cast<size_t>(r)])
                    << "rows " << first << ".." << first + m << " i " << i << " r " << r;
          }
        }
      }
    }
  }
}

// The activation row dequantized by hand from its documented layout (q8_row_bytes,
// q8k_row_bytes), checking its sums on the way.
std::vector<float> dequantize_activation(const Activations& x, MatmulInput input, int i, int k) {
  std::vector<float> out(static_cast<size_t>(k));
  const bool q8k = input == MatmulInput::kQ8K;
  const uint8_t* row = q8k ? x.q8k.data() + x.q8k_stride * static_cast<size_t>(i)
                           : x.q8.data() + x.q8_stride * static_cast<size_t>(i);
  const auto* q = reinterpret_cast<const int8_t*>(row);
  const auto* d = reinterpret_cast<const float*>(row + k);
  const int per_scale = q8k ? 256 : 32, per_sum = q8k ? 16 : 32;
  for (int j = 0; j < k; ++j) {
    out[static_cast<size_t>(j)] = d[j / per_scale] * static_cast<float>(q[j]);
  }
  const uint8_t* sums = row + k + 4 * (k / per_scale);
  for (int g = 0; g < k / per_sum; ++g) {
    int s = 0;
    for (int j = 0; j < per_sum; ++j) s += q[g * per_sum + j];
    int32_t stored = 0;
    if (q8k) {
      int16_t v;
      std::memcpy(&v, sums + 2 * g, 2);
      stored = v;
    } else {
      std::memcpy(&stored, sums + 4 * g, 4);
    }
    EXPECT_EQ(s, stored) << "group " << g;
  }
  if (!q8k) {
    // Min sums: ggml's Q8_1 s, the sum times max|x| / 127 rounded to half precision.
    const float* xf = x.f32.data() + x.f32_stride / 4 * static_cast<size_t>(i);
    const auto* min_sums = reinterpret_cast<const float*>(row + k + 8 * (k / 32));
    for (int g = 0; g < k / 32; ++g) {
      float amax = 0;
      int s = 0;
      for (int j = 0; j < 32; ++j) {
        amax = std::max(amax, std::fabs(xf[g * 32 + j]));
        s += q[g * 32 + j];
      }
      EXPECT_EQ(min_sums[g], fp16_to_f32(f32_to_fp16(amax / 127.0f * static_cast<float>(s))))
          << "group " << g;
    }
  }
  return out;
}

// Weights repacked at load give exactly the unpacked results, on every range that
// starts at a tile boundary, whatever n; a short last tile stores only its rows.
TEST(Kernels, PackedWeightsGiveBitIdenticalMatmuls) {
  std::mt19937 rng(5);
  int tested = 0;
  std::vector<const Kernels*> tables = simd_tables();
  tables.push_back(&ref());
  for (const Kernels* t : tables) {
    if (t->packed_tile_bytes == nullptr) continue;
    for (GgmlType type : kTypes) {
      const std::vector<int> ks = matmul_input(type) == MatmulInput::kQ8K
                                      ? std::vector<int>{256, 768, 2048}
                                      : std::vector<int>{32, 96, 2080};
      for (int k : ks) {
        const size_t tile = t->packed_tile_bytes(type, k);
        if (tile == 0) continue;
        for (int rows : {1, 16, 17, 40}) {
          SCOPED_TRACE(std::string(t->name) + " type " + type_name(type) + " k " +
                       std::to_string(k) + " rows " + std::to_string(rows));
          Weights w = make_weights(rng, type, rows, k);
          const int tiles = (rows + kMatmulRowMultiple - 1) / kMatmulRowMultiple;
          std::vector<uint8_t> packed(tile * static_cast<size_t>(tiles) + 64, 0xcd);
          // Two calls on disjoint tile ranges, as threads would.
          const int split = rows > kMatmulRowMultiple ? kMatmulRowMultiple : rows;
          t->pack_tiles(type, w.bytes.data(), w.stride, rows, k, 0, split, packed.data());
          t->pack_tiles(type, w.bytes.data(), w.stride, rows, k, split, rows, packed.data());
          Weights pw = w;
          pw.bytes = packed;
          pw.stride = tile;
          for (int n : {1, 2, 5, 9}) {
            Activations x = make_activations(rng, *t, n, k);
            for (int r0 : {0, split}) {
              if (r0 >= rows) continue;
              std::vector<float> want = run_matmul(*t, type, w, x, n, rows, k, r0, rows);
              const size_t ldy = static_cast<size_t>(rows) + 2;
              std::vector<float> got(ldy * static_cast<size_t>(n), -12345.0f);
              MatmulArgs args{};
              args.w = pw.bytes.data();
              args.w_stride = pw.stride;
              const bool q8k = matmul_input(type) == MatmulInput::kQ8K;
              args.x = q8k ? x.q8k.data() : x.q8.data();
              args.x_stride = q8k ? x.q8k_stride : x.q8_stride;
              args.y = got.data();
              args.y_stride = 4 * ldy;
              args.n = n;
              args.k = k;
              t->packed_matmul(type)(args, r0, rows);
              ASSERT_EQ(got, want) << "n " << n << " r0 " << r0;
              ++tested;
            }
          }
        }
      }
    }
  }
  if (tested == 0) GTEST_SKIP() << "no kernel table here packs weights";
}

TEST(Kernels, ScalarQuantizedMatmulEqualsDequantizedProduct) {
  std::mt19937 rng(3);
  const int k = 512, rows = 5, n = 3;
  for (GgmlType type : kTypes) {
    if (!quantized(type)) continue;
    SCOPED_TRACE(type_name(type));
    Weights w = make_weights(rng, type, rows, k);
    Activations x = make_activations(rng, ref(), n, k);
    std::vector<float> y = run_matmul(ref(), type, w, x, n, rows, k, 0, rows);
    // Q4_1 and Q5_1 take their blocks' min times the row's min sum (ggml's Q8_1 s,
    // rounded to half precision) in place of the min times the dequantized values.
    const bool has_min = type == GgmlType::kQ4_1 || type == GgmlType::kQ5_1;
    const size_t block_bytes = ggml_type_info(type).bytes_per_block;
    for (int i = 0; i < n; ++i) {
      const std::vector<float> xd = dequantize_activation(x, matmul_input(type), i, k);
      const auto* min_sums = reinterpret_cast<const float*>(
          x.q8.data() + x.q8_stride * static_cast<size_t>(i) + k + 8 * (k / 32));
      for (int r = 0; r < rows; ++r) {
        double want = 0, mag = 0;
        for (int j = 0; j < k; ++j) {
          double weight = w.values[static_cast<size_t>(r * k + j)];
          if (has_min) {
            uint16_t m;  // after d in both layouts
            std::memcpy(&m,
                        w.bytes.data() + w.stride * static_cast<size_t>(r) +
                            block_bytes * static_cast<size_t>(j / 32) + 2,
                        2);
            weight -= fp16_to_f32(m);
            if (j % 32 == 0) want += static_cast<double>(fp16_to_f32(m)) * min_sums[j / 32];
          }
          const double p = weight * xd[static_cast<size_t>(j)];
          want += p;
          mag += std::fabs(static_cast<double>(w.values[static_cast<size_t>(r * k + j)]) *
                           xd[static_cast<size_t>(j)]);
        }
        EXPECT_NEAR(y[static_cast<size_t>(i) * (rows + 2) + static_cast<size_t>(r)], want,
                    1e-6 * mag);
      }
    }
  }
}

TEST(Kernels, SimdQuantizeQ8IsBitIdenticalToScalar) {
  std::mt19937 rng(11);
  for (const Kernels* simd : simd_tables()) {
    for (int k : {32, 64, 288, 5632}) {
      std::vector<float> x = random_floats(rng, static_cast<size_t>(k), 3.0f);
      x[5] = 0.5f;  // ties are rounded to nearest even by both
      std::fill(x.begin(), x.begin() + 32 < x.end() ? x.begin() + 32 : x.end(),
                0.0f);  // an all-zero block
      std::vector<uint8_t> a(q8_row_bytes(k), 0), b(q8_row_bytes(k), 0);
      ref().quantize_q8(x.data(), a.data(), k);
      simd->quantize_q8(x.data(), b.data(), k);
      EXPECT_EQ(a, b) << simd->name << " k " << k;
    }
  }
}

// Q8K rows: the first value of largest magnitude decides the scale's sign (both signs
// of that magnitude occur, in either order), ties round to even, and an all-zero
// super-block has scale 0.
TEST(Kernels, SimdQuantizeQ8kIsBitIdenticalToScalar) {
  std::mt19937 rng(12);
  for (const Kernels* simd : simd_tables()) {
    for (int k : {256, 512, 2816}) {
      std::vector<float> x = random_floats(rng, static_cast<size_t>(k), 3.0f);
      std::fill(x.begin(), x.begin() + 256, 0.0f);
      if (k >= 768) {
        x[300] = 127.0f;  // iscale -1: the halves below are exact ties
        x[301] = -127.0f;
        x[302] = 0.5f;
        x[303] = 1.5f;
        x[600] = -127.0f;  // iscale 1
        x[601] = 2.5f;
        x[700] = 127.0f;
      }
      std::vector<uint8_t> a(q8k_row_bytes(k), 0), b(q8k_row_bytes(k), 0);
      ref().quantize_q8k(x.data(), a.data(), k);
      simd->quantize_q8k(x.data(), b.data(), k);
      EXPECT_EQ(a, b) << simd->name << " k " << k;
    }
  }
}

TEST(Kernels, QuantizeRowFollowsGgmlBlockLayouts) {
  // Q4_0: the element of largest magnitude (-4) maps to nibble 0, d = -4 / -8 = 0.5;
  // element j in the low nibble of qs[j], element j + 16 in the high nibble.
  std::vector<float> x(32, 0.0f);
  x[0] = -4.0f;
  x[1] = 1.0f;
  x[16] = 3.5f;
  BlockQ4_0 q4;
  ASSERT_TRUE(quantize_row(GgmlType::kQ4_0, x.data(), &q4, 32));
  EXPECT_EQ(fp16_to_f32(q4.d), 0.5f);
  EXPECT_EQ(q4.qs[0], (0) | (15 << 4));  // -4 -> 0; 3.5 -> 7 + 8 = 15
  EXPECT_EQ(q4.qs[1] & 0x0f, 10);        // 1.0 / 0.5 + 8
  std::vector<float> back(32);
  ASSERT_TRUE(dequantize_row(GgmlType::kQ4_0, &q4, back.data(), 32));
  EXPECT_EQ(back[0], -4.0f);
  EXPECT_EQ(back[1], 1.0f);
  EXPECT_EQ(back[16], 3.5f);
  // Q8_0: d = amax / 127.
  x[0] = -127.0f;
  BlockQ8_0 q8;
  ASSERT_TRUE(quantize_row(GgmlType::kQ8_0, x.data(), &q8, 32));
  EXPECT_EQ(fp16_to_f32(q8.d), 1.0f);
  EXPECT_EQ(q8.qs[0], -127);
  EXPECT_EQ(q8.qs[16], 4);  // 3.5 rounds away from zero, as ggml's roundf
  EXPECT_FALSE(quantize_row(GgmlType::kIQ2_XXS, x.data(), &q8, 32));
}

TEST(Kernels, HalfConversionsAreExactAndMatchF16cAndFcvt) {
  const Kernels* simd = by_name("avx2");
  if (simd == nullptr) simd = by_name("neon");
  if (simd == nullptr) GTEST_SKIP() << "no F16C or NEON on this CPU";
  std::vector<uint16_t> all(65536);
  for (int i = 0; i < 65536; ++i) all[static_cast<size_t>(i)] = static_cast<uint16_t>(i);
  std::vector<float> hw(65536);
  simd->f16_to_f32(all.data(), hw.data(), 65536);
  for (int i = 0; i < 65536; ++i) {
    const float sw = fp16_to_f32(static_cast<uint16_t>(i));
    if (std::isnan(sw)) {
      ASSERT_TRUE(std::isnan(hw[static_cast<size_t>(i)]));
    } else {
      ASSERT_EQ(std::memcmp(&sw, &hw[static_cast<size_t>(i)], 4), 0) << i;
      ASSERT_EQ(f32_to_fp16(sw), i) << i;  // round trip
    }
  }
  std::mt19937 rng(5);
  std::vector<float> f(1 << 20);
  for (float& v : f) {
    uint32_t bits = rng();
    std::memcpy(&v, &bits, 4);
  }
  // Also every float near the half range's edges and rounding ties.
  for (uint32_t bits = 0x33000000; bits < 0x33000000 + 4096; ++bits)
    std::memcpy(&f[bits - 0x33000000], &bits, 4);
  for (uint32_t bits = 0x477fe000; bits < 0x477fe000 + 8192; ++bits)
    std::memcpy(&f[bits - 0x477fe000 + 4096], &bits, 4);
  std::vector<uint16_t> h(f.size());
  simd->f32_to_f16(f.data(), h.data(), static_cast<int>(f.size()));
  for (size_t i = 0; i < f.size(); ++i) {
    if (std::isnan(f[i])) continue;
    ASSERT_EQ(f32_to_fp16(f[i]), h[i]) << f[i];
  }
  // round_f16 in one pass, against the scalar table's, bit for bit (tails included).
  for (int n : {1, 7, 9, static_cast<int>(f.size())}) {
    std::vector<float> r1(static_cast<size_t>(n)), r2(static_cast<size_t>(n));
    by_level(Level::kScalar)->round_f16(f.data(), r1.data(), n);
    simd->round_f16(f.data(), r2.data(), n);
    for (size_t i = 0; i < r1.size(); ++i) {
      if (std::isnan(f[i])) continue;
      ASSERT_EQ(std::memcmp(&r1[i], &r2[i], 4), 0) << f[i];
      ASSERT_EQ(r1[i], fp16_to_f32(f32_to_fp16(f[i]))) << f[i];
    }
  }
}

TEST(Kernels, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  uint32_t bits = 0x3f808000;  // exactly halfway between 0x3f80 and 0x3f81: to even
  float f;
  std::memcpy(&f, &bits, 4);
  EXPECT_EQ(f32_to_bf16(f), 0x3f80);
  bits = 0x3f818000;  // halfway, odd below: rounds up
  std::memcpy(&f, &bits, 4);
  EXPECT_EQ(f32_to_bf16(f), 0x3f82);
  EXPECT_EQ(bf16_to_f32(0x4049), 3.140625f);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::nanf("")))));
}

// |got - want| <= rel * (|want| + floor); floor ~ the inputs' magnitude where a result
// can cancel to near zero (sums of products of values around 1).
void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rel,
                  const std::string& what, double floor = 1e-3) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], rel * (std::fabs(want[i]) + floor)) << what << " at " << i;
  }
}

TEST(Kernels, EverySimdSmallOpMatchesScalar) {
  std::mt19937 rng(9);
  for (const Kernels* simd : simd_tables()) {
    for (int n : {1, 5, 8, 16, 17, 63, 64, 100, 2048}) {
      const std::string tag = std::string(simd->name) + " n " + std::to_string(n);
      std::vector<float> a = random_floats(rng, static_cast<size_t>(n), 4.0f);
      std::vector<float> b = random_floats(rng, static_cast<size_t>(n));
      std::vector<float> w = random_floats(rng, static_cast<size_t>(n));
      std::vector<float> y1(static_cast<size_t>(n)), y2(static_cast<size_t>(n));

      ref().rmsnorm(a.data(), w.data(), y1.data(), n, 1e-5f);
      simd->rmsnorm(a.data(), w.data(), y2.data(), n, 1e-5f);
      expect_close(y2, y1, 1e-5, "rmsnorm " + tag);
      ref().rmsnorm(a.data(), nullptr, y1.data(), n, 1e-6f);
      simd->rmsnorm(a.data(), nullptr, y2.data(), n, 1e-6f);
      expect_close(y2, y1, 1e-5, "rmsnorm no weight " + tag);

      std::vector<float> lb = random_floats(rng, static_cast<size_t>(n));
      std::vector<float> shifted = a;
      for (float& v : shifted) v += 3.0f;  // a mean far from 0
      ref().layer_norm(shifted.data(), w.data(), lb.data(), y1.data(), n, 1e-12f);
      simd->layer_norm(shifted.data(), w.data(), lb.data(), y2.data(), n, 1e-12f);
      expect_close(y2, y1, 1e-5, "layer_norm " + tag);
      y2 = shifted;  // in place
      simd->layer_norm(y2.data(), w.data(), lb.data(), y2.data(), n, 1e-12f);
      expect_close(y2, y1, 1e-5, "layer_norm in place " + tag);

      y1 = a;
      y2 = a;
      y1[0] = 50.0f;  // a large logit: exp of very negative differences
      y2[0] = 50.0f;
      ref().softmax(y1.data(), n);
      simd->softmax(y2.data(), n);
      expect_close(y2, y1, 1e-5, "softmax " + tag);

      ref().silu_mul(a.data(), b.data(), y1.data(), n);
      simd->silu_mul(a.data(), b.data(), y2.data(), n);
      expect_close(y2, y1, 1e-5, "silu_mul " + tag);

      ref().add(a.data(), b.data(), y1.data(), n);
      simd->add(a.data(), b.data(), y2.data(), n);
      expect_close(y2, y1, 0, "add " + tag);

      y1 = a;
      y2 = a;
      ref().scale(y1.data(), 0.125f, n);
      simd->scale(y2.data(), 0.125f, n);
      expect_close(y2, y1, 0, "scale " + tag);

      std::vector<uint16_t> h(static_cast<size_t>(n));
      ref().f32_to_f16(b.data(), h.data(), n);
      double mag = 0;
      for (int i = 0; i < n; ++i)
        mag += std::fabs(a[static_cast<size_t>(i)] * b[static_cast<size_t>(i)]);
      EXPECT_NEAR(simd->dot_f32(a.data(), b.data(), n), ref().dot_f32(a.data(), b.data(), n),
                  1e-6 * mag)
          << tag;
      EXPECT_NEAR(simd->dot_f16(h.data(), a.data(), n), ref().dot_f16(h.data(), a.data(), n),
                  1e-6 * mag)
          << tag;

      y1 = w;
      y2 = w;
      ref().axpy_f32(0.7f, a.data(), y1.data(), n);
      simd->axpy_f32(0.7f, a.data(), y2.data(), n);
      expect_close(y2, y1, 1e-6, "axpy_f32 " + tag, 1.0);
      y1 = w;
      y2 = w;
      ref().axpy_f16(-0.3f, h.data(), y1.data(), n);
      simd->axpy_f16(-0.3f, h.data(), y2.data(), n);
      expect_close(y2, y1, 1e-6, "axpy_f16 " + tag, 1.0);

      std::vector<float> back1(static_cast<size_t>(n)), back2(static_cast<size_t>(n));
      ref().f16_to_f32(h.data(), back1.data(), n);
      simd->f16_to_f32(h.data(), back2.data(), n);
      expect_close(back2, back1, 0, "f16_to_f32 " + tag);
    }
  }
}

// k-major F16 and F32 tiles: packed in ranges, every table with the kernel gives the
// scalar reference's bits whatever the row range and n, leaves rows outside its range
// alone, and agrees with matmul_f16 / matmul_f32 on the same weights up to summation
// order.
TEST(Kernels, KmajorMatchesScalarBitForBit) {
  std::mt19937 rng(23);
  std::vector<const Kernels*> tables = simd_tables();
  tables.push_back(&ref());
  for (bool f16 : {true, false}) {
    for (int k : {1, 7, 16, 33, 384}) {
      for (int rows : {1, 15, 16, 17, 50}) {
        const size_t stride = static_cast<size_t>(k) * (f16 ? 2 : 4) + 8;
        std::vector<uint8_t> w(stride * static_cast<size_t>(rows));
        std::vector<float> wf = random_floats(rng, static_cast<size_t>(rows) * k);
        for (int r = 0; r < rows; ++r) {
          for (int j = 0; j < k; ++j) {
            float& v = wf[static_cast<size_t>(r) * k + j];
            uint8_t* dst = &w[static_cast<size_t>(r) * stride];
            if (f16) {
              const uint16_t h = f32_to_fp16(v);
              v = fp16_to_f32(h);
              std::memcpy(dst + 2 * static_cast<size_t>(j), &h, 2);
            } else {
              std::memcpy(dst + 4 * static_cast<size_t>(j), &v, 4);
            }
          }
        }
        const int tiles = (rows + 15) / 16;
        const size_t tile_bytes = f16 ? f16_kmajor_tile_bytes(k) : f32_kmajor_tile_bytes(k);
        std::vector<float> packed(tile_bytes * static_cast<size_t>(tiles) / 4, -3.0f);
        for (auto [r0, r1] : {std::pair{0, std::min(rows, 16)}, std::pair{16, rows}}) {
          if (r0 >= r1) continue;
          if (f16) {
            pack_f16_kmajor(w.data(), stride, rows, k, r0, r1, packed.data());
          } else {
            pack_f32_kmajor(reinterpret_cast<const float*>(w.data()), stride, rows, k, r0, r1,
                            packed.data());
          }
        }
        for (int n : {1, 3, 8, 9, 13, 17}) {
          const std::string tag = std::string(f16 ? "f16" : "f32") + " k " + std::to_string(k) +
                                  " rows " + std::to_string(rows) + " n " + std::to_string(n);
          std::vector<float> x = random_floats(rng, static_cast<size_t>(n) * k);
          const size_t y_stride = (static_cast<size_t>(rows) + 3) * sizeof(float);
          std::vector<float> want(static_cast<size_t>(n) * (rows + 3), -7.0f);
          MatmulArgs a{packed.data(), tile_bytes, x.data(), static_cast<size_t>(k) * 4,
                       want.data(), y_stride, n, k};
          (f16 ? ref().matmul_f16_kmajor : ref().matmul_f32_kmajor)(a, 0, rows);
          // Against the row-major product, up to summation order.
          std::vector<float> plain(want.size(), -7.0f);
          MatmulArgs b{w.data(), stride, x.data(), static_cast<size_t>(k) * 4, plain.data(), y_stride, n, k};
          (f16 ? ref().matmul_f16 : ref().matmul_f32)(b, 0, rows);
          for (int i = 0; i < n; ++i) {
            for (int r = 0; r < rows; ++r) {
              double mag = 0;
              for (int j = 0; j < k; ++j) {
                mag += std::fabs(static_cast<double>(wf[static_cast<size_t>(r) * k + j]) *
                                 x[static_cast<size_t>(i) * k + j]);
              }
              const size_t at = static_cast<size_t>(i) * (rows + 3) + static_cast<size_t>(r);
              ASSERT_NEAR(want[at], plain[at], 1e-5 * mag + 1e-30) << tag;
            }
          }
          for (const Kernels* t : tables) {
            const MatmulFn fn = f16 ? t->matmul_f16_kmajor : t->matmul_f32_kmajor;
            if (fn == nullptr) continue;
            std::vector<float> got(want.size(), -7.0f);
            a.y = got.data();
            // Two ranges split at a tile boundary, as the pool splits them.
            const int mid = rows > 16 ? 16 : rows;
            fn(a, 0, mid);
            if (mid < rows) fn(a, mid, rows);
            ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
                << t->name << " " << tag;
          }
        }
      }
    }
  }
}

// The GELU lookup indexes by F16 bits, so SIMD and scalar must agree bit for bit:
// every F16 value, values around the +-10 clamps and rounding ties, random floats,
// every tail length.
TEST(Kernels, EverySimdGeluTableMatchesScalarBitForBit) {
  std::vector<float> table(65536);
  for (size_t i = 0; i < table.size(); ++i) table[i] = static_cast<float>(i) * 0.5f - 7.0f;
  std::vector<float> x;
  for (uint32_t h = 0; h < 65536; ++h) x.push_back(fp16_to_f32(static_cast<uint16_t>(h)));
  for (float edge : {-10.0f, 10.0f, 0.0f, 1.0f, 65504.0f}) {
    uint32_t bits;
    std::memcpy(&bits, &edge, 4);
    for (int d = -4096; d <= 4096; ++d) {
      const uint32_t b = bits + static_cast<uint32_t>(d);
      float f;
      std::memcpy(&f, &b, 4);
      x.push_back(f);
      x.push_back(-f);
    }
  }
  std::mt19937 rng(21);
  for (float v : random_floats(rng, 1 << 16, 6.0f)) x.push_back(v);
  x.push_back(std::nanf(""));
  for (const Kernels* simd : simd_tables()) {
    for (int n : {1, 7, 8, 9, 15, 16, 17, static_cast<int>(x.size())}) {
      std::vector<float> y1(x.begin(), x.begin() + n), y2 = y1;
      ref().gelu_f16_table(table.data(), y1.data(), n);
      simd->gelu_f16_table(table.data(), y2.data(), n);
      for (int i = 0; i < n; ++i) {
        if (std::isnan(y1[static_cast<size_t>(i)])) {
          ASSERT_TRUE(std::isnan(y2[static_cast<size_t>(i)])) << simd->name << " at " << i;
          continue;
        }
        ASSERT_EQ(std::memcmp(&y1[static_cast<size_t>(i)], &y2[static_cast<size_t>(i)], 4), 0)
            << simd->name << " n " << n << " x " << x[static_cast<size_t>(i)];
      }
    }
  }
  // The reference's clamps.
  std::vector<float> c = {-10.0f, -11.0f, 10.0f, 12.5f, 1.0f};
  ref().gelu_f16_table(table.data(), c.data(), static_cast<int>(c.size()));
  EXPECT_EQ(c[0], 0.0f);
  EXPECT_EQ(c[1], 0.0f);
  EXPECT_EQ(c[2], 10.0f);
  EXPECT_EQ(c[3], 12.5f);
  EXPECT_EQ(c[4], table[f32_to_fp16(1.0f)]);
}

TEST(Kernels, EverySimdAttentionHelperMatchesScalar) {
  std::mt19937 rng(13);
  for (const Kernels* simd : simd_tables()) {
    for (int d : {1, 8, 33, 64, 128}) {
      for (int rows : {1, 3, 4, 7, 17}) {
        const std::string tag =
            std::string(simd->name) + " d " + std::to_string(d) + " rows " + std::to_string(rows);
        const size_t stride = 2 * static_cast<size_t>(d) + 10;  // bytes, padded
        std::vector<uint16_t> kv(stride / 2 * static_cast<size_t>(rows));
        std::vector<float> src = random_floats(rng, kv.size());
        ref().f32_to_f16(src.data(), kv.data(), static_cast<int>(kv.size()));
        std::vector<float> q = random_floats(rng, static_cast<size_t>(d));
        std::vector<float> s1(static_cast<size_t>(rows)), s2(static_cast<size_t>(rows));
        ref().dot_f16_rows(q.data(), kv.data(), stride, rows, d, 0.125f, s1.data());
        simd->dot_f16_rows(q.data(), kv.data(), stride, rows, d, 0.125f, s2.data());
        expect_close(s2, s1, 1e-5, "dot_f16_rows " + tag, 1.0);
        std::vector<float> p = random_floats(rng, static_cast<size_t>(rows));
        std::vector<float> y1 = random_floats(rng, static_cast<size_t>(d)), y2 = y1;
        ref().axpy_f16_rows(p.data(), kv.data(), stride, rows, d, y1.data());
        simd->axpy_f16_rows(p.data(), kv.data(), stride, rows, d, y2.data());
        expect_close(y2, y1, 1e-5, "axpy_f16_rows " + tag, 1.0);
      }
    }
  }
}

TEST(Kernels, RopeRotatesNormalAndNeoxPairs) {
  const int head_dim = 8, rot_dim = 8;
  std::vector<float> cos(rot_dim / 2), sin(rot_dim / 2);
  rope_angles(3, rot_dim, 10000.0f, 1.0f, cos.data(), sin.data());
  EXPECT_FLOAT_EQ(cos[0], std::cos(3.0f));
  EXPECT_FLOAT_EQ(sin[1], std::sin(3.0f * std::pow(10000.0f, -2.0f / 8)));
  for (const Kernels* t : {&ref()}) {
    std::vector<float> x = {1, 0, 0, 0, 0, 0, 0, 0};
    t->rope(x.data(), 1, head_dim, rot_dim, cos.data(), sin.data(), RopeStyle::kNormal);
    EXPECT_FLOAT_EQ(x[0], cos[0]);
    EXPECT_FLOAT_EQ(x[1], sin[0]);  // pair (0, 1)
    x = {1, 0, 0, 0, 0, 0, 0, 0};
    t->rope(x.data(), 1, head_dim, rot_dim, cos.data(), sin.data(), RopeStyle::kNeox);
    EXPECT_FLOAT_EQ(x[0], cos[0]);
    EXPECT_FLOAT_EQ(x[4], sin[0]);  // pair (0, 4)
    EXPECT_EQ(x[1], 0.0f);
  }
  // Partial rotation leaves the tail of each head alone; SIMD tables agree.
  std::mt19937 rng(17);
  std::vector<float> c2(16), s2(16);
  rope_angles(77, 32, 500000.0f, 0.5f, c2.data(), s2.data());
  for (const Kernels* simd : simd_tables()) {
    for (RopeStyle style : {RopeStyle::kNormal, RopeStyle::kNeox}) {
      std::vector<float> x = random_floats(rng, 3 * 40), y = x, orig = x;
      ref().rope(x.data(), 3, 40, 32, c2.data(), s2.data(), style);
      simd->rope(y.data(), 3, 40, 32, c2.data(), s2.data(), style);
      // Outputs are differences of products of values around 1 and can cancel: the
      // floor is the inputs' magnitude (SIMD may fuse a product the reference rounds).
      expect_close(y, x, 1e-6, std::string("rope ") + simd->name, 1.0);
      for (int h = 0; h < 3; ++h) {
        for (int j = 32; j < 40; ++j)
          EXPECT_EQ(x[static_cast<size_t>(h * 40 + j)], orig[static_cast<size_t>(h * 40 + j)]);
      }
    }
  }
}

// Runs before DispatchPicksTheBestSupportedTableAndCanBeForced, which calls force():
// INFERA_KERNELS decides the table only until then. INFERA_TEST_EXPECT_KERNELS is set by
// test runs that know the CPU (the ARM runs under qemu pick the emulated CPU model).
TEST(Kernels, DetectionAndOverrideChooseTheExpectedTable) {
  const char* forced = std::getenv("INFERA_KERNELS");
  if (forced != nullptr && *forced != '\0') {
    ASSERT_NE(by_name(forced), nullptr) << "INFERA_KERNELS=" << forced << " is not runnable here";
    EXPECT_STREQ(active().name, forced);
  }
  const char* want = std::getenv("INFERA_TEST_EXPECT_KERNELS");
  if (want == nullptr) GTEST_SKIP() << "INFERA_TEST_EXPECT_KERNELS not set";
  EXPECT_STREQ(by_level(detected_level())->name, want);
  if (std::string(want) == "neon") {
    EXPECT_EQ(by_name("neondot"), nullptr) << "a CPU without SDOT must not get neondot";
  }
}

#if defined(__aarch64__)
// Every AArch64 CPU has NEON, and the NEON table replaces every scalar entry it
// implements (a table silently left scalar would pass the comparisons above).
TEST(Kernels, ArmTablesUseNeonForEveryEntry) {
  const Kernels* neon = by_name("neon");
  ASSERT_NE(neon, nullptr);
  const Kernels& s = ref();
  EXPECT_TRUE(neon->matmul_f32 != s.matmul_f32);
  EXPECT_TRUE(neon->matmul_f16 != s.matmul_f16);
  EXPECT_TRUE(neon->matmul_bf16 != s.matmul_bf16);
  EXPECT_TRUE(neon->matmul_q8_0 != s.matmul_q8_0);
  EXPECT_TRUE(neon->matmul_q4_0 != s.matmul_q4_0);
  EXPECT_TRUE(neon->matmul_q4_1 != s.matmul_q4_1);
  EXPECT_TRUE(neon->matmul_q5_0 != s.matmul_q5_0);
  EXPECT_TRUE(neon->matmul_q5_1 != s.matmul_q5_1);
  EXPECT_TRUE(neon->matmul_q2_k != s.matmul_q2_k);
  EXPECT_TRUE(neon->matmul_q3_k != s.matmul_q3_k);
  EXPECT_TRUE(neon->matmul_q4_k != s.matmul_q4_k);
  EXPECT_TRUE(neon->matmul_q5_k != s.matmul_q5_k);
  EXPECT_TRUE(neon->matmul_q6_k != s.matmul_q6_k);
  EXPECT_TRUE(neon->quantize_q8 != s.quantize_q8);
  EXPECT_TRUE(neon->quantize_q8k != s.quantize_q8k);
  EXPECT_TRUE(neon->rmsnorm != s.rmsnorm);
  EXPECT_TRUE(neon->softmax != s.softmax);
  EXPECT_TRUE(neon->silu_mul != s.silu_mul);
  EXPECT_TRUE(neon->add != s.add);
  EXPECT_TRUE(neon->scale != s.scale);
  EXPECT_TRUE(neon->rope != s.rope);
  EXPECT_TRUE(neon->dot_f32 != s.dot_f32);
  EXPECT_TRUE(neon->axpy_f32 != s.axpy_f32);
  EXPECT_TRUE(neon->dot_f16 != s.dot_f16);
  EXPECT_TRUE(neon->axpy_f16 != s.axpy_f16);
  EXPECT_TRUE(neon->dot_f16_rows != s.dot_f16_rows);
  EXPECT_TRUE(neon->axpy_f16_rows != s.axpy_f16_rows);
  EXPECT_TRUE(neon->f32_to_f16 != s.f32_to_f16);
  EXPECT_TRUE(neon->f16_to_f32 != s.f16_to_f32);
  if (const Kernels* dot = by_name("neondot")) {  // SDOT for every quantized type
    for (GgmlType type : kTypes) {
      if (quantized(type)) {
        EXPECT_TRUE(matmul_for(*dot, type) != matmul_for(*neon, type)) << type_name(type);
      }
    }
  }
}
#endif

// ---- llama.cpp's summation orders (ggml_order) -------------------------------------

const GgmlType kGgmlOrderTypes[] = {GgmlType::kF16,  GgmlType::kQ8_0, GgmlType::kQ4_0,
                                    GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1,
                                    GgmlType::kQ2_K, GgmlType::kQ3_K, GgmlType::kQ4_K,
                                    GgmlType::kQ5_K, GgmlType::kQ6_K};

std::vector<std::pair<const Kernels*, bool>> ggml_order_simd_tables() {
  std::vector<std::pair<const Kernels*, bool>> out;  // table, follows the AVX-512 build
  if (const Kernels* t = by_name("avx2")) out.push_back({&ggml_order(*t), false});
  if (const Kernels* t = by_name("avx512")) out.push_back({&ggml_order(*t), true});
  return out;
}

// The scalar reference of llama.cpp's AVX-512 build (the scalar table's ggml order) or
// of its AVX2 build, whose Q2_K and F16 products take other forms.
Kernels ggml_order_reference(bool avx512_build) {
  Kernels t = ggml_order(ref());
  if (!avx512_build) {
    t.matmul_q2_k = matmul_q2_k_ggml_lanes;
    t.matmul_f16 = matmul_f16_ggml8;
  }
  return t;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// The SIMD versions give the scalar reference's floats exactly: that reference spells
// out llama.cpp's order one operation at a time. Batches of 1-3 and the fifth row of 5
// take Q4_K's gemv order, the first four of 5 and all of 8 its gemm order.
TEST(Kernels, GgmlOrderSimdProductsAreBitIdenticalToTheScalarReference) {
  const auto tables = ggml_order_simd_tables();
  if (tables.empty()) GTEST_SKIP() << "no x86 SIMD table on this CPU";
  std::mt19937 rng(21);
  for (GgmlType type : kGgmlOrderTypes) {
    std::vector<int> ks = {256, 2048, 2816};  // K-quants
    if (matmul_input(type) == MatmulInput::kQ8) ks = {256, 2048, 2592};
    if (type == GgmlType::kF16) ks = {100, 256, 2816};  // 100: F16's tails
    for (int k : ks) {
      for (int n : {1, 3, 5, 8}) {
        const int rows = 19;
        Weights w = make_weights(rng, type, rows, k);
        Activations x = make_activations(rng, ref(), n, k);
        for (const auto& [table, avx512] : tables) {
          const std::vector<float> want =
              run_matmul(ggml_order_reference(avx512), type, w, x, n, rows, k, 0, rows);
          SCOPED_TRACE(std::string(table->name) + " type " + type_name(type) + " k " +
                       std::to_string(k) + " n " + std::to_string(n));
          std::vector<float> got = run_matmul(*table, type, w, x, n, rows, k, 3, rows);
          for (int i = 0; i < n; ++i) {
            for (int r = 3; r < rows; ++r) {
              const size_t at = static_cast<size_t>(i) * (rows + 2) + static_cast<size_t>(r);
              ASSERT_TRUE(same_bits(got[at], want[at]))
                  << "i " << i << " r " << r << ": " << got[at] << " vs " << want[at];
            }
          }
        }
      }
    }
  }
  // SiLU: inputs across the range, with the slow paths of both expf variants (|x|
  // beyond 87 and beyond 133) and a tail past the last whole vector.
  std::vector<float> a = random_floats(rng, 1003, 6.0f);
  for (float big : {-90.0f, 90.0f, -130.0f, 130.0f, -140.0f, 140.0f, 88.5f, -88.5f, 0.0f, -0.0f})
    a.push_back(big);
  std::vector<float> b = random_floats(rng, a.size());
  const int n = static_cast<int>(a.size());
  for (const auto& [table, avx512] : tables) {
    std::vector<float> want(a.size()), got(a.size());
    silu_mul_ggml_lanes(a.data(), b.data(), want.data(), n, avx512 ? 16 : 8, avx512);
    table->silu_mul(a.data(), b.data(), got.data(), n);
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_TRUE(same_bits(got[i], want[i])) << table->name << " silu at " << i << " x " << a[i]
                                              << ": " << got[i] << " vs " << want[i];
    }
  }
}

// The reordered products are still the products: within float rounding of infera's
// own scalar kernels, every batch size.
TEST(Kernels, GgmlOrderProductsAgreeWithTheDefaultKernels) {
  const Kernels& scalar = ggml_order(ref());
  std::mt19937 rng(22);
  for (GgmlType type : kGgmlOrderTypes) {
    const int k = common_k(type), rows = 7;
    const double tol = type == GgmlType::kF16 ? 1e-5 : 2e-6;
    for (int n : {1, 5}) {
      Weights w = make_weights(rng, type, rows, k);
      Activations x = make_activations(rng, ref(), n, k);
      std::vector<float> want = run_matmul(ref(), type, w, x, n, rows, k, 0, rows);
      std::vector<float> got = run_matmul(scalar, type, w, x, n, rows, k, 0, rows);
      for (int i = 0; i < n; ++i) {
        for (int r = 0; r < rows; ++r) {
          const size_t at = static_cast<size_t>(i) * (rows + 2) + static_cast<size_t>(r);
          ASSERT_NEAR(got[at], want[at], tol * abs_dot(w, x, i, r, k))
              << type_name(type) << " n " << n << " i " << i << " r " << r;
        }
      }
    }
  }
  // ggml's expf: within 2 ulp of libm's over the float range; flushes beyond it.
  for (bool avx512 : {false, true}) {
    for (float x = -87.0f; x < 88.0f; x += 0.37f) {
      const float e = std::exp(x), got = ggml_expf_lane(x, avx512);
      ASSERT_NEAR(got, e, 2.5e-7 * e) << "x " << x << " avx512 variant " << avx512;
    }
    EXPECT_EQ(ggml_expf_lane(-200.0f, avx512), 0.0f);
    EXPECT_EQ(ggml_expf_lane(200.0f, avx512), INFINITY);
    EXPECT_EQ(ggml_expf_lane(0.0f, avx512), 1.0f);
  }
  std::vector<float> a = random_floats(rng, 100, 4.0f), b = random_floats(rng, 100);
  std::vector<float> want(100), got(100);
  ref().silu_mul(a.data(), b.data(), want.data(), 100);
  scalar.silu_mul(a.data(), b.data(), got.data(), 100);
  expect_close(got, want, 1e-6, "ggml-order silu");
  // Attention scores and rope: the same values as the default kernels' to rounding.
  const int d = 128;
  std::vector<float> q = random_floats(rng, d);
  std::vector<uint16_t> kh(3 * d);
  std::vector<float> kf = random_floats(rng, 3 * d);
  ref().f32_to_f16(kf.data(), kh.data(), 3 * d);
  float s1[3], s2[3];
  ref().dot_f16_rows(q.data(), kh.data(), d * sizeof(uint16_t), 3, d, 0.125f, s1);
  scalar.dot_f16_rows(q.data(), kh.data(), d * sizeof(uint16_t), 3, d, 0.125f, s2);
  for (int r = 0; r < 3; ++r) EXPECT_NEAR(s2[r], s1[r], 1e-5) << "row " << r;
  float cs[32], sn[32];
  rope_angles(7, 64, 10000.0f, 1.0f, cs, sn);
  std::vector<float> v1 = random_floats(rng, 128), v2 = v1;
  ref().rope(v1.data(), 2, 64, 64, cs, sn, RopeStyle::kNormal);
  scalar.rope(v2.data(), 2, 64, 64, cs, sn, RopeStyle::kNormal);
  expect_close(v2, v1, 1e-6, "ggml-order rope");
}

TEST(Kernels, DispatchPicksTheBestSupportedTableAndCanBeForced) {
  EXPECT_EQ(by_name("no-such-level"), nullptr);
  ASSERT_NE(by_name("scalar"), nullptr);
  const Kernels* best = by_level(detected_level());
  ASSERT_NE(best, nullptr);
  if (std::getenv("INFERA_KERNELS") == nullptr) {
    EXPECT_EQ(&active(), best);
  }
  EXPECT_FALSE(force("no-such-level"));
  EXPECT_TRUE(force("scalar"));
  EXPECT_STREQ(active().name, "scalar");
  EXPECT_TRUE(force(best->name));
  EXPECT_EQ(matmul_for(active(), GgmlType::kIQ2_XXS), nullptr);
  EXPECT_EQ(matmul_input(GgmlType::kQ4_0), MatmulInput::kQ8);
  EXPECT_EQ(matmul_input(GgmlType::kQ5_1), MatmulInput::kQ8);
  EXPECT_EQ(matmul_input(GgmlType::kQ4_K), MatmulInput::kQ8K);
  EXPECT_EQ(matmul_input(GgmlType::kF16), MatmulInput::kF32);
  for (GgmlType type : kTypes) EXPECT_NE(matmul_for(active(), type), nullptr) << type_name(type);
  // Every entry of every table is filled, except the optional repacking hooks and
  // the k-major products (the scalar and AVX-512 tables have them).
  EXPECT_NE(by_name("scalar")->matmul_f16_kmajor, nullptr);
  EXPECT_NE(by_name("scalar")->matmul_f32_kmajor, nullptr);
  if (const Kernels* avx512 = by_name("avx512")) {
    EXPECT_NE(avx512->matmul_f16_kmajor, nullptr);
    EXPECT_NE(avx512->matmul_f32_kmajor, nullptr);
  }
  for (const Kernels* t : {by_name("scalar"), by_name("avx2"), by_name("avx512"), by_name("neon"),
                           by_name("neondot")}) {
    if (t == nullptr) continue;
    const auto* p = reinterpret_cast<const unsigned char*>(t);
    for (size_t off = offsetof(Kernels, matmul_f32); off < sizeof(Kernels); off += sizeof(void*)) {
      if (off >= offsetof(Kernels, packed_tile_bytes) && off <= offsetof(Kernels, packed_matmul))
        continue;
      if (off == offsetof(Kernels, matmul_f16_kmajor) || off == offsetof(Kernels, matmul_f32_kmajor))
        continue;
      void* fn;
      std::memcpy(&fn, p + off, sizeof fn);
      EXPECT_NE(fn, nullptr) << t->name << " entry at byte " << off;
    }
  }
}

}  // namespace
}  // namespace infera::engine::kernels
