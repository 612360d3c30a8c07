// AVX2 + FMA + F16C small ops: f32 and F16 dot/axpy (attention over the F16 KV cache),
// row conversions, rmsnorm, softmax and silu with a vector exp.
#include <immintrin.h>

#include <cmath>

#include "engine/kernels/tables.h"
#include "engine/kernels/x86/avx2_util.h"

namespace infera::engine::kernels {
namespace {

using avx2::hsum;

__m256 load_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// exp(x) for x in float range: x = n ln2 + r, |r| <= ln2/2, exp(r) by a degree-6
// polynomial (Taylor coefficients; relative error below 2e-7), times 2^n built in the
// exponent bits. Inputs below -87.3 give 0, above 88.7 give +inf.
__m256 exp8(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.72283f);
  const __m256 lo = _mm256_set1_ps(-87.33654f);
  const __m256 too_small = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_min_ps(x, hi);
  x = _mm256_max_ps(x, lo);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 720);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  // 2^n in two halves so that n = 128 (x near 88.7) does not overflow the exponent.
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  const __m256i n2 = _mm256_sub_epi32(ni, n1);
  const __m256 s1 =
      _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
  const __m256 s2 =
      _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
  const __m256 result = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  return _mm256_andnot_ps(too_small, result);
}

float dot_f32(const float* a, const float* b, int n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  float sum = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void axpy_f32(float alpha, const float* x, float* y, int n) {
  const __m256 av = _mm256_set1_ps(alpha);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  }
  for (; i < n; ++i) y[i] += alpha * x[i];
}

float dot_f16(const uint16_t* a, const float* b, int n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(load_f16(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(load_f16(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  float sum = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) sum += _cvtsh_ss(a[i]) * b[i];
  return sum;
}

void axpy_f16(float alpha, const uint16_t* x, float* y, int n) {
  const __m256 av = _mm256_set1_ps(alpha);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, load_f16(x + i), _mm256_loadu_ps(y + i)));
  }
  for (; i < n; ++i) y[i] += alpha * _cvtsh_ss(x[i]);
}

const uint16_t* row16(const uint16_t* base, size_t stride, int r) {
  return reinterpret_cast<const uint16_t*>(reinterpret_cast<const uint8_t*>(base) +
                                           static_cast<size_t>(r) * stride);
}

void dot_f16_rows(const float* q, const uint16_t* k, size_t k_stride, int n_rows, int d, float s,
                  float* out) {
  for (int r = 0; r < n_rows; ++r) out[r] = s * dot_f16(row16(k, k_stride, r), q, d);
}

// Four value rows per pass over y, so y is loaded and stored a quarter as often.
void axpy_f16_rows(const float* p, const uint16_t* v, size_t v_stride, int n_rows, int d,
                   float* y) {
  int r = 0;
  for (; r + 4 <= n_rows; r += 4) {
    const uint16_t* v0 = row16(v, v_stride, r);
    const uint16_t* v1 = row16(v, v_stride, r + 1);
    const uint16_t* v2 = row16(v, v_stride, r + 2);
    const uint16_t* v3 = row16(v, v_stride, r + 3);
    const __m256 p0 = _mm256_set1_ps(p[r]), p1 = _mm256_set1_ps(p[r + 1]);
    const __m256 p2 = _mm256_set1_ps(p[r + 2]), p3 = _mm256_set1_ps(p[r + 3]);
    int i = 0;
    for (; i + 8 <= d; i += 8) {
      __m256 acc = _mm256_loadu_ps(y + i);
      acc = _mm256_fmadd_ps(p0, load_f16(v0 + i), acc);
      acc = _mm256_fmadd_ps(p1, load_f16(v1 + i), acc);
      acc = _mm256_fmadd_ps(p2, load_f16(v2 + i), acc);
      acc = _mm256_fmadd_ps(p3, load_f16(v3 + i), acc);
      _mm256_storeu_ps(y + i, acc);
    }
    for (; i < d; ++i) {
      y[i] += p[r] * _cvtsh_ss(v0[i]);
      y[i] += p[r + 1] * _cvtsh_ss(v1[i]);
      y[i] += p[r + 2] * _cvtsh_ss(v2[i]);
      y[i] += p[r + 3] * _cvtsh_ss(v3[i]);
    }
  }
  for (; r < n_rows; ++r) axpy_f16(p[r], row16(v, v_stride, r), y, d);
}

void f32_to_f16(const float* x, uint16_t* out, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; ++i) out[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

void f16_to_f32(const uint16_t* x, float* out, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, load_f16(x + i));
  for (; i < n; ++i) out[i] = _cvtsh_ss(x[i]);
}

// Sums in double (as ggml's norm), four lanes of partial sums per accumulator: the
// order differs from the scalar reference's, which double precision mostly hides.
void layer_norm(const float* x, const float* w, const float* b, float* y, int n, float eps) {
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  alignas(32) double parts[4];
  _mm256_store_pd(parts, _mm256_add_pd(s0, s1));
  double sum = (parts[0] + parts[1]) + (parts[2] + parts[3]);
  for (; i < n; ++i) sum += x[i];
  const auto mean = static_cast<float>(sum / n);
  const __m256 mv = _mm256_set1_ps(mean);
  s0 = _mm256_setzero_pd();
  s1 = _mm256_setzero_pd();
  i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 c = _mm256_sub_ps(_mm256_loadu_ps(x + i), mv);
    const __m256d c0 = _mm256_cvtps_pd(_mm256_castps256_ps128(c));
    const __m256d c1 = _mm256_cvtps_pd(_mm256_extractf128_ps(c, 1));
    s0 = _mm256_fmadd_pd(c0, c0, s0);  // a float's square is exact in double
    s1 = _mm256_fmadd_pd(c1, c1, s1);
  }
  _mm256_store_pd(parts, _mm256_add_pd(s0, s1));
  double sq = (parts[0] + parts[1]) + (parts[2] + parts[3]);
  for (; i < n; ++i) {
    const float c = x[i] - mean;
    sq += static_cast<double>(c) * c;
  }
  const auto inv = static_cast<float>(1.0 / std::sqrt(sq / n + eps));
  const __m256 iv = _mm256_set1_ps(inv);
  i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 c = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv), iv);
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(c, _mm256_loadu_ps(w + i), _mm256_loadu_ps(b + i)));
  }
  for (; i < n; ++i) y[i] = (x[i] - mean) * inv * w[i] + b[i];
}

// F16C conversion for the index, a gather for the lookup: bit-identical to the scalar
// reference (both round to nearest even).
void gelu_f16_table(const float* table, float* x, int n) {
  const __m256 lo = _mm256_set1_ps(-10.0f), hi = _mm256_set1_ps(10.0f);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256i idx =
        _mm256_cvtepu16_epi32(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m256 g = _mm256_i32gather_ps(table, idx, 4);
    const __m256 in_range =
        _mm256_and_ps(_mm256_cmp_ps(v, lo, _CMP_GT_OQ), _mm256_cmp_ps(v, hi, _CMP_LT_OQ));
    const __m256 zero = _mm256_cmp_ps(v, lo, _CMP_LE_OQ);
    _mm256_storeu_ps(x + i, _mm256_andnot_ps(zero, _mm256_blendv_ps(v, g, in_range)));
  }
  for (; i < n; ++i) {
    const float v = x[i];
    if (v <= -10.0f) {
      x[i] = 0.0f;
    } else if (v < 10.0f) {
      x[i] = table[_cvtss_sh(v, _MM_FROUND_TO_NEAREST_INT)];
    }
  }
}

void add(const float* a, const float* b, float* y, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
  }
  for (; i < n; ++i) y[i] = a[i] + b[i];
}

void round_f16(const float* x, float* y, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) y[i] = _cvtsh_ss(_cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT));
}

// Squares in float, summed in double (as ggml does), see the scalar reference.
void rmsnorm(const float* x, const float* w, float* y, int n, float eps) {
  __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 sq = _mm256_mul_ps(v, v);
    acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
    acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
  }
  alignas(32) double parts[4];
  _mm256_store_pd(parts, _mm256_add_pd(acc0, acc1));
  double ss = (parts[0] + parts[1]) + (parts[2] + parts[3]);
  for (; i < n; ++i) ss += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(ss / n);
  const float inv = 1.0f / std::sqrt(mean + eps);
  const __m256 iv = _mm256_set1_ps(inv);
  i = 0;
  if (w != nullptr) {
    for (; i + 8 <= n; i += 8) {
      _mm256_storeu_ps(
          y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), iv), _mm256_loadu_ps(w + i)));
    }
    for (; i < n; ++i) y[i] = x[i] * inv * w[i];
  } else {
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), iv));
    for (; i < n; ++i) y[i] = x[i] * inv;
  }
}

void softmax(float* x, int n) {
  __m256 mv = _mm256_set1_ps(x[0]);
  int i = 0;
  for (; i + 8 <= n; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + i));
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps(mv, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  float max = _mm_cvtss_f32(m);
  for (; i < n; ++i) max = x[i] > max ? x[i] : max;
  const __m256 maxv = _mm256_set1_ps(max);
  __m256d sv0 = _mm256_setzero_pd(), sv1 = _mm256_setzero_pd();  // sum in double, as ggml
  i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), maxv));
    _mm256_storeu_ps(x + i, e);
    sv0 = _mm256_add_pd(sv0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    sv1 = _mm256_add_pd(sv1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  alignas(32) double parts[4];
  _mm256_store_pd(parts, _mm256_add_pd(sv0, sv1));
  double sum = (parts[0] + parts[1]) + (parts[2] + parts[3]);
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  const __m256 iv = _mm256_set1_ps(inv);
  i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), iv));
  for (; i < n; ++i) x[i] *= inv;
}

void silu_mul(const float* a, const float* b, float* y, int n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 av = _mm256_loadu_ps(a + i);
    const __m256 e = exp8(_mm256_xor_ps(av, sign));
    const __m256 s = _mm256_div_ps(av, _mm256_add_ps(one, e));
    _mm256_storeu_ps(y + i, _mm256_mul_ps(s, _mm256_loadu_ps(b + i)));
  }
  for (; i < n; ++i) y[i] = a[i] / (1.0f + std::exp(-a[i])) * b[i];
}

}  // namespace

void fill_avx2_ops(Kernels& t) {
  t.rmsnorm = rmsnorm;
  t.softmax = softmax;
  t.silu_mul = silu_mul;
  t.layer_norm = layer_norm;
  t.gelu_f16_table = gelu_f16_table;
  t.dot_f32 = dot_f32;
  t.axpy_f32 = axpy_f32;
  t.dot_f16 = dot_f16;
  t.axpy_f16 = axpy_f16;
  t.dot_f16_rows = dot_f16_rows;
  t.axpy_f16_rows = axpy_f16_rows;
  t.f32_to_f16 = f32_to_f16;
  t.f16_to_f32 = f16_to_f32;
  t.round_f16 = round_f16;
  t.add = add;
}

}  // namespace infera::engine::kernels
