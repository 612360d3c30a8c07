// Block layouts of the quantized weight types and scalar half/bfloat16 conversion.
//
// The layouts are ggml's file-format facts (ggml/src/ggml-common.h, the bit order of
// ggml-quants.c's dequantize_row_*); the sizes are checked below. d, m, dmin are IEEE
// halves. "Element e" counts from the start of the block.
//
// 32-element blocks:
//   Q8_0: d, 32 int8 q;                          e = q[e] * d.
//   Q4_0: d, 16 bytes of nibbles;                e < 16: low nibble of qs[e],
//         e >= 16: high nibble of qs[e - 16];    value (nibble - 8) * d.
//   Q4_1: d, m, nibbles as Q4_0;                 value nibble * d + m.
//   Q5_0: d, qh (32 bits), nibbles as Q4_0;      q = nibble | bit e of qh << 4,
//         value (q - 16) * d.
//   Q5_1: d, m, qh, nibbles as Q5_0;             value q * d + m.
// 256-element super-blocks (K-quants), split into sub-blocks with small integer
// scales (and mins) that the super-block's half-precision d (and dmin) scale:
//   Q4_K: 8 sub-blocks of 32. scales[12] packs 6-bit scale sc[j] and min mn[j]
//         (see k4_scale_min); element e = 64 i + l (l < 32) is the low nibble of
//         qs[32 i + l], e = 64 i + 32 + l its high nibble;
//         value d * sc[e / 32] * q - dmin * mn[e / 32].
//   Q5_K: as Q4_K plus qh[32]: bit e / 32 of qh[e % 32] is q's fifth bit (16).
//   Q6_K: 16 sub-blocks of 16, int8 scales[16]. e = 128 h + 32 t + l (t < 4, l < 32):
//         low 4 bits from ql[64 h + 32 (t & 1) + l] (low nibble for t < 2, high for
//         t >= 2), high 2 bits from bits 2t, 2t+1 of qh[32 h + l];
//         value d * scales[e / 16] * (q - 32).
//   Q2_K: 16 sub-blocks of 16; scales[16]: low nibble sc, high nibble mn.
//         e = 128 h + 32 t + l: q = bits 2t, 2t+1 of qs[32 h + l];
//         value d * sc[e / 16] * q - dmin * mn[e / 16].
//   Q3_K: 16 sub-blocks of 16, 6-bit scales packed in scales[12] (see k3_scales);
//         low 2 bits of q as Q2_K, the third from bit 4 h + t of hmask[l]: q is
//         (low | third << 2) - 4; value d * (sc[e / 16] - 32) * q.
// The conversions are exact and round to nearest even (the same results as F16C's
// vcvtps2ph with round-to-nearest and as ggml's bf16 rounding); NaN stays NaN.
#pragma once

#include <cstdint>
#include <cstring>

namespace infera::engine::kernels {

inline constexpr int kBlockElems = 32;  // elements per Q8_0 / Q4_0 block

struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kBlockElems];
};
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kBlockElems / 2];
};
struct BlockQ4_1 {
  uint16_t d, m;
  uint8_t qs[kBlockElems / 2];
};
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kBlockElems / 2];
};
struct BlockQ5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[kBlockElems / 2];
};
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 &&
                  sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24,
              "ggml block sizes");

inline constexpr int kSuperElems = 256;  // elements per K-quant super-block (ggml's QK_K)

struct BlockQ2_K {
  uint8_t scales[16];
  uint8_t qs[64];
  uint16_t d, dmin;
};
struct BlockQ3_K {
  uint8_t hmask[32];
  uint8_t qs[64];
  uint8_t scales[12];
  uint16_t d;
};
struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
struct BlockQ6_K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 &&
                  sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210,
              "ggml super-block sizes");

// Q4_K / Q5_K: the 6-bit scales sc[0..7] and mins mn[0..7] from the 12 packed bytes.
// Bytes 0-3 hold sc[0..3] in their low 6 bits, bytes 4-7 mn[0..3]; bytes 8-11 hold
// the low 4 bits of sc[4..7] (low nibble) and mn[4..7] (high nibble), whose top 2
// bits are the top 2 bits of bytes 0-3 (sc) and 4-7 (mn).
inline void k4_scale_min(const uint8_t* packed, uint8_t* sc, uint8_t* mn) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = packed[j] & 63;
    mn[j] = packed[j + 4] & 63;
    sc[j + 4] = static_cast<uint8_t>((packed[j + 8] & 15) | (packed[j] >> 6) << 4);
    mn[j + 4] = static_cast<uint8_t>((packed[j + 8] >> 4) | (packed[j + 4] >> 6) << 4);
  }
}

// Q3_K: the 6-bit scales (stored + 32) sc[0..15] from the 12 packed bytes. The low
// 4 bits of sc[j] are the low nibble of byte j (j < 8) or the high nibble of byte
// j - 8; the top 2 bits are bits 2 (j / 4), 2 (j / 4) + 1 of byte 8 + j % 4.
inline void k3_scales(const uint8_t* packed, uint8_t* sc) {
  for (int j = 0; j < 16; ++j) {
    const int low = j < 8 ? packed[j] & 15 : packed[j - 8] >> 4;
    const int high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
    sc[j] = static_cast<uint8_t>(low | high << 4);
  }
}

inline float fp16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | mant << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t f32_to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  uint32_t abs = x & 0x7fffffff;
  if (abs >= 0x7f800000) {  // inf or nan
    return static_cast<uint16_t>(sign | 0x7c00 | (abs > 0x7f800000 ? 0x200 : 0));
  }
  if (abs >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00);  // rounds to inf
  if (abs < 0x38800000) {                                              // subnormal half (or zero)
    if (abs < 0x33000000) return static_cast<uint16_t>(sign);          // rounds to zero
    uint32_t e = abs >> 23;
    uint32_t m = (abs & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - e;  // 14 + (113 - e) - 1 ... places the value in 10 bits
    uint32_t half = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t h = ((abs - 0x38000000) >> 13);
  uint32_t rem = abs & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;
  return static_cast<uint16_t>(sign | h);
}

inline float bf16_to_f32(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((x >> 16) | 0x40);  // quiet nan
  x += 0x7fff + ((x >> 16) & 1);
  return static_cast<uint16_t>(x >> 16);
}

}  // namespace infera::engine::kernels
