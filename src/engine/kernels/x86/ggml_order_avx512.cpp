// The entries of the AVX-512 ggml_order table that differ from the AVX2 one (see
// kernels.h): ggml's AVX-512 vector SiLU, the same expf scheme as its AVX2 one but with
// the 1 folded into the polynomial and 2^n applied by vscalefps, which rounds
// differently in the last bit (element for element ggml_expf_lane(x, true)), and the
// F16 products with 16 lanes (scalar/ggml_order_scalar.cpp, matmul_f16_w<16>).
// GCC 12's AVX-512 intrinsics (cvtph_ps, reduce_add_ps) pass an undefined vector that its
// own -Wmaybe-uninitialized reports (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <cmath>

#include "engine/kernels/tables.h"

namespace infera::engine::kernels {
namespace {

__m512 expf16(__m512 x) {
  const __m512 r = _mm512_set1_ps(0x1.8p23f);
  const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), r);
  const __m512 n = _mm512_sub_ps(z, r);
  const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f),
                                    _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
  const __mmask16 huge = _mm512_cmp_ps_mask(_mm512_andnot_ps(_mm512_set1_ps(-0.0f), n),
                                            _mm512_set1_ps(192), _CMP_GT_OQ);
  const __m512 u = _mm512_mul_ps(b, b);
  const __m512 p = _mm512_fmadd_ps(
      _mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f)), u,
      _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f)));
  const __m512 j = _mm512_fmadd_ps(
      p, u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0f)));
  const __m512 res = _mm512_scalef_ps(j, n);
  if (huge == 0) return res;
  const __mmask16 nonpositive = _mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ);
  const __m512 flushed =
      _mm512_mask_blend_ps(nonpositive, _mm512_set1_ps(INFINITY), _mm512_setzero_ps());
  return _mm512_mask_blend_ps(huge, res, flushed);
}

void silu_mul(const float* a, const float* b, float* y, int n) {
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 x = _mm512_loadu_ps(a + i);
    const __m512 e = expf16(_mm512_sub_ps(_mm512_setzero_ps(), x));
    const __m512 s = _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    _mm512_storeu_ps(y + i, _mm512_mul_ps(s, _mm512_loadu_ps(b + i)));
  }
  for (; i < n; ++i) y[i] = a[i] / (1.0f + std::exp(-a[i])) * b[i];
}

__m512 load_half16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

void matmul_f16(const MatmulArgs& a, int r0, int r1) {
  const bool tiny_blas = a.n > 1 && a.k % 16 == 0;
  const int np = a.k - a.k % 64;
  each_pair<uint16_t>(a, r0, r1, [&](const uint16_t* w, int i) {
    const float* x = reinterpret_cast<const float*>(row_at(a.x, a.x_stride, i));
    if (tiny_blas) {
      __m512 acc = _mm512_setzero_ps();
      for (int j = 0; j < a.k; j += 16)
        acc = _mm512_fmadd_ps(load_half16(w + j), _mm512_loadu_ps(x + j), acc);
      return _mm512_reduce_add_ps(acc);
    }
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    for (int j = 0; j < np; j += 64)
      for (int g = 0; g < 4; ++g)
        acc[g] =
            _mm512_fmadd_ps(load_half16(w + j + 16 * g), _mm512_loadu_ps(x + j + 16 * g), acc[g]);
    double sum = _mm512_reduce_add_ps(
        _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3])));
    for (int e = np; e < a.k; ++e) sum += static_cast<double>(fp16_to_f32(w[e]) * x[e]);
    return static_cast<float>(sum);
  });
}

}  // namespace

void fill_avx512_ggml_order(Kernels& t) {
  t.silu_mul = silu_mul;
  t.matmul_f16 = matmul_f16;
  t.matmul_q2_k = matmul_q2_k_ggml_repacked_avx2();
}

}  // namespace infera::engine::kernels
