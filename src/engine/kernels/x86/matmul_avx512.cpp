// AVX-512 (F/BW/VL/DQ + VNNI) matrix products. Compiled with the avx512 flags
// (CMakeLists.txt, by file name); only called after dispatch.cpp has seen F, BW, VL,
// DQ, VNNI and BF16 and the OS's ZMM state support.
//
// Float weight types: 16-lane FMA tiles (4 activation rows x 5 weight rows for
// prefill, one weight row at a time for up to 4 activation rows) with masked tails.
// Every (activation row, weight row) pair is summed in one fixed order whatever the
// tile (float_tile), so results do not depend on the batch. Q4_0 and Q8_0:
// matmul_lanes_avx512.cpp.
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
#include "engine/kernels/x86/avx2_util.h"

namespace infera::engine::kernels {
namespace {

int x_chunk_rows(size_t x_stride) {
  const size_t rows = (size_t{256} << 10) / (x_stride == 0 ? 1 : x_stride);
  return static_cast<int>(rows < 4 ? 4 : rows / 4 * 4);
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

// The one order every (activation row, weight row) dot product is summed in, whatever
// the tile: the row is cut into 16-element chunks, multiply-added in increasing order
// into one 16-lane partial sum, then reduce_add. One chain per pair: with the prefetch
// below, decode streams as fast as with two interleaved chains (one thread, F16
// 5632 x 2048 from memory: 32-36 GB/s either way), and prefill tiles fit twice the
// pairs in registers (4 x 5 tile: 165-187 GFLOP/s against 142-150 for the 2 x 6 tile
// two chains allowed; 4 x 4 157-176, 4 x 6 129 as it spills, 3 x 8 151). A tile of TX
// activation rows x TR weight rows needs TX * TR accumulators.
constexpr int kPrefetchAhead = 8192;  // bytes, see float_tile

template <typename W, int TX, int TR>
void float_tile(const MatmulArgs& a, int i, int r) {
  static_assert(TX * TR <= 24, "accumulators must fit the register file");
  const uint8_t* w[TR];
  const float* x[TX];
  for (int t = 0; t < TR; ++t) w[t] = row_at(a.w, a.w_stride, r + t);
  for (int s = 0; s < TX; ++s)
    x[s] = reinterpret_cast<const float*>(row_at(a.x, a.x_stride, i + s));
  const int kg = a.k / 16 * 16;
  __m512 acc[TX][TR];
  for (int s = 0; s < TX; ++s)
    for (int t = 0; t < TR; ++t) acc[s][t] = _mm512_setzero_ps();
  for (int j = 0; j < kg; j += 16) {
    if constexpr (TR == 1) {
      // One row streaming alone (decode): ask for the line 8 KiB ahead; the hardware
      // prefetcher alone leaves ~10% of the bandwidth unused here (one thread, F16
      // 5632 x 2048 from memory: 31-32 GB/s without, 34-36 GB/s with). In the whole
      // forward pass 8 KiB beats 4 KiB (TinyLlama F16, one thread: 15.6-16.0 -> 16.9-17.6
      // tok/s; 12-16 KiB alike, 6 KiB between).
      if ((j * W::kBytes) % 64 == 0)
        _mm_prefetch(reinterpret_cast<const char*>(w[0] + j * W::kBytes) + kPrefetchAhead,
                     _MM_HINT_T0);
    }
    __m512 wv[TR];
    for (int t = 0; t < TR; ++t) wv[t] = W::load16(w[t] + j * W::kBytes);
    for (int s = 0; s < TX; ++s) {
      const __m512 xv = _mm512_loadu_ps(x[s] + j);
      for (int t = 0; t < TR; ++t) acc[s][t] = _mm512_fmadd_ps(wv[t], xv, acc[s][t]);
    }
  }
  if (kg < a.k) {  // the last, partial chunk
    const __mmask16 m = static_cast<__mmask16>((1u << (a.k - kg)) - 1);
    for (int t = 0; t < TR; ++t) {
      const __m512 wv = W::load_tail(w[t] + kg * W::kBytes, m);
      for (int s = 0; s < TX; ++s)
        acc[s][t] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x[s] + kg), acc[s][t]);
    }
  }
  for (int s = 0; s < TX; ++s) {
    float* y = y_at(a, i + s);
    for (int t = 0; t < TR; ++t) y[r + t] = _mm512_reduce_add_ps(acc[s][t]);
  }
}

// Up to four activation rows (decode, or a few sequences decoding together): one
// weight row at a time, so each thread streams its row range front to back as one
// sequential read, which the hardware prefetchers follow at full memory bandwidth
// (several rows at once, 4 KiB apart, measured 25-30% slower here even with software
// prefetch).
template <typename W, int TX>
void stream_rows(const MatmulArgs& a, int i, int r0, int r1) {
  for (int r = r0; r < r1; ++r) float_tile<W, TX, 1>(a, i, r);
}

template <typename W>
void stream_rows_n(const MatmulArgs& a, int i, int rows_x, int r0, int r1) {
  switch (rows_x) {
    case 1: return stream_rows<W, 1>(a, i, r0, r1);
    case 2: return stream_rows<W, 2>(a, i, r0, r1);
    case 3: return stream_rows<W, 3>(a, i, r0, r1);
    default: return stream_rows<W, 4>(a, i, r0, r1);
  }
}

// Prefill: tiles of 4 activation rows x 5 weight rows (see float_tile) over chunks of
// activation rows, each weight tile reused across the chunk from cache; leftover
// activation rows stream the tile's weight rows.
template <typename W>
void matmul_float(const MatmulArgs& a, int r0, int r1) {
  constexpr int kTX = 4, kTR = 5;
  if (a.n <= 4) return stream_rows_n<W>(a, 0, a.n, r0, r1);
  const int chunk = x_chunk_rows(a.x_stride);
  for (int c0 = 0; c0 < a.n; c0 += chunk) {
    const int c1 = c0 + chunk < a.n ? c0 + chunk : a.n;
    const int cx = c0 + (c1 - c0) / kTX * kTX;
    int r = r0;
    for (; r + kTR <= r1; r += kTR) {
      for (int i = c0; i < cx; i += kTX) float_tile<W, kTX, kTR>(a, i, r);
      if (cx < c1) stream_rows_n<W>(a, cx, c1 - cx, r, r + kTR);
    }
    for (int i = c0; i < c1; i += 4) stream_rows_n<W>(a, i, c1 - i < 4 ? c1 - i : 4, r, r1);
  }
}

}  // namespace

void fill_avx512(Kernels& t) {
  t.matmul_f32 = matmul_float<F32W>;
  t.matmul_f16 = matmul_float<F16W>;
  t.matmul_bf16 = matmul_float<BF16W>;
  t.matmul_q8_0 = matmul_q8_0_avx512;
  t.matmul_q4_0 = matmul_q4_0_avx512;
  fill_packed_avx512(t);
}

}  // namespace infera::engine::kernels
