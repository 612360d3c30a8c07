// AVX-512 (F/BW/VL/DQ + VNNI) matrix products. Compiled with the avx512 flags
// (CMakeLists.txt, by file name); only called after dispatch.cpp has seen F, BW, VL,
// DQ, VNNI and BF16 and the OS's ZMM state support.
//
// Q8_0 weights: 512-bit vpdpbusd (unsigned weight bytes x signed activation bytes),
// two blocks a step; Q4_0 has its own kernel (matmul_q4_0_avx512.cpp). The weight
// bytes are made unsigned (q + 128) and the offset is removed with the activation
// block sums: dot(w - 128, x) = dot(w, x) - 128 * sum(x). Scales are handled 16 blocks
// at a time: the 16 weight scales are picked out of the row with word permutes and
// multiplied by the 16 activation scales in one vector; each step then picks its
// blocks' scales with a lane permute. Every (activation row, weight row) pair owns one
// 16-lane accumulator that walks k in the same order whatever the tile, so results do
// not depend on the batch. Float types: 16-lane FMA tiles with masked tails.
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
  return reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(a.y) + static_cast<size_t>(i) * a.y_stride);
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
  const uintptr_t base = reinterpret_cast<uintptr_t>(a.w) + static_cast<size_t>(r_next) * a.w_stride;
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

// ---- quantized weight types ------------------------------------------------------

// Each step covers kStep blocks: the weights as unsigned bytes (Wv) against the
// activations arranged to match (Xv); dot() returns 16 int32 lanes whose blocks
// scale_index() names.

// Q8_0, 2 blocks a step, offset 128: weight bytes q + 128 (unsigned); blocks are in
// activation order, lanes 0-7 belong to block A, 8-15 to block B.
struct Q8W {
  using Block = BlockQ8_0;
  static constexpr int kOffset = 128;
  static constexpr int kStep = 2;
  struct Wv {
    __m512i q;
  };
  struct Xv {
    __m512i q;
  };
  static Wv unpack(const Block* b) {
    const __m256i qa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[0].qs));
    const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(qa),
                                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[1].qs)), 1);
    return {_mm512_xor_si512(q, _mm512_set1_epi8(static_cast<char>(0x80)))};
  }
  static Xv arrange_x(const int8_t* x) { return {_mm512_loadu_si512(x)}; }
  static __m512i dot(const Wv& w, const Xv& x) { return _mm512_dpbusd_epi32(_mm512_setzero_si512(), w.q, x.q); }
  static __m512i scale_index(int s) {
    const int a = 2 * s, b = 2 * s + 1;
    return _mm512_setr_epi32(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b);
  }
  static __m256i unpack1(const Block* b) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs)),
                            _mm256_set1_epi8(static_cast<char>(0x80)));
  }
};

// The 16 weight scales of blocks [b, b + 16) of a row, as floats. Block j's scale is
// 16-bit word j * S of the group (S = block size in words: 9 for Q4_0, 17 for Q8_0);
// word permutes over 64-word windows pick them (hardware gathers are slow on some
// cores). Masked loads never touch memory past the group.
template <int kStrideWords>
struct ScaleWindows {
  static constexpr int kGroupWords = 16 * kStrideWords;
  static constexpr int kWindows = (15 * kStrideWords) / 64 + 1;
  int16_t index[kWindows][32] = {};
  uint32_t lanes[kWindows] = {};
  constexpr ScaleWindows() {
    for (int j = 0; j < 16; ++j) {
      const int word = j * kStrideWords;
      index[word / 64][j] = static_cast<int16_t>(word % 64);
      lanes[word / 64] |= 1u << j;
    }
  }
};

template <typename Block>
__m512 gather_scales16(const Block* row, int b) {
  constexpr int kStride = static_cast<int>(sizeof(Block) / 2);
  static constexpr ScaleWindows<kStride> kWin{};
  const auto* words = reinterpret_cast<const uint16_t*>(row + b);
  __m512i result = _mm512_setzero_si512();
  for (int w = 0; w < kWin.kWindows; ++w) {
    auto valid = [](int first) -> __mmask32 {
      const int left = kWin.kGroupWords - first;
      return left >= 32 ? ~__mmask32{0} : left <= 0 ? __mmask32{0} : static_cast<__mmask32>((1u << left) - 1);
    };
    const __m512i lo = _mm512_maskz_loadu_epi16(valid(64 * w), words + 64 * w);
    const __m512i hi = _mm512_maskz_loadu_epi16(valid(64 * w + 32), words + 64 * w + 32);
    const __m512i idx = _mm512_loadu_si512(kWin.index[w]);
    result = _mm512_mask_blend_epi16(kWin.lanes[w], result, _mm512_permutex2var_epi16(lo, idx, hi));
  }
  return _mm512_cvtph_ps(_mm512_castsi512_si256(result));
}

constexpr size_t kPrefetchBytes = 1024;

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
    for (int t = 0; t < TR; ++t) {
      // Weights stream once: fetch a few groups ahead (the lines past the row end
      // are harmless hints).
      const char* ahead = reinterpret_cast<const char*>(w[t] + b) + kPrefetchBytes;
      for (size_t off = 0; off < 16 * sizeof(Block); off += 64) _mm_prefetch(ahead + off, _MM_HINT_T0);
      wd[t] = gather_scales16(w[t], b);
    }
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
#pragma GCC unroll 8
    for (int step = 0; step < 16 / Q::kStep; ++step) {
      const int blk = b + step * Q::kStep;
      if (TX == 1) prefetch_next_rows(a, r + TR, TR, blk * sizeof(Block), Q::kStep * sizeof(Block));
      const __m512i idx = Q::scale_index(step);
      typename Q::Wv wv[TR];
      for (int t = 0; t < TR; ++t) wv[t] = Q::unpack(w[t] + blk);
      for (int s = 0; s < TX; ++s) {
        const typename Q::Xv xv = Q::arrange_x(xq[s] + blk * kBlockElems);
        for (int t = 0; t < TR; ++t) {
          const __m512 dot = _mm512_cvtepi32_ps(Q::dot(wv[t], xv));
          acc[s][t] = _mm512_fmadd_ps(dot, _mm512_permutexvar_ps(idx, scale[s][t]), acc[s][t]);
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
  static constexpr int kTX = 4, kTR4 = 4, kTR1 = 4;
  static void tile4xN(const MatmulArgs& a, int i, int r) { quant_tile<Q, kTX, kTR4>(a, i, r); }
  static void tile4x1(const MatmulArgs& a, int i, int r) { quant_tile<Q, kTX, 1>(a, i, r); }
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
  t.matmul_q4_0 = matmul_q4_0_avx512;
}

}  // namespace infera::engine::kernels
