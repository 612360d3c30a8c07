// Scalar reference matrix products of the K-quants against Q8K activation rows, and
// the Q8K quantization itself: the ground truth the SIMD paths are tested against.
//
// Per super-block every type reduces to integers: isum = sum over sub-blocks of
// (integer scale) * dot(levels, x) and, for the types with mins, msum = sum of
// (integer min) * (sum of the sub-block's x), from the activation row's 16-value
// sums. Then y += (d_w * d_x) * isum - (dmin_w * d_x) * msum in float.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/kernels/tables.h"

namespace infera::engine::kernels {
namespace {


// One super-block's integer sums against 256 activation values x and their sixteen
// 16-value sums.
struct SuperSums {
  int32_t isum = 0;
  int32_t msum = 0;
};

// The sub-block dot of `len` levels starting at element e0.
template <typename Level>
int32_t level_dot(Level level, const int8_t* x, int e0, int len) {
  int32_t s = 0;
  for (int e = e0; e < e0 + len; ++e) s += level(e) * x[e];
  return s;
}

SuperSums super_sums(const BlockQ4_K& b, const int8_t* x, const int16_t* sums16) {
  uint8_t sc[8], mn[8];
  k4_scale_min(b.scales, sc, mn);
  auto level = [&](int e) {
    const uint8_t byte = b.qs[32 * (e / 64) + e % 32];
    return (e / 32) % 2 == 0 ? byte & 15 : byte >> 4;
  };
  SuperSums s;
  for (int j = 0; j < 8; ++j) {
    s.isum += sc[j] * level_dot(level, x, 32 * j, 32);
    s.msum += mn[j] * (sums16[2 * j] + sums16[2 * j + 1]);
  }
  return s;
}

SuperSums super_sums(const BlockQ5_K& b, const int8_t* x, const int16_t* sums16) {
  uint8_t sc[8], mn[8];
  k4_scale_min(b.scales, sc, mn);
  auto level = [&](int e) {
    const uint8_t byte = b.qs[32 * (e / 64) + e % 32];
    const int low = (e / 32) % 2 == 0 ? byte & 15 : byte >> 4;
    return low | ((b.qh[e % 32] >> (e / 32)) & 1) << 4;
  };
  SuperSums s;
  for (int j = 0; j < 8; ++j) {
    s.isum += sc[j] * level_dot(level, x, 32 * j, 32);
    s.msum += mn[j] * (sums16[2 * j] + sums16[2 * j + 1]);
  }
  return s;
}

SuperSums super_sums(const BlockQ6_K& b, const int8_t* x, const int16_t*) {
  auto level = [&](int e) {
    const int h = e / 128, t = (e / 32) % 4, l = e % 32;
    const uint8_t byte = b.ql[64 * h + 32 * (t & 1) + l];
    const int low = t < 2 ? byte & 15 : byte >> 4;
    return (low | ((b.qh[32 * h + l] >> (2 * t)) & 3) << 4) - 32;
  };
  SuperSums s;
  for (int j = 0; j < 16; ++j) s.isum += b.scales[j] * level_dot(level, x, 16 * j, 16);
  return s;
}

int low2(const uint8_t* qs, int e) {
  const int h = e / 128, t = (e / 32) % 4, l = e % 32;
  return (qs[32 * h + l] >> (2 * t)) & 3;
}

SuperSums super_sums(const BlockQ2_K& b, const int8_t* x, const int16_t* sums16) {
  auto level = [&](int e) { return low2(b.qs, e); };
  SuperSums s;
  for (int j = 0; j < 16; ++j) {
    s.isum += (b.scales[j] & 15) * level_dot(level, x, 16 * j, 16);
    s.msum += (b.scales[j] >> 4) * sums16[j];
  }
  return s;
}

SuperSums super_sums(const BlockQ3_K& b, const int8_t* x, const int16_t*) {
  uint8_t sc[16];
  k3_scales(b.scales, sc);
  auto level = [&](int e) {
    const int h = e / 128, t = (e / 32) % 4, l = e % 32;
    return (low2(b.qs, e) | ((b.hmask[l] >> (4 * h + t)) & 1) << 2) - 4;
  };
  SuperSums s;
  for (int j = 0; j < 16; ++j) s.isum += (sc[j] - 32) * level_dot(level, x, 16 * j, 16);
  return s;
}

template <typename Block>
void matmul_kquant(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kSuperElems;
  for (int i = 0; i < a.n; ++i) {
    const void* xrow = row_at(a.x, a.x_stride, i);
    const int8_t* xq = q8k_values(xrow);
    const float* xd = q8k_scales(xrow, a.k);
    const int16_t* xs = q8k_sums(xrow, a.k);
    float* y = y_at(a, i);
    for (int r = r0; r < r1; ++r) {
      const Block* w = reinterpret_cast<const Block*>(row_at(a.w, a.w_stride, r));
      float sum = 0;
      for (int b = 0; b < nb; ++b) {
        const SuperSums s = super_sums(w[b], xq + b * kSuperElems, xs + b * 16);
        sum += fp16_to_f32(w[b].d) * xd[b] * static_cast<float>(s.isum);
        if constexpr (requires { w[b].dmin; }) {
          sum -= fp16_to_f32(w[b].dmin) * xd[b] * static_cast<float>(s.msum);
        }
      }
      y[r] = sum;
    }
  }
}

// ggml's quantize_row_q8_K_ref: the first value of largest magnitude maps to -127;
// rounding to nearest even (nearbyint in the default rounding mode, as ggml's
// nearest_int).
void quantize_q8k(const float* x, void* out, int k) {
  const int nb = k / kSuperElems;
  auto* q = static_cast<int8_t*>(out);
  float* scales = reinterpret_cast<float*>(static_cast<uint8_t*>(out) + k);
  auto* sums = reinterpret_cast<int16_t*>(static_cast<uint8_t*>(out) + k + 4 * nb);
  for (int b = 0; b < nb; ++b) {
    const float* xb = x + b * kSuperElems;
    int8_t* qb = q + b * kSuperElems;
    float amax = 0, max = 0;
    for (int j = 0; j < kSuperElems; ++j) {
      if (std::fabs(xb[j]) > amax) {
        amax = std::fabs(xb[j]);
        max = xb[j];
      }
    }
    if (amax == 0) {
      scales[b] = 0;
      std::memset(qb, 0, kSuperElems);
      for (int g = 0; g < 16; ++g) sums[b * 16 + g] = 0;
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < kSuperElems; ++j) {
      qb[j] = static_cast<int8_t>(std::min(127, static_cast<int>(std::nearbyint(iscale * xb[j]))));
    }
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int j = 0; j < 16; ++j) s += qb[16 * g + j];
      sums[b * 16 + g] = static_cast<int16_t>(s);
    }
    scales[b] = 1 / iscale;
  }
}

}  // namespace

void fill_scalar_kquants(Kernels& t) {
  t.matmul_q2_k = matmul_kquant<BlockQ2_K>;
  t.matmul_q3_k = matmul_kquant<BlockQ3_K>;
  t.matmul_q4_k = matmul_kquant<BlockQ4_K>;
  t.matmul_q5_k = matmul_kquant<BlockQ5_K>;
  t.matmul_q6_k = matmul_kquant<BlockQ6_K>;
  t.quantize_q8k = quantize_q8k;
}

}  // namespace infera::engine::kernels
