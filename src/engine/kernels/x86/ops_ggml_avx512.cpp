// ggml's AVX-512 vector SiLU (the ggml_order table on AVX-512 CPUs; see kernels.h): the
// same expf scheme as its AVX2 one but with the 1 folded into the polynomial and 2^n
// applied by vscalefps, which rounds differently in the last bit. Element for element
// the same as ggml_expf_lane(x, true) in scalar/ggml_order_scalar.cpp.
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
  const __mmask16 huge = _mm512_cmp_ps_mask(_mm512_andnot_ps(_mm512_set1_ps(-0.0f), n), _mm512_set1_ps(192), _CMP_GT_OQ);
  const __m512 u = _mm512_mul_ps(b, b);
  const __m512 p = _mm512_fmadd_ps(
      _mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f)), u,
      _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f)));
  const __m512 j =
      _mm512_fmadd_ps(p, u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0f)));
  // (the maskz form: GCC 12 warns on _mm512_scalef_ps's undefined source operand)
  const __m512 res = _mm512_maskz_scalef_ps(static_cast<__mmask16>(0xffff), j, n);
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

}  // namespace

void fill_avx512_ggml_order(Kernels& t) { t.silu_mul = silu_mul; }

}  // namespace infera::engine::kernels
