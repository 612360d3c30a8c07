// Row (de)quantization of every supported type: float types and the 32-element block
// types here, the K-quants in kquant_rows.cpp. Not hot (embedding lookups, model
// writing, tests), so plain scalar code without dispatch.
//
// The 32-element encoders round exactly as ggml's quantize_row_*_ref do
// (ggml/src/ggml-quants.c), so a synthetic model written here holds the bytes
// llama-quantize would write from the same floats.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "engine/kernels/tables.h"

namespace infera::engine::kernels {
namespace {

// Low nibble of qs[j] is element j, high nibble element j + 16 (Q4_x and Q5_x).
int nibble(const uint8_t* qs, int e) {
  return e < kBlockElems / 2 ? qs[e] & 0x0f : qs[e - kBlockElems / 2] >> 4;
}
int fifth_bit(const uint8_t* qh, int e) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  return static_cast<int>((bits >> e) & 1) << 4;
}

void decode(const BlockQ8_0& b, float* out) {
  const float d = fp16_to_f32(b.d);
  for (int e = 0; e < kBlockElems; ++e) out[e] = d * b.qs[e];
}
void decode(const BlockQ4_0& b, float* out) {
  const float d = fp16_to_f32(b.d);
  for (int e = 0; e < kBlockElems; ++e) out[e] = d * static_cast<float>(nibble(b.qs, e) - 8);
}
void decode(const BlockQ4_1& b, float* out) {
  const float d = fp16_to_f32(b.d), m = fp16_to_f32(b.m);
  for (int e = 0; e < kBlockElems; ++e) out[e] = d * static_cast<float>(nibble(b.qs, e)) + m;
}
void decode(const BlockQ5_0& b, float* out) {
  const float d = fp16_to_f32(b.d);
  for (int e = 0; e < kBlockElems; ++e) {
    out[e] = d * static_cast<float>((nibble(b.qs, e) | fifth_bit(b.qh, e)) - 16);
  }
}
void decode(const BlockQ5_1& b, float* out) {
  const float d = fp16_to_f32(b.d), m = fp16_to_f32(b.m);
  for (int e = 0; e < kBlockElems; ++e) {
    out[e] = d * static_cast<float>(nibble(b.qs, e) | fifth_bit(b.qh, e)) + m;
  }
}

// Packs 32 quants (< 16 or < 32) into nibbles and, for 5-bit types, qh.
void pack_nibbles(const int* q, uint8_t* qs) {
  for (int j = 0; j < kBlockElems / 2; ++j) {
    qs[j] = static_cast<uint8_t>((q[j] & 0x0f) | (q[j + kBlockElems / 2] & 0x0f) << 4);
  }
}
void pack_fifth_bits(const int* q, uint8_t* qh) {
  uint32_t bits = 0;
  for (int e = 0; e < kBlockElems; ++e) bits |= static_cast<uint32_t>((q[e] >> 4) & 1) << e;
  std::memcpy(qh, &bits, 4);
}

// ggml's quantize_row_q8_0_ref: d = amax / 127, q = roundf(x / d).
void encode(const float* x, BlockQ8_0& b) {
  float amax = 0;
  for (int e = 0; e < kBlockElems; ++e) amax = std::max(amax, std::fabs(x[e]));
  const float d = amax / 127.0f;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  b.d = f32_to_fp16(d);
  for (int e = 0; e < kBlockElems; ++e) b.qs[e] = static_cast<int8_t>(std::round(x[e] * id));
}

// The value of largest magnitude (the first of equals), as q4_0/q5_0 pick it.
float signed_absmax(const float* x) {
  float amax = 0, max = 0;
  for (int e = 0; e < kBlockElems; ++e) {
    if (amax < std::fabs(x[e])) {
      amax = std::fabs(x[e]);
      max = x[e];
    }
  }
  return max;
}

// ggml's quantize_row_q4_0_ref / q5_0_ref: the largest |x| maps to level 0, the
// others are truncated after adding the offset plus one half.
template <int kLevels>
void encode_symmetric(const float* x, uint16_t& d_out, int* q) {
  const float d = signed_absmax(x) / -static_cast<float>(kLevels / 2);
  const float id = d != 0 ? 1.0f / d : 0.0f;
  d_out = f32_to_fp16(d);
  const float offset = static_cast<float>(kLevels / 2) + 0.5f;
  for (int e = 0; e < kBlockElems; ++e) {
    q[e] = std::min(kLevels - 1, static_cast<int>(static_cast<int8_t>(x[e] * id + offset)));
  }
}

// ggml's quantize_row_q4_1_ref / q5_1_ref: levels span [min, max], truncated after
// adding one half.
template <int kLevels>
void encode_affine(const float* x, uint16_t& d_out, uint16_t& m_out, int* q) {
  float min = FLT_MAX, max = -FLT_MAX;
  for (int e = 0; e < kBlockElems; ++e) {
    min = std::min(min, x[e]);
    max = std::max(max, x[e]);
  }
  const float d = (max - min) / static_cast<float>(kLevels - 1);
  const float id = d != 0 ? 1.0f / d : 0.0f;
  d_out = f32_to_fp16(d);
  m_out = f32_to_fp16(min);
  for (int e = 0; e < kBlockElems; ++e) {
    // Truncation after adding one half, as ggml rounds (not lround).
    q[e] = std::min(kLevels - 1,
                    static_cast<int>(static_cast<uint8_t>((x[e] - min) * id + 0.5f)));  // NOLINT
  }
}

void encode(const float* x, BlockQ4_0& b) {
  int q[kBlockElems];
  encode_symmetric<16>(x, b.d, q);
  pack_nibbles(q, b.qs);
}
void encode(const float* x, BlockQ4_1& b) {
  int q[kBlockElems];
  encode_affine<16>(x, b.d, b.m, q);
  pack_nibbles(q, b.qs);
}
void encode(const float* x, BlockQ5_0& b) {
  int q[kBlockElems];
  encode_symmetric<32>(x, b.d, q);
  pack_nibbles(q, b.qs);
  pack_fifth_bits(q, b.qh);
}
void encode(const float* x, BlockQ5_1& b) {
  int q[kBlockElems];
  encode_affine<32>(x, b.d, b.m, q);
  pack_nibbles(q, b.qs);
  pack_fifth_bits(q, b.qh);
}

template <typename Block>
void decode_row(const void* row, float* out, int n) {
  const auto* p = static_cast<const uint8_t*>(row);
  for (int b = 0; b < n / kBlockElems; ++b) {
    Block blk;
    std::memcpy(&blk, p + sizeof blk * static_cast<size_t>(b), sizeof blk);
    decode(blk, out + b * kBlockElems);
  }
}
template <typename Block>
void encode_row(const float* x, void* out, int n) {
  auto* p = static_cast<uint8_t*>(out);
  for (int b = 0; b < n / kBlockElems; ++b) {
    Block blk{};
    encode(x + b * kBlockElems, blk);
    std::memcpy(p + sizeof blk * static_cast<size_t>(b), &blk, sizeof blk);
  }
}

bool is_kquant(GgmlType type) {
  return type == GgmlType::kQ2_K || type == GgmlType::kQ3_K || type == GgmlType::kQ4_K ||
         type == GgmlType::kQ5_K || type == GgmlType::kQ6_K;
}

}  // namespace

bool dequantize_row(GgmlType type, const void* row, float* out, int n) {
  const auto* p = static_cast<const uint8_t*>(row);
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(out, p, 4 * static_cast<size_t>(n));
      return true;
    case GgmlType::kF16:
    case GgmlType::kBF16:
      for (int i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * static_cast<size_t>(i), 2);
        out[i] = type == GgmlType::kF16 ? fp16_to_f32(h) : bf16_to_f32(h);
      }
      return true;
    case GgmlType::kQ8_0:
      decode_row<BlockQ8_0>(row, out, n);
      return true;
    case GgmlType::kQ4_0:
      decode_row<BlockQ4_0>(row, out, n);
      return true;
    case GgmlType::kQ4_1:
      decode_row<BlockQ4_1>(row, out, n);
      return true;
    case GgmlType::kQ5_0:
      decode_row<BlockQ5_0>(row, out, n);
      return true;
    case GgmlType::kQ5_1:
      decode_row<BlockQ5_1>(row, out, n);
      return true;
    default:
      if (!is_kquant(type)) return false;
      dequantize_kquant_row(type, row, out, n);
      return true;
  }
}

bool quantize_row(GgmlType type, const float* x, void* out, int n) {
  auto* p = static_cast<uint8_t*>(out);
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(p, x, 4 * static_cast<size_t>(n));
      return true;
    case GgmlType::kF16:
    case GgmlType::kBF16:
      for (int i = 0; i < n; ++i) {
        const uint16_t h = type == GgmlType::kF16 ? f32_to_fp16(x[i]) : f32_to_bf16(x[i]);
        std::memcpy(p + 2 * static_cast<size_t>(i), &h, 2);
      }
      return true;
    case GgmlType::kQ8_0:
      encode_row<BlockQ8_0>(x, out, n);
      return true;
    case GgmlType::kQ4_0:
      encode_row<BlockQ4_0>(x, out, n);
      return true;
    case GgmlType::kQ4_1:
      encode_row<BlockQ4_1>(x, out, n);
      return true;
    case GgmlType::kQ5_0:
      encode_row<BlockQ5_0>(x, out, n);
      return true;
    case GgmlType::kQ5_1:
      encode_row<BlockQ5_1>(x, out, n);
      return true;
    default:
      if (!is_kquant(type)) return false;
      quantize_kquant_row(type, x, out, n);
      return true;
  }
}

}  // namespace infera::engine::kernels
