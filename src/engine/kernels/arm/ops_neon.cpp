// NEON small ops: f32 and F16 dot/axpy (attention over the F16 KV cache), row
// conversions, rmsnorm, softmax and silu with a vector exp, add, scale and rope.
// Plain ARMv8-A: FCVTL/FCVTN convert halves without the FP16 arithmetic extension.
#include <arm_neon.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "engine/kernels/tables.h"

namespace infera::engine::kernels {
namespace {

float32x4_t load_f16(const uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
float half_to_float(uint16_t h) {
  return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

// exp(x) for x in float range: x = n ln2 + r, |r| <= ln2/2, exp(r) by a degree-6
// polynomial (Taylor coefficients; relative error below 2e-7), times 2^n built in the
// exponent bits. Inputs below -87.3 give 0, above 88.7 give +inf.
float32x4_t exp4(float32x4_t x) {
  const uint32x4_t too_small = vcltq_f32(x, vdupq_n_f32(-87.33654f));
  x = vminq_f32(x, vdupq_n_f32(88.72283f));
  x = vmaxq_f32(x, vdupq_n_f32(-87.33654f));
  const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504f));
  float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
  r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
  float32x4_t p = vdupq_n_f32(1.0f / 720);
  p = vfmaq_f32(vdupq_n_f32(1.0f / 120), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f / 24), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f / 6), p, r);
  p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
  // 2^n in two halves so that n = 128 (x near 88.7) does not overflow the exponent.
  const int32x4_t ni = vcvtq_s32_f32(n);
  const int32x4_t n1 = vshrq_n_s32(ni, 1);
  const int32x4_t n2 = vsubq_s32(ni, n1);
  const int32x4_t bias = vdupq_n_s32(127);
  const float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n1, bias), 23));
  const float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n2, bias), 23));
  const float32x4_t result = vmulq_f32(vmulq_f32(p, s1), s2);
  return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(result), too_small));
}

float dot_f32(const float* a, const float* b, int n) {
  float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
    acc1 = vfmaq_f32(acc1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
  }
  float sum = vaddvq_f32(vaddq_f32(acc0, acc1));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void axpy_f32(float alpha, const float* x, float* y, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4)
    vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), alpha));
  for (; i < n; ++i) y[i] += alpha * x[i];
}

float dot_f16(const uint16_t* a, const float* b, int n) {
  float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    acc0 = vfmaq_f32(acc0, load_f16(a + i), vld1q_f32(b + i));
    acc1 = vfmaq_f32(acc1, load_f16(a + i + 4), vld1q_f32(b + i + 4));
  }
  float sum = vaddvq_f32(vaddq_f32(acc0, acc1));
  for (; i < n; ++i) sum += half_to_float(a[i]) * b[i];
  return sum;
}

void axpy_f16(float alpha, const uint16_t* x, float* y, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4)
    vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), load_f16(x + i), alpha));
  for (; i < n; ++i) y[i] += alpha * half_to_float(x[i]);
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
    int i = 0;
    for (; i + 4 <= d; i += 4) {
      float32x4_t acc = vld1q_f32(y + i);
      acc = vfmaq_n_f32(acc, load_f16(v0 + i), p[r]);
      acc = vfmaq_n_f32(acc, load_f16(v1 + i), p[r + 1]);
      acc = vfmaq_n_f32(acc, load_f16(v2 + i), p[r + 2]);
      acc = vfmaq_n_f32(acc, load_f16(v3 + i), p[r + 3]);
      vst1q_f32(y + i, acc);
    }
    for (; i < d; ++i) {
      y[i] += p[r] * half_to_float(v0[i]);
      y[i] += p[r + 1] * half_to_float(v1[i]);
      y[i] += p[r + 2] * half_to_float(v2[i]);
      y[i] += p[r + 3] * half_to_float(v3[i]);
    }
  }
  for (; r < n_rows; ++r) axpy_f16(p[r], row16(v, v_stride, r), y, d);
}

// FCVTN rounds to nearest even under the default FPCR, as f32_to_fp16 does.
void f32_to_f16(const float* x, uint16_t* out, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    vst1_u16(out + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
  }
  for (; i < n; ++i) out[i] = f32_to_fp16(x[i]);
}

void f16_to_f32(const uint16_t* x, float* out, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(out + i, load_f16(x + i));
  for (; i < n; ++i) out[i] = half_to_float(x[i]);
}

// Squares in float, summed in double (as ggml does), see the scalar reference.
void rmsnorm(const float* x, const float* w, float* y, int n, float eps) {
  float64x2_t acc0 = vdupq_n_f64(0.0), acc1 = vdupq_n_f64(0.0);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t v = vld1q_f32(x + i);
    const float32x4_t sq = vmulq_f32(v, v);
    acc0 = vaddq_f64(acc0, vcvt_f64_f32(vget_low_f32(sq)));
    acc1 = vaddq_f64(acc1, vcvt_high_f64_f32(sq));
  }
  double ss = vaddvq_f64(vaddq_f64(acc0, acc1));
  for (; i < n; ++i) ss += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(ss / n);
  const float inv = 1.0f / std::sqrt(mean + eps);
  i = 0;
  if (w != nullptr) {
    for (; i + 4 <= n; i += 4) {
      vst1q_f32(y + i, vmulq_f32(vmulq_n_f32(vld1q_f32(x + i), inv), vld1q_f32(w + i)));
    }
    for (; i < n; ++i) y[i] = x[i] * inv * w[i];
  } else {
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_n_f32(vld1q_f32(x + i), inv));
    for (; i < n; ++i) y[i] = x[i] * inv;
  }
}

void softmax(float* x, int n) {
  float32x4_t mv = vdupq_n_f32(x[0]);
  int i = 0;
  for (; i + 4 <= n; i += 4) mv = vmaxq_f32(mv, vld1q_f32(x + i));
  float max = vmaxvq_f32(mv);
  for (; i < n; ++i) max = x[i] > max ? x[i] : max;
  const float32x4_t maxv = vdupq_n_f32(max);
  float64x2_t sv0 = vdupq_n_f64(0.0), sv1 = vdupq_n_f64(0.0);  // sum in double, as ggml
  i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t e = exp4(vsubq_f32(vld1q_f32(x + i), maxv));
    vst1q_f32(x + i, e);
    sv0 = vaddq_f64(sv0, vcvt_f64_f32(vget_low_f32(e)));
    sv1 = vaddq_f64(sv1, vcvt_high_f64_f32(e));
  }
  double sum = vaddvq_f64(vaddq_f64(sv0, sv1));
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), inv));
  for (; i < n; ++i) x[i] *= inv;
}

void silu_mul(const float* a, const float* b, float* y, int n) {
  const float32x4_t one = vdupq_n_f32(1.0f);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t av = vld1q_f32(a + i);
    const float32x4_t s = vdivq_f32(av, vaddq_f32(one, exp4(vnegq_f32(av))));
    vst1q_f32(y + i, vmulq_f32(s, vld1q_f32(b + i)));
  }
  for (; i < n; ++i) y[i] = a[i] / (1.0f + std::exp(-a[i])) * b[i];
}

void add(const float* a, const float* b, float* y, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vaddq_f32(vld1q_f32(a + i), vld1q_f32(b + i)));
  for (; i < n; ++i) y[i] = a[i] + b[i];
}

void scale(float* x, float s, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), s));
  for (; i < n; ++i) x[i] *= s;
}

// (a, b) -> (a cos - b sin, a sin + b cos) for 4 pairs at once: kNormal pairs are
// adjacent (de-interleaved by LD2/ST2), kNeox pairs are half a rotation apart.
void rope(float* x, int n_heads, int head_dim, int rot_dim, const float* cos, const float* sin,
          RopeStyle style) {
  const int half = rot_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<size_t>(h) * static_cast<size_t>(head_dim);
    int i = 0;
    for (; i + 4 <= half; i += 4) {
      const float32x4_t c = vld1q_f32(cos + i);
      const float32x4_t s = vld1q_f32(sin + i);
      if (style == RopeStyle::kNormal) {
        float32x4x2_t p = vld2q_f32(v + 2 * i);
        const float32x4_t a = p.val[0], b = p.val[1];
        p.val[0] = vfmsq_f32(vmulq_f32(a, c), b, s);
        p.val[1] = vfmaq_f32(vmulq_f32(a, s), b, c);
        vst2q_f32(v + 2 * i, p);
      } else {
        const float32x4_t a = vld1q_f32(v + i), b = vld1q_f32(v + i + half);
        vst1q_f32(v + i, vfmsq_f32(vmulq_f32(a, c), b, s));
        vst1q_f32(v + i + half, vfmaq_f32(vmulq_f32(a, s), b, c));
      }
    }
    for (; i < half; ++i) {
      const int i0 = style == RopeStyle::kNormal ? 2 * i : i;
      const int i1 = style == RopeStyle::kNormal ? 2 * i + 1 : i + half;
      const float a = v[i0];
      const float b = v[i1];
      v[i0] = a * cos[i] - b * sin[i];
      v[i1] = a * sin[i] + b * cos[i];
    }
  }
}

}  // namespace

void fill_neon_ops(Kernels& t) {
  t.rmsnorm = rmsnorm;
  t.softmax = softmax;
  t.silu_mul = silu_mul;
  t.add = add;
  t.scale = scale;
  t.rope = rope;
  t.dot_f32 = dot_f32;
  t.axpy_f32 = axpy_f32;
  t.dot_f16 = dot_f16;
  t.axpy_f16 = axpy_f16;
  t.dot_f16_rows = dot_f16_rows;
  t.axpy_f16_rows = axpy_f16_rows;
  t.f32_to_f16 = f32_to_f16;
  t.f16_to_f32 = f16_to_f32;
}

}  // namespace infera::engine::kernels
