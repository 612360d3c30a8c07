// NEON (ARMv8-A Advanced SIMD) matrix products and activation quantization: the
// "neon" table, which every AArch64 CPU can run. Float weights use 4-lane FMA tiles;
// the 32-element quantized types multiply bytes with widening SMULL/SMLAL (the
// "neondot" table uses SDOT instead, arm/matmul_neondot.cpp), and so do the K-quants
// (kquants_neon.h). Tiling and the batch-invariance contract: tiles_neon.h.
#include <arm_neon.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "engine/kernels/arm/kquants_neon.h"
#include "engine/kernels/arm/tiles_neon.h"

namespace infera::engine::kernels {
namespace {

// ---- float weight types ----------------------------------------------------------

struct F32W {
  static constexpr size_t kBytes = 4;
  static float32x4_t load4(const uint8_t* p) {
    return vld1q_f32(reinterpret_cast<const float*>(p));
  }
  static float load1(const uint8_t* p) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  }
};
struct F16W {
  static constexpr size_t kBytes = 2;
  static float32x4_t load4(const uint8_t* p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p))));
  }
  static float load1(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return half_to_float(h);
  }
};
struct BF16W {
  static constexpr size_t kBytes = 2;
  static float32x4_t load4(const uint8_t* p) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p)), 16));
  }
  static float load1(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return bf16_to_f32(h);
  }
};

// TX activation rows (starting at i) x TR weight rows (starting at r). Per pair: one
// accumulator over k in steps of 4, its lanes summed, then the k % 4 tail in order.
template <typename W, int TX, int TR>
void float_tile(const MatmulArgs& a, int i, int r) {
  const uint8_t* w[TR];
  const float* x[TX];
  for (int t = 0; t < TR; ++t) w[t] = row_at(a.w, a.w_stride, r + t);
  for (int s = 0; s < TX; ++s)
    x[s] = reinterpret_cast<const float*>(row_at(a.x, a.x_stride, i + s));
  float32x4_t acc[TX][TR];
  for (int s = 0; s < TX; ++s)
    for (int t = 0; t < TR; ++t) acc[s][t] = vdupq_n_f32(0.0f);
  const int k4 = a.k / 4 * 4;
  for (int j = 0; j < k4; j += 4) {
    float32x4_t wv[TR];
    for (int t = 0; t < TR; ++t) wv[t] = W::load4(w[t] + j * W::kBytes);
    for (int s = 0; s < TX; ++s) {
      const float32x4_t xv = vld1q_f32(x[s] + j);
      for (int t = 0; t < TR; ++t) acc[s][t] = vfmaq_f32(acc[s][t], wv[t], xv);
    }
  }
  for (int s = 0; s < TX; ++s) {
    float* y = y_at(a, i + s);
    for (int t = 0; t < TR; ++t) {
      float sum = vaddvq_f32(acc[s][t]);
      for (int j = k4; j < a.k; ++j) sum += W::load1(w[t] + j * W::kBytes) * x[s][j];
      y[r + t] = sum;
    }
  }
}

// 4 x 4 tiles: 16 accumulators, 4 weight and 1 activation vector in registers; decode
// reads 8 weight rows at once (8 independent FMA chains cover the FMA latency).
template <typename W>
struct FloatTiles {
  static constexpr int kTX = 4, kTR4 = 4, kTR1 = 8;
  static void tile_xn(const MatmulArgs& a, int i, int r) { float_tile<W, kTX, kTR4>(a, i, r); }
  static void tile_x1(const MatmulArgs& a, int i, int r) { float_tile<W, kTX, 1>(a, i, r); }
  static void tile_1n(const MatmulArgs& a, int i, int r) { float_tile<W, 1, kTR1>(a, i, r); }
  static void tile_11(const MatmulArgs& a, int i, int r) { float_tile<W, 1, 1>(a, i, r); }
};

template <typename W>
void matmul_float(const MatmulArgs& a, int r0, int r1) {
  tiled<FloatTiles<W>>(a, r0, r1);
}

// ---- quantized weight types without SDOT ------------------------------------------

// 16 byte products widened to int16 (|w * x| <= 128 * 127, and a pair of them fits
// too), pairwise added into the int32 lanes.
struct WideningDot {
  static int32x4_t dot_acc(int32x4_t acc, int8x16_t w, int8x16_t x) {
    const int16x8_t p = vmlal_high_s8(vmull_s8(vget_low_s8(w), vget_low_s8(x)), w, x);
    return vpadalq_s16(acc, p);
  }
};

// Same results as the scalar quantize_q8: the same float operations, FCVTNS rounds to
// nearest even as nearbyint does, and FCVT to half rounds to nearest even.
void quantize_q8(const float* x, void* out, int k) {
  const int nb = k / kBlockElems;
  auto* q = static_cast<int8_t*>(out);
  auto* scales = reinterpret_cast<float*>(static_cast<uint8_t*>(out) + k);
  auto* sums = reinterpret_cast<int32_t*>(static_cast<uint8_t*>(out) + k + 4 * nb);
  auto* min_sums = reinterpret_cast<float*>(static_cast<uint8_t*>(out) + k + 8 * nb);
  for (int b = 0; b < nb; ++b) {
    const float* xb = x + b * kBlockElems;
    float32x4_t v[8];
    float32x4_t amax = vdupq_n_f32(0.0f);
    for (int j = 0; j < 8; ++j) {
      v[j] = vld1q_f32(xb + 4 * j);
      amax = vmaxq_f32(amax, vabsq_f32(v[j]));
    }
    const float max = vmaxvq_f32(amax);
    const float d = max / 127.0f;
    const float id = d != 0 ? 127.0f / max : 0.0f;
    int32x4_t qi[8];
    int32x4_t sum = vdupq_n_s32(0);
    for (int j = 0; j < 8; ++j) {
      qi[j] = vcvtnq_s32_f32(vmulq_n_f32(v[j], id));
      sum = vaddq_s32(sum, qi[j]);
    }
    for (int h = 0; h < 2; ++h) {
      const int32x4_t* p = qi + 4 * h;
      const int16x8_t lo = vcombine_s16(vqmovn_s32(p[0]), vqmovn_s32(p[1]));
      const int16x8_t hi = vcombine_s16(vqmovn_s32(p[2]), vqmovn_s32(p[3]));
      vst1q_s8(q + b * kBlockElems + 16 * h, vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi)));
    }
    const float16x4_t dh = vcvt_f16_f32(vdupq_n_f32(d));
    scales[b] = vgetq_lane_f32(vcvt_f32_f16(dh), 0);
    sums[b] = vaddvq_s32(sum);
    const float16x4_t sh = vcvt_f16_f32(vdupq_n_f32(d * static_cast<float>(sums[b])));
    min_sums[b] = vgetq_lane_f32(vcvt_f32_f16(sh), 0);
  }
}

// Same results as the scalar quantize_q8k: the first value of largest magnitude gives
// iscale = -127 / max, q = min(127, round(iscale * x)) with FCVTNS (nearest even).
void quantize_q8k(const float* x, void* out, int k) {
  const int nb = k / kSuperElems;
  auto* q = static_cast<int8_t*>(out);
  auto* scales = reinterpret_cast<float*>(static_cast<uint8_t*>(out) + k);
  auto* sums = reinterpret_cast<int16_t*>(static_cast<uint8_t*>(out) + k + 4 * nb);
  for (int b = 0; b < nb; ++b) {
    const float* xb = x + b * kSuperElems;
    int8_t* qb = q + b * kSuperElems;
    float32x4_t amax4 = vdupq_n_f32(0.0f);
    for (int j = 0; j < kSuperElems; j += 4) amax4 = vmaxq_f32(amax4, vabsq_f32(vld1q_f32(xb + j)));
    const float amax = vmaxvq_f32(amax4);
    if (amax == 0) {
      scales[b] = 0;
      std::memset(qb, 0, kSuperElems);
      std::memset(sums + 16 * b, 0, 16 * sizeof(int16_t));
      continue;
    }
    int first = 0;
    while (std::fabs(xb[first]) != amax) ++first;
    const float iscale = -127.0f / xb[first];
    const int32x4_t limit = vdupq_n_s32(127);
    for (int g = 0; g < 16; ++g) {
      int32x4_t v[4];
      for (int j = 0; j < 4; ++j) {
        v[j] =
            vminq_s32(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(xb + 16 * g + 4 * j), iscale)), limit);
      }
      const int16x8_t lo = vcombine_s16(vqmovn_s32(v[0]), vqmovn_s32(v[1]));
      const int16x8_t hi = vcombine_s16(vqmovn_s32(v[2]), vqmovn_s32(v[3]));
      vst1q_s8(qb + 16 * g, vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi)));
      sums[16 * b + g] = static_cast<int16_t>(vaddvq_s16(vaddq_s16(lo, hi)));
    }
    scales[b] = 1 / iscale;
  }
}

}  // namespace

void fill_neon(Kernels& t) {
  t.matmul_f32 = matmul_float<F32W>;
  t.matmul_f16 = matmul_float<F16W>;
  t.matmul_bf16 = matmul_float<BF16W>;
  t.quantize_q8 = quantize_q8;
  fill_quant32<WideningDot>(t);
  t.quantize_q8k = quantize_q8k;
  fill_kquants<WideningDot>(t);
  fill_neon_ops(t);
}

}  // namespace infera::engine::kernels
