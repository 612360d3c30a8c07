// AVX2 matrix products of the 32-element block types with a min or a fifth bit (Q4_1,
// Q5_0, Q5_1) against Q8 activation rows; also the AVX-512 table's. Compiled with the
// avx2 flags (CMakeLists.txt, by file name).
//
// Row-wise tiles (up to 4 activation rows x 2 weight rows; decode 1 x 4): each block's
// 32 levels are unpacked once into unsigned bytes (low nibbles are elements 0..15,
// high nibbles 16..31, plus fifth bits) and shared by the tile's activation rows.
// Per (activation row, weight row) and block: vpmaddubsw + vpmaddwd give 8 exact int32
// lanes (Q5_0's offset removed exactly through the block's activation sum, in lane 0),
// acc = fma(float(lanes), d_w * d_x, acc); for the types with a min,
// macc = fma(m_w, s_x, macc) with s_x the row's min sum (ggml's Q8_1 s). y is the sum
// of acc's lanes plus macc. That sequence is the same whatever the tile, n or row
// range, so results do not depend on the batch.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "engine/kernels/tables.h"
#include "engine/kernels/x86/avx2_util.h"

namespace infera::engine::kernels {
namespace {

using avx2::hsum;
using avx2::prefetch_next_rows;

// Low nibbles (elements 0..15) then high nibbles (16..31).
__m256i nibbles(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i low4 = _mm_set1_epi8(0x0f);
  return _mm256_setr_m128i(_mm_and_si128(q, low4), _mm_and_si128(_mm_srli_epi16(q, 4), low4));
}

// Byte j = 16 where bit j of the 32-bit qh is set.
__m256i fifth_bits(const uint8_t* qh) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  const __m256i spread =
      _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                          _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                           2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i select = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

struct Q41 {
  using Block = BlockQ4_1;
  static constexpr int kOffset = 0;
  static __m256i levels(const Block& b) { return nibbles(b.qs); }
};
struct Q50 {
  using Block = BlockQ5_0;
  static constexpr int kOffset = 16;
  static __m256i levels(const Block& b) { return _mm256_or_si256(nibbles(b.qs), fifth_bits(b.qh)); }
};
struct Q51 {
  using Block = BlockQ5_1;
  static constexpr int kOffset = 0;
  static __m256i levels(const Block& b) { return _mm256_or_si256(nibbles(b.qs), fifth_bits(b.qh)); }
};



template <typename Q, int TX, int TR>
void tile(const MatmulArgs& a, int i, int r) {
  using Block = typename Q::Block;
  const Block* w[TR];
  for (int t = 0; t < TR; ++t)
    w[t] = reinterpret_cast<const Block*>(row_at(a.w, a.w_stride, r + t));
  const int8_t* xq[TX];
  const float* xd[TX];
  const int32_t* xs[TX];
  const float* xm[TX];
  for (int s = 0; s < TX; ++s) {
    const void* row = row_at(a.x, a.x_stride, i + s);
    xq[s] = q8_values(row);
    xd[s] = q8_scales(row, a.k);
    xs[s] = q8_sums(row, a.k);
    xm[s] = q8_min_sums(row, a.k);
  }
  __m256 acc[TX][TR];
  float macc[TX][TR];
  for (int s = 0; s < TX; ++s) {
    for (int t = 0; t < TR; ++t) {
      acc[s][t] = _mm256_setzero_ps();
      macc[s][t] = 0.0f;
    }
  }
  const __m256i ones = _mm256_set1_epi16(1);
  const int nb = a.k / kBlockElems;
  for (int b = 0; b < nb; ++b) {
    if (TX == 1) prefetch_next_rows(a, r + TR, TR, b * sizeof(Block), sizeof(Block));
    __m256i lv[TR];
    float dw[TR];
    for (int t = 0; t < TR; ++t) {
      lv[t] = Q::levels(w[t][b]);
      dw[t] = _cvtsh_ss(w[t][b].d);
    }
    for (int s = 0; s < TX; ++s) {
      const __m256i xv =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[s] + b * kBlockElems));
      const float dx = xd[s][b];
      for (int t = 0; t < TR; ++t) {
        __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(lv[t], xv), ones);
        if constexpr (Q::kOffset != 0) {
          dot =
              _mm256_sub_epi32(dot, _mm256_setr_epi32(Q::kOffset * xs[s][b], 0, 0, 0, 0, 0, 0, 0));
        }
        acc[s][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(dw[t] * dx), acc[s][t]);
        if constexpr (requires { w[t][b].m; }) {
          macc[s][t] = std::fma(_cvtsh_ss(w[t][b].m), xm[s][b], macc[s][t]);
        }
      }
    }
  }
  for (int s = 0; s < TX; ++s) {
    float* y = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(a.y) +
                                        static_cast<size_t>(i + s) * a.y_stride);
    for (int t = 0; t < TR; ++t) y[r + t] = hsum(acc[s][t]) + macc[s][t];
  }
}

// Activation rows in chunks that stay in L2 while weight rows sweep them; weight rows
// two at a time against 4 activation rows; leftover activation rows (and decode) take
// 4 weight rows at a time.
template <typename Q>
void matmul_rows(const MatmulArgs& a, int r0, int r1) {
  const size_t x_bytes = a.x_stride == 0 ? 1 : a.x_stride;
  const size_t chunk_rows = (size_t{256} << 10) / x_bytes / 4 * 4;
  const int chunk = static_cast<int>(chunk_rows < 4 ? 4 : chunk_rows);
  for (int c0 = 0; c0 < a.n; c0 += chunk) {
    const int c1 = c0 + chunk < a.n ? c0 + chunk : a.n;
    const int c4 = c0 + (c1 - c0) / 4 * 4;
    int r = r0;
    for (; r + 2 <= r1; r += 2) {
      for (int i = c0; i < c4; i += 4) tile<Q, 4, 2>(a, i, r);
    }
    for (; r < r1; ++r) {
      for (int i = c0; i < c4; i += 4) tile<Q, 4, 1>(a, i, r);
    }
    for (int i = c4; i < c1; ++i) {
      int rr = r0;
      for (; rr + 4 <= r1; rr += 4) tile<Q, 1, 4>(a, i, rr);
      for (; rr < r1; ++rr) tile<Q, 1, 1>(a, i, rr);
    }
  }
}

}  // namespace

void fill_avx2_q4_1_q5(Kernels& t) {
  t.matmul_q4_1 = matmul_rows<Q41>;
  t.matmul_q5_0 = matmul_rows<Q50>;
  t.matmul_q5_1 = matmul_rows<Q51>;
}

}  // namespace infera::engine::kernels
