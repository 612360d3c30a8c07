// NEON matrix products of the K-quants (Q2_K .. Q6_K) against Q8K activation rows,
// for a dot policy D (tiles_neon.h: widening multiplies or SDOT).
//
// Included only by arm/*.cpp; an unnamed namespace for the reason tiles_neon.h gives.
//
// Per weight row and super-block, the block is unpacked once into 256 signed levels
// (offsets removed) and, per 16-element group, its integer scale and min; then for
// each of up to 4 activation rows the super-block reduces, exactly in int32 as in the
// scalar reference, to isum = sum_g scale[g] * dot(levels_g, x_g) and
// msum = sum_g min[g] * sum(x_g), and y += (d_w * d_x) * isum - (dmin_w * d_x) * msum
// with explicit fused multiply-adds, super-blocks in order. Each (activation row,
// weight row) result is thus computed the same way whatever the batch.
#pragma once

#include <arm_neon.h>

#include <cmath>
#include <cstdint>

#include "engine/kernels/arm/tiles_neon.h"

namespace infera::engine::kernels {
namespace {

struct alignas(16) SuperLevels {
  int8_t q[kSuperElems];  // element order
  int16_t scale[16];      // per 16 elements
  int16_t min[16];        // per 16 elements; zero for types without dmin
};

// Bits [shift, shift + width) of each byte, moved down to bit 0.
template <int kWidth>
uint8x16_t bit_field(uint8x16_t v, int shift) {
  return vandq_u8(vshlq_u8(v, vdupq_n_s8(static_cast<int8_t>(-shift))),
                  vdupq_n_u8((1 << kWidth) - 1));
}
// `value` in the byte lanes whose bit `bit` is set, else 0.
uint8x16_t bit_as(uint8x16_t v, int bit, uint8_t value) {
  return vandq_u8(vtstq_u8(v, vdupq_n_u8(static_cast<uint8_t>(1 << bit))), vdupq_n_u8(value));
}
void store_levels(int8_t* dst, uint8x16_t levels, int offset) {
  vst1q_s8(dst, vsubq_s8(vreinterpretq_s8_u8(levels), vdupq_n_s8(static_cast<int8_t>(offset))));
}

// Q4_K / Q5_K: element 64 i + l (l < 32) in the low nibble of qs[32 i + l], 64 i + 32 + l
// in the high one; Q5_K's fifth bit e / 32 of qh[e % 32].
template <typename Block, bool kFifthBit>
void unpack_k4(const Block& b, SuperLevels& s) {
  uint8_t sc[8], mn[8];
  k4_scale_min(b.scales, sc, mn);
  for (int g = 0; g < 16; ++g) {
    s.scale[g] = sc[g / 2];
    s.min[g] = mn[g / 2];
  }
  for (int i = 0; i < 4; ++i) {
    for (int u = 0; u < 2; ++u) {
      const uint8x16_t q = vld1q_u8(b.qs + 32 * i + 16 * u);
      uint8x16_t lo = vandq_u8(q, vdupq_n_u8(0x0f));
      uint8x16_t hi = vshrq_n_u8(q, 4);
      if constexpr (kFifthBit) {
        const uint8x16_t h = vld1q_u8(b.qh + 16 * u);
        lo = vorrq_u8(lo, bit_as(h, 2 * i, 0x10));
        hi = vorrq_u8(hi, bit_as(h, 2 * i + 1, 0x10));
      }
      store_levels(s.q + 64 * i + 16 * u, lo, 0);
      store_levels(s.q + 64 * i + 32 + 16 * u, hi, 0);
    }
  }
}
void unpack(const BlockQ4_K& b, SuperLevels& s) { unpack_k4<BlockQ4_K, false>(b, s); }
void unpack(const BlockQ5_K& b, SuperLevels& s) { unpack_k4<BlockQ5_K, true>(b, s); }

// Q6_K: e = 128 h + 32 t + l; low 4 bits from ql[64 h + 32 (t & 1) + l] (low nibble for
// t < 2), high 2 bits from bits 2t, 2t+1 of qh[32 h + l]; level q - 32.
void unpack(const BlockQ6_K& b, SuperLevels& s) {
  for (int g = 0; g < 16; ++g) {
    s.scale[g] = b.scales[g];
    s.min[g] = 0;
  }
  for (int h = 0; h < 2; ++h) {
    for (int t = 0; t < 4; ++t) {
      for (int u = 0; u < 2; ++u) {
        const uint8x16_t ql = vld1q_u8(b.ql + 64 * h + 32 * (t & 1) + 16 * u);
        const uint8x16_t low = bit_field<4>(ql, t < 2 ? 0 : 4);
        const uint8x16_t high = bit_field<2>(vld1q_u8(b.qh + 32 * h + 16 * u), 2 * t);
        store_levels(s.q + 128 * h + 32 * t + 16 * u, vorrq_u8(low, vshlq_n_u8(high, 4)), 32);
      }
    }
  }
}

// Q2_K: e = 128 h + 32 t + l, q = bits 2t, 2t+1 of qs[32 h + l]; scales[g]: low nibble
// scale, high nibble min.
void unpack(const BlockQ2_K& b, SuperLevels& s) {
  for (int g = 0; g < 16; ++g) {
    s.scale[g] = b.scales[g] & 15;
    s.min[g] = b.scales[g] >> 4;
  }
  for (int h = 0; h < 2; ++h) {
    for (int t = 0; t < 4; ++t) {
      for (int u = 0; u < 2; ++u) {
        const uint8x16_t q = bit_field<2>(vld1q_u8(b.qs + 32 * h + 16 * u), 2 * t);
        store_levels(s.q + 128 * h + 32 * t + 16 * u, q, 0);
      }
    }
  }
}

// Q3_K: low 2 bits as Q2_K, the third from bit 4 h + t of hmask[l]; level q - 4, scale
// sc - 32 from the packed 6-bit scales.
void unpack(const BlockQ3_K& b, SuperLevels& s) {
  uint8_t sc[16];
  k3_scales(b.scales, sc);
  for (int g = 0; g < 16; ++g) {
    s.scale[g] = static_cast<int16_t>(sc[g] - 32);
    s.min[g] = 0;
  }
  for (int u = 0; u < 2; ++u) {
    const uint8x16_t hm = vld1q_u8(b.hmask + 16 * u);
    for (int h = 0; h < 2; ++h) {
      const uint8x16_t qs = vld1q_u8(b.qs + 32 * h + 16 * u);
      for (int t = 0; t < 4; ++t) {
        const uint8x16_t q = vorrq_u8(bit_field<2>(qs, 2 * t), bit_as(hm, 4 * h + t, 4));
        store_levels(s.q + 128 * h + 32 * t + 16 * u, q, 4);
      }
    }
  }
}

template <typename Block>
constexpr bool kHasDmin = requires(const Block& b) {
  b.dmin;
};

// TX activation rows from i against weight rows [r0, r1).
template <typename Block, typename D, int TX>
void kquant_rows(const MatmulArgs& a, int i, int r0, int r1) {
  const int8_t* xq[TX];
  const float* xd[TX];
  const int16_t* xs[TX];
  float* y[TX];
  for (int s = 0; s < TX; ++s) {
    const void* row = row_at(a.x, a.x_stride, i + s);
    xq[s] = q8k_values(row);
    xd[s] = q8k_scales(row, a.k);
    xs[s] = q8k_sums(row, a.k);
    y[s] = y_at(a, i + s);
  }
  const int nb = a.k / kSuperElems;
  SuperLevels levels;
  for (int r = r0; r < r1; ++r) {
    const Block* w = reinterpret_cast<const Block*>(row_at(a.w, a.w_stride, r));
    float sum[TX];
    for (int s = 0; s < TX; ++s) sum[s] = 0.0f;
    for (int b = 0; b < nb; ++b) {
      unpack(w[b], levels);
      const float dw = half_to_float(w[b].d);
      const int16x8_t mins0 = vld1q_s16(levels.min), mins1 = vld1q_s16(levels.min + 8);
      for (int s = 0; s < TX; ++s) {
        const int8_t* x = xq[s] + b * kSuperElems;
        int32x4_t acc = vdupq_n_s32(0);
        for (int g = 0; g < 16; ++g) {
          const int32x4_t dot =
              D::dot_acc(vdupq_n_s32(0), vld1q_s8(levels.q + 16 * g), vld1q_s8(x + 16 * g));
          acc = vmlaq_n_s32(acc, dot, levels.scale[g]);
        }
        const float dx = xd[s][b];
        sum[s] = std::fma(dw * dx, static_cast<float>(vaddvq_s32(acc)), sum[s]);
        if constexpr (kHasDmin<Block>) {
          const int16_t* sums = xs[s] + 16 * b;
          int32x4_t m = vmull_s16(vget_low_s16(mins0), vld1_s16(sums));
          m = vmlal_high_s16(m, mins0, vld1q_s16(sums));
          m = vmlal_s16(m, vget_low_s16(mins1), vld1_s16(sums + 8));
          m = vmlal_high_s16(m, mins1, vld1q_s16(sums + 8));
          sum[s] =
              std::fma(-(half_to_float(w[b].dmin) * dx), static_cast<float>(vaddvq_s32(m)), sum[s]);
        }
      }
    }
    for (int s = 0; s < TX; ++s) y[s][r] = sum[s];
  }
}

// Weight rows are unpacked once per 4 activation rows (prefill), then single rows.
template <typename Block, typename D>
void matmul_kquant(const MatmulArgs& a, int r0, int r1) {
  int i = 0;
  for (; i + 4 <= a.n; i += 4) kquant_rows<Block, D, 4>(a, i, r0, r1);
  for (; i < a.n; ++i) kquant_rows<Block, D, 1>(a, i, r0, r1);
}

template <typename D>
void fill_kquants(Kernels& t) {
  t.matmul_q2_k = matmul_kquant<BlockQ2_K, D>;
  t.matmul_q3_k = matmul_kquant<BlockQ3_K, D>;
  t.matmul_q4_k = matmul_kquant<BlockQ4_K, D>;
  t.matmul_q5_k = matmul_kquant<BlockQ5_K, D>;
  t.matmul_q6_k = matmul_kquant<BlockQ6_K, D>;
}

}  // namespace
}  // namespace infera::engine::kernels
