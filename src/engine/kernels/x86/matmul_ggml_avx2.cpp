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

#include "engine/kernels/tables.h"
#include "engine/kernels/x86/avx2_util.h"

namespace infera::engine::kernels {
namespace {

using avx2::row_at;

float* y_at(const MatmulArgs& a, int i) {
  return reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(a.y) +
                                  static_cast<size_t>(i) * a.y_stride);
}

// 8 int32 lanes, lane l = sum of u[4l..4l+3] * s[4l..4l+3] (u unsigned bytes below 128
// or 128 itself, s signed): no int16 saturation for these operands.
__m256i dot4_lanes(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

void matmul_q8_0(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kBlockElems;
  for (int r = r0; r < r1; ++r) {
    const auto* w = reinterpret_cast<const BlockQ8_0*>(row_at(a.w, a.w_stride, r));
    for (int i = 0; i < a.n; ++i) {
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
      y_at(a, i)[r] = avx2::hsum(acc);
    }
  }
}

int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

void matmul_q4_k(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kSuperElems;
  const int gemm_rows = a.n > 3 ? a.n - a.n % 4 : 0;
  const __m256i m4 = _mm256_set1_epi8(15);
  for (int r = r0; r < r1; ++r) {
    const auto* w = reinterpret_cast<const BlockQ4_K*>(row_at(a.w, a.w_stride, r));
    for (int i = 0; i < a.n; ++i) {
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
          const int32_t d1 = hsum_i32(dot4_lanes(_mm256_and_si256(_mm256_srli_epi16(bits, 4), m4), x1));
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
      y_at(a, i)[r] = acc - mins;
    }
  }
}

void matmul_q5_k(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kSuperElems;
  const __m256i m4 = _mm256_set1_epi8(15);
  for (int r = r0; r < r1; ++r) {
    const auto* w = reinterpret_cast<const BlockQ5_K*>(row_at(a.w, a.w_stride, r));
    for (int i = 0; i < a.n; ++i) {
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
          const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(q1, x1),
                                               _mm256_set1_epi16(static_cast<int16_t>(sc[2 * j + 1])));
          lanes = _mm256_add_epi32(lanes, _mm256_add_epi32(p0, p1));
        }
        const __m256 d = _mm256_set1_ps(xd[b] * fp16_to_f32(w[b].d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lanes), acc);
      }
      y_at(a, i)[r] = avx2::hsum(acc) + summs;
    }
  }
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
  const __m256i g = _mm256_and_si256(
      _mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
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

void fill_avx2_ggml_order(Kernels& t) {
  t.matmul_q8_0 = matmul_q8_0;
  t.matmul_q4_k = matmul_q4_k;
  t.matmul_q5_k = matmul_q5_k;
  t.silu_mul = silu_mul;
}

}  // namespace infera::engine::kernels
