// AVX2 matrix products of the K-quants (Q2_K .. Q6_K) against Q8K activation rows,
// and the Q8K quantization (also used by the AVX-512 table). Compiled with the avx2
// flags (CMakeLists.txt, by file name).
//
// Row-wise: each weight row's super-block is unpacked once (32-byte vectors of
// unsigned levels in element order, int16 scale vectors, the int16 weights of the
// activation's 16-value sums, d and dmin) into a small stack buffer and shared by up
// to 4 activation rows (prefill); decode forms Q4_K, Q5_K and Q6_K lanes straight
// from the blocks (no stored unpacked form: Q4_K 17 -> 22-24 GB/s, Q6_K 23 -> 32-36 GB/s
// from cache on one Zen 5 thread), 4 rows at a time, and unpacks the others. Per (activation
// row, weight row) pair and super-block: vpmaddubsw of levels and Q8K values, vpmaddwd
// by the scales into 8 int32 lanes (isum), one vpmaddwd of the 16-value sums (msum),
// then
//   types with mins:    acc = fma(isum, d * dx, acc); acc = fnmadd(msum, dmin * dx, acc)
//   types with offsets: acc = fma(isum - offset * msum, d * dx, acc)
// in 8 float lanes summed at the end. That sequence is the same whatever the tile, n
// or row range, so results do not depend on the batch.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "engine/kernels/tables.h"
#include "engine/kernels/x86/avx2_util.h"

namespace infera::engine::kernels {
namespace {

using avx2::hsum;
using avx2::prefetch_next_rows;

// One weight row's super-block, unpacked.
struct alignas(32) Unpacked {
  __m256i levels[8];    // elements 32p..32p+31, unsigned
  __m256i scales[8];    // int16 scale of each vpmaddubsw lane of piece p
  __m256i sum_weights;  // int16 weights of the 16 activation sums
  float d;
  float dmin;
};

__m256i load32(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// Shifts each 16-bit lane left by s (right by -s when negative).
__m256i shift16(__m256i v, int s) {
  return s >= 0 ? _mm256_slli_epi16(v, s) : _mm256_srli_epi16(v, -s);
}

// From 16 int16 values v[0..15] (as two 128-bit halves): the vector whose low half
// repeats v[a] and high half v[b] (a, b constant).
__m256i two_values(__m256i v, int a, int b) {
  const __m256i low = _mm256_permute2x128_si256(v, v, 0x00);  // immediates must be constants
  const __m256i high = _mm256_permute2x128_si256(v, v, 0x11);
  const __m256i half_a = a < 8 ? low : high;
  const __m256i half_b = b < 8 ? low : high;
  const __m256i both = _mm256_blend_epi32(half_a, half_b, 0xf0);
  const char ia = static_cast<char>(2 * (a % 8)), ib = static_cast<char>(2 * (b % 8));
  const char ia1 = static_cast<char>(ia + 1), ib1 = static_cast<char>(ib + 1);
  const __m256i pick =
      _mm256_setr_epi8(ia, ia1, ia, ia1, ia, ia1, ia, ia1, ia, ia1, ia, ia1, ia, ia1, ia, ia1, ib,
                       ib1, ib, ib1, ib, ib1, ib, ib1, ib, ib1, ib, ib1, ib, ib1, ib, ib1);
  return _mm256_shuffle_epi8(both, pick);
}

// Every 16-bit lane set to v's 16-bit lane p (p < 8; v's two 128-bit halves equal).
template <int p>
__m256i broadcast16(__m256i v) {
  return _mm256_shuffle_epi8(v, _mm256_set1_epi16(static_cast<int16_t>((2 * p + 1) << 8 | 2 * p)));
}

// Q4_K / Q5_K: the 6-bit scales and mins (see k4_scale_min), as bytes sc[0..7] then
// mn[0..7], computed on 32-bit words.
__m128i k4_scale_min_bytes(const uint8_t* packed) {
  uint32_t w[3];
  std::memcpy(w, packed, 12);
  const uint32_t sc_lo = w[0] & 0x3f3f3f3f, mn_lo = w[1] & 0x3f3f3f3f;
  const uint32_t sc_hi = (w[2] & 0x0f0f0f0f) | ((w[0] >> 2) & 0x30303030);
  const uint32_t mn_hi = ((w[2] >> 4) & 0x0f0f0f0f) | ((w[1] >> 2) & 0x30303030);
  return _mm_setr_epi32(static_cast<int>(sc_lo), static_cast<int>(sc_hi), static_cast<int>(mn_lo),
                        static_cast<int>(mn_hi));
}

// Q3_K: the 16 scales minus 32 as bytes (see k3_scales), computed on 32-bit words.
__m128i k3_scale_bytes(const uint8_t* packed) {
  uint32_t w[3];
  std::memcpy(w, packed, 12);
  const uint32_t low4 = 0x0f0f0f0f, top2 = 0x30303030;
  const uint32_t s[4] = {(w[0] & low4) | ((w[2] << 4) & top2), (w[1] & low4) | ((w[2] << 2) & top2),
                         ((w[0] >> 4) & low4) | (w[2] & top2),
                         ((w[1] >> 4) & low4) | ((w[2] >> 2) & top2)};
  const __m128i v = _mm_setr_epi32(static_cast<int>(s[0]), static_cast<int>(s[1]),
                                   static_cast<int>(s[2]), static_cast<int>(s[3]));
  return _mm_sub_epi8(v, _mm_set1_epi8(32));
}

void unpack_k4_scales(const uint8_t* packed, Unpacked& u) {
  const __m256i v = _mm256_cvtepu8_epi16(k4_scale_min_bytes(packed));  // sc[0..7] | mn[0..7]
  for (int p = 0; p < 8; ++p) u.scales[p] = two_values(v, p, p);
  const __m256i mins = _mm256_permute2x128_si256(v, v, 0x11);
  u.sum_weights = _mm256_shuffle_epi8(
      mins, _mm256_setr_epi8(0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7, 8, 9, 8, 9, 10, 11, 10,
                             11, 12, 13, 12, 13, 14, 15, 14, 15));
}

void unpack_k4_nibbles(const uint8_t* qs, Unpacked& u) {
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  for (int j = 0; j < 4; ++j) {
    const __m256i v = load32(qs + 32 * j);
    u.levels[2 * j] = _mm256_and_si256(v, low4);
    u.levels[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
  }
}

// The int16 weights of the 16 activation sums for Q4_K / Q5_K: each sub-block's min,
// twice (a sub-block covers two 16-value sums).
__m256i k4_sum_weights(__m256i scale_min16) {
  const __m256i mins = _mm256_permute2x128_si256(scale_min16, scale_min16, 0x11);
  return _mm256_shuffle_epi8(
      mins, _mm256_setr_epi8(0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7, 8, 9, 8, 9, 10, 11, 10,
                             11, 12, 13, 12, 13, 14, 15, 14, 15));
}

// Decode's direct path for Q4_K / Q5_K: the super-block's isum lanes against x without
// storing the unpacked form (the same lanes the tile loop forms from unpack's output),
// each sub-block's scale broadcast by one shuffle.
template <bool kFifthBit>
__m256i k4_isum(const uint8_t* qs, const uint8_t* qh, const uint8_t* packed_scales, const int8_t* x,
                __m256i& sum_weights) {
  const __m256i v = _mm256_cvtepu8_epi16(k4_scale_min_bytes(packed_scales));  // sc | mn
  sum_weights = k4_sum_weights(v);
  const __m256i sc = _mm256_permute2x128_si256(v, v, 0x00);
  const __m256i low4 = _mm256_set1_epi8(0x0f), bit4 = _mm256_set1_epi8(0x10);
  __m256i high = _mm256_setzero_si256();
  if constexpr (kFifthBit) high = load32(qh);
  __m256i isum = _mm256_setzero_si256();
  auto piece = [&](__m256i levels, int p, __m256i scale) {
    if constexpr (kFifthBit)
      levels = _mm256_or_si256(levels, _mm256_and_si256(shift16(high, 4 - p), bit4));
    const __m256i prod =
        _mm256_maddubs_epi16(levels, load32(reinterpret_cast<const uint8_t*>(x) + 32 * p));
    isum = _mm256_add_epi32(isum, _mm256_madd_epi16(prod, scale));
  };
  __m256i q = load32(qs);
  piece(_mm256_and_si256(q, low4), 0, broadcast16<0>(sc));
  piece(_mm256_and_si256(_mm256_srli_epi16(q, 4), low4), 1, broadcast16<1>(sc));
  q = load32(qs + 32);
  piece(_mm256_and_si256(q, low4), 2, broadcast16<2>(sc));
  piece(_mm256_and_si256(_mm256_srli_epi16(q, 4), low4), 3, broadcast16<3>(sc));
  q = load32(qs + 64);
  piece(_mm256_and_si256(q, low4), 4, broadcast16<4>(sc));
  piece(_mm256_and_si256(_mm256_srli_epi16(q, 4), low4), 5, broadcast16<5>(sc));
  q = load32(qs + 96);
  piece(_mm256_and_si256(q, low4), 6, broadcast16<6>(sc));
  piece(_mm256_and_si256(_mm256_srli_epi16(q, 4), low4), 7, broadcast16<7>(sc));
  return isum;
}

struct Q4K {
  using Block = BlockQ4_K;
  static constexpr bool kHasMin = true;
  static constexpr bool kDirect = true;
  static constexpr int kOffsetShift = 0;
  static void unpack(const Block& b, Unpacked& u) {
    unpack_k4_nibbles(b.qs, u);
    unpack_k4_scales(b.scales, u);
    u.d = _cvtsh_ss(b.d);
    u.dmin = _cvtsh_ss(b.dmin);
  }
  static __m256i isum(const Block& b, const int8_t* x, __m256i& sum_weights) {
    return k4_isum<false>(b.qs, nullptr, b.scales, x, sum_weights);
  }
};

struct Q5K {
  using Block = BlockQ5_K;
  static constexpr bool kHasMin = true;
  static constexpr bool kDirect = true;
  static constexpr int kOffsetShift = 0;
  static __m256i isum(const Block& b, const int8_t* x, __m256i& sum_weights) {
    return k4_isum<true>(b.qs, b.qh, b.scales, x, sum_weights);
  }
  static void unpack(const Block& b, Unpacked& u) {
    unpack_k4_nibbles(b.qs, u);
    const __m256i qh = load32(b.qh), bit4 = _mm256_set1_epi8(0x10);
    for (int p = 0; p < 8; ++p) {  // bit p of qh[l] is the fifth bit of element 32 p + l
      u.levels[p] = _mm256_or_si256(u.levels[p], _mm256_and_si256(shift16(qh, 4 - p), bit4));
    }
    unpack_k4_scales(b.scales, u);
    u.d = _cvtsh_ss(b.d);
    u.dmin = _cvtsh_ss(b.dmin);
  }
};

struct Q6K {
  using Block = BlockQ6_K;
  static constexpr bool kHasMin = false;
  static constexpr bool kDirect = true;
  static constexpr int kOffsetShift = 5;  // levels carry +32
  static __m256i isum(const Block& b, const int8_t* x, __m256i& sum_weights) {
    const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
    sum_weights = _mm256_cvtepi8_epi16(sc8);
    const __m256i low4 = _mm256_set1_epi8(0x0f), bits45 = _mm256_set1_epi8(0x30);
    __m256i isum = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = load32(b.ql + 64 * h), ql1 = load32(b.ql + 64 * h + 32);
      const __m256i qh = load32(b.qh + 32 * h);
      for (int t = 0; t < 4; ++t) {  // elements 128 h + 32 t + l
        const int p = 4 * h + t;
        const __m256i ql = (t & 1) ? ql1 : ql0;
        const __m256i nib =
            t < 2 ? _mm256_and_si256(ql, low4) : _mm256_and_si256(_mm256_srli_epi16(ql, 4), low4);
        const __m256i levels =
            _mm256_or_si256(nib, _mm256_and_si256(shift16(qh, 4 - 2 * t), bits45));
        // lanes 0-3 take scale 2p, lanes 4-7 scale 2p + 1
        const __m128i pick = _mm_setr_epi8(
            static_cast<char>(2 * p), static_cast<char>(2 * p), static_cast<char>(2 * p),
            static_cast<char>(2 * p), static_cast<char>(2 * p), static_cast<char>(2 * p),
            static_cast<char>(2 * p), static_cast<char>(2 * p), static_cast<char>(2 * p + 1),
            static_cast<char>(2 * p + 1), static_cast<char>(2 * p + 1),
            static_cast<char>(2 * p + 1), static_cast<char>(2 * p + 1),
            static_cast<char>(2 * p + 1), static_cast<char>(2 * p + 1),
            static_cast<char>(2 * p + 1));
        const __m256i scale = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, pick));
        const __m256i prod =
            _mm256_maddubs_epi16(levels, load32(reinterpret_cast<const uint8_t*>(x) + 32 * p));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(prod, scale));
      }
    }
    return isum;
  }
  static void unpack(const Block& b, Unpacked& u) {
    const __m256i low4 = _mm256_set1_epi8(0x0f), bits45 = _mm256_set1_epi8(0x30);
    for (int p = 0; p < 8; ++p) {  // elements 128 h + 32 t + l
      const int h = p / 4, t = p % 4;
      const __m256i ql = load32(b.ql + 64 * h + 32 * (t & 1));
      const __m256i nib =
          t < 2 ? _mm256_and_si256(ql, low4) : _mm256_and_si256(_mm256_srli_epi16(ql, 4), low4);
      const __m256i high = _mm256_and_si256(shift16(load32(b.qh + 32 * h), 4 - 2 * t), bits45);
      u.levels[p] = _mm256_or_si256(nib, high);
    }
    u.sum_weights =
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));
    for (int p = 0; p < 8; ++p) u.scales[p] = two_values(u.sum_weights, 2 * p, 2 * p + 1);
    u.d = _cvtsh_ss(b.d);
    u.dmin = 0;
  }
};

void unpack_low2(const uint8_t* qs, Unpacked& u) {
  const __m256i low2 = _mm256_set1_epi8(0x03);
  for (int p = 0; p < 8; ++p) {  // bits 2t of qs[32 h + l]: element 128 h + 32 t + l
    u.levels[p] = _mm256_and_si256(_mm256_srli_epi16(load32(qs + 32 * (p / 4)), 2 * (p % 4)), low2);
  }
}

struct Q2K {
  using Block = BlockQ2_K;
  static constexpr bool kDirect = false;
  static constexpr bool kHasMin = true;
  static constexpr int kOffsetShift = 0;
  static void unpack(const Block& b, Unpacked& u) {
    unpack_low2(b.qs, u);
    const __m128i s = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
    const __m128i low4 = _mm_set1_epi8(0x0f);
    const __m256i scales = _mm256_cvtepu8_epi16(_mm_and_si128(s, low4));
    for (int p = 0; p < 8; ++p) u.scales[p] = two_values(scales, 2 * p, 2 * p + 1);
    u.sum_weights = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), low4));
    u.d = _cvtsh_ss(b.d);
    u.dmin = _cvtsh_ss(b.dmin);
  }
};

struct Q3K {
  using Block = BlockQ3_K;
  static constexpr bool kDirect = false;
  static constexpr bool kHasMin = false;
  static constexpr int kOffsetShift = 2;  // levels carry +4
  static void unpack(const Block& b, Unpacked& u) {
    unpack_low2(b.qs, u);
    const __m256i hm = load32(b.hmask), bit2 = _mm256_set1_epi8(0x04);
    for (int p = 0; p < 8; ++p) {  // bit 4 h + t of hmask[l], to bit 2
      u.levels[p] = _mm256_or_si256(u.levels[p], _mm256_and_si256(shift16(hm, 2 - p), bit2));
    }
    u.sum_weights = _mm256_cvtepi8_epi16(k3_scale_bytes(b.scales));
    for (int p = 0; p < 8; ++p) u.scales[p] = two_values(u.sum_weights, 2 * p, 2 * p + 1);
    u.d = _cvtsh_ss(b.d);
    u.dmin = 0;
  }
};

// TX activation rows (starting at i) x TR weight rows (starting at r). `unpacked`,
// when given, holds the TR weight rows' super-blocks already unpacked (row t's at
// unpacked + t * nb).
template <typename K, int TX, int TR>
void tile(const MatmulArgs& a, int i, int r, const Unpacked* unpacked = nullptr) {
  using Block = typename K::Block;
  const Block* w[TR];
  for (int t = 0; t < TR; ++t)
    w[t] = reinterpret_cast<const Block*>(row_at(a.w, a.w_stride, r + t));
  const int8_t* xq[TX];
  const float* xd[TX];
  const int16_t* xs[TX];
  for (int s = 0; s < TX; ++s) {
    const void* row = row_at(a.x, a.x_stride, i + s);
    xq[s] = q8k_values(row);
    xd[s] = q8k_scales(row, a.k);
    xs[s] = q8k_sums(row, a.k);
  }
  __m256 acc[TX][TR];
  for (int s = 0; s < TX; ++s)
    for (int t = 0; t < TR; ++t) acc[s][t] = _mm256_setzero_ps();
  const int nb = a.k / kSuperElems;
  Unpacked own[TR];
  const Unpacked* u[TR];
  for (int b = 0; b < nb; ++b) {
    if (unpacked != nullptr) {
      for (int t = 0; t < TR; ++t) u[t] = unpacked + static_cast<size_t>(t) * nb + b;
    } else {
      if (TX == 1) prefetch_next_rows(a, r + TR, TR, b * sizeof(Block), sizeof(Block));
      for (int t = 0; t < TR; ++t) {
        K::unpack(w[t][b], own[t]);
        u[t] = &own[t];
      }
    }
    // Each weight vector is loaded once for the tile's activation rows.
    __m256i isum[TX][TR];
    for (int s = 0; s < TX; ++s)
      for (int t = 0; t < TR; ++t) isum[s][t] = _mm256_setzero_si256();
    for (int p = 0; p < 8; ++p) {
      __m256i xv[TX];
      for (int s = 0; s < TX; ++s) {
        xv[s] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(
            xq[s] + static_cast<size_t>(b) * kSuperElems + 32 * p));
      }
      for (int t = 0; t < TR; ++t) {
        const __m256i levels = u[t]->levels[p], scales = u[t]->scales[p];
        for (int s = 0; s < TX; ++s) {
          const __m256i prod = _mm256_maddubs_epi16(levels, xv[s]);
          isum[s][t] = _mm256_add_epi32(isum[s][t], _mm256_madd_epi16(prod, scales));
        }
      }
    }
    for (int s = 0; s < TX; ++s) {
      const __m256i sums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs[s] + 16 * b));
      const __m256 dx = _mm256_set1_ps(xd[s][b]);
      for (int t = 0; t < TR; ++t) {
        const __m256i msum = _mm256_madd_epi16(sums, u[t]->sum_weights);
        if constexpr (K::kHasMin) {
          acc[s][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[s][t]),
                                      _mm256_mul_ps(_mm256_set1_ps(u[t]->d), dx), acc[s][t]);
          acc[s][t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum),
                                       _mm256_mul_ps(_mm256_set1_ps(u[t]->dmin), dx), acc[s][t]);
        } else {
          const __m256i total =
              _mm256_sub_epi32(isum[s][t], _mm256_slli_epi32(msum, K::kOffsetShift));
          acc[s][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total),
                                      _mm256_mul_ps(_mm256_set1_ps(u[t]->d), dx), acc[s][t]);
        }
      }
    }
  }
  for (int s = 0; s < TX; ++s) {
    float* y = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(a.y) +
                                        static_cast<size_t>(i + s) * a.y_stride);
    for (int t = 0; t < TR; ++t) y[r + t] = hsum(acc[s][t]);
  }
}

// Decode (one activation row) for the types with a direct path: TR weight rows at a
// time, each super-block's isum formed straight from the block; the same integer
// lanes and float steps as tile, so the same results.
template <typename K, int TR>
void decode_rows(const MatmulArgs& a, int i, int r) {
  using Block = typename K::Block;
  const Block* w[TR];
  for (int t = 0; t < TR; ++t)
    w[t] = reinterpret_cast<const Block*>(row_at(a.w, a.w_stride, r + t));
  const void* row = row_at(a.x, a.x_stride, i);
  const int8_t* xq = q8k_values(row);
  const float* xd = q8k_scales(row, a.k);
  const int16_t* xs = q8k_sums(row, a.k);
  __m256 acc[TR];
  for (int t = 0; t < TR; ++t) acc[t] = _mm256_setzero_ps();
  const int nb = a.k / kSuperElems;
  for (int b = 0; b < nb; ++b) {
    prefetch_next_rows(a, r + TR, TR, b * sizeof(Block), sizeof(Block));
    const int8_t* x = xq + static_cast<size_t>(b) * kSuperElems;
    const __m256i sums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs + 16 * b));
    const __m256 dx = _mm256_set1_ps(xd[b]);
    for (int t = 0; t < TR; ++t) {
      __m256i sum_weights;
      const __m256i isum = K::isum(w[t][b], x, sum_weights);
      const __m256i msum = _mm256_madd_epi16(sums, sum_weights);
      const __m256 d = _mm256_set1_ps(_cvtsh_ss(w[t][b].d));
      if constexpr (K::kHasMin) {
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d, dx), acc[t]);
        acc[t] =
            _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum),
                             _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(w[t][b].dmin)), dx), acc[t]);
      } else {
        const __m256i total = _mm256_sub_epi32(isum, _mm256_slli_epi32(msum, K::kOffsetShift));
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_mul_ps(d, dx), acc[t]);
      }
    }
  }
  float* y = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(a.y) +
                                      static_cast<size_t>(i) * a.y_stride);
  for (int t = 0; t < TR; ++t) y[r + t] = hsum(acc[t]);
}

// Rows of up to this many super-blocks (k <= 16384) are unpacked once per chunk of
// activation rows (34 KiB of stack); longer ones once per 4 activation rows.
constexpr int kMaxUnpackedSupers = 64;

// Activation rows in chunks that stay in L2 while weight rows sweep them, 4 at a time
// against each weight row; leftover activation rows (and decode) take 4 weight rows at
// a time.
template <typename K>
void matmul_rows(const MatmulArgs& a, int r0, int r1) {
  using Block = typename K::Block;
  const int nb = a.k / kSuperElems;
  Unpacked row[kMaxUnpackedSupers];
  const size_t x_bytes = a.x_stride == 0 ? 1 : a.x_stride;
  const int chunk = static_cast<int>(std::max<size_t>(4, (size_t{256} << 10) / x_bytes / 4 * 4));
  for (int c0 = 0; c0 < a.n; c0 += chunk) {
    const int c1 = c0 + chunk < a.n ? c0 + chunk : a.n;
    const int c4 = c0 + (c1 - c0) / 4 * 4;
    const bool reuse = nb <= kMaxUnpackedSupers && c4 - c0 > 4;
    for (int r = r0; r < r1 && c4 > c0; ++r) {
      const Unpacked* unpacked = nullptr;
      if (reuse) {  // 4 x 2 tiles measured slower here: 16 registers are too few
        const Block* w = reinterpret_cast<const Block*>(row_at(a.w, a.w_stride, r));
        for (int b = 0; b < nb; ++b) K::unpack(w[b], row[b]);
        unpacked = row;
      }
      for (int i = c0; i < c4; i += 4) tile<K, 4, 1>(a, i, r, unpacked);
    }
    for (int i = c4; i < c1; ++i) {
      int r = r0;
      if constexpr (K::kDirect) {
        for (; r + 4 <= r1; r += 4) decode_rows<K, 4>(a, i, r);
        for (; r < r1; ++r) decode_rows<K, 1>(a, i, r);
      } else {
        for (; r + 4 <= r1; r += 4) tile<K, 1, 4>(a, i, r);
        for (; r < r1; ++r) tile<K, 1, 1>(a, i, r);
      }
    }
  }
}

// Bit-identical to the scalar quantize_q8k: the same float products, nearest-even
// conversion, the first value of largest magnitude as the reference.
void quantize_q8k(const float* x, void* out, int k) {
  const int nb = k / kSuperElems;
  auto* q = static_cast<int8_t*>(out);
  float* scales = reinterpret_cast<float*>(static_cast<uint8_t*>(out) + k);
  auto* sums = reinterpret_cast<int16_t*>(static_cast<uint8_t*>(out) + k + 4 * nb);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int b = 0; b < nb; ++b) {
    const float* xb = x + b * kSuperElems;
    int8_t* qb = q + b * kSuperElems;
    __m256 amax8 = _mm256_setzero_ps();
    for (int j = 0; j < kSuperElems; j += 8) {
      amax8 = _mm256_max_ps(amax8, _mm256_and_ps(_mm256_loadu_ps(xb + j), abs_mask));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax8), _mm256_extractf128_ps(amax8, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float amax = _mm_cvtss_f32(m);
    if (amax == 0) {
      scales[b] = 0;
      std::memset(qb, 0, kSuperElems);
      std::memset(sums + 16 * b, 0, 32);
      continue;
    }
    float max = 0;
    const __m256 target = _mm256_set1_ps(amax);
    for (int j = 0; j < kSuperElems; j += 8) {
      const __m256 v = _mm256_loadu_ps(xb + j);
      const int hits =
          _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(v, abs_mask), target, _CMP_EQ_OQ));
      if (hits != 0) {
        max = xb[j + __builtin_ctz(static_cast<unsigned>(hits))];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m256 mul = _mm256_set1_ps(iscale);
    const __m256i top = _mm256_set1_epi32(127);
    for (int j = 0; j < kSuperElems; j += 32) {
      __m256i qi[4];
      for (int c = 0; c < 4; ++c) {
        qi[c] = _mm256_min_epi32(
            _mm256_cvtps_epi32(_mm256_mul_ps(mul, _mm256_loadu_ps(xb + j + 8 * c))), top);
      }
      // Sums of the two 16-value groups: [0..7] + [8..15], [16..23] + [24..31].
      const __m256i g0 = _mm256_add_epi32(qi[0], qi[1]), g1 = _mm256_add_epi32(qi[2], qi[3]);
      __m256i h = _mm256_hadd_epi32(g0, g1);  // per 128-bit lane: g0 pairs, g1 pairs
      h = _mm256_hadd_epi32(h, h);
      const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
      sums[16 * b + j / 16] = static_cast<int16_t>(_mm_cvtsi128_si32(s));
      sums[16 * b + j / 16 + 1] = static_cast<int16_t>(_mm_extract_epi32(s, 1));
      const __m256i p =
          _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
      _mm256_storeu_si256(
          reinterpret_cast<__m256i*>(qb + j),
          _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    }
    scales[b] = 1 / iscale;
  }
}

}  // namespace

void fill_avx2_kquants(Kernels& t) {
  t.matmul_q2_k = matmul_rows<Q2K>;
  t.matmul_q3_k = matmul_rows<Q3K>;
  t.matmul_q4_k = matmul_rows<Q4K>;
  t.matmul_q5_k = matmul_rows<Q5K>;
  t.matmul_q6_k = matmul_rows<Q6K>;
  t.quantize_q8k = quantize_q8k;
}

}  // namespace infera::engine::kernels
