// Scalar reference of llama.cpp's x86 summation orders (see ggml_order in kernels.h),
// as its AVX-512 build computes: the products of Q8_0, Q4_K, Q5_K and Q6_K rows and ggml's vector
// SiLU, written out one float operation at a time so that the AVX2 / AVX-512 versions in
// x86/ggml_order_avx2.cpp and x86/ggml_order_avx512.cpp can be tested against them bit
// for bit. Slow; the scalar table's ggml order uses them.
//
// The orders (facts read from llama.cpp 3f545bec, ggml-cpu, built for x86 with AVX2):
// - "Eight lanes" (its vec_dot functions for Q8_0, Q5_0, Q4_1, Q5_1, Q3_K, Q5_K, Q6_K
//   and, on AVX2 builds, Q2_K; its tinyBLAS prefill for Q8_0 and Q5_0 sums alike): lane
//   l in [0, 8) holds the integer dot of the 4-element groups 4l..4l+3 of every
//   32-element chunk (for the K-quants weighted by the chunk's scales), per block or
//   super-block b an FMA acc[l] = fma(d_b, float(lane), acc[l]); then the lanes are
//   summed as ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)). The types with a
//   min add a scalar chain (Q4_1, Q5_1, Q5_K) or a first FMA per super-block (Q2_K).
// - Repacked weights (Q4_0 and Q4_K on AVX2 builds, Q2_K on AVX-512 ones, 8 rows at
//   a time): one chain acc = fma(float(isum), d_w * d_x, acc) and, with mins, a second
//   mins = fma(float(msum), dmin_w * d_x, mins), y = acc - mins; one step per block
//   (Q4_0) or super-block for a single activation row (gemv) and, for K-quants, one
//   step per 64 (Q4_K) or 128 (Q2_K) elements for activation rows taken four at a
//   time (gemm: the first n - n % 4 of a batch of n > 3 rows).
// - F16: one activation row (ggml_vec_dot_f16, activations rounded to F16): four
//   accumulators of 16 (AVX-512) or 8 (AVX2) lanes, reduced as dot_f16_rows; more
//   rows (llamafile's tinyBLAS): one accumulator of 16 / 8 lanes over the row, then
//   GCC's _mm512_reduce_add_ps / the 8-lane sum above.
#include <cmath>
#include <cstring>

#include "engine/kernels/tables.h"

namespace infera::engine::kernels {
namespace {

int32_t dot4(const int8_t* x, const int* q, int e) {
  int32_t s = 0;
  for (int t = 0; t < 4; ++t) s += q[e + t] * x[e + t];
  return s;
}

// Q8_0 weights against Q8 rows.
void matmul_q8_0(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kBlockElems;
  int q[kBlockElems];
  each_pair<BlockQ8_0>(a, r0, r1, [&](const BlockQ8_0* w, int i) {
    const void* xrow = row_at(a.x, a.x_stride, i);
    const int8_t* xq = q8_values(xrow);
    const float* xd = q8_scales(xrow, a.k);
    float acc[8] = {};
    for (int b = 0; b < nb; ++b) {
      for (int e = 0; e < kBlockElems; ++e) q[e] = w[b].qs[e];
      const float d = fp16_to_f32(w[b].d) * xd[b];
      for (int l = 0; l < 8; ++l)
        acc[l] = std::fma(d, static_cast<float>(dot4(xq + b * kBlockElems, q, 4 * l)), acc[l]);
    }
    return ggml_lane_sum(acc);
  });
}

// ---- the 32-element types -----------------------------------------------------------

// The levels of one block in element order: signed for Q4_0 (q - 8) and Q5_0 (q - 16),
// unsigned for Q4_1 (0..15) and Q5_1 (0..31).
void levels(const BlockQ4_0& b, int* q) {
  for (int e = 0; e < 16; ++e) {
    q[e] = (b.qs[e] & 15) - 8;
    q[e + 16] = (b.qs[e] >> 4) - 8;
  }
}
void levels(const BlockQ4_1& b, int* q) {
  for (int e = 0; e < 16; ++e) {
    q[e] = b.qs[e] & 15;
    q[e + 16] = b.qs[e] >> 4;
  }
}
uint32_t high_bits(const uint8_t* qh) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  return h;
}
void levels(const BlockQ5_0& b, int* q) {
  const uint32_t h = high_bits(b.qh);
  for (int e = 0; e < 16; ++e) {
    q[e] = ((b.qs[e] & 15) | ((h >> e) & 1) << 4) - 16;
    q[e + 16] = ((b.qs[e] >> 4) | ((h >> (e + 16)) & 1) << 4) - 16;
  }
}
void levels(const BlockQ5_1& b, int* q) {
  const uint32_t h = high_bits(b.qh);
  for (int e = 0; e < 16; ++e) {
    q[e] = (b.qs[e] & 15) | ((h >> e) & 1) << 4;
    q[e + 16] = (b.qs[e] >> 4) | ((h >> (e + 16)) & 1) << 4;
  }
}

// Q4_0, repacked by ggml: one FMA per block of the whole block's integer dot.
void matmul_q4_0(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kBlockElems;
  int q[kBlockElems];
  each_pair<BlockQ4_0>(a, r0, r1, [&](const BlockQ4_0* w, int i) {
    const void* xrow = row_at(a.x, a.x_stride, i);
    const int8_t* xq = q8_values(xrow);
    const float* xd = q8_scales(xrow, a.k);
    float acc = 0;
    for (int b = 0; b < nb; ++b) {
      levels(w[b], q);
      int32_t isum = 0;
      for (int e = 0; e < kBlockElems; ++e) isum += q[e] * xq[b * kBlockElems + e];
      acc = std::fma(static_cast<float>(isum), fp16_to_f32(w[b].d) * xd[b], acc);
    }
    return acc;
  });
}

// Q5_0 (vec_dot and tinyBLAS alike) and Q4_1 / Q5_1 (vec_dot): eight lanes per block;
// with a min, summs = fma(m_w, s_x, summs) added after the lanes.
template <typename Block>
void matmul_lanes32(const MatmulArgs& a, int r0, int r1) {
  constexpr bool kMin = requires(Block b) { b.m; };
  const int nb = a.k / kBlockElems;
  int q[kBlockElems];
  each_pair<Block>(a, r0, r1, [&](const Block* w, int i) {
    const void* xrow = row_at(a.x, a.x_stride, i);
    const int8_t* xq = q8_values(xrow);
    const float* xd = q8_scales(xrow, a.k);
    const float* xs = q8_min_sums(xrow, a.k);
    float acc[8] = {};
    float summs = 0;
    for (int b = 0; b < nb; ++b) {
      levels(w[b], q);
      if constexpr (kMin) summs = std::fma(fp16_to_f32(w[b].m), xs[b], summs);
      const float d = fp16_to_f32(w[b].d) * xd[b];
      for (int l = 0; l < 8; ++l)
        acc[l] = std::fma(d, static_cast<float>(dot4(xq + b * kBlockElems, q, 4 * l)), acc[l]);
    }
    return ggml_lane_sum(acc) + summs;
  });
}

// ---- Q2_K, Q3_K -------------------------------------------------------------------------

void levels_q2_k(const BlockQ2_K& b, int* q) {
  for (int e = 0; e < kSuperElems; ++e) {
    const int h = e / 128, t = (e / 32) % 4, l = e % 32;
    q[e] = (b.qs[32 * h + l] >> (2 * t)) & 3;
  }
}

// Q3_K (vec_dot): eight lanes, each chunk's two 16-element scales (stored - 32).
void matmul_q3_k(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kSuperElems;
  int q[kSuperElems];
  each_pair<BlockQ3_K>(a, r0, r1, [&](const BlockQ3_K* w, int i) {
    const void* xrow = row_at(a.x, a.x_stride, i);
    const int8_t* xq = q8k_values(xrow);
    const float* xd = q8k_scales(xrow, a.k);
    float acc[8] = {};
    for (int b = 0; b < nb; ++b) {
      const BlockQ3_K& blk = w[b];
      uint8_t sc[16];
      k3_scales(blk.scales, sc);
      for (int e = 0; e < kSuperElems; ++e) {
        const int h = e / 128, t = (e / 32) % 4, l = e % 32;
        q[e] =
            (((blk.qs[32 * h + l] >> (2 * t)) & 3) | ((blk.hmask[l] >> (4 * h + t)) & 1) << 2) - 4;
      }
      const int8_t* x = xq + b * kSuperElems;
      const float d = xd[b] * fp16_to_f32(blk.d);
      for (int l = 0; l < 8; ++l) {
        int32_t lane = 0;
        for (int c = 0; c < 8; ++c) lane += (sc[2 * c + l / 4] - 32) * dot4(x, q, 32 * c + 4 * l);
        acc[l] = std::fma(d, static_cast<float>(lane), acc[l]);
      }
    }
    return ggml_lane_sum(acc);
  });
}

// Q2_K as llama.cpp's AVX2 build (vec_dot): per super-block the mins' lanes first
// (lane l: groups 2l and 2l + 1), then the scaled levels' lanes.
void matmul_q2_k_lanes(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kSuperElems;
  int q[kSuperElems];
  each_pair<BlockQ2_K>(a, r0, r1, [&](const BlockQ2_K* w, int i) {
    const void* xrow = row_at(a.x, a.x_stride, i);
    const int8_t* xq = q8k_values(xrow);
    const float* xd = q8k_scales(xrow, a.k);
    const int16_t* xs = q8k_sums(xrow, a.k);
    float acc[8] = {};
    for (int b = 0; b < nb; ++b) {
      const BlockQ2_K& blk = w[b];
      levels_q2_k(blk, q);
      const int8_t* x = xq + b * kSuperElems;
      const int16_t* s16 = xs + b * 16;
      const float d = xd[b] * fp16_to_f32(blk.d);
      const float dmin = -(xd[b] * fp16_to_f32(blk.dmin));
      for (int l = 0; l < 8; ++l) {
        const int32_t mins =
            (blk.scales[2 * l] >> 4) * s16[2 * l] + (blk.scales[2 * l + 1] >> 4) * s16[2 * l + 1];
        acc[l] = std::fma(dmin, static_cast<float>(mins), acc[l]);
      }
      for (int l = 0; l < 8; ++l) {
        int32_t lane = 0;
        for (int c = 0; c < 8; ++c)
          lane += (blk.scales[2 * c + l / 4] & 15) * dot4(x, q, 32 * c + 4 * l);
        acc[l] = std::fma(d, static_cast<float>(lane), acc[l]);
      }
    }
    return ggml_lane_sum(acc);
  });
}

// Q2_K as llama.cpp's AVX-512 build (repacked): the two chains of Q4_K, per super-block
// (gemv) or per 128 elements (gemm rows).
void matmul_q2_k_repacked(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kSuperElems;
  const int gemm_rows = a.n > 3 ? a.n - a.n % 4 : 0;
  int q[kSuperElems];
  each_pair<BlockQ2_K>(a, r0, r1, [&](const BlockQ2_K* w, int i) {
    const void* xrow = row_at(a.x, a.x_stride, i);
    const int8_t* xq = q8k_values(xrow);
    const float* xd = q8k_scales(xrow, a.k);
    const int16_t* xs = q8k_sums(xrow, a.k);
    const int steps = i < gemm_rows ? 2 : 1;
    float acc = 0, mins = 0;
    for (int b = 0; b < nb; ++b) {
      const BlockQ2_K& blk = w[b];
      levels_q2_k(blk, q);
      const int8_t* x = xq + b * kSuperElems;
      const int16_t* s16 = xs + b * 16;
      const float d = fp16_to_f32(blk.d) * xd[b];
      const float dmin = fp16_to_f32(blk.dmin) * xd[b];
      for (int step = 0; step < steps; ++step) {
        const int j0 = 16 / steps * step, j1 = 16 / steps * (step + 1);  // 16-element groups
        int32_t isum = 0, msum = 0;
        for (int j = j0; j < j1; ++j) {
          int32_t dot = 0;
          for (int e = 16 * j; e < 16 * j + 16; ++e) dot += q[e] * x[e];
          isum += (blk.scales[j] & 15) * dot;
          msum += (blk.scales[j] >> 4) * s16[j];
        }
        acc = std::fma(static_cast<float>(isum), d, acc);
        mins = std::fma(static_cast<float>(msum), dmin, mins);
      }
    }
    return acc - mins;
  });
}

// ---- F16 ------------------------------------------------------------------------------

// W lanes summed as ggml's builds do. 16 lanes: GCC's _mm512_reduce_add_ps (halves,
// quarters, then (t0 + t2) + (t1 + t3)). 8 lanes: its tinyBLAS and quants.c hsum
// (ggml_lane_sum) or, with `hadd`, vec.cpp's AVX reduction, whose two hadds give
// (t0 + t1) + (t2 + t3) of the halves' sums t.
template <int W>
float reduce_lanes(const float* x, bool hadd = false) {
  if constexpr (W == 16) {
    float t3[8], t6[4];
    for (int l = 0; l < 8; ++l) t3[l] = x[l + 8] + x[l];
    for (int l = 0; l < 4; ++l) t6[l] = t3[l + 4] + t3[l];
    return (t6[0] + t6[2]) + (t6[1] + t6[3]);
  } else {
    if (!hadd) return ggml_lane_sum(x);
    float t0[4];
    for (int l = 0; l < 4; ++l) t0[l] = x[l] + x[l + 4];
    return (t0[0] + t0[1]) + (t0[2] + t0[3]);
  }
}

// ggml_vec_dot_f16 of n F16 values h and floats x (rounded to F16 already): four
// accumulators of W lanes (16 for its AVX-512 build, 8 for AVX2) over 4 W elements at a
// time, FMA per lane; then acc0 + acc2, acc1 + acc3, their sum, the lanes reduced as
// reduce_lanes(hadd) does; a tail below a whole step in double.
template <int W>
float vec_dot_f16(const uint16_t* h, const float* x, int n) {
  const int step = 4 * W, np = n - n % step;
  float acc[4][W] = {};
  for (int j = 0; j < np; j += step)
    for (int g = 0; g < 4; ++g)
      for (int l = 0; l < W; ++l) {
        const int e = j + g * W + l;
        acc[g][l] = std::fma(fp16_to_f32(h[e]), x[e], acc[g][l]);
      }
  float v[W];
  for (int l = 0; l < W; ++l) v[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
  double sum = reduce_lanes<W>(v, /*hadd=*/true);
  for (int e = np; e < n; ++e) sum += static_cast<double>(fp16_to_f32(h[e]) * x[e]);
  return static_cast<float>(sum);
}

// One activation row: vec_dot_f16. More rows with k a multiple of W: tinyBLAS (one
// W-lane accumulator over the row, then reduce_lanes).
template <int W>
void matmul_f16_w(const MatmulArgs& a, int r0, int r1) {
  const bool tiny_blas = a.n > 1 && a.k % W == 0;
  each_pair<uint16_t>(a, r0, r1, [&](const uint16_t* w, int i) {
    const float* x = reinterpret_cast<const float*>(row_at(a.x, a.x_stride, i));
    if (!tiny_blas) return vec_dot_f16<W>(w, x, a.k);
    float acc[W] = {};
    for (int j = 0; j < a.k; j += W)
      for (int l = 0; l < W; ++l) acc[l] = std::fma(fp16_to_f32(w[j + l]), x[j + l], acc[l]);
    return reduce_lanes<W>(acc);
  });
}

// The 256 levels of a Q4_K / Q5_K super-block in element order.
void levels_q4_k(const BlockQ4_K& b, int* q) {
  for (int e = 0; e < kSuperElems; ++e) {
    const uint8_t byte = b.qs[32 * (e / 64) + e % 32];
    q[e] = (e / 32) % 2 == 0 ? byte & 15 : byte >> 4;
  }
}
void levels_q5_k(const BlockQ5_K& b, int* q) {
  for (int e = 0; e < kSuperElems; ++e) {
    const uint8_t byte = b.qs[32 * (e / 64) + e % 32];
    const int low = (e / 32) % 2 == 0 ? byte & 15 : byte >> 4;
    q[e] = low | ((b.qh[e % 32] >> (e / 32)) & 1) << 4;
  }
}

void matmul_q4_k(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kSuperElems;
  const int gemm_rows = a.n > 3 ? a.n - a.n % 4 : 0;
  int q[kSuperElems];
  each_pair<BlockQ4_K>(a, r0, r1, [&](const BlockQ4_K* w, int i) {
    const void* xrow = row_at(a.x, a.x_stride, i);
    const int8_t* xq = q8k_values(xrow);
    const float* xd = q8k_scales(xrow, a.k);
    const int16_t* xs = q8k_sums(xrow, a.k);
    const int steps = i < gemm_rows ? 4 : 1;  // chain steps per super-block
    float acc = 0, mins = 0;
    for (int b = 0; b < nb; ++b) {
      levels_q4_k(w[b], q);
      uint8_t sc[8], mn[8];
      k4_scale_min(w[b].scales, sc, mn);
      const int8_t* x = xq + b * kSuperElems;
      const int16_t* s16 = xs + b * 16;
      const float d = fp16_to_f32(w[b].d) * xd[b];
      const float dmin = fp16_to_f32(w[b].dmin) * xd[b];
      for (int step = 0; step < steps; ++step) {
        const int j0 = 8 / steps * step, j1 = 8 / steps * (step + 1);  // sub-blocks
        int32_t isum = 0, msum = 0;
        for (int j = j0; j < j1; ++j) {
          int32_t dot = 0;
          for (int e = 32 * j; e < 32 * j + 32; ++e) dot += q[e] * x[e];
          isum += sc[j] * dot;
          msum += mn[j] * (s16[2 * j] + s16[2 * j + 1]);
        }
        acc = std::fma(static_cast<float>(isum), d, acc);
        mins = std::fma(static_cast<float>(msum), dmin, mins);
      }
    }
    return acc - mins;
  });
}

void matmul_q5_k(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kSuperElems;
  int q[kSuperElems];
  each_pair<BlockQ5_K>(a, r0, r1, [&](const BlockQ5_K* w, int i) {
    const void* xrow = row_at(a.x, a.x_stride, i);
    const int8_t* xq = q8k_values(xrow);
    const float* xd = q8k_scales(xrow, a.k);
    const int16_t* xs = q8k_sums(xrow, a.k);
    float acc[8] = {};
    float summs = 0;
    for (int b = 0; b < nb; ++b) {
      levels_q5_k(w[b], q);
      uint8_t sc[8], mn[8];
      k4_scale_min(w[b].scales, sc, mn);
      const int8_t* x = xq + b * kSuperElems;
      const int16_t* s16 = xs + b * 16;
      int32_t msum = 0;
      for (int j = 0; j < 8; ++j) msum += mn[j] * (s16[2 * j] + s16[2 * j + 1]);
      summs = std::fma(-(xd[b] * fp16_to_f32(w[b].dmin)), static_cast<float>(msum), summs);
      const float d = xd[b] * fp16_to_f32(w[b].d);
      for (int l = 0; l < 8; ++l) {
        int32_t lane = 0;
        for (int j = 0; j < 8; ++j) lane += sc[j] * dot4(x, q, 32 * j + 4 * l);
        acc[l] = std::fma(d, static_cast<float>(lane), acc[l]);
      }
    }
    return ggml_lane_sum(acc) + summs;
  });
}

void matmul_q6_k(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kSuperElems;
  int q[kSuperElems];  // unsigned 6-bit levels (0..63); the -32 comes from the sums
  each_pair<BlockQ6_K>(a, r0, r1, [&](const BlockQ6_K* w, int i) {
    const void* xrow = row_at(a.x, a.x_stride, i);
    const int8_t* xq = q8k_values(xrow);
    const float* xd = q8k_scales(xrow, a.k);
    const int16_t* xs = q8k_sums(xrow, a.k);
    float acc[8] = {};
    for (int b = 0; b < nb; ++b) {
      const BlockQ6_K& blk = w[b];
      for (int e = 0; e < kSuperElems; ++e) {
        const int h = e / 128, t = (e / 32) % 4, l = e % 32;
        const uint8_t byte = blk.ql[64 * h + 32 * (t & 1) + l];
        const int low = t < 2 ? byte & 15 : byte >> 4;
        q[e] = low | ((blk.qh[32 * h + l] >> (2 * t)) & 3) << 4;
      }
      const int8_t* x = xq + b * kSuperElems;
      const int16_t* s16 = xs + b * 16;
      const float d = xd[b] * fp16_to_f32(blk.d);
      for (int l = 0; l < 8; ++l) {
        int32_t lane = 0;
        for (int c = 0; c < 8; ++c) {  // 32-element chunks; 16-element scale groups
          lane += blk.scales[2 * c + l / 4] * dot4(x, q, 32 * c + 4 * l);
        }
        lane -= 32 * (blk.scales[2 * l] * s16[2 * l] + blk.scales[2 * l + 1] * s16[2 * l + 1]);
        acc[l] = std::fma(d, static_cast<float>(lane), acc[l]);
      }
    }
    return ggml_lane_sum(acc);
  });
}

// ggml's rotation, as GCC contracts it: x0' = fma(x0, cos, -(x1 sin)),
// x1' = fma(x0, sin, x1 cos).
void rope(float* x, int n_heads, int head_dim, int rot_dim, const float* cos, const float* sin,
          RopeStyle style) {
  const int half = rot_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<size_t>(h) * static_cast<size_t>(head_dim);
    for (int i = 0; i < half; ++i) {
      const int i0 = style == RopeStyle::kNormal ? 2 * i : i;
      const int i1 = style == RopeStyle::kNormal ? 2 * i + 1 : i + half;
      const float a = v[i0], b = v[i1];
      v[i0] = std::fma(a, cos[i], -(b * sin[i]));
      v[i1] = std::fma(a, sin[i], b * cos[i]);
    }
  }
}

// Attention scores against the F16 K cache: vec_dot_f16 times `scale` in float.
template <int W>
void dot_f16_rows(const float* q, const uint16_t* k, size_t k_stride, int n_rows, int d,
                  float scale, float* out) {
  for (int r = 0; r < n_rows; ++r) {
    const auto* kr = reinterpret_cast<const uint16_t*>(row_at(k, k_stride, r));
    out[r] = vec_dot_f16<W>(kr, q, d) * scale;
  }
}

// ggml's scalar SiLU (the tail of its vector loops): x / (1 + expf(-x)).
void silu_mul_tail(const float* a, const float* b, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] = a[i] / (1.0f + std::exp(-a[i])) * b[i];
}

// The AVX-512 build's SiLU, 16 lanes at a time.
void silu_mul(const float* a, const float* b, float* y, int n) {
  silu_mul_ggml_lanes(a, b, y, n, 16, /*avx512_variant=*/true);
}

}  // namespace

float ggml_lane_sum(const float* acc) {
  const float t0 = acc[0] + acc[4], t1 = acc[1] + acc[5], t2 = acc[2] + acc[6],
              t3 = acc[3] + acc[7];
  return (t0 + t2) + (t1 + t3);
}

// The vector exp of ggml's SiLU, one element (see tables.h).
float ggml_expf_lane(float x, bool avx512_variant) {
  const float r = 0x1.8p23f;
  const float z = std::fma(x, 0x1.715476p+0f, r);
  const float n = z - r;
  const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
  const float u = b * b;
  const float p = std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                           std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f));
  if (avx512_variant) {
    // j * 2^n (vscalefps), with n beyond +-192 flushed to inf / 0.
    const float j = std::fma(p, u, std::fma(0x1.ffffecp-1f, b, 1.0f));
    if (std::fabs(n) > 192) return n <= 0 ? 0.0f : INFINITY;
    return std::ldexp(j, static_cast<int>(n));
  }
  // k = 2^n from z's low bits; j excludes the 1, the result is k + k * j.
  const float j = std::fma(p, u, 0x1.ffffecp-1f * b);
  uint32_t zb;
  std::memcpy(&zb, &z, 4);
  const uint32_t e = zb << 23;
  const uint32_t kb = e + 0x3f800000u;
  float k;
  std::memcpy(&k, &kb, 4);
  if (!(std::fabs(n) > 126)) return std::fma(k, j, k);
  const uint32_t g = n <= 0 ? 0x82000000u : 0u;
  const uint32_t s1b = g + 0x7f000000u, s2b = e - g;
  float s1, s2;
  std::memcpy(&s1, &s1b, 4);
  std::memcpy(&s2, &s2b, 4);
  if (std::fabs(n) > 192) return s1 * s1;
  return std::fma(s2, j, s2) * s1;
}

void silu_mul_ggml_lanes(const float* a, const float* b, float* y, int n, int width,
                         bool avx512_variant) {
  int i = 0;
  for (; i + width <= n; i += width) {
    for (int l = i; l < i + width; ++l) {
      const float e = ggml_expf_lane(0.0f - a[l], avx512_variant);
      y[l] = a[l] / (1.0f + e) * b[l];
    }
  }
  silu_mul_tail(a + i, b + i, y + i, n - i);
}

void dot_f16_rows_ggml16(const float* q, const uint16_t* k, size_t k_stride, int n_rows, int d,
                         float scale, float* out) {
  dot_f16_rows<16>(q, k, k_stride, n_rows, d, scale, out);
}
void dot_f16_rows_ggml8(const float* q, const uint16_t* k, size_t k_stride, int n_rows, int d,
                        float scale, float* out) {
  dot_f16_rows<8>(q, k, k_stride, n_rows, d, scale, out);
}

void matmul_q2_k_ggml_lanes(const MatmulArgs& a, int r0, int r1) { matmul_q2_k_lanes(a, r0, r1); }
void matmul_f16_ggml8(const MatmulArgs& a, int r0, int r1) { matmul_f16_w<8>(a, r0, r1); }

void fill_scalar_ggml_order(Kernels& t) {
  t.matmul_f16 = matmul_f16_w<16>;
  t.matmul_q4_0 = matmul_q4_0;
  t.matmul_q4_1 = matmul_lanes32<BlockQ4_1>;
  t.matmul_q5_0 = matmul_lanes32<BlockQ5_0>;
  t.matmul_q5_1 = matmul_lanes32<BlockQ5_1>;
  t.matmul_q2_k = matmul_q2_k_repacked;
  t.matmul_q3_k = matmul_q3_k;
  t.matmul_q8_0 = matmul_q8_0;
  t.matmul_q4_k = matmul_q4_k;
  t.matmul_q5_k = matmul_q5_k;
  t.matmul_q6_k = matmul_q6_k;
  t.silu_mul = silu_mul;
  t.rope = rope;
  t.dot_f16_rows = dot_f16_rows_ggml16;
}

}  // namespace infera::engine::kernels
