// Row (de)quantization of the quantized weight types and the Q8K activation rows:
// hand-built blocks decode to the values ggml's format defines, the 32-element
// encoders round as ggml's reference quantizers, every encoder's round trip stays
// within an error bound, and the SIMD Q8K quantizers equal the scalar one bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/kernels/kernels.h"

namespace infera::engine::kernels {
namespace {

std::vector<float> decode(GgmlType type, const void* row, int n) {
  std::vector<float> out(static_cast<size_t>(n));
  EXPECT_TRUE(dequantize_row(type, row, out.data(), n));
  return out;
}

TEST(QuantRows, Q4_1AndQ5_1BlocksDecodeAsScaleTimesLevelPlusMin) {
  BlockQ4_1 q4{};
  q4.d = f32_to_fp16(0.5f);
  q4.m = f32_to_fp16(-2.0f);
  q4.qs[0] = 0x3a;   // element 0: 10, element 16: 3
  q4.qs[15] = 0xf0;  // element 15: 0, element 31: 15
  std::vector<float> v = decode(GgmlType::kQ4_1, &q4, 32);
  EXPECT_EQ(v[0], 10 * 0.5f - 2);
  EXPECT_EQ(v[16], 3 * 0.5f - 2);
  EXPECT_EQ(v[15], -2.0f);
  EXPECT_EQ(v[31], 15 * 0.5f - 2);

  BlockQ5_1 q5{};
  q5.d = f32_to_fp16(0.25f);
  q5.m = f32_to_fp16(1.0f);
  q5.qs[1] = 0x21;                         // element 1: 1, element 17: 2
  const uint32_t qh = 1u << 17 | 1u << 3;  // fifth bits of elements 17 and 3
  std::memcpy(q5.qh, &qh, 4);
  v = decode(GgmlType::kQ5_1, &q5, 32);
  EXPECT_EQ(v[1], 1 * 0.25f + 1);
  EXPECT_EQ(v[17], (2 + 16) * 0.25f + 1);
  EXPECT_EQ(v[3], 16 * 0.25f + 1);
}

TEST(QuantRows, Q5_0BlockDecodesAsLevelMinusSixteen) {
  BlockQ5_0 q5{};
  q5.d = f32_to_fp16(2.0f);
  q5.qs[0] = 0xf4;  // element 0: 4, element 16: 15
  const uint32_t qh = 1u << 16 | 1u << 31;
  std::memcpy(q5.qh, &qh, 4);
  std::vector<float> v = decode(GgmlType::kQ5_0, &q5, 32);
  EXPECT_EQ(v[0], (4 - 16) * 2.0f);
  EXPECT_EQ(v[16], (15 + 16 - 16) * 2.0f);
  EXPECT_EQ(v[31], (0 + 16 - 16) * 2.0f);
  EXPECT_EQ(v[1], -16 * 2.0f);
}

TEST(QuantRows, ThirtyTwoElementEncodersRoundAsGgmlReference) {
  std::vector<float> x(32);
  for (int i = 0; i < 32; ++i) x[static_cast<size_t>(i)] = static_cast<float>(i) * 0.25f - 3.0f;
  // Q4_1: min -3, max 4.75, d = 7.75 / 15; level = trunc((x - min) / d + 0.5).
  BlockQ4_1 q4;
  ASSERT_TRUE(quantize_row(GgmlType::kQ4_1, x.data(), &q4, 32));
  EXPECT_EQ(q4.d, f32_to_fp16(7.75f / 15));
  EXPECT_EQ(q4.m, f32_to_fp16(-3.0f));
  const float id4 = 1.0f / (7.75f / 15);
  for (int e = 0; e < 32; ++e) {
    const int want =
        std::min(15, static_cast<int>((x[static_cast<size_t>(e)] + 3.0f) * id4 + 0.5f));
    const int got = e < 16 ? q4.qs[e] & 15 : q4.qs[e - 16] >> 4;
    EXPECT_EQ(got, want) << e;
  }
  // Q5_0: the largest magnitude (4.75) maps to level 0: d = 4.75 / -16.
  BlockQ5_0 q5;
  ASSERT_TRUE(quantize_row(GgmlType::kQ5_0, x.data(), &q5, 32));
  EXPECT_EQ(q5.d, f32_to_fp16(4.75f / -16));
  uint32_t qh;
  std::memcpy(&qh, q5.qh, 4);
  const float id5 = 1.0f / (4.75f / -16);
  for (int e = 0; e < 32; ++e) {
    const int want = std::min(
        31, static_cast<int>(static_cast<int8_t>(x[static_cast<size_t>(e)] * id5 + 16.5f)));
    const int low = e < 16 ? q5.qs[e] & 15 : q5.qs[e - 16] >> 4;
    EXPECT_EQ(low | ((qh >> e) & 1) << 4, want) << e;
  }
  // Q5_1: d = 7.75 / 31.
  BlockQ5_1 q51;
  ASSERT_TRUE(quantize_row(GgmlType::kQ5_1, x.data(), &q51, 32));
  EXPECT_EQ(q51.d, f32_to_fp16(7.75f / 31));
  std::memcpy(&qh, q51.qh, 4);
  const float id51 = 1.0f / (7.75f / 31);
  for (int e = 0; e < 32; ++e) {
    const int want = static_cast<int>((x[static_cast<size_t>(e)] + 3.0f) * id51 + 0.5f);
    const int low = e < 16 ? q51.qs[e] & 15 : q51.qs[e - 16] >> 4;
    EXPECT_EQ(low | ((qh >> e) & 1) << 4, want) << e;
  }
}

TEST(QuantRows, Q4_KAndQ5_KSuperBlocksDecodeWithSixBitScalesAndMins) {
  BlockQ4_K b{};
  b.d = f32_to_fp16(0.5f);
  b.dmin = f32_to_fp16(0.25f);
  // sc[1] = 3, mn[1] = 5 (bytes 1 and 5); sc[6] = 0x25 = 37 and mn[6] = 0x1c = 28:
  // low nibbles in byte 10, top two bits in bytes 2 (sc) and 6 (mn).
  b.scales[1] = 3;
  b.scales[5] = 5;
  b.scales[10] = 0x5 | 0xc << 4;
  b.scales[2] = 2 << 6;
  b.scales[6] = 1 << 6;
  b.qs[7] = 0x9a;       // element 7 (sub-block 0): 10; element 39 (sub-block 1): 9
  b.qs[96 + 4] = 0x0e;  // element 192 + 4 (sub-block 6): 14
  std::vector<float> v = decode(GgmlType::kQ4_K, &b, 256);
  EXPECT_EQ(v[7], 0.0f);                       // sub-block 0: scale 0, min 0
  EXPECT_EQ(v[39], 0.5f * 3 * 9 - 0.25f * 5);  // sub-block 1
  EXPECT_EQ(v[196], 0.5f * 37 * 14 - 0.25f * 28);
  EXPECT_EQ(v[197], -0.25f * 28);

  BlockQ5_K c{};
  c.d = b.d;
  c.dmin = b.dmin;
  std::memcpy(c.scales, b.scales, 12);
  std::memcpy(c.qs, b.qs, 128);
  c.qh[4] = 1 << 6;  // fifth bit of element 32 * 6 + 4
  c.qh[7] = 1 << 1;  // fifth bit of element 32 + 7 = 39
  v = decode(GgmlType::kQ5_K, &c, 256);
  EXPECT_EQ(v[39], 0.5f * 3 * (9 + 16) - 0.25f * 5);
  EXPECT_EQ(v[196], 0.5f * 37 * (14 + 16) - 0.25f * 28);
}

TEST(QuantRows, Q6_KSuperBlockDecodesSixBitLevelsWithSignedScales) {
  BlockQ6_K b{};
  b.d = f32_to_fp16(0.125f);
  for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<int8_t>(j - 8);
  // Element 128 + 64 + 5 = 197: h 1, t 2, l 5: high nibble of ql[64 + 5], bits 4-5
  // of qh[32 + 5]. Level 0x2b = 43 -> 11.
  b.ql[69] = 0xb0;
  b.qh[37] = 2 << 4;
  // Element 32 + 9 = 41: t 1: low nibble of ql[32 + 9], bits 2-3 of qh[9]. Level 3.
  b.ql[41] = 0x03;
  std::vector<float> v = decode(GgmlType::kQ6_K, &b, 256);
  EXPECT_EQ(v[197], 0.125f * (197 / 16 - 8) * (43 - 32));
  EXPECT_EQ(v[41], 0.125f * (41 / 16 - 8) * (3 - 32));
  EXPECT_EQ(v[0], 0.125f * -8 * -32);
}

TEST(QuantRows, Q2_KAndQ3_KSuperBlocksDecodeTwoAndThreeBitLevels) {
  BlockQ2_K b{};
  b.d = f32_to_fp16(1.0f);
  b.dmin = f32_to_fp16(0.5f);
  b.scales[12] = 0x3 | 0x2 << 4;  // sub-block 12 (elements 192..207): scale 3, min 2
  b.qs[32 + 1] = 2 << 4;          // element 128 + 32 * 2 + 1 = 193: level 2
  std::vector<float> v = decode(GgmlType::kQ2_K, &b, 256);
  EXPECT_EQ(v[193], 1.0f * 3 * 2 - 0.5f * 2);
  EXPECT_EQ(v[192], -0.5f * 2);

  BlockQ3_K c{};
  c.d = f32_to_fp16(0.5f);
  // sc[13] = 45 (stored): low nibble 13 in the high nibble of byte 5, top bits 2 in
  // bits 6-7 of byte 8 + 1. Other scales are stored 0, i.e. -32.
  c.scales[5] = 13 << 4;
  c.scales[9] = 2 << 6;
  c.qs[32 + 17] = 1 << 4;          // element 128 + 64 + 17 = 209 (sub-block 13): low 1
  c.hmask[17] = 1 << (4 * 1 + 2);  // its third bit: level (1 | 4) - 4 = 1
  v = decode(GgmlType::kQ3_K, &c, 256);
  EXPECT_EQ(v[209], 0.5f * (45 - 32) * 1);
  EXPECT_EQ(v[0], 0.5f * -32 * -4);  // level 0, no third bit: -4
}

// RMS(dequantize(quantize(x)) - x) / RMS(x) on Gaussian rows with a few outliers.
double round_trip_error(GgmlType type, int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& f : x) f = dist(rng);
  for (int i = 0; i < n; i += 97) x[static_cast<size_t>(i)] *= 6;
  std::vector<uint8_t> bytes(ggml_row_bytes(type, n).value());
  EXPECT_TRUE(quantize_row(type, x.data(), bytes.data(), n));
  const std::vector<float> back = decode(type, bytes.data(), n);
  double err = 0, norm = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    err += (back[i] - x[i]) * static_cast<double>(back[i] - x[i]);
    norm += x[i] * static_cast<double>(x[i]);
  }
  return std::sqrt(err / norm);
}

TEST(QuantRows, EncodersRoundTripWithinTheirTypesError) {
  // Bounds: measured here with about 20% margin. Every K-quant beats the 32-element
  // type of the same bits per weight or fewer (Q4_K vs Q4_0, Q5_K vs Q5_0), as the
  // format's finer scales allow.
  struct Case {
    GgmlType type;
    double bound;
  };
  const Case cases[] = {
      {GgmlType::kQ8_0, 0.010}, {GgmlType::kQ4_0, 0.155}, {GgmlType::kQ4_1, 0.110},
      {GgmlType::kQ5_0, 0.077}, {GgmlType::kQ5_1, 0.053}, {GgmlType::kQ2_K, 0.350},
      {GgmlType::kQ3_K, 0.220}, {GgmlType::kQ4_K, 0.103}, {GgmlType::kQ5_K, 0.052},
      {GgmlType::kQ6_K, 0.029},
  };
  for (const Case& c : cases) {
    const double error = round_trip_error(c.type, 4096, 1);
    std::printf("%-5s round-trip relative RMS error %.4f (bound %.3f)\n",
                std::string(ggml_type_name(c.type)).c_str(), error, c.bound);
    EXPECT_LT(error, c.bound) << ggml_type_name(c.type);
  }
  EXPECT_LT(round_trip_error(GgmlType::kQ4_K, 4096, 2), round_trip_error(GgmlType::kQ4_0, 4096, 2));
  EXPECT_LT(round_trip_error(GgmlType::kQ5_K, 4096, 2), round_trip_error(GgmlType::kQ5_0, 4096, 2));
}

TEST(QuantRows, EncodersHandleZeroAndConstantRows) {
  for (GgmlType type : {GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1, GgmlType::kQ2_K,
                        GgmlType::kQ3_K, GgmlType::kQ4_K, GgmlType::kQ5_K, GgmlType::kQ6_K}) {
    for (float value : {0.0f, 0.75f, -1.5f}) {
      std::vector<float> x(256, value);
      std::vector<uint8_t> bytes(ggml_row_bytes(type, 256).value());
      ASSERT_TRUE(quantize_row(type, x.data(), bytes.data(), 256));
      const std::vector<float> back = decode(type, bytes.data(), 256);
      for (float v : back) {
        ASSERT_TRUE(std::isfinite(v)) << ggml_type_name(type);
        ASSERT_NEAR(v, value, 0.02 * std::fabs(value) + 1e-6) << ggml_type_name(type);
      }
    }
  }
}

TEST(QuantRows, Q8KActivationRowMapsTheLargestMagnitudeToMinus127) {
  std::vector<float> x(512, 0.0f);
  x[3] = 2.0f;
  x[10] = -4.0f;  // the largest magnitude of the first super-block
  x[11] = 4.0f;   // equal magnitude, later: not the reference
  x[300] = 1.0f;  // the second super-block: only this value
  std::vector<uint8_t> row(q8k_row_bytes(512));
  by_level(Level::kScalar)->quantize_q8k(x.data(), row.data(), 512);
  const auto* q = reinterpret_cast<const int8_t*>(row.data());
  float d[2];
  std::memcpy(d, row.data() + 512, sizeof d);
  int16_t sums[32];
  std::memcpy(sums, row.data() + 512 + 8, sizeof sums);
  EXPECT_EQ(q[10], -127);  // iscale = -127 / -4
  EXPECT_EQ(q[11], 127);
  EXPECT_EQ(q[3], 64);  // 63.5 rounds to even
  EXPECT_EQ(d[0], 1 / (-127.0f / -4.0f));
  EXPECT_EQ(q[300], -127);
  EXPECT_EQ(d[1], 1 / (-127.0f / 1.0f));
  EXPECT_EQ(sums[0], 64 - 127 + 127);
  EXPECT_EQ(sums[18], -127);
  EXPECT_EQ(sums[1], 0);
}

TEST(QuantRows, SimdQuantizeQ8KIsBitIdenticalToScalar) {
  std::mt19937 rng(21);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  const Kernels& scalar = *by_level(Level::kScalar);
  for (const char* name : {"avx2", "avx512"}) {
    const Kernels* simd = by_name(name);
    if (simd == nullptr) continue;
    for (int k : {256, 512, 2048, 5632}) {
      std::vector<float> x(static_cast<size_t>(k));
      for (float& f : x) f = dist(rng);
      std::fill(x.begin(), x.begin() + 256, 0.0f);  // an all-zero super-block
      if (k > 512) {
        x[300] = 20.0f;  // a tie in magnitude: the first one decides the sign
        x[301] = -20.0f;
        x[600] = 0.5f * 20.0f / 127.0f;  // rounds from an exact half
      }
      std::vector<uint8_t> a(q8k_row_bytes(k), 0), b(q8k_row_bytes(k), 0);
      scalar.quantize_q8k(x.data(), a.data(), k);
      simd->quantize_q8k(x.data(), b.data(), k);
      EXPECT_EQ(a, b) << name << " k " << k;
    }
  }
}

}  // namespace
}  // namespace infera::engine::kernels
