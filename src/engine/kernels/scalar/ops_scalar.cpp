// Scalar reference small ops: norms, activations, rope, attention helpers over f32
// and the F16 KV cache, and row conversions.
#include <algorithm>
#include <cmath>

#include "engine/kernels/tables.h"

namespace infera::engine::kernels {
namespace {

// The sum of squares is accumulated in double, as ggml does, so the scale rounds the
// same way whatever the summation order.
void rmsnorm(const float* x, const float* w, float* y, int n, float eps) {
  double ss = 0;
  for (int i = 0; i < n; ++i) ss += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(ss / n);
  const float inv = 1.0f / std::sqrt(mean + eps);
  if (w != nullptr) {
    for (int i = 0; i < n; ++i) y[i] = x[i] * inv * w[i];
  } else {
    for (int i = 0; i < n; ++i) y[i] = x[i] * inv;
  }
}

// The sum is accumulated in double, as ggml does.
void softmax(float* x, int n) {
  float max = x[0];
  for (int i = 1; i < n; ++i) max = std::max(max, x[i]);
  double sum = 0;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int i = 0; i < n; ++i) x[i] *= inv;
}

void silu_mul(const float* a, const float* b, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] = a[i] / (1.0f + std::exp(-a[i])) * b[i];
}

void add(const float* a, const float* b, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void scale(float* x, float s, int n) {
  for (int i = 0; i < n; ++i) x[i] *= s;
}

void rope(float* x, int n_heads, int head_dim, int rot_dim, const float* cos, const float* sin,
          RopeStyle style) {
  const int half = rot_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<size_t>(h) * static_cast<size_t>(head_dim);
    for (int i = 0; i < half; ++i) {
      const int i0 = style == RopeStyle::kNormal ? 2 * i : i;
      const int i1 = style == RopeStyle::kNormal ? 2 * i + 1 : i + half;
      const float a = v[i0];
      const float b = v[i1];
      v[i0] = a * cos[i] - b * sin[i];
      v[i1] = a * sin[i] + b * cos[i];
    }
  }
}

// The sums in double, as ggml's norm.
void layer_norm(const float* x, const float* w, const float* b, float* y, int n, float eps) {
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += x[i];
  const auto mean = static_cast<float>(sum / n);
  double sq = 0.0;
  for (int i = 0; i < n; ++i) {
    const float c = x[i] - mean;
    sq += static_cast<double>(c) * c;
  }
  const auto inv = static_cast<float>(1.0 / std::sqrt(sq / n + eps));
  for (int i = 0; i < n; ++i) y[i] = (x[i] - mean) * inv * w[i] + b[i];
}

void gelu_f16_table(const float* table, float* x, int n) {
  for (int i = 0; i < n; ++i) {
    const float v = x[i];
    if (v <= -10.0f) {
      x[i] = 0.0f;
    } else if (v < 10.0f) {
      x[i] = table[f32_to_fp16(v)];
    }
  }
}

float dot_f32(const float* a, const float* b, int n) {
  float sum = 0;
  for (int i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void axpy_f32(float alpha, const float* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += alpha * x[i];
}

float dot_f16(const uint16_t* a, const float* b, int n) {
  float sum = 0;
  for (int i = 0; i < n; ++i) sum += fp16_to_f32(a[i]) * b[i];
  return sum;
}

void axpy_f16(float alpha, const uint16_t* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += alpha * fp16_to_f32(x[i]);
}

const uint16_t* row16(const uint16_t* base, size_t stride, int r) {
  return reinterpret_cast<const uint16_t*>(reinterpret_cast<const uint8_t*>(base) +
                                           static_cast<size_t>(r) * stride);
}

void dot_f16_rows(const float* q, const uint16_t* k, size_t k_stride, int n_rows, int d, float s,
                  float* out) {
  for (int r = 0; r < n_rows; ++r) out[r] = s * dot_f16(row16(k, k_stride, r), q, d);
}

void axpy_f16_rows(const float* p, const uint16_t* v, size_t v_stride, int n_rows, int d,
                   float* y) {
  for (int r = 0; r < n_rows; ++r) axpy_f16(p[r], row16(v, v_stride, r), y, d);
}

void f32_to_f16(const float* x, uint16_t* out, int n) {
  for (int i = 0; i < n; ++i) out[i] = f32_to_fp16(x[i]);
}

void f16_to_f32(const uint16_t* x, float* out, int n) {
  for (int i = 0; i < n; ++i) out[i] = fp16_to_f32(x[i]);
}

void round_f16(const float* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] = fp16_to_f32(f32_to_fp16(x[i]));
}

}  // namespace

void fill_scalar_ops(Kernels& t) {
  t.rmsnorm = rmsnorm;
  t.softmax = softmax;
  t.silu_mul = silu_mul;
  t.add = add;
  t.scale = scale;
  t.rope = rope;
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
}

}  // namespace infera::engine::kernels
