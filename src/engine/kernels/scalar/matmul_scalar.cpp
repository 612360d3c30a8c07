// Scalar reference matrix products and activation quantization: plain loops, the
// ground truth the SIMD paths are tested against, and the fallback on any CPU.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/kernels/tables.h"

namespace infera::engine::kernels {
namespace {


float load_f32(const uint8_t* row, int j) {
  float v;
  std::memcpy(&v, row + 4 * static_cast<size_t>(j), 4);
  return v;
}
float load_f16(const uint8_t* row, int j) {
  uint16_t h;
  std::memcpy(&h, row + 2 * static_cast<size_t>(j), 2);
  return fp16_to_f32(h);
}
float load_bf16(const uint8_t* row, int j) {
  uint16_t h;
  std::memcpy(&h, row + 2 * static_cast<size_t>(j), 2);
  return bf16_to_f32(h);
}

template <float (*kLoad)(const uint8_t*, int)>
void matmul_float(const MatmulArgs& a, int r0, int r1) {
  for (int i = 0; i < a.n; ++i) {
    const float* x = reinterpret_cast<const float*>(row_at(a.x, a.x_stride, i));
    float* y = y_at(a, i);
    for (int r = r0; r < r1; ++r) {
      const uint8_t* w = row_at(a.w, a.w_stride, r);
      float sum = 0;
      for (int j = 0; j < a.k; ++j) sum += kLoad(w, j) * x[j];
      y[r] = sum;
    }
  }
}

// Per block: the integer dot of the weight levels (their offset removed) with 32
// activation values, and the block's min (0 for types without one):
// dot(w, x) = d_w * d_x * idot + m_w * d_x * sum(x).
int nibble(const uint8_t* qs, int e) {
  return e < kBlockElems / 2 ? qs[e] & 0x0f : qs[e - kBlockElems / 2] >> 4;
}
int fifth_bit(const uint8_t* qh, int e) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  return static_cast<int>((bits >> e) & 1) << 4;
}

int block_dot(const BlockQ8_0& b, const int8_t* x) {
  int sum = 0;
  for (int e = 0; e < kBlockElems; ++e) sum += b.qs[e] * x[e];
  return sum;
}
int block_dot(const BlockQ4_0& b, const int8_t* x) {
  int sum = 0;
  for (int e = 0; e < kBlockElems; ++e) sum += (nibble(b.qs, e) - 8) * x[e];
  return sum;
}
int block_dot(const BlockQ4_1& b, const int8_t* x) {
  int sum = 0;
  for (int e = 0; e < kBlockElems; ++e) sum += nibble(b.qs, e) * x[e];
  return sum;
}
int block_dot(const BlockQ5_0& b, const int8_t* x) {
  int sum = 0;
  for (int e = 0; e < kBlockElems; ++e) sum += ((nibble(b.qs, e) | fifth_bit(b.qh, e)) - 16) * x[e];
  return sum;
}
int block_dot(const BlockQ5_1& b, const int8_t* x) {
  int sum = 0;
  for (int e = 0; e < kBlockElems; ++e) sum += (nibble(b.qs, e) | fifth_bit(b.qh, e)) * x[e];
  return sum;
}

template <typename Block>
void matmul_quant(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kBlockElems;
  for (int i = 0; i < a.n; ++i) {
    const void* xrow = row_at(a.x, a.x_stride, i);
    const int8_t* xq = q8_values(xrow);
    const float* xd = q8_scales(xrow, a.k);
    const float* xm = q8_min_sums(xrow, a.k);
    float* y = y_at(a, i);
    for (int r = r0; r < r1; ++r) {
      const Block* w = reinterpret_cast<const Block*>(row_at(a.w, a.w_stride, r));
      float sum = 0;
      for (int b = 0; b < nb; ++b) {
        sum +=
            fp16_to_f32(w[b].d) * xd[b] * static_cast<float>(block_dot(w[b], xq + b * kBlockElems));
        if constexpr (requires { w[b].m; }) {
          sum += fp16_to_f32(w[b].m) * xm[b];
        }
      }
      y[r] = sum;
    }
  }
}

// As ggml's q8_0: d = amax / 127 (stored as a half, so it is rounded to half precision
// here too), q = round(x / d) to nearest even (as the SIMD paths do); and as ggml's
// q8_1, s = d * sum(q) with d before rounding, rounded to half precision.
void quantize_q8(const float* x, void* out, int k) {
  const int nb = k / kBlockElems;
  auto* q = static_cast<int8_t*>(out);
  auto* scales = reinterpret_cast<float*>(static_cast<uint8_t*>(out) + k);
  auto* sums = reinterpret_cast<int32_t*>(static_cast<uint8_t*>(out) + k + 4 * nb);
  auto* min_sums = reinterpret_cast<float*>(static_cast<uint8_t*>(out) + k + 8 * nb);
  for (int b = 0; b < nb; ++b) {
    const float* xb = x + b * kBlockElems;
    float amax = 0;
    for (int j = 0; j < kBlockElems; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 127.0f / amax : 0.0f;
    int32_t sum = 0;
    for (int j = 0; j < kBlockElems; ++j) {
      const int v = static_cast<int>(std::nearbyint(xb[j] * id));
      q[b * kBlockElems + j] = static_cast<int8_t>(v);
      sum += v;
    }
    scales[b] = fp16_to_f32(f32_to_fp16(d));
    sums[b] = sum;
    min_sums[b] = fp16_to_f32(f32_to_fp16(d * static_cast<float>(sum)));
  }
}

// One fused multiply-add chain per pair, j ascending: the order every table's
// matmul_f16_kmajor / matmul_f32_kmajor keeps.
template <float (*kLoad)(const uint8_t*, int)>
void matmul_kmajor(const MatmulArgs& a, int r0, int r1) {
  constexpr int kTile = kMatmulRowMultiple;
  for (int i = 0; i < a.n; ++i) {
    const float* x = reinterpret_cast<const float*>(row_at(a.x, a.x_stride, i));
    float* y = y_at(a, i);
    for (int r = r0; r < r1; ++r) {
      const uint8_t* tile = row_at(a.w, a.w_stride, r / kTile);
      const int lane = r % kTile;
      float sum = 0;
      for (int j = 0; j < a.k; ++j) sum = std::fma(kLoad(tile, j * kTile + lane), x[j], sum);
      y[r] = sum;
    }
  }
}

}  // namespace

void pack_f16_kmajor(const void* w, size_t w_stride, int rows, int k, int r0, int r1, void* out) {
  constexpr int kTile = kMatmulRowMultiple;
  const size_t tile_bytes = f16_kmajor_tile_bytes(k);
  for (int t = r0 / kTile; t * kTile < r1; ++t) {
    auto* dst = reinterpret_cast<uint16_t*>(static_cast<uint8_t*>(out) + static_cast<size_t>(t) * tile_bytes);
    for (int lane = 0; lane < kTile; ++lane) {
      const int r = std::min(t * kTile + lane, rows - 1);
      const uint8_t* src = row_at(w, w_stride, r);
      for (int j = 0; j < k; ++j) {
        std::memcpy(&dst[static_cast<size_t>(j) * kTile + static_cast<size_t>(lane)],
                    src + 2 * static_cast<size_t>(j), 2);
      }
    }
  }
}

void pack_f32_kmajor(const float* w, size_t w_stride, int rows, int k, int r0, int r1, float* out) {
  constexpr int kTile = kMatmulRowMultiple;
  for (int t = r0 / kTile; t * kTile < r1; ++t) {
    float* dst = out + static_cast<size_t>(t) * static_cast<size_t>(k) * kTile;
    for (int lane = 0; lane < kTile; ++lane) {
      const auto* src = reinterpret_cast<const float*>(row_at(w, w_stride, std::min(t * kTile + lane, rows - 1)));
      for (int j = 0; j < k; ++j) dst[static_cast<size_t>(j) * kTile + static_cast<size_t>(lane)] = src[j];
    }
  }
}

void fill_scalar_matmul(Kernels& t) {
  t.matmul_f16_kmajor = matmul_kmajor<load_f16>;
  t.matmul_f32_kmajor = matmul_kmajor<load_f32>;
  t.matmul_f32 = matmul_float<load_f32>;
  t.matmul_f16 = matmul_float<load_f16>;
  t.matmul_bf16 = matmul_float<load_bf16>;
  t.matmul_q8_0 = matmul_quant<BlockQ8_0>;
  t.matmul_q4_0 = matmul_quant<BlockQ4_0>;
  t.matmul_q4_1 = matmul_quant<BlockQ4_1>;
  t.matmul_q5_0 = matmul_quant<BlockQ5_0>;
  t.matmul_q5_1 = matmul_quant<BlockQ5_1>;
  t.quantize_q8 = quantize_q8;
  fill_scalar_kquants(t);
}

}  // namespace infera::engine::kernels
