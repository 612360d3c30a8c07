// AVX2 + FMA + F16C matrix products and activation quantization. Compiled with
// -mavx2 -mfma -mf16c (CMakeLists.txt, by file name); only called after dispatch.cpp
// has seen those features.
//
// Every (activation row, weight row) pair is summed in one order whatever the tile
// shape or row range, so a row's result does not depend on the batch. Tiles reuse
// each weight load across up to 4 activation rows (prefill); float decode streams one
// weight row at a time, quantized decode reads 4 weight rows at once (bandwidth
// bound). Q4_0 has its own kernel (matmul_lanes_avx2.cpp).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "engine/kernels/tables.h"
#include "engine/kernels/x86/avx2_util.h"

namespace infera::engine::kernels {
namespace {

using avx2::hsum;
using avx2::prefetch_next_rows;


// Activation rows per chunk so that a chunk stays in L2 while weight tiles sweep it.
int x_chunk_rows(size_t x_stride) {
  const size_t rows = (size_t{256} << 10) / (x_stride == 0 ? 1 : x_stride);
  return static_cast<int>(rows < 4 ? 4 : rows / 4 * 4);
}


// ---- float weight types ----------------------------------------------------------

struct F32W {
  static constexpr size_t kBytes = 4;
  static __m256 load8(const uint8_t* p) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
  }
  static float load1(const uint8_t* p) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  }
};
struct F16W {
  static constexpr size_t kBytes = 2;
  static __m256 load8(const uint8_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static float load1(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
  }
};
struct BF16W {
  static constexpr size_t kBytes = 2;
  static __m256 load8(const uint8_t* p) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  }
  static float load1(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return bf16_to_f32(h);
  }
};

// The one order every (activation row, weight row) dot product is summed in, whatever
// the tile: 8-element chunk c is multiply-added (in increasing c) into partial sum
// c % 2, then hsum(p0 + p1), then the last k % 8 products one by one. Two chains keep
// the FMA latency off the critical path when one weight row streams alone (decode);
// a tile keeps A of each pair's two partial sums in registers and walks k 2 / A times.
template <typename W, int TX, int TR, int A>
void float_tile(const MatmulArgs& a, int i, int r) {
  static_assert(2 % A == 0 && TX * TR * A <= 12, "accumulators must fit the register file");
  const uint8_t* w[TR];
  const float* x[TX];
  for (int t = 0; t < TR; ++t) w[t] = row_at(a.w, a.w_stride, r + t);
  for (int s = 0; s < TX; ++s)
    x[s] = reinterpret_cast<const float*>(row_at(a.x, a.x_stride, i + s));
  const int k16 = a.k / 16 * 16;
  const int k8 = a.k / 8 * 8;
  __m256 part[TX][TR][2];
  for (int pass = 0; pass < 2 / A; ++pass) {
    __m256 acc[TX][TR][A];
    for (int s = 0; s < TX; ++s)
      for (int t = 0; t < TR; ++t)
        for (int q = 0; q < A; ++q) acc[s][t][q] = _mm256_setzero_ps();
    for (int j = 0; j < k16; j += 16) {
      if constexpr (TR == 1) {
        // One row streaming alone (decode): ask for the line 8 KiB ahead, as the
        // AVX-512 path does 4 KiB ahead (F16 5632 x 2048 from memory, one thread,
        // bench/kernels_bench.cpp: 27-29 GB/s without, 31-36 with; 2 KiB: no gain,
        // 4 KiB: 29-34).
        if ((j * W::kBytes) % 64 == 0)
          _mm_prefetch(reinterpret_cast<const char*>(w[0] + j * W::kBytes) + 8192, _MM_HINT_T0);
      }
      for (int q = 0; q < A; ++q) {
        const int jj = j + 8 * (pass * A + q);
        __m256 wv[TR];
        for (int t = 0; t < TR; ++t) wv[t] = W::load8(w[t] + jj * W::kBytes);
        for (int s = 0; s < TX; ++s) {
          const __m256 xv = _mm256_loadu_ps(x[s] + jj);
          for (int t = 0; t < TR; ++t) acc[s][t][q] = _mm256_fmadd_ps(wv[t], xv, acc[s][t][q]);
        }
      }
    }
    for (int q = 0; q < A; ++q) {  // a last whole chunk of the partial round
      const int jj = k16 + 8 * (pass * A + q);
      if (jj + 8 > k8) break;
      for (int t = 0; t < TR; ++t) {
        const __m256 wv = W::load8(w[t] + jj * W::kBytes);
        for (int s = 0; s < TX; ++s)
          acc[s][t][q] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x[s] + jj), acc[s][t][q]);
      }
    }
    for (int s = 0; s < TX; ++s)
      for (int t = 0; t < TR; ++t)
        for (int q = 0; q < A; ++q) part[s][t][pass * A + q] = acc[s][t][q];
  }
  for (int s = 0; s < TX; ++s) {
    float* y = y_at(a, i + s);
    for (int t = 0; t < TR; ++t) {
      float sum = hsum(_mm256_add_ps(part[s][t][0], part[s][t][1]));
      for (int j = k8; j < a.k; ++j) sum += W::load1(w[t] + j * W::kBytes) * x[s][j];
      y[r + t] = sum;
    }
  }
}

// Up to four activation rows (decode, or a few sequences decoding together): one
// weight row at a time, so each thread reads its row range front to back as one
// sequential stream the hardware prefetchers follow (several rows at once, 4 KiB
// apart, measured 25-30% slower on the AVX-512 path even with software prefetch).
template <typename W>
void float_stream_rows(const MatmulArgs& a, int i, int rows_x, int r0, int r1) {
  for (int r = r0; r < r1; ++r) {
    switch (rows_x) {
      case 1: float_tile<W, 1, 1, 2>(a, i, r); break;
      case 2: float_tile<W, 2, 1, 2>(a, i, r); break;
      case 3: float_tile<W, 3, 1, 2>(a, i, r); break;
      default: float_tile<W, 4, 1, 2>(a, i, r); break;
    }
  }
}

// Prefill: tiles of 4 activation rows x 3 weight rows, k walked twice (one partial sum
// per pass, 12 accumulators) over chunks of activation rows (each weight tile reused
// across the chunk from cache); leftover activation rows stream the tile's weight rows.
// Measured on one thread (F16 5632 x 2048, bench/kernels_bench.cpp, avx2 table): 99
// GFLOP/s, against 95 for 2 x 3 tiles in one pass and 106 for the former single-chain
// order, whose decode streamed 26 GB/s against 29 now.
template <typename W>
void matmul_float(const MatmulArgs& a, int r0, int r1) {
  constexpr int kTX = 4, kTR = 3;
  if (a.n <= 4) return float_stream_rows<W>(a, 0, a.n, r0, r1);
  const int chunk = x_chunk_rows(a.x_stride);
  for (int c0 = 0; c0 < a.n; c0 += chunk) {
    const int c1 = c0 + chunk < a.n ? c0 + chunk : a.n;
    const int cx = c0 + (c1 - c0) / kTX * kTX;
    int r = r0;
    for (; r + kTR <= r1; r += kTR) {
      for (int i = c0; i < cx; i += kTX) float_tile<W, kTX, kTR, 1>(a, i, r);
      if (cx < c1) float_stream_rows<W>(a, cx, c1 - cx, r, r + kTR);
    }
    for (int i = c0; i < c1; i += 4) float_stream_rows<W>(a, i, c1 - i < 4 ? c1 - i : 4, r, r1);
  }
}

// The shared tiling driver: chunks of activation rows, weight tiles of TR_BIG rows
// over 4-row activation tiles, single rows for the remainders.
template <
    void (*kTile4x3)(const MatmulArgs&, int, int), void (*kTile4x1)(const MatmulArgs&, int, int),
    void (*kTile1x4)(const MatmulArgs&, int, int), void (*kTile1x1)(const MatmulArgs&, int, int)>
void tiled(const MatmulArgs& a, int r0, int r1) {
  const int chunk = x_chunk_rows(a.x_stride);
  for (int c0 = 0; c0 < a.n; c0 += chunk) {
    const int c1 = c0 + chunk < a.n ? c0 + chunk : a.n;
    const int c4 = c0 + (c1 - c0) / 4 * 4;
    int r = r0;
    for (; r + 3 <= r1; r += 3) {
      for (int i = c0; i < c4; i += 4) kTile4x3(a, i, r);
    }
    for (; r < r1; ++r) {
      for (int i = c0; i < c4; i += 4) kTile4x1(a, i, r);
    }
    for (int i = c4; i < c1; ++i) {
      int rr = r0;
      for (; rr + 4 <= r1; rr += 4) kTile1x4(a, i, rr);
      for (; rr < r1; ++rr) kTile1x1(a, i, rr);
    }
  }
}

// ---- quantized weight types ------------------------------------------------------

// Q8_0: signed x signed via the sign trick (|w| unsigned, x takes w's sign).
struct Q8W {
  using Block = BlockQ8_0;
  static __m256i unpack(const Block* b) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs));
  }
  static __m256i dot(__m256i w, const int8_t* x, const int32_t*) {
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(xv, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
  }
};

template <typename Q, int TX, int TR>
void quant_tile(const MatmulArgs& a, int i, int r) {
  using Block = typename Q::Block;
  const Block* w[TR];
  const int8_t* xq[TX];
  const float* xd[TX];
  const int32_t* xs[TX];
  for (int t = 0; t < TR; ++t)
    w[t] = reinterpret_cast<const Block*>(row_at(a.w, a.w_stride, r + t));
  for (int s = 0; s < TX; ++s) {
    const void* row = row_at(a.x, a.x_stride, i + s);
    xq[s] = q8_values(row);
    xd[s] = q8_scales(row, a.k);
    xs[s] = q8_sums(row, a.k);
  }
  __m256 acc[TX][TR];
  for (int s = 0; s < TX; ++s)
    for (int t = 0; t < TR; ++t) acc[s][t] = _mm256_setzero_ps();
  const int nb = a.k / kBlockElems;
  for (int b = 0; b < nb; ++b) {
    if (TX == 1) prefetch_next_rows(a, r + TR, TR, b * sizeof(Block), sizeof(Block));
    __m256i wv[TR];
    __m256 wd[TR];
    for (int t = 0; t < TR; ++t) {
      wv[t] = Q::unpack(w[t] + b);
      wd[t] = _mm256_set1_ps(_cvtsh_ss(w[t][b].d));
    }
    for (int s = 0; s < TX; ++s) {
      const __m256 dx = _mm256_broadcast_ss(xd[s] + b);
      for (int t = 0; t < TR; ++t) {
        const __m256 p = _mm256_cvtepi32_ps(Q::dot(wv[t], xq[s] + b * kBlockElems, xs[s] + b));
        acc[s][t] = _mm256_fmadd_ps(p, _mm256_mul_ps(wd[t], dx), acc[s][t]);
      }
    }
  }
  for (int s = 0; s < TX; ++s) {
    float* y = y_at(a, i + s);
    for (int t = 0; t < TR; ++t) y[r + t] = hsum(acc[s][t]);
  }
}

template <typename Q>
void matmul_quant(const MatmulArgs& a, int r0, int r1) {
  tiled<quant_tile<Q, 4, 3>, quant_tile<Q, 4, 1>, quant_tile<Q, 1, 4>, quant_tile<Q, 1, 1>>(a, r0,
                                                                                            r1);
}

// Same results as the scalar quantize_q8 (same float operations, nearest-even rounding).
void quantize_q8(const float* x, void* out, int k) {
  const int nb = k / kBlockElems;
  auto* q = static_cast<int8_t*>(out);
  auto* scales = reinterpret_cast<float*>(static_cast<uint8_t*>(out) + k);
  auto* sums = reinterpret_cast<int32_t*>(static_cast<uint8_t*>(out) + k + 4 * nb);
  auto* min_sums = reinterpret_cast<float*>(static_cast<uint8_t*>(out) + k + 8 * nb);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int b = 0; b < nb; ++b) {
    const float* xb = x + b * kBlockElems;
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) {
      v[j] = _mm256_loadu_ps(xb + 8 * j);
      amax = _mm256_max_ps(amax, _mm256_and_ps(v[j], abs_mask));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float max = _mm_cvtss_f32(m);
    const float d = max / 127.0f;
    const __m256 id = _mm256_set1_ps(d != 0 ? 127.0f / max : 0.0f);
    __m256i qi[4];
    for (int j = 0; j < 4; ++j) qi[j] = _mm256_cvtps_epi32(_mm256_mul_ps(v[j], id));
    const __m256i s4 =
        _mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]), _mm256_add_epi32(qi[2], qi[3]));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
    s = _mm_hadd_epi32(s, s);
    s = _mm_hadd_epi32(s, s);
    // packs interleave 128-bit lanes; the permute restores element order.
    const __m256i p =
        _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + b * kBlockElems),
                        _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    scales[b] = _cvtsh_ss(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
    sums[b] = _mm_cvtsi128_si32(s);
    min_sums[b] = _cvtsh_ss(_cvtss_sh(d * static_cast<float>(sums[b]), _MM_FROUND_TO_NEAREST_INT));
  }
}

}  // namespace

void fill_avx2(Kernels& t) {
  t.matmul_f32 = matmul_float<F32W>;
  t.matmul_f16 = matmul_float<F16W>;
  t.matmul_bf16 = matmul_float<BF16W>;
  t.matmul_q8_0 = matmul_quant<Q8W>;
  t.matmul_q4_0 = matmul_q4_0_avx2;
  t.quantize_q8 = quantize_q8;
  fill_avx2_ops(t);
}

}  // namespace infera::engine::kernels
