// AVX2 Q4_0 matrix product with one weight row per lane (8 rows at a time); the
// AVX2 counterpart of matmul_lanes_avx512.cpp, without VNNI.
//
// 8 weight rows are transposed on the fly so that lane r of each 256-bit vector holds
// row r: per block, eight vectors of the 4 nibbles (as unsigned bytes) that meet
// activation bytes 4g..4g+3, plus the 8 scales. Per activation row and block:
// vpmaddubsw against broadcast 4-byte groups of the Q8 values, the eight 16-bit
// results summed (at most 8 * 2 * 15 * 127 = 30480, no saturation), one vpmaddwd,
// one int->float conversion and one FMA for all 8 rows; no horizontal sums. Prefill
// transposes a chunk of blocks once into a stack buffer shared by all activation
// rows; decode transposes each block in registers.
//
// Arithmetic per (activation row, weight row) is fixed whatever n, the row range or
// the tile: idot_b = dot(nibbles, x) - 8 * sum(x) exactly in int32, then
// acc = fma(float(idot_b), d_w * d_x, acc) over blocks in order; chunks carry acc
// through y (a float store and reload is exact).
#include <immintrin.h>

#include <cstddef>
#include <cstring>

#include "engine/kernels/tables.h"

namespace infera::engine::kernels {
namespace {

constexpr int kLanes = 8;         // weight rows per tile
constexpr int kChunkBlocks = 64;  // blocks transposed at a time (18 KiB of stack)

struct alignas(32) PackedBlock {
  __m256i g[8];  // lane r: row r's nibbles for elements 4j..4j+3
  __m256 d;      // lane r: row r's scale
};

// Must inline into the block loops: called, they pass vectors through memory.
[[gnu::always_inline]] inline void pack_block(const BlockQ4_0* const* w, int b, PackedBlock& p) {
  auto piece = [&](int row) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[row][b].qs));
  };
  __m256i a[4];  // a[q], 128-bit lane L: the nibble bytes of row 4L + q
  for (int q = 0; q < 4; ++q) {
    a[q] = _mm256_inserti128_si256(_mm256_castsi128_si256(piece(q)), piece(q + 4), 1);
  }
  // 4x4 transpose of dwords inside each 128-bit lane: lane r of t[j] = dword j of row r.
  const __m256i u0 = _mm256_unpacklo_epi32(a[0], a[1]);
  const __m256i u1 = _mm256_unpackhi_epi32(a[0], a[1]);
  const __m256i u2 = _mm256_unpacklo_epi32(a[2], a[3]);
  const __m256i u3 = _mm256_unpackhi_epi32(a[2], a[3]);
  const __m256i t[4] = {_mm256_unpacklo_epi64(u0, u2), _mm256_unpackhi_epi64(u0, u2),
                        _mm256_unpacklo_epi64(u1, u3), _mm256_unpackhi_epi64(u1, u3)};
  const __m256i mask = _mm256_set1_epi8(0x0f);
  for (int j = 0; j < 4; ++j) {
    p.g[j] = _mm256_and_si256(t[j], mask);
    p.g[4 + j] = _mm256_and_si256(_mm256_srli_epi16(t[j], 4), mask);
  }
  // The 8 scales, packed 4 to a 64-bit integer register.
  uint64_t d4[2];
  for (int h = 0; h < 2; ++h) {
    d4[h] = static_cast<uint64_t>(w[4 * h][b].d) | static_cast<uint64_t>(w[4 * h + 1][b].d) << 16 |
            static_cast<uint64_t>(w[4 * h + 2][b].d) << 32 |
            static_cast<uint64_t>(w[4 * h + 3][b].d) << 48;
  }
  p.d =
      _mm256_cvtph_ps(_mm_set_epi64x(static_cast<long long>(d4[1]), static_cast<long long>(d4[0])));
}

int32_t load_i32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

template <int TX>
[[gnu::always_inline]] inline void multiply(const PackedBlock* packed, int b0, int count,
                                            const int8_t* const* xq, const float* const* xd,
                                            const int32_t* const* xs, __m256* acc) {
  const __m256i ones = _mm256_set1_epi16(1);
  for (int bi = 0; bi < count; ++bi) {
    const PackedBlock& p = packed[bi];
    const int b = b0 + bi;
    for (int s = 0; s < TX; ++s) {
      const int8_t* x = xq[s] + b * kBlockElems;
      __m256i sum16 = _mm256_maddubs_epi16(p.g[0], _mm256_set1_epi32(load_i32(x)));
      for (int g = 1; g < 8; ++g) {
        const int at = g < 4 ? 4 * g : 16 + 4 * (g - 4);
        sum16 = _mm256_add_epi16(sum16,
                                 _mm256_maddubs_epi16(p.g[g], _mm256_set1_epi32(load_i32(x + at))));
      }
      const __m256i idot =
          _mm256_add_epi32(_mm256_madd_epi16(sum16, ones), _mm256_set1_epi32(-8 * xs[s][b]));
      const __m256 scale = _mm256_mul_ps(p.d, _mm256_set1_ps(xd[s][b]));
      acc[s] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(idot), scale, acc[s]);
    }
  }
}

template <int TX>
void run_rows(const MatmulArgs& a, const PackedBlock* packed, int b0, int count, int i, int r,
              int rows) {
  const int8_t* xq[TX];
  const float* xd[TX];
  const int32_t* xs[TX];
  float* y[TX];
  __m256 acc[TX];
  const __m256i lanes =
      _mm256_cmpgt_epi32(_mm256_set1_epi32(rows), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  for (int s = 0; s < TX; ++s) {
    const void* row = static_cast<const uint8_t*>(a.x) + static_cast<size_t>(i + s) * a.x_stride;
    xq[s] = q8_values(row);
    xd[s] = q8_scales(row, a.k);
    xs[s] = q8_sums(row, a.k);
    y[s] = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(a.y) +
                                    static_cast<size_t>(i + s) * a.y_stride) +
           r;
    acc[s] = b0 == 0 ? _mm256_setzero_ps() : _mm256_maskload_ps(y[s], lanes);
  }
  multiply<TX>(packed, b0, count, xq, xd, xs, acc);
  for (int s = 0; s < TX; ++s) _mm256_maskstore_ps(y[s], lanes, acc[s]);
}

// Hints the block-b part of the next tile's rows into L2 (see matmul_lanes_avx512.cpp).
void prefetch_next_tile(const MatmulArgs& a, int r, int b) {
  const size_t offset = static_cast<size_t>(b) * sizeof(BlockQ4_0);
  if (offset % 64 >= sizeof(BlockQ4_0)) return;  // block b starts no new cache line
  const char* next =
      static_cast<const char*>(a.w) + static_cast<size_t>(r + kLanes) * a.w_stride + offset;
  for (int t = 0; t < kLanes; ++t)
    _mm_prefetch(next + static_cast<size_t>(t) * a.w_stride, _MM_HINT_T1);
}

}  // namespace

void matmul_q4_0_avx2(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kBlockElems;
  PackedBlock packed[kChunkBlocks];
  for (int r = r0; r < r1; r += kLanes) {
    const int rows = r1 - r < kLanes ? r1 - r : kLanes;
    // Missing rows of a short tile repeat the last row; their lanes are never stored.
    const BlockQ4_0* w[kLanes];
    for (int t = 0; t < kLanes; ++t) {
      const int row = t < rows ? t : rows - 1;
      w[t] = reinterpret_cast<const BlockQ4_0*>(static_cast<const uint8_t*>(a.w) +
                                                static_cast<size_t>(r + row) * a.w_stride);
    }
    if (a.n == 1) {  // decode: transpose each block in registers
      const void* row = a.x;
      const int8_t* xq[1] = {q8_values(row)};
      const float* xd[1] = {q8_scales(row, a.k)};
      const int32_t* xs[1] = {q8_sums(row, a.k)};
      __m256 acc[1] = {_mm256_setzero_ps()};
      for (int b = 0; b < nb; ++b) {
        prefetch_next_tile(a, r, b);
        PackedBlock p;
        pack_block(w, b, p);
        multiply<1>(&p, b, 1, xq, xd, xs, acc);
      }
      const __m256i lanes =
          _mm256_cmpgt_epi32(_mm256_set1_epi32(rows), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
      _mm256_maskstore_ps(a.y + r, lanes, acc[0]);
      continue;
    }
    for (int b0 = 0; b0 < nb; b0 += kChunkBlocks) {
      const int count = nb - b0 < kChunkBlocks ? nb - b0 : kChunkBlocks;
      for (int b = b0; b < b0 + count; ++b) {
        prefetch_next_tile(a, r, b);
        pack_block(w, b, packed[b - b0]);
      }
      int i = 0;
      for (; i + 4 <= a.n; i += 4) run_rows<4>(a, packed, b0, count, i, r, rows);
      switch (a.n - i) {
        case 3:
          run_rows<3>(a, packed, b0, count, i, r, rows);
          break;
        case 2:
          run_rows<2>(a, packed, b0, count, i, r, rows);
          break;
        case 1:
          run_rows<1>(a, packed, b0, count, i, r, rows);
          break;
        default:
          break;
      }
    }
  }
}

}  // namespace infera::engine::kernels
