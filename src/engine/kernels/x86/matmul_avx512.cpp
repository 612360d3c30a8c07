// AVX-512 (F/BW/VL/DQ + VNNI) matrix products. Compiled with the avx512 flags
// (CMakeLists.txt, by file name); only called after dispatch.cpp has seen F, BW, VL,
// DQ, VNNI and BF16 and the OS's ZMM state support.
//
// Float weight types: 16-lane FMA tiles (4 activation rows x 4 weight rows for
// prefill, 1 x 8 for decode) with masked tails. Every (activation row, weight row)
// pair owns one accumulator that walks k in the same order whatever the tile, so
// results do not depend on the batch. Q4_0 and Q8_0: matmul_lanes_avx512.cpp.
//
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
  return reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(a.y) +
                                  static_cast<size_t>(i) * a.y_stride);
}
int x_chunk_rows(size_t x_stride) {
  const size_t rows = (size_t{256} << 10) / (x_stride == 0 ? 1 : x_stride);
  return static_cast<int>(rows < 4 ? 4 : rows / 4 * 4);
}

// Decode reads a few short weight rows at once, too many short streams for the
// hardware prefetchers: each step hints into L2 the cache lines that start within
// bytes [offset, offset + span) of the next tile's `count` rows (each line once over
// a row). Into L2, not L1: that many outstanding L1 misses stall (see the Q4_0 kernel).
// Prefetches never fault, so rows past the matrix are harmless.
void prefetch_next_rows(const MatmulArgs& a, int r_next, int count, size_t offset, size_t span) {
  const uintptr_t base =
      reinterpret_cast<uintptr_t>(a.w) + static_cast<size_t>(r_next) * a.w_stride;
  for (int t = 0; t < count; ++t) {
    const uintptr_t lo = base + static_cast<size_t>(t) * a.w_stride + offset;
    for (uintptr_t line = (lo + 63) & ~uintptr_t{63}; line < lo + span; line += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(line), _MM_HINT_T1);
    }
  }
}

// Runs tiles of TX x TR over chunks of activation rows; n = 1 (decode) uses 1 x TR1.
template <typename Tiles>
void tiled(const MatmulArgs& a, int r0, int r1) {
  const int chunk = x_chunk_rows(a.x_stride);
  for (int c0 = 0; c0 < a.n; c0 += chunk) {
    const int c1 = c0 + chunk < a.n ? c0 + chunk : a.n;
    const int c4 = c0 + (c1 - c0) / Tiles::kTX * Tiles::kTX;
    int r = r0;
    for (; r + Tiles::kTR4 <= r1; r += Tiles::kTR4) {
      for (int i = c0; i < c4; i += Tiles::kTX) Tiles::tile4xN(a, i, r);
    }
    for (; r < r1; ++r) {
      for (int i = c0; i < c4; i += Tiles::kTX) Tiles::tile4x1(a, i, r);
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
  static __m512 load_tail(const uint8_t* p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  }
};
struct BF16W {
  static constexpr size_t kBytes = 2;
  static __m512 widen(__m256i v) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
  }
  static __m512 load16(const uint8_t* p) {
    return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static __m512 load_tail(const uint8_t* p, __mmask16 m) {
    return widen(_mm256_maskz_loadu_epi16(m, p));
  }
};

template <typename W, int TX, int TR>
void float_tile(const MatmulArgs& a, int i, int r) {
  const uint8_t* w[TR];
  const float* x[TX];
  for (int t = 0; t < TR; ++t) w[t] = row_at(a.w, a.w_stride, r + t);
  for (int s = 0; s < TX; ++s)
    x[s] = reinterpret_cast<const float*>(row_at(a.x, a.x_stride, i + s));
  __m512 acc[TX][TR];
  for (int s = 0; s < TX; ++s)
    for (int t = 0; t < TR; ++t) acc[s][t] = _mm512_setzero_ps();
  const int k16 = a.k / 16 * 16;
  for (int j = 0; j < k16; j += 16) {
    if (TX == 1) prefetch_next_rows(a, r + TR, TR, j * W::kBytes, 16 * W::kBytes);
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
      for (int s = 0; s < TX; ++s)
        acc[s][t] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x[s] + k16), acc[s][t]);
    }
  }
  for (int s = 0; s < TX; ++s) {
    float* y = y_at(a, i + s);
    for (int t = 0; t < TR; ++t) y[r + t] = _mm512_reduce_add_ps(acc[s][t]);
  }
}

template <typename W>
struct FloatTiles {
  static constexpr int kTX = 4, kTR4 = 4, kTR1 = 8;
  static void tile4xN(const MatmulArgs& a, int i, int r) { float_tile<W, kTX, kTR4>(a, i, r); }
  static void tile4x1(const MatmulArgs& a, int i, int r) { float_tile<W, kTX, 1>(a, i, r); }
  static void tile1xN(const MatmulArgs& a, int i, int r) { float_tile<W, 1, 8>(a, i, r); }
  static void tile1x1(const MatmulArgs& a, int i, int r) { float_tile<W, 1, 1>(a, i, r); }
};

template <typename W>
void matmul_float(const MatmulArgs& a, int r0, int r1) {
  tiled<FloatTiles<W>>(a, r0, r1);
}

}  // namespace

void fill_avx512(Kernels& t) {
  t.matmul_f32 = matmul_float<F32W>;
  t.matmul_f16 = matmul_float<F16W>;
  t.matmul_bf16 = matmul_float<BF16W>;
  t.matmul_q8_0 = matmul_q8_0_avx512;
  t.matmul_q4_0 = matmul_q4_0_avx512;
}

}  // namespace infera::engine::kernels
