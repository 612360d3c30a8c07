// NEON matrix-product tiling shared by the arm/ kernel files.
//
// Included only by arm/*.cpp. Those files are compiled for different targets (plain
// ARMv8-A, or ARMv8.2-A with the dot-product extension), so everything here sits in an
// unnamed namespace: each file gets its own copy built for its own target, and the
// linker can never substitute a dot-product build of a helper into the plain table.
//
// Batch invariance: every (activation row, weight row) pair owns one 4-lane accumulator
// that walks k in the same order whatever the tile shape or row range, so a row's
// result does not depend on what else is in the batch. Tiles reuse each weight load
// across 4 activation rows (prefill) or read several weight rows at once (decode).
#pragma once

#include <arm_neon.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "engine/kernels/tables.h"

namespace infera::engine::kernels {
namespace {


// Activation rows per chunk so that a chunk stays in L2 while weight tiles sweep it
// (128 KiB: a Cortex-A55's L2; an A76 has 512 KiB).
inline int x_chunk_rows(size_t x_stride) {
  const size_t rows = (size_t{128} << 10) / (x_stride == 0 ? 1 : x_stride);
  return static_cast<int>(rows < 4 ? 4 : rows / 4 * 4);
}

// IEEE half to float with the FCVT instruction (exact; same result as fp16_to_f32).
inline float half_to_float(uint16_t h) {
  return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

// Runs Tiles' kernels over chunks of activation rows: kTX x kTR4 tiles (and kTX x 1
// for the weight rows left over) while kTX activation rows remain, then 1 x kTR1
// tiles (and 1 x 1) for the rest, decode included.
template <typename Tiles>
void tiled(const MatmulArgs& a, int r0, int r1) {
  const int chunk = x_chunk_rows(a.x_stride);
  for (int c0 = 0; c0 < a.n; c0 += chunk) {
    const int c1 = c0 + chunk < a.n ? c0 + chunk : a.n;
    const int cx = c0 + (c1 - c0) / Tiles::kTX * Tiles::kTX;
    int r = r0;
    for (; r + Tiles::kTR4 <= r1; r += Tiles::kTR4) {
      for (int i = c0; i < cx; i += Tiles::kTX) Tiles::tile_xn(a, i, r);
    }
    for (; r < r1; ++r) {
      for (int i = c0; i < cx; i += Tiles::kTX) Tiles::tile_x1(a, i, r);
    }
    for (int i = cx; i < c1; ++i) {
      int rr = r0;
      for (; rr + Tiles::kTR1 <= r1; rr += Tiles::kTR1) Tiles::tile_1n(a, i, rr);
      for (; rr < r1; ++rr) Tiles::tile_11(a, i, rr);
    }
  }
}

// ---- 32-element blocks against Q8 activation rows ---------------------------------
//
// An unpack policy U gives a block's 32 weight levels as two vectors of signed bytes
// (elements 0..15 and 16..31), their offset already removed; types with a min also
// give it (kHasMin). A dot policy D (each file's: widening multiplies, or SDOT) adds
// 16 byte products into four int32 lanes. Per block and pair: the exact integer dot,
// acc = fma(float(dot lanes), d_w * d_x, acc); and for types with a min,
// macc = fma(m_w, s_x, macc) with s_x the row's min sum (q8_row_bytes). The lanes and
// macc are summed at the end.

// Fifth bits of Q5 blocks: byte lanes j of (qh byte h, qh byte h+1) test bit j % 8.
inline uint8x16_t fifth_bits(const uint8_t* qh, int h) {
  static constexpr uint8_t kBits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t bytes = vcombine_u8(vdup_n_u8(qh[h]), vdup_n_u8(qh[h + 1]));
  return vandq_u8(vtstq_u8(bytes, vld1q_u8(kBits)), vdupq_n_u8(0x10));
}

// Low nibbles are elements 0..15, high nibbles 16..31 (plus fifth bits for Q5).
template <typename Block, bool kFifthBit>
void nibbles(const Block* b, uint8x16_t& lo, uint8x16_t& hi) {
  const uint8x16_t q = vld1q_u8(b->qs);
  lo = vandq_u8(q, vdupq_n_u8(0x0f));
  hi = vshrq_n_u8(q, 4);
  if constexpr (kFifthBit) {
    lo = vorrq_u8(lo, fifth_bits(b->qh, 0));
    hi = vorrq_u8(hi, fifth_bits(b->qh, 2));
  }
}

struct Q8Unpack {
  using Block = BlockQ8_0;
  static constexpr bool kHasMin = false;
  static void unpack(const Block* b, int8x16_t& lo, int8x16_t& hi) {
    lo = vld1q_s8(b->qs);
    hi = vld1q_s8(b->qs + 16);
  }
};

// Levels 0..15 (Q4) or 0..31 (Q5), minus the offset of the types without a min.
template <typename B, bool kFifthBit, int kOffset>
struct NibbleUnpack {
  using Block = B;
  static constexpr bool kHasMin = kOffset == 0;
  static void unpack(const Block* b, int8x16_t& lo, int8x16_t& hi) {
    uint8x16_t l, h;
    nibbles<Block, kFifthBit>(b, l, h);
    const int8x16_t offset = vdupq_n_s8(kOffset);
    lo = vsubq_s8(vreinterpretq_s8_u8(l), offset);
    hi = vsubq_s8(vreinterpretq_s8_u8(h), offset);
  }
  static float min(const Block* b) { return half_to_float(b->m); }
};
using Q4_0Unpack = NibbleUnpack<BlockQ4_0, false, 8>;
using Q4_1Unpack = NibbleUnpack<BlockQ4_1, false, 0>;
using Q5_0Unpack = NibbleUnpack<BlockQ5_0, true, 16>;
using Q5_1Unpack = NibbleUnpack<BlockQ5_1, true, 0>;

template <typename D>
int32x4_t dot32(int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1) {
  return D::dot_acc(D::dot_acc(vdupq_n_s32(0), w0, x0), w1, x1);
}

template <typename U, typename D, int TX, int TR>
void quant_tile(const MatmulArgs& a, int i, int r) {
  using Block = typename U::Block;
  const Block* w[TR];
  const int8_t* xq[TX];
  const float* xd[TX];
  const float* xm[TX];
  for (int t = 0; t < TR; ++t)
    w[t] = reinterpret_cast<const Block*>(row_at(a.w, a.w_stride, r + t));
  for (int s = 0; s < TX; ++s) {
    const void* row = row_at(a.x, a.x_stride, i + s);
    xq[s] = q8_values(row);
    xd[s] = q8_scales(row, a.k);
    xm[s] = q8_min_sums(row, a.k);
  }
  float32x4_t acc[TX][TR];
  float macc[TX][TR];
  for (int s = 0; s < TX; ++s) {
    for (int t = 0; t < TR; ++t) {
      acc[s][t] = vdupq_n_f32(0.0f);
      macc[s][t] = 0.0f;
    }
  }
  const int nb = a.k / kBlockElems;
  for (int b = 0; b < nb; ++b) {
    int8x16_t lo[TR], hi[TR];
    float dw[TR];
    for (int t = 0; t < TR; ++t) {
      U::unpack(w[t] + b, lo[t], hi[t]);
      dw[t] = half_to_float(w[t][b].d);
    }
    for (int s = 0; s < TX; ++s) {
      const int8x16_t x0 = vld1q_s8(xq[s] + b * kBlockElems);
      const int8x16_t x1 = vld1q_s8(xq[s] + b * kBlockElems + 16);
      const float dx = xd[s][b];
      for (int t = 0; t < TR; ++t) {
        const float32x4_t p = vcvtq_f32_s32(dot32<D>(lo[t], hi[t], x0, x1));
        acc[s][t] = vfmaq_f32(acc[s][t], p, vdupq_n_f32(dw[t] * dx));
        if constexpr (U::kHasMin) {
          macc[s][t] = std::fma(U::min(w[t] + b), xm[s][b], macc[s][t]);
        }
      }
    }
  }
  for (int s = 0; s < TX; ++s) {
    float* y = y_at(a, i + s);
    for (int t = 0; t < TR; ++t) y[r + t] = vaddvq_f32(acc[s][t]) + macc[s][t];
  }
}

// 4 activation rows x 3 weight rows keeps 12 accumulators, 6 weight vectors and 2
// activation vectors within the 32 NEON registers; decode reads 4 weight rows at once.
template <typename U, typename D>
struct QuantTiles {
  static constexpr int kTX = 4, kTR4 = 3, kTR1 = 4;
  static void tile_xn(const MatmulArgs& a, int i, int r) { quant_tile<U, D, kTX, kTR4>(a, i, r); }
  static void tile_x1(const MatmulArgs& a, int i, int r) { quant_tile<U, D, kTX, 1>(a, i, r); }
  static void tile_1n(const MatmulArgs& a, int i, int r) { quant_tile<U, D, 1, kTR1>(a, i, r); }
  static void tile_11(const MatmulArgs& a, int i, int r) { quant_tile<U, D, 1, 1>(a, i, r); }
};

template <typename U, typename D>
void matmul_quant(const MatmulArgs& a, int r0, int r1) {
  tiled<QuantTiles<U, D>>(a, r0, r1);
}

// Every 32-element type's matmul with dot policy D.
template <typename D>
void fill_quant32(Kernels& t) {
  t.matmul_q8_0 = matmul_quant<Q8Unpack, D>;
  t.matmul_q4_0 = matmul_quant<Q4_0Unpack, D>;
  t.matmul_q4_1 = matmul_quant<Q4_1Unpack, D>;
  t.matmul_q5_0 = matmul_quant<Q5_0Unpack, D>;
  t.matmul_q5_1 = matmul_quant<Q5_1Unpack, D>;
}

}  // namespace
}  // namespace infera::engine::kernels
