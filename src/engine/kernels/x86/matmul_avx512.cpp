// AVX-512 (F/BW/VL/DQ + VNNI) matrix products. Compiled with the avx512 flags
// (CMakeLists.txt, by file name); only called after dispatch.cpp has seen F, BW, VL,
// DQ, VNNI and BF16 and the OS's ZMM state support.
//
// Quantized weights: two 32-element blocks per 512-bit vpdpbusd (unsigned weight
// bytes x signed activation bytes). The weight bytes are made unsigned (Q4_0 nibbles
// 0..15; Q8_0 q + 128) and the offset is removed with the activation block sums:
// dot(w - c, x) = dot(w, x) - c * sum(x). Scales are handled 16 blocks at a time: the
// 16 weight scales are gathered (stride 18 or 34 bytes) and multiplied by the 16
// activation scales in one vector; each block pair then picks its scales with a lane
// permute. Every (activation row, weight row) pair owns one 16-lane accumulator that
// walks k in the same order whatever the tile, so results do not depend on the batch.
// GCC 12's AVX-512 intrinsics pass an intentionally undefined vector as the masked-off
// source, which its own -W(maybe-)uninitialized then report (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <cstring>

#include "engine/kernels/tables.h"

namespace infera::engine::kernels {
namespace {

const uint8_t* row_at(const void* base, size_t stride, int i) {
  return static_cast<const uint8_t*>(base) + static_cast<size_t>(i) * stride;
}
float* y_at(const MatmulArgs& a, int i) {
  return reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(a.y) + static_cast<size_t>(i) * a.y_stride);
}
int x_chunk_rows(size_t x_stride) {
  const size_t rows = (size_t{256} << 10) / (x_stride == 0 ? 1 : x_stride);
  return static_cast<int>(rows < 4 ? 4 : rows / 4 * 4);
}

// Runs tiles of TX x TR over chunks of activation rows; n = 1 (decode) uses 1 x TR1.
template <typename Tiles>
void tiled(const MatmulArgs& a, int r0, int r1) {
  const int chunk = x_chunk_rows(a.x_stride);
  for (int c0 = 0; c0 < a.n; c0 += chunk) {
    const int c1 = c0 + chunk < a.n ? c0 + chunk : a.n;
    const int c4 = c0 + (c1 - c0) / 4 * 4;
    int r = r0;
    for (; r + Tiles::kTR4 <= r1; r += Tiles::kTR4) {
      for (int i = c0; i < c4; i += 4) Tiles::tile4xN(a, i, r);
    }
    for (; r < r1; ++r) {
      for (int i = c0; i < c4; i += 4) Tiles::tile4x1(a, i, r);
    }
    for (int i = c4; i < c1; ++i) {
      int rr = r0;
      for (; rr + Tiles::kTR1 <= r1; rr += Tiles::kTR1) Tiles::tile1xN(a, i, rr);
      for (; rr < r1; ++rr) Tiles::tile1x1(a, i, rr);
    }
  }
}

// ---- float weight types ----------------------------------------------------------

struct F32W {
  static constexpr size_t kBytes = 4;
  static __m512 load16(const uint8_t* p) { return _mm512_loadu_ps(p); }
  static __m512 load_tail(const uint8_t* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
};
struct F16W {
  static constexpr size_t kBytes = 2;
  static __m512 load16(const uint8_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static __m512 load_tail(const uint8_t* p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }
};
struct BF16W {
  static constexpr size_t kBytes = 2;
  static __m512 widen(__m256i v) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16)); }
  static __m512 load16(const uint8_t* p) { return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static __m512 load_tail(const uint8_t* p, __mmask16 m) { return widen(_mm256_maskz_loadu_epi16(m, p)); }
};

template <typename W, int TX, int TR>
void float_tile(const MatmulArgs& a, int i, int r) {
  const uint8_t* w[TR];
  const float* x[TX];
  for (int t = 0; t < TR; ++t) w[t] = row_at(a.w, a.w_stride, r + t);
  for (int s = 0; s < TX; ++s) x[s] = reinterpret_cast<const float*>(row_at(a.x, a.x_stride, i + s));
  __m512 acc[TX][TR];
  for (int s = 0; s < TX; ++s)
    for (int t = 0; t < TR; ++t) acc[s][t] = _mm512_setzero_ps();
  const int k16 = a.k / 16 * 16;
  for (int j = 0; j < k16; j += 16) {
    __m512 wv[TR];
    for (int t = 0; t < TR; ++t) wv[t] = W::load16(w[t] + j * W::kBytes);
    for (int s = 0; s < TX; ++s) {
      const __m512 xv = _mm512_loadu_ps(x[s] + j);
      for (int t = 0; t < TR; ++t) acc[s][t] = _mm512_fmadd_ps(wv[t], xv, acc[s][t]);
    }
  }
  if (k16 < a.k) {
    const __mmask16 m = static_cast<__mmask16>((1u << (a.k - k16)) - 1);
    for (int t = 0; t < TR; ++t) {
      const __m512 wv = W::load_tail(w[t] + k16 * W::kBytes, m);
      for (int s = 0; s < TX; ++s) acc[s][t] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x[s] + k16), acc[s][t]);
    }
  }
  for (int s = 0; s < TX; ++s) {
    float* y = y_at(a, i + s);
    for (int t = 0; t < TR; ++t) y[r + t] = _mm512_reduce_add_ps(acc[s][t]);
  }
}

template <typename W>
struct FloatTiles {
  static constexpr int kTR4 = 4, kTR1 = 8;
  static void tile4xN(const MatmulArgs& a, int i, int r) { float_tile<W, 4, 4>(a, i, r); }
  static void tile4x1(const MatmulArgs& a, int i, int r) { float_tile<W, 4, 1>(a, i, r); }
  static void tile1xN(const MatmulArgs& a, int i, int r) { float_tile<W, 1, 8>(a, i, r); }
  static void tile1x1(const MatmulArgs& a, int i, int r) { float_tile<W, 1, 1>(a, i, r); }
};

template <typename W>
void matmul_float(const MatmulArgs& a, int r0, int r1) {
  tiled<FloatTiles<W>>(a, r0, r1);
}

// ---- quantized weight types ------------------------------------------------------

// Q4_0: weight bytes are the nibbles; offset 8. Two blocks load as
// [A lo nibbles | B lo | A hi | B hi] (16 bytes each), so the activation pair
// [A 0..31 | B 0..31] is permuted to [A 0..15 | B 0..15 | A 16..31 | B 16..31], and
// dpbusd lanes 0-3 and 8-11 belong to block A, 4-7 and 12-15 to block B.
struct Q4W {
  using Block = BlockQ4_0;
  static constexpr int kOffset = 8;
  static __m512i unpack2(const Block* b) {
    const __m128i qa = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[0].qs));
    const __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(qa),
                                              _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[1].qs)), 1);
    const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
    return _mm512_and_si512(both, _mm512_set1_epi8(0x0f));
  }
  static __m512i arrange_x(__m512i x) { return _mm512_shuffle_i64x2(x, x, _MM_SHUFFLE(3, 1, 2, 0)); }
  // Scale lane index for block pair p (blocks 2p, 2p+1 of a group of 16).
  static __m512i pair_index(int p) {
    const int a = 2 * p, b = 2 * p + 1;
    return _mm512_setr_epi32(a, a, a, a, b, b, b, b, a, a, a, a, b, b, b, b);
  }
  // One block as 32 unsigned bytes in element order (tail path).
  static __m256i unpack1(const Block* b) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->qs));
    const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
  }
};

// Q8_0: weight bytes q + 128 (unsigned); offset 128. Blocks are already in
// activation order, dpbusd lanes 0-7 belong to block A, 8-15 to block B.
struct Q8W {
  using Block = BlockQ8_0;
  static constexpr int kOffset = 128;
  static __m512i unpack2(const Block* b) {
    const __m256i qa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[0].qs));
    const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(qa),
                                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[1].qs)), 1);
    return _mm512_xor_si512(q, _mm512_set1_epi8(static_cast<char>(0x80)));
  }
  static __m512i arrange_x(__m512i x) { return x; }
  static __m512i pair_index(int p) {
    const int a = 2 * p, b = 2 * p + 1;
    return _mm512_setr_epi32(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b);
  }
  static __m256i unpack1(const Block* b) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs)),
                            _mm256_set1_epi8(static_cast<char>(0x80)));
  }
};

// The 16 weight scales of blocks [b, b + 16) of a row, as floats.
template <typename Block>
__m512 gather_scales16(const Block* row, int b) {
  const __m512i offsets = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32(static_cast<int>(sizeof(Block))));
  const __m512i words = _mm512_i32gather_epi32(offsets, row + b, 1);
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(words));
}

template <typename Q, int TX, int TR>
void quant_tile(const MatmulArgs& a, int i, int r) {
  using Block = typename Q::Block;
  const Block* w[TR];
  const int8_t* xq[TX];
  const float* xd[TX];
  const int32_t* xs[TX];
  for (int t = 0; t < TR; ++t) w[t] = reinterpret_cast<const Block*>(row_at(a.w, a.w_stride, r + t));
  for (int s = 0; s < TX; ++s) {
    const void* row = row_at(a.x, a.x_stride, i + s);
    xq[s] = q8_values(row);
    xd[s] = q8_scales(row, a.k);
    xs[s] = q8_sums(row, a.k);
  }
  __m512 acc[TX][TR];
  for (int s = 0; s < TX; ++s)
    for (int t = 0; t < TR; ++t) acc[s][t] = _mm512_setzero_ps();
  const int nb = a.k / kBlockElems;
  const int nb16 = nb / 16 * 16;
  const __m512 neg_offset = _mm512_set1_ps(-static_cast<float>(Q::kOffset));
  for (int b = 0; b < nb16; b += 16) {
    __m512 wd[TR];
    for (int t = 0; t < TR; ++t) wd[t] = gather_scales16(w[t], b);
    __m512 scale[TX][TR];
    for (int s = 0; s < TX; ++s) {
      const __m512 dx = _mm512_loadu_ps(xd[s] + b);
      // -offset * sum(x) per block: the correction, scaled like the block's dot.
      const __m512 corr = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_loadu_si512(xs[s] + b)), neg_offset);
      for (int t = 0; t < TR; ++t) {
        scale[s][t] = _mm512_mul_ps(wd[t], dx);
        acc[s][t] = _mm512_fmadd_ps(scale[s][t], corr, acc[s][t]);
      }
    }
    for (int p = 0; p < 8; ++p) {
      const __m512i idx = Q::pair_index(p);
      __m512i wv[TR];
      for (int t = 0; t < TR; ++t) wv[t] = Q::unpack2(w[t] + b + 2 * p);
      for (int s = 0; s < TX; ++s) {
        const __m512i xv = Q::arrange_x(_mm512_loadu_si512(xq[s] + (b + 2 * p) * kBlockElems));
        for (int t = 0; t < TR; ++t) {
          const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv[t], xv);
          acc[s][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(idx, scale[s][t]), acc[s][t]);
        }
      }
    }
  }
  // Remaining blocks one at a time (256-bit), same order for every tile shape.
  for (int b = nb16; b < nb; ++b) {
    for (int t = 0; t < TR; ++t) {
      const __m256i wv = Q::unpack1(w[t] + b);
      const float wd = _cvtsh_ss(w[t][b].d);
      for (int s = 0; s < TX; ++s) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[s] + b * kBlockElems));
        __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wv, xv);
        // Spread -offset * sum over the 8 lanes: each lane gets -offset/8 * sum.
        dot = _mm256_sub_epi32(dot, _mm256_set1_epi32(xs[s][b] * (Q::kOffset / 8)));
        const __m512 prod = _mm512_castps256_ps512(_mm256_mul_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(wd * xd[s][b])));
        acc[s][t] = _mm512_add_ps(acc[s][t], _mm512_maskz_mov_ps(0x00ff, prod));
      }
    }
  }
  for (int s = 0; s < TX; ++s) {
    float* y = y_at(a, i + s);
    for (int t = 0; t < TR; ++t) y[r + t] = _mm512_reduce_add_ps(acc[s][t]);
  }
}

template <typename Q>
struct QuantTiles {
  static constexpr int kTR4 = 4, kTR1 = 4;
  static void tile4xN(const MatmulArgs& a, int i, int r) { quant_tile<Q, 4, 4>(a, i, r); }
  static void tile4x1(const MatmulArgs& a, int i, int r) { quant_tile<Q, 4, 1>(a, i, r); }
  static void tile1xN(const MatmulArgs& a, int i, int r) { quant_tile<Q, 1, 4>(a, i, r); }
  static void tile1x1(const MatmulArgs& a, int i, int r) { quant_tile<Q, 1, 1>(a, i, r); }
};

template <typename Q>
void matmul_quant(const MatmulArgs& a, int r0, int r1) {
  tiled<QuantTiles<Q>>(a, r0, r1);
}

}  // namespace

void fill_avx512(Kernels& t) {
  t.matmul_f32 = matmul_float<F32W>;
  t.matmul_f16 = matmul_float<F16W>;
  t.matmul_bf16 = matmul_float<BF16W>;
  t.matmul_q8_0 = matmul_quant<Q8W>;
  t.matmul_q4_0 = matmul_quant<Q4W>;
}

}  // namespace infera::engine::kernels
