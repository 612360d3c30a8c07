// Row (de)quantization of the K-quants (256-element super-blocks; layouts in
// block_types.h).
//
// Decoding follows the format exactly. Encoding is this project's own: each
// sub-block's float scale (and min) is fitted by least squares over a few starting
// points, the super-block's d (and dmin) maps the largest to the top integer
// scale, and elements are then rounded against the stored (integer, half-precision)
// scales, so what is decoded is what the error was measured on. It is a valid
// encoding of ggml's format, not ggml's bytes.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/kernels/tables.h"

namespace infera::engine::kernels {
namespace {

// ---- decoding ----------------------------------------------------------------------

void decode(const BlockQ4_K& b, float* out) {
  uint8_t sc[8], mn[8];
  k4_scale_min(b.scales, sc, mn);
  const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
  for (int e = 0; e < kSuperElems; ++e) {
    const uint8_t byte = b.qs[32 * (e / 64) + e % 32];
    const int q = (e / 32) % 2 == 0 ? byte & 15 : byte >> 4;
    out[e] = d * sc[e / 32] * static_cast<float>(q) - dmin * mn[e / 32];
  }
}

void decode(const BlockQ5_K& b, float* out) {
  uint8_t sc[8], mn[8];
  k4_scale_min(b.scales, sc, mn);
  const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
  for (int e = 0; e < kSuperElems; ++e) {
    const uint8_t byte = b.qs[32 * (e / 64) + e % 32];
    const int low = (e / 32) % 2 == 0 ? byte & 15 : byte >> 4;
    const int q = low | ((b.qh[e % 32] >> (e / 32)) & 1) << 4;
    out[e] = d * sc[e / 32] * static_cast<float>(q) - dmin * mn[e / 32];
  }
}

int q6_value(const BlockQ6_K& b, int e) {
  const int h = e / 128, t = (e / 32) % 4, l = e % 32;
  const uint8_t byte = b.ql[64 * h + 32 * (t & 1) + l];
  const int low = t < 2 ? byte & 15 : byte >> 4;
  const int high = (b.qh[32 * h + l] >> (2 * t)) & 3;
  return (low | high << 4) - 32;
}

void decode(const BlockQ6_K& b, float* out) {
  const float d = fp16_to_f32(b.d);
  for (int e = 0; e < kSuperElems; ++e) {
    out[e] = d * b.scales[e / 16] * static_cast<float>(q6_value(b, e));
  }
}

// The 2-bit field of Q2_K / Q3_K element e.
int low2(const uint8_t* qs, int e) {
  const int h = e / 128, t = (e / 32) % 4, l = e % 32;
  return (qs[32 * h + l] >> (2 * t)) & 3;
}

void decode(const BlockQ2_K& b, float* out) {
  const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
  for (int e = 0; e < kSuperElems; ++e) {
    const uint8_t s = b.scales[e / 16];
    out[e] = d * (s & 15) * static_cast<float>(low2(b.qs, e)) - dmin * (s >> 4);
  }
}

int q3_value(const BlockQ3_K& b, int e) {
  const int h = e / 128, t = (e / 32) % 4, l = e % 32;
  const int third = (b.hmask[l] >> (4 * h + t)) & 1;
  return (low2(b.qs, e) | third << 2) - 4;
}

void decode(const BlockQ3_K& b, float* out) {
  uint8_t sc[16];
  k3_scales(b.scales, sc);
  const float d = fp16_to_f32(b.d);
  for (int e = 0; e < kSuperElems; ++e) {
    out[e] = d * static_cast<float>(sc[e / 16] - 32) * static_cast<float>(q3_value(b, e));
  }
}

// ---- fitting sub-block scales --------------------------------------------------------

int round_int(float v) { return static_cast<int>(std::nearbyint(v)); }

// x ~ scale * q - offset with integer q in [0, qmax] and offset >= 0 (a min <= 0,
// as the format stores a non-negative min). Least squares from several starting
// scales; returns the best pair by squared error.
struct Affine {
  float scale = 0;
  float offset = 0;
};

Affine fit_affine(const float* x, int n, int qmax) {
  float lo = 0, hi = 0;
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  Affine best{(hi - lo) / static_cast<float>(qmax), -lo};
  if (hi == lo) return best;
  double best_err = -1;
  for (int step = -4; step <= 10; ++step) {
    const float scale0 = (hi - lo) / (static_cast<float>(qmax) + 0.1f * static_cast<float>(step));
    if (scale0 <= 0) continue;
    // Levels for this start, then the scale and offset that fit them best.
    double s_l = 0, s_ll = 0, s_x = 0, s_lx = 0;
    int levels[32];
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(round_int((x[i] - lo) / scale0), 0, qmax);
      levels[i] = l;
      s_l += l;
      s_ll += static_cast<double>(l) * l;
      s_x += x[i];
      s_lx += static_cast<double>(l) * x[i];
    }
    const double det = n * s_ll - s_l * s_l;
    if (det <= 0) continue;
    double a = (n * s_lx - s_l * s_x) / det;
    double b = (s_ll * s_x - s_l * s_lx) / det;  // the min
    if (b > 0) {                                 // the format's min is <= 0
      b = 0;
      a = s_lx / s_ll;
    }
    if (a <= 0) continue;
    double err = 0;
    for (int i = 0; i < n; ++i) {
      const double r = a * levels[i] + b - x[i];
      err += r * r;
    }
    if (best_err < 0 || err < best_err) {
      best_err = err;
      best = {static_cast<float>(a), static_cast<float>(-b)};
    }
  }
  return best;
}

// x ~ scale * q with integer q in [qmin, qmax] (qmin = -qmax - 1). The scale is
// signed: the value of largest magnitude maps towards qmin, the longer side.
float fit_symmetric(const float* x, int n, int qmin, int qmax) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax == 0) return 0;
  float best = max / static_cast<float>(qmin);
  double best_err = -1;
  for (int step = 0; step <= 12; ++step) {
    const float scale0 = max / (static_cast<float>(qmin) + 0.25f * static_cast<float>(step));
    double s_ll = 0, s_lx = 0;
    int levels[32];
    for (int i = 0; i < n; ++i) {
      levels[i] = std::clamp(round_int(x[i] / scale0), qmin, qmax);
      s_ll += static_cast<double>(levels[i]) * levels[i];
      s_lx += static_cast<double>(levels[i]) * x[i];
    }
    if (s_ll == 0) continue;
    const double a = s_lx / s_ll;
    double err = 0;
    for (int i = 0; i < n; ++i) {
      const double r = a * levels[i] - x[i];
      err += r * r;
    }
    if (best_err < 0 || err < best_err) {
      best_err = err;
      best = static_cast<float>(a);
    }
  }
  return best;
}

// Integer sub-block scales in [0, top] (or [-top, top] when `is_signed`) for float
// scales s[0..n): returns the super-block factor as stored (half precision) and
// fills q with the integers.
float quantize_scales(const float* s, int n, int top, bool is_signed, uint16_t& stored, int* q) {
  float amax = 0;
  for (int j = 0; j < n; ++j) amax = std::max(amax, is_signed ? std::fabs(s[j]) : s[j]);
  stored = f32_to_fp16(amax / static_cast<float>(top));
  const float d = fp16_to_f32(stored);
  for (int j = 0; j < n; ++j) {
    q[j] = d > 0 ? std::clamp(round_int(s[j] / d), is_signed ? -top : 0, top) : 0;
  }
  return d;
}

// Levels of x in [0, qmax] against the stored scale and offset (x ~ scale q - offset).
void affine_levels(const float* x, int n, float scale, float offset, int qmax, int* q) {
  for (int i = 0; i < n; ++i) {
    q[i] = scale > 0 ? std::clamp(round_int((x[i] + offset) / scale), 0, qmax) : 0;
  }
}

// Q4_K / Q5_K: 8 sub-blocks of 32, 6-bit scales and mins; q holds 256 levels.
void encode_k4(const float* x, int qmax, uint16_t& d_out, uint16_t& dmin_out, uint8_t* packed,
               int* q) {
  float scales[8], offsets[8];
  for (int j = 0; j < 8; ++j) {
    const Affine f = fit_affine(x + 32 * j, 32, qmax);
    scales[j] = f.scale;
    offsets[j] = f.offset;
  }
  int sc[8], mn[8];
  const float d = quantize_scales(scales, 8, 63, false, d_out, sc);
  const float dmin = quantize_scales(offsets, 8, 63, false, dmin_out, mn);
  for (int j = 0; j < 4; ++j) {
    packed[j] = static_cast<uint8_t>((sc[j] & 63) | (sc[j + 4] >> 4) << 6);
    packed[j + 4] = static_cast<uint8_t>((mn[j] & 63) | (mn[j + 4] >> 4) << 6);
    packed[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
  }
  for (int j = 0; j < 8; ++j) {
    affine_levels(x + 32 * j, 32, d * static_cast<float>(sc[j]), dmin * static_cast<float>(mn[j]),
                  qmax, q + 32 * j);
  }
}

void encode(const float* x, BlockQ4_K& b) {
  int q[kSuperElems];
  encode_k4(x, 15, b.d, b.dmin, b.scales, q);
  for (int e = 0; e < kSuperElems; ++e) {
    uint8_t& byte = b.qs[32 * (e / 64) + e % 32];
    byte |= static_cast<uint8_t>((e / 32) % 2 == 0 ? q[e] : q[e] << 4);
  }
}

void encode(const float* x, BlockQ5_K& b) {
  int q[kSuperElems];
  encode_k4(x, 31, b.d, b.dmin, b.scales, q);
  for (int e = 0; e < kSuperElems; ++e) {
    uint8_t& byte = b.qs[32 * (e / 64) + e % 32];
    byte |= static_cast<uint8_t>((e / 32) % 2 == 0 ? q[e] & 15 : (q[e] & 15) << 4);
    b.qh[e % 32] |= static_cast<uint8_t>((q[e] >> 4) << (e / 32));
  }
}

// Symmetric levels in [qmin, qmax] of 16 sub-blocks of 16 against stored scales.
void symmetric_levels(const float* x, float d, const int* sc, int qmin, int qmax, int* q) {
  for (int e = 0; e < kSuperElems; ++e) {
    const float s = d * static_cast<float>(sc[e / 16]);
    q[e] = s != 0 ? std::clamp(round_int(x[e] / s), qmin, qmax) : 0;
  }
}

void encode(const float* x, BlockQ6_K& b) {
  float scales[16];
  for (int j = 0; j < 16; ++j) scales[j] = fit_symmetric(x + 16 * j, 16, -32, 31);
  int sc[16], q[kSuperElems];
  const float d = quantize_scales(scales, 16, 127, true, b.d, sc);
  for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<int8_t>(sc[j]);
  symmetric_levels(x, d, sc, -32, 31, q);
  for (int e = 0; e < kSuperElems; ++e) {
    const int h = e / 128, t = (e / 32) % 4, l = e % 32;
    const int u = q[e] + 32;
    b.ql[64 * h + 32 * (t & 1) + l] |= static_cast<uint8_t>(t < 2 ? u & 15 : (u & 15) << 4);
    b.qh[32 * h + l] |= static_cast<uint8_t>((u >> 4) << (2 * t));
  }
}

void encode(const float* x, BlockQ2_K& b) {
  float scales[16], offsets[16];
  for (int j = 0; j < 16; ++j) {
    const Affine f = fit_affine(x + 16 * j, 16, 3);
    scales[j] = f.scale;
    offsets[j] = f.offset;
  }
  int sc[16], mn[16], q[16];
  const float d = quantize_scales(scales, 16, 15, false, b.d, sc);
  const float dmin = quantize_scales(offsets, 16, 15, false, b.dmin, mn);
  for (int j = 0; j < 16; ++j) {
    b.scales[j] = static_cast<uint8_t>(sc[j] | mn[j] << 4);
    affine_levels(x + 16 * j, 16, d * static_cast<float>(sc[j]), dmin * static_cast<float>(mn[j]),
                  3, q);
    for (int i = 0; i < 16; ++i) {
      const int e = 16 * j + i, h = e / 128, t = (e / 32) % 4, l = e % 32;
      b.qs[32 * h + l] |= static_cast<uint8_t>(q[i] << (2 * t));
    }
  }
}

void encode(const float* x, BlockQ3_K& b) {
  float scales[16];
  for (int j = 0; j < 16; ++j) scales[j] = fit_symmetric(x + 16 * j, 16, -4, 3);
  int sc[16], q[kSuperElems];
  const float d = quantize_scales(scales, 16, 31, true, b.d, sc);
  for (int j = 0; j < 16; ++j) {
    const int u = sc[j] + 32;  // 1..63
    if (j < 8) {
      b.scales[j] |= static_cast<uint8_t>(u & 15);
    } else {
      b.scales[j - 8] |= static_cast<uint8_t>((u & 15) << 4);
    }
    b.scales[8 + j % 4] |= static_cast<uint8_t>((u >> 4) << (2 * (j / 4)));
  }
  symmetric_levels(x, d, sc, -4, 3, q);
  for (int e = 0; e < kSuperElems; ++e) {
    const int h = e / 128, t = (e / 32) % 4, l = e % 32;
    const int u = q[e] + 4;  // 0..7
    b.qs[32 * h + l] |= static_cast<uint8_t>((u & 3) << (2 * t));
    b.hmask[l] |= static_cast<uint8_t>((u >> 2) << (4 * h + t));
  }
}

template <typename Block>
void decode_row(const void* row, float* out, int n) {
  const auto* p = static_cast<const uint8_t*>(row);
  for (int b = 0; b < n / kSuperElems; ++b) {
    Block blk;
    std::memcpy(&blk, p + sizeof blk * static_cast<size_t>(b), sizeof blk);
    decode(blk, out + b * kSuperElems);
  }
}

template <typename Block>
void encode_row(const float* x, void* out, int n) {
  auto* p = static_cast<uint8_t*>(out);
  for (int b = 0; b < n / kSuperElems; ++b) {
    Block blk{};
    encode(x + b * kSuperElems, blk);
    std::memcpy(p + sizeof blk * static_cast<size_t>(b), &blk, sizeof blk);
  }
}

}  // namespace

void dequantize_kquant_row(GgmlType type, const void* row, float* out, int n) {
  switch (type) {
    case GgmlType::kQ2_K:
      return decode_row<BlockQ2_K>(row, out, n);
    case GgmlType::kQ3_K:
      return decode_row<BlockQ3_K>(row, out, n);
    case GgmlType::kQ4_K:
      return decode_row<BlockQ4_K>(row, out, n);
    case GgmlType::kQ5_K:
      return decode_row<BlockQ5_K>(row, out, n);
    default:
      return decode_row<BlockQ6_K>(row, out, n);
  }
}

void quantize_kquant_row(GgmlType type, const float* x, void* out, int n) {
  switch (type) {
    case GgmlType::kQ2_K:
      return encode_row<BlockQ2_K>(x, out, n);
    case GgmlType::kQ3_K:
      return encode_row<BlockQ3_K>(x, out, n);
    case GgmlType::kQ4_K:
      return encode_row<BlockQ4_K>(x, out, n);
    case GgmlType::kQ5_K:
      return encode_row<BlockQ5_K>(x, out, n);
    default:
      return encode_row<BlockQ6_K>(x, out, n);
  }
}

}  // namespace infera::engine::kernels
