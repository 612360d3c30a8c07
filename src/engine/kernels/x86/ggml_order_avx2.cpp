// AVX2 products in llama.cpp's x86 summation orders (ggml_order in kernels.h; the
// orders are spelled out in scalar/ggml_order_scalar.cpp, the reference these are
// tested against bit for bit) and ggml's AVX2 vector SiLU.
//
// The integer parts are exact whatever the instruction order; only the float steps
// must be ggml's, so each kernel forms the same integer lanes (4-element groups summed
// into 32-bit lanes) and applies the same FMAs. One weight row and one activation row
// at a time, as ggml's vec_dot: about llama.cpp's own decode speed, slower prefill.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "engine/kernels/tables.h"
#include "engine/kernels/x86/avx2_util.h"

namespace infera::engine::kernels {
namespace {

// 8 int32 lanes, lane l = sum of u[4l..4l+3] * s[4l..4l+3] (u unsigned bytes below 128
// or 128 itself, s signed): no int16 saturation for these operands.
__m256i dot4_lanes(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

void matmul_q8_0(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kBlockElems;
  each_pair<BlockQ8_0>(a, r0, r1, [&](const BlockQ8_0* w, int i) {
    const void* xrow = row_at(a.x, a.x_stride, i);
    const int8_t* xq = q8_values(xrow);
    const float* xd = q8_scales(xrow, a.k);
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < nb; ++b) {
      const __m256i qw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs));
      const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * 32));
      const __m256i lanes = dot4_lanes(_mm256_sign_epi8(qw, qw), _mm256_sign_epi8(qx, qw));
      const __m256 d = _mm256_set1_ps(fp16_to_f32(w[b].d) * xd[b]);
      acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lanes), acc);
    }
    return avx2::hsum(acc);
  });
}

int32_t hsum_i32(__m128i v) {
  v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0x4e));
  v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0xb1));
  return _mm_cvtsi128_si32(v);
}
int32_t hsum_i32(__m256i v) {
  return hsum_i32(_mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)));
}

// ---- the 32-element types -----------------------------------------------------------

// 32 nibbles of a block in element order: low nibbles, then high nibbles.
__m256i nibbles32(const uint8_t* qs) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i m4 = _mm_set1_epi8(15);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), _mm_and_si128(raw, m4));
}

// Byte e = 0x10 when bit e of the 32 bits at qh is set, else 0.
__m256i high_bit_bytes(const uint8_t* qh) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(h)),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ULL));
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

// 8 int32 lanes of signed levels q times x (4 elements a lane).
__m256i signed_dot4(__m256i q, __m256i x) {
  return dot4_lanes(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q));
}

void matmul_q4_0(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kBlockElems;
  each_pair<BlockQ4_0>(a, r0, r1, [&](const BlockQ4_0* w, int i) {
    const void* xrow = row_at(a.x, a.x_stride, i);
    const int8_t* xq = q8_values(xrow);
    const float* xd = q8_scales(xrow, a.k);
    float acc = 0;
    for (int b = 0; b < nb; ++b) {
      const __m256i q = _mm256_sub_epi8(nibbles32(w[b].qs), _mm256_set1_epi8(8));
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * 32));
      const int32_t isum = hsum_i32(signed_dot4(q, x));
      acc = std::fma(static_cast<float>(isum), fp16_to_f32(w[b].d) * xd[b], acc);
    }
    return acc;
  });
}

// Q4_1, Q5_0, Q5_1: eight lanes (see the scalar reference).
template <typename Block>
void matmul_lanes32(const MatmulArgs& a, int r0, int r1) {
  constexpr bool kMin = requires(Block b) { b.m; };
  constexpr bool kHigh = requires(Block b) { b.qh; };
  const int nb = a.k / kBlockElems;
  each_pair<Block>(a, r0, r1, [&](const Block* w, int i) {
    const void* xrow = row_at(a.x, a.x_stride, i);
    const int8_t* xq = q8_values(xrow);
    const float* xd = q8_scales(xrow, a.k);
    const float* xs = q8_min_sums(xrow, a.k);
    __m256 acc = _mm256_setzero_ps();
    float summs = 0;
    for (int b = 0; b < nb; ++b) {
      __m256i q = nibbles32(w[b].qs);
      if constexpr (kHigh) q = _mm256_or_si256(q, high_bit_bytes(w[b].qh));
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * 32));
      __m256i lanes;
      if constexpr (kMin) {
        summs = std::fma(fp16_to_f32(w[b].m), xs[b], summs);
        lanes = dot4_lanes(q, x);  // unsigned levels
      } else {
        lanes = signed_dot4(_mm256_sub_epi8(q, _mm256_set1_epi8(16)), x);  // Q5_0
      }
      const __m256 d = _mm256_set1_ps(fp16_to_f32(w[b].d) * xd[b]);
      acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lanes), acc);
    }
    return avx2::hsum(acc) + summs;
  });
}

// ---- Q2_K, Q3_K -------------------------------------------------------------------------

// Two 16-bit scales for a 32-element chunk: lanes 0-3 (its first 16 elements) and 4-7.
__m256i chunk_scales(int lo, int hi) {
  return _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(hi)),
                          _mm_set1_epi16(static_cast<int16_t>(lo)));
}

// The 2-bit levels of chunk c (elements 32c..32c+31) of a Q2_K / Q3_K super-block.
__m256i low2_chunk(const uint8_t* qs, int c) {
  const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * (c / 4)));
  return _mm256_and_si256(_mm256_srli_epi16(bits, 2 * (c % 4)), _mm256_set1_epi8(3));
}

void matmul_q3_k(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kSuperElems;
  each_pair<BlockQ3_K>(a, r0, r1, [&](const BlockQ3_K* w, int i) {
    const void* xrow = row_at(a.x, a.x_stride, i);
    const int8_t* xq = q8k_values(xrow);
    const float* xd = q8k_scales(xrow, a.k);
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < nb; ++b) {
      const BlockQ3_K& blk = w[b];
      uint8_t sc[16];
      k3_scales(blk.scales, sc);
      const __m256i hmask = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.hmask));
      const int8_t* x = xq + b * kSuperElems;
      __m256i lanes = _mm256_setzero_si256();
      for (int c = 0; c < 8; ++c) {
        // level = low2 | high << 2, minus 4; high = bit (4 (c / 4) + c % 4) = bit c of hmask[l]
        const __m256i high = _mm256_and_si256(_mm256_srli_epi16(hmask, c), _mm256_set1_epi8(1));
        const __m256i q =
            _mm256_sub_epi8(_mm256_or_si256(low2_chunk(blk.qs, c), _mm256_slli_epi16(high, 2)),
                            _mm256_set1_epi8(4));
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32 * c));
        const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(xv, q));
        lanes = _mm256_add_epi32(
            lanes, _mm256_madd_epi16(p16, chunk_scales(sc[2 * c] - 32, sc[2 * c + 1] - 32)));
      }
      const __m256 d = _mm256_set1_ps(xd[b] * fp16_to_f32(blk.d));
      acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lanes), acc);
    }
    return avx2::hsum(acc);
  });
}

// Q2_K as llama.cpp's AVX2 build: the mins' lanes, then the levels' lanes.
void matmul_q2_k_lanes(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kSuperElems;
  each_pair<BlockQ2_K>(a, r0, r1, [&](const BlockQ2_K* w, int i) {
    const void* xrow = row_at(a.x, a.x_stride, i);
    const int8_t* xq = q8k_values(xrow);
    const float* xd = q8k_scales(xrow, a.k);
    const int16_t* xs = q8k_sums(xrow, a.k);
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < nb; ++b) {
      const BlockQ2_K& blk = w[b];
      const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales));
      const __m256i mins =
          _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(15)));
      const __m256i sums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs + b * 16));
      const __m256 dmin = _mm256_set1_ps(-(xd[b] * fp16_to_f32(blk.dmin)));
      acc = _mm256_fmadd_ps(dmin, _mm256_cvtepi32_ps(_mm256_madd_epi16(mins, sums)), acc);
      const int8_t* x = xq + b * kSuperElems;
      __m256i lanes = _mm256_setzero_si256();
      for (int c = 0; c < 8; ++c) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32 * c));
        const __m256i p16 = _mm256_maddubs_epi16(low2_chunk(blk.qs, c), xv);
        lanes = _mm256_add_epi32(
            lanes, _mm256_madd_epi16(
                       p16, chunk_scales(blk.scales[2 * c] & 15, blk.scales[2 * c + 1] & 15)));
      }
      const __m256 d = _mm256_set1_ps(xd[b] * fp16_to_f32(blk.d));
      acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lanes), acc);
    }
    return avx2::hsum(acc);
  });
}

// Q2_K as llama.cpp's AVX-512 build (repacked): Q4_K's two chains, per 256 elements
// (single rows) or 128 (rows taken four at a time).
void matmul_q2_k_repacked(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kSuperElems;
  const int gemm_rows = a.n > 3 ? a.n - a.n % 4 : 0;
  each_pair<BlockQ2_K>(a, r0, r1, [&](const BlockQ2_K* w, int i) {
    const void* xrow = row_at(a.x, a.x_stride, i);
    const int8_t* xq = q8k_values(xrow);
    const float* xd = q8k_scales(xrow, a.k);
    const int16_t* xs = q8k_sums(xrow, a.k);
    const bool per_128 = i < gemm_rows;
    float acc = 0, mins = 0;
    for (int b = 0; b < nb; ++b) {
      const BlockQ2_K& blk = w[b];
      const int8_t* x = xq + b * kSuperElems;
      const int16_t* s16 = xs + b * 16;
      const float d = fp16_to_f32(blk.d) * xd[b];
      const float dmin = fp16_to_f32(blk.dmin) * xd[b];
      int32_t isum = 0, msum = 0;
      for (int c = 0; c < 8; ++c) {  // groups 2c and 2c + 1
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32 * c));
        const __m256i lanes = dot4_lanes(low2_chunk(blk.qs, c), xv);
        const int32_t d0 = hsum_i32(_mm256_castsi256_si128(lanes));       // group 2c
        const int32_t d1 = hsum_i32(_mm256_extracti128_si256(lanes, 1));  // group 2c + 1
        isum += (blk.scales[2 * c] & 15) * d0 + (blk.scales[2 * c + 1] & 15) * d1;
        msum +=
            (blk.scales[2 * c] >> 4) * s16[2 * c] + (blk.scales[2 * c + 1] >> 4) * s16[2 * c + 1];
        if (per_128 && c % 4 == 3) {
          acc = std::fma(static_cast<float>(isum), d, acc);
          mins = std::fma(static_cast<float>(msum), dmin, mins);
          isum = msum = 0;
        }
      }
      if (!per_128) {
        acc = std::fma(static_cast<float>(isum), d, acc);
        mins = std::fma(static_cast<float>(msum), dmin, mins);
      }
    }
    return acc - mins;
  });
}

// ---- F16 (llama.cpp's AVX2 build: 8 lanes) ----------------------------------------------

__m256 load_half8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// vec.cpp's AVX reduction: halves added, then two hadds.
float hadd_reduce(__m256 v) {
  const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t1 = _mm_hadd_ps(t0, t0);
  return _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
}

void matmul_f16(const MatmulArgs& a, int r0, int r1) {
  const bool tiny_blas = a.n > 1 && a.k % 8 == 0;
  const int np = a.k - a.k % 32;
  each_pair<uint16_t>(a, r0, r1, [&](const uint16_t* w, int i) {
    const float* x = reinterpret_cast<const float*>(row_at(a.x, a.x_stride, i));
    float result;
    if (tiny_blas) {
      __m256 acc = _mm256_setzero_ps();
      for (int j = 0; j < a.k; j += 8)
        acc = _mm256_fmadd_ps(load_half8(w + j), _mm256_loadu_ps(x + j), acc);
      result = avx2::hsum(acc);
    } else {
      __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                       _mm256_setzero_ps()};
      for (int j = 0; j < np; j += 32)
        for (int g = 0; g < 4; ++g)
          acc[g] =
              _mm256_fmadd_ps(load_half8(w + j + 8 * g), _mm256_loadu_ps(x + j + 8 * g), acc[g]);
      double sum =
          hadd_reduce(_mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3])));
      for (int e = np; e < a.k; ++e) sum += static_cast<double>(fp16_to_f32(w[e]) * x[e]);
      result = static_cast<float>(sum);
    }
    return result;
  });
}

void matmul_q4_k(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kSuperElems;
  const int gemm_rows = a.n > 3 ? a.n - a.n % 4 : 0;
  const __m256i m4 = _mm256_set1_epi8(15);
  each_pair<BlockQ4_K>(a, r0, r1, [&](const BlockQ4_K* w, int i) {
    const void* xrow = row_at(a.x, a.x_stride, i);
    const int8_t* xq = q8k_values(xrow);
    const float* xd = q8k_scales(xrow, a.k);
    const int16_t* xs = q8k_sums(xrow, a.k);
    const bool per_64 = i < gemm_rows;
    float acc = 0, mins = 0;
    for (int b = 0; b < nb; ++b) {
      uint8_t sc[8], mn[8];
      k4_scale_min(w[b].scales, sc, mn);
      const int8_t* x = xq + b * kSuperElems;
      const int16_t* s16 = xs + b * 16;
      const float d = fp16_to_f32(w[b].d) * xd[b];
      const float dmin = fp16_to_f32(w[b].dmin) * xd[b];
      int32_t isum = 0, msum = 0;
      for (int j = 0; j < 4; ++j) {  // 64 elements: sub-blocks 2j (low) and 2j + 1 (high)
        const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs + 32 * j));
        const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 64 * j));
        const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 64 * j + 32));
        const int32_t d0 = hsum_i32(dot4_lanes(_mm256_and_si256(bits, m4), x0));
        const int32_t d1 =
            hsum_i32(dot4_lanes(_mm256_and_si256(_mm256_srli_epi16(bits, 4), m4), x1));
        isum += sc[2 * j] * d0 + sc[2 * j + 1] * d1;
        msum += mn[2 * j] * (s16[4 * j] + s16[4 * j + 1]) +
                mn[2 * j + 1] * (s16[4 * j + 2] + s16[4 * j + 3]);
        if (per_64) {
          acc = std::fma(static_cast<float>(isum), d, acc);
          mins = std::fma(static_cast<float>(msum), dmin, mins);
          isum = msum = 0;
        }
      }
      if (!per_64) {
        acc = std::fma(static_cast<float>(isum), d, acc);
        mins = std::fma(static_cast<float>(msum), dmin, mins);
      }
    }
    return acc - mins;
  });
}

void matmul_q5_k(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kSuperElems;
  const __m256i m4 = _mm256_set1_epi8(15);
  each_pair<BlockQ5_K>(a, r0, r1, [&](const BlockQ5_K* w, int i) {
    const void* xrow = row_at(a.x, a.x_stride, i);
    const int8_t* xq = q8k_values(xrow);
    const float* xd = q8k_scales(xrow, a.k);
    const int16_t* xs = q8k_sums(xrow, a.k);
    __m256 acc = _mm256_setzero_ps();
    float summs = 0;
    for (int b = 0; b < nb; ++b) {
      uint8_t sc[8], mn[8];
      k4_scale_min(w[b].scales, sc, mn);
      const int8_t* x = xq + b * kSuperElems;
      const int16_t* s16 = xs + b * 16;
      int32_t msum = 0;
      for (int j = 0; j < 8; ++j) msum += mn[j] * (s16[2 * j] + s16[2 * j + 1]);
      summs = std::fma(-(xd[b] * fp16_to_f32(w[b].dmin)), static_cast<float>(msum), summs);
      const __m256i hbits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qh));
      __m256i lanes = _mm256_setzero_si256();
      for (int j = 0; j < 4; ++j) {
        const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs + 32 * j));
        const __m256i one = _mm256_set1_epi8(1);
        const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j), one);
        const __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j + 1), one);
        const __m256i q0 = _mm256_or_si256(_mm256_and_si256(bits, m4), _mm256_slli_epi16(h0, 4));
        const __m256i q1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 4), m4),
                                           _mm256_slli_epi16(h1, 4));
        const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 64 * j));
        const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 64 * j + 32));
        const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(q0, x0),
                                             _mm256_set1_epi16(static_cast<int16_t>(sc[2 * j])));
        const __m256i p1 = _mm256_madd_epi16(
            _mm256_maddubs_epi16(q1, x1), _mm256_set1_epi16(static_cast<int16_t>(sc[2 * j + 1])));
        lanes = _mm256_add_epi32(lanes, _mm256_add_epi32(p0, p1));
      }
      const __m256 d = _mm256_set1_ps(xd[b] * fp16_to_f32(w[b].d));
      acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lanes), acc);
    }
    return avx2::hsum(acc) + summs;
  });
}

// ggml's AVX2 expf (ARM's optimized-routines scheme: n = round(x / ln2) by the 1.5 *
// 2^23 shift, a two-part ln2 reduction, a degree-5 polynomial, 2^n from z's bits, with
// a slow path for |n| > 126). Element for element the same as ggml_expf_lane(x, false).
__m256 expf8(__m256 x) {
  const __m256 r = _mm256_set1_ps(0x1.8p23f);
  const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
  const __m256 n = _mm256_sub_ps(z, r);
  const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                    _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
  const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
  const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_set1_epi32(0x3f800000)));
  const __m256 abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), n);
  const __m256 big = _mm256_cmp_ps(abs_n, _mm256_set1_ps(126), _CMP_GT_OQ);
  const __m256 u = _mm256_mul_ps(b, b);
  const __m256 p = _mm256_fmadd_ps(
      _mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
      _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f)));
  const __m256 j = _mm256_fmadd_ps(p, u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
  const __m256 normal = _mm256_fmadd_ps(k, j, k);
  if (_mm256_movemask_ps(big) == 0) return normal;
  // 2^n split in two factors so that neither overflows; beyond |n| > 192, s1 * s1
  // is inf (n > 0) or 0.
  const __m256i g =
      _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                       _mm256_set1_epi32(static_cast<int>(0x82000000u)));
  const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
  const __m256 huge = _mm256_cmp_ps(abs_n, _mm256_set1_ps(192), _CMP_GT_OQ);
  const __m256 scaled = _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1);
  return _mm256_blendv_ps(_mm256_blendv_ps(normal, scaled, big), _mm256_mul_ps(s1, s1), huge);
}

void silu_mul(const float* a, const float* b, float* y, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(a + i);
    const __m256 e = expf8(_mm256_sub_ps(_mm256_setzero_ps(), x));
    const __m256 s = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    _mm256_storeu_ps(y + i, _mm256_mul_ps(s, _mm256_loadu_ps(b + i)));
  }
  for (; i < n; ++i) y[i] = a[i] / (1.0f + std::exp(-a[i])) * b[i];
}

}  // namespace

MatmulFn matmul_q2_k_ggml_repacked_avx2() { return matmul_q2_k_repacked; }

void fill_avx2_ggml_order(Kernels& t) {
  t.matmul_f16 = matmul_f16;
  t.matmul_q4_0 = matmul_q4_0;
  t.matmul_q4_1 = matmul_lanes32<BlockQ4_1>;
  t.matmul_q5_0 = matmul_lanes32<BlockQ5_0>;
  t.matmul_q5_1 = matmul_lanes32<BlockQ5_1>;
  t.matmul_q2_k = matmul_q2_k_lanes;  // the AVX-512 table takes the repacked form
  t.matmul_q3_k = matmul_q3_k;
  t.matmul_q8_0 = matmul_q8_0;
  t.matmul_q4_k = matmul_q4_k;
  t.matmul_q5_k = matmul_q5_k;
  t.silu_mul = silu_mul;
}

}  // namespace infera::engine::kernels
