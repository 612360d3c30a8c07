// AVX-512 VNNI matrix products of the K-quants (Q2_K .. Q6_K) against Q8K activation
// rows, with one weight row per lane (16 rows at a time), as matmul_lanes_avx512.cpp
// does for Q4_0.
//
// Packing: per super-block, the 16 rows are transposed so that lane r of each vector
// holds row r: 64 vectors of 4 unsigned levels each (group g: elements 4g..4g+3, in
// element order whatever the type's bit layout), the sub-block scales as int32 lanes,
// the int16 pairs that meet the activation's 16-value sums, and d (and dmin) as
// floats. Multiplying one activation row is then, per super-block: vpdpbusd of each
// level vector against a broadcast 4-byte group of Q8K values, a vpmulld by the
// sub-block scale per sub-block, 8 vpdpwssd against broadcast pairs of 16-value sums,
// and one or two FMAs for all 16 rows; no horizontal sums. Prefill packs a chunk of
// super-blocks once per 16 rows and shares it across all activation rows; decode
// packs one super-block at a time.
//
// Arithmetic per (activation row, weight row) is fixed whatever n, the row range or
// the tile: per super-block isum = sum_j sc_j * dot_j and msum = sum_j m_j * s_j
// exactly in int32 (m_j the min, or the scale for types whose levels carry an offset,
// s_j the activation sums), then
//   types with mins:    acc = fma(isum, d * dx, acc); acc = fnmadd(msum, dmin * dx, acc)
//   types with offsets: acc = fma(isum - offset * msum, d * dx, acc)
// over super-blocks in order; chunks carry acc through y (a float store and reload
// is exact).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <cstddef>
#include <cstring>

#include "engine/kernels/tables.h"
#include "engine/kernels/x86/lanes_avx512.h"

namespace infera::engine::kernels {
namespace {

using lanes512::kLanes;
using lanes512::load_i32;
using lanes512::prefetch_lines_l1;
using lanes512::prefetch_next_tile;
using lanes512::raw_halves16;
using lanes512::transpose16;

constexpr int kChunkSupers = 4;  // super-blocks packed at a time (about 23 KiB of stack)

struct alignas(64) PackedSuper {
  __m512i g[64];   // lane r: row r's levels of elements 4g..4g+3 (unsigned bytes)
  __m512i sc[16];  // lane r: row r's scale of sub-block j (int32)
  __m512i m2[8];   // lane r: the int16 pair that meets activation sums 2i, 2i+1
  __m512 d;        // lane r: row r's d
  __m512 dmin;     // lane r: row r's dmin (types with mins)
};

template <typename Block>
struct RowSource {
  const Block* const* w;
  int b;
  [[gnu::always_inline]] void piece(size_t offset, __m512i* t) { transpose16(w, b, offset, t); }
  [[gnu::always_inline]] __m512 halves(size_t offset) {
    return _mm512_cvtph_ps(raw_halves16(w, b, offset));
  }
};

template <typename Block>
struct RecordSource {
  const Block* const* w;
  int b;
  uint8_t* out;
  void piece(size_t offset, __m512i* t) {
    transpose16(w, b, offset, t);
    for (int j = 0; j < 4; ++j) _mm512_storeu_si512(out + 64 * j, t[j]);
    out += 256;
  }
  __m512 halves(size_t offset) {
    const __m256i h = raw_halves16(w, b, offset);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), h);
    out += 32;
    return _mm512_cvtph_ps(h);
  }
};

struct ReplaySource {
  const uint8_t* in;
  [[gnu::always_inline]] void piece(size_t, __m512i* t) {
    for (int j = 0; j < 4; ++j) t[j] = _mm512_loadu_si512(in + 64 * j);
    in += 256;
  }
  [[gnu::always_inline]] __m512 halves(size_t) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in));
    in += 32;
    return _mm512_cvtph_ps(h);
  }
};

__m512i bytes32(int v) { return _mm512_set1_epi32(v); }

// A vpshufb control that builds every dword from bytes of the same dword: byte i of
// the result is byte sel_i (0..3) of the source dword, or zero for sel_i < 0.
// (vpshufb indexes bytes of the whole 128-bit lane, hence the per-dword offsets.)
[[gnu::always_inline]] inline __m512i dword_bytes(int sel0, int sel1, int sel2, int sel3) {
  auto byte = [](int sel, int i) { return static_cast<uint32_t>(sel < 0 ? 0x80 : sel) << (8 * i); };
  const uint32_t pattern = byte(sel0, 0) | byte(sel1, 1) | byte(sel2, 2) | byte(sel3, 3);
  const __m512i lane_offsets = _mm512_setr_epi32(
      0, 0x04040404, 0x08080808, 0x0c0c0c0c, 0, 0x04040404, 0x08080808, 0x0c0c0c0c, 0, 0x04040404,
      0x08080808, 0x0c0c0c0c, 0, 0x04040404, 0x08080808, 0x0c0c0c0c);
  return _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(pattern)), lane_offsets);
}
// Byte k (0..3) of each dword, zero-extended to the dword.
[[gnu::always_inline]] inline __m512i byte_of(__m512i v, int k) {
  return _mm512_shuffle_epi8(v, dword_bytes(k, -1, -1, -1));
}
// Bytes k, k + 1 of each dword as an int16 pair (zero-extended).
[[gnu::always_inline]] inline __m512i byte_pair_of(__m512i v, int k) {
  return _mm512_shuffle_epi8(v, dword_bytes(k, -1, k + 1, -1));
}
// The same pair sign-extended from signed bytes.
[[gnu::always_inline]] inline __m512i signed_byte_pair_of(__m512i v, int k) {
  return _mm512_srai_epi16(_mm512_shuffle_epi8(v, dword_bytes(-1, k, -1, k + 1)), 8);
}
// Signed byte k of each dword, sign-extended to the dword.
[[gnu::always_inline]] inline __m512i signed_byte_of(__m512i v, int k) {
  return _mm512_srai_epi32(_mm512_shuffle_epi8(v, dword_bytes(-1, -1, -1, k)), 24);
}
// Shifts each dword left by s (right by -s when negative); s is a constant.
[[gnu::always_inline]] inline __m512i shift(__m512i v, int s) {
  return s >= 0 ? _mm512_slli_epi32(v, static_cast<unsigned>(s))
                : _mm512_srli_epi32(v, static_cast<unsigned>(-s));
}
// a | (b & mask)
[[gnu::always_inline]] inline __m512i or_masked(__m512i a, __m512i b, __m512i mask) {
  return _mm512_ternarylogic_epi32(b, mask, a, 0xea);
}

// Q4_K / Q5_K: d, dmin and the 6-bit scales and mins from the first 16 bytes.
template <typename S>
[[gnu::always_inline]] inline void pack_k4_header(S& src, PackedSuper& p) {
  __m512i t[4];
  src.piece(0, t);
  p.d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(t[0]));
  p.dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(t[0], 16)));
  const __m512i low6 = bytes32(0x3f3f3f3f), low4 = bytes32(0x0f0f0f0f), top2 = bytes32(0x30303030);
  const __m512i sc_lo = _mm512_and_si512(t[1], low6);
  const __m512i mn_lo = _mm512_and_si512(t[2], low6);
  const __m512i sc_hi = or_masked(_mm512_and_si512(t[3], low4), _mm512_srli_epi32(t[1], 2), top2);
  const __m512i mn_hi = or_masked(_mm512_and_si512(_mm512_srli_epi32(t[3], 4), low4),
                                  _mm512_srli_epi32(t[2], 2), top2);
  for (int j = 0; j < 8; ++j) {
    p.sc[j] = byte_of(j < 4 ? sc_lo : sc_hi, j % 4);
    const __m512i m = j < 4 ? mn_lo : mn_hi;
    p.m2[j] = _mm512_shuffle_epi8(m, dword_bytes(j % 4, -1, j % 4, -1));  // (mn_j, mn_j)
  }
}

// Q4_K / Q5_K: the 128 bytes of nibbles at `offset`: byte i (piece i / 32, l = i % 32)
// holds element 64 (i / 32) + l low and + 32 high.
template <typename S>
[[gnu::always_inline]] inline void pack_k4_nibbles(S& src, size_t offset, PackedSuper& p) {
  const __m512i low4 = bytes32(0x0f0f0f0f);
  for (int c = 0; c < 8; ++c) {
    __m512i t[4];
    src.piece(offset + 16 * static_cast<size_t>(c), t);
    for (int q = 0; q < 4; ++q) {
      const int k = 4 * c + q;  // dword of qs
      const int group = 16 * (k / 8) + k % 8;
      p.g[group] = _mm512_and_si512(t[q], low4);
      p.g[group + 8] = _mm512_and_si512(_mm512_srli_epi32(t[q], 4), low4);
    }
  }
}

struct Q4K {
  using Block = BlockQ4_K;
  static constexpr int kSubLen = 32;
  static constexpr bool kHasMin = true;
  static constexpr int kOffsetShift = 0;
  static constexpr size_t kPackedBytes = 9 * 256;  // per super-block of 16 rows
  template <typename S>
  [[gnu::always_inline]] static void pack(S& src, PackedSuper& p) {
    pack_k4_header(src, p);
    pack_k4_nibbles(src, offsetof(Block, qs), p);
  }
};

struct Q5K {
  using Block = BlockQ5_K;
  static constexpr int kSubLen = 32;
  static constexpr bool kHasMin = true;
  static constexpr int kOffsetShift = 0;
  static constexpr size_t kPackedBytes = 11 * 256;  // per super-block of 16 rows
  template <typename S>
  [[gnu::always_inline]] static void pack(S& src, PackedSuper& p) {
    pack_k4_header(src, p);
    pack_k4_nibbles(src, offsetof(Block, qs), p);
    // Fifth bits: bit j of qh[l] for element 32 j + l.
    const __m512i bit4 = bytes32(0x10101010);
    for (int half = 0; half < 2; ++half) {
      __m512i qt[4];
      src.piece(offsetof(Block, qh) + 16 * static_cast<size_t>(half), qt);
      for (int q = 0; q < 4; ++q) {
        const int m = 4 * half + q;  // qh bytes 4m..4m+3
        for (int j = 0; j < 8; ++j) {
          p.g[8 * j + m] = or_masked(p.g[8 * j + m], shift(qt[q], 4 - j), bit4);
        }
      }
    }
  }
};

struct Q6K {
  using Block = BlockQ6_K;
  static constexpr int kSubLen = 16;
  static constexpr bool kHasMin = false;
  static constexpr int kOffsetShift = 5;                 // levels carry +32
  static constexpr size_t kPackedBytes = 13 * 256 + 32;  // per super-block of 16 rows
  template <typename S>
  [[gnu::always_inline]] static void pack(S& src, PackedSuper& p) {
    const __m512i low4 = bytes32(0x0f0f0f0f), bits45 = bytes32(0x30303030);
    __m512i qh[16];  // lane r: qh bytes 4m..4m+3
    for (int c = 0; c < 4; ++c) src.piece(offsetof(Block, qh) + 16 * c, qh + 4 * c);
    for (int c = 0; c < 8; ++c) {
      __m512i t[4];
      src.piece(offsetof(Block, ql) + 16 * static_cast<size_t>(c), t);
      for (int q = 0; q < 4; ++q) {
        const int k = 4 * c + q;  // ql bytes 4k..4k+3: h = k / 16, t0 = (k / 8) % 2
        const int h = k / 16, t_low = (k / 8) % 2, cc = k % 8;
        const __m512i hi_bits = qh[8 * h + cc];
        for (int nib = 0; nib < 2; ++nib) {
          const int tt = t_low + 2 * nib;
          const __m512i levels = nib == 0 ? _mm512_and_si512(t[q], low4)
                                          : _mm512_and_si512(_mm512_srli_epi32(t[q], 4), low4);
          p.g[32 * h + 8 * tt + cc] = or_masked(levels, shift(hi_bits, 4 - 2 * tt), bits45);
        }
      }
    }
    __m512i s[4];  // lane r: scales 4q..4q+3 (signed bytes)
    src.piece(offsetof(Block, scales), s);
    for (int j = 0; j < 16; ++j) p.sc[j] = signed_byte_of(s[j / 4], j % 4);
    for (int i = 0; i < 8; ++i) p.m2[i] = signed_byte_pair_of(s[i / 2], 2 * (i % 2));
    p.d = src.halves(offsetof(Block, d));
  }
};

// Q2_K / Q3_K: 2-bit fields: bits 2t of qs[32 h + l] for element 128 h + 32 t + l.
template <typename S>
[[gnu::always_inline]] inline void pack_low2(S& src, size_t offset, PackedSuper& p) {
  const __m512i low2 = bytes32(0x03030303);
  for (int c = 0; c < 4; ++c) {
    __m512i t[4];
    src.piece(offset + 16 * static_cast<size_t>(c), t);
    for (int q = 0; q < 4; ++q) {
      const int k = 4 * c + q;  // qs bytes 4k..: h = k / 8, l = 4 (k % 8)
      for (int tt = 0; tt < 4; ++tt) {
        p.g[32 * (k / 8) + 8 * tt + k % 8] =
            _mm512_and_si512(_mm512_srli_epi32(t[q], static_cast<unsigned>(2 * tt)), low2);
      }
    }
  }
}

struct Q2K {
  using Block = BlockQ2_K;
  static constexpr int kSubLen = 16;
  static constexpr bool kHasMin = true;
  static constexpr int kOffsetShift = 0;
  static constexpr size_t kPackedBytes = 5 * 256 + 2 * 32;  // per super-block of 16 rows
  template <typename S>
  [[gnu::always_inline]] static void pack(S& src, PackedSuper& p) {
    pack_low2(src, offsetof(Block, qs), p);
    __m512i s[4];  // lane r: scale bytes 4q..4q+3 (scale low nibble, min high)
    src.piece(offsetof(Block, scales), s);
    const __m512i low4 = bytes32(0x0f0f0f0f);
    for (int j = 0; j < 16; ++j) p.sc[j] = _mm512_and_si512(byte_of(s[j / 4], j % 4), low4);
    for (int i = 0; i < 8; ++i) {
      p.m2[i] = _mm512_srli_epi16(byte_pair_of(s[i / 2], 2 * (i % 2)), 4);
    }
    p.d = src.halves(offsetof(Block, d));
    p.dmin = src.halves(offsetof(Block, dmin));
  }
};

struct Q3K {
  using Block = BlockQ3_K;
  static constexpr int kSubLen = 16;
  static constexpr bool kHasMin = false;
  static constexpr int kOffsetShift = 2;           // levels carry +4
  static constexpr size_t kPackedBytes = 7 * 256;  // per super-block of 16 rows
  template <typename S>
  [[gnu::always_inline]] static void pack(S& src, PackedSuper& p) {
    pack_low2(src, offsetof(Block, qs), p);
    // Third bits: bit 4 h + t of hmask[l] for element 128 h + 32 t + l, to bit 2.
    const __m512i bit2 = bytes32(0x04040404);
    for (int half = 0; half < 2; ++half) {
      __m512i hm[4];
      src.piece(offsetof(Block, hmask) + 16 * static_cast<size_t>(half), hm);
      for (int q = 0; q < 4; ++q) {
        const int cc = 4 * half + q;
        for (int h = 0; h < 2; ++h) {
          for (int tt = 0; tt < 4; ++tt) {
            __m512i& g = p.g[32 * h + 8 * tt + cc];
            g = or_masked(g, shift(hm[q], 2 - (4 * h + tt)), bit2);
          }
        }
      }
    }
    // The 12 scale bytes sit at offset 96 of the 110-byte block; read the 16 bytes
    // ending with d (offset 94) so as not to read past the block.
    static_assert(offsetof(Block, scales) == 96 && offsetof(Block, d) == 108);
    __m512i t[4];
    src.piece(94, t);
    auto join = [](__m512i lo, __m512i hi) {  // bytes 2..3 of lo, 0..1 of hi
      return _mm512_or_si512(_mm512_srli_epi32(lo, 16), _mm512_slli_epi32(hi, 16));
    };
    const __m512i a = join(t[0], t[1]), bb = join(t[1], t[2]), c = join(t[2], t[3]);
    const __m512i low4 = bytes32(0x0f0f0f0f), top2 = bytes32(0x30303030);
    const __m512i s[4] = {
        or_masked(_mm512_and_si512(a, low4), _mm512_slli_epi32(c, 4), top2),
        or_masked(_mm512_and_si512(bb, low4), _mm512_slli_epi32(c, 2), top2),
        or_masked(_mm512_and_si512(_mm512_srli_epi32(a, 4), low4), c, top2),
        or_masked(_mm512_and_si512(_mm512_srli_epi32(bb, 4), low4), _mm512_srli_epi32(c, 2), top2),
    };
    const __m512i bias32 = _mm512_set1_epi32(32), bias16 = _mm512_set1_epi16(32);
    for (int j = 0; j < 16; ++j) p.sc[j] = _mm512_sub_epi32(byte_of(s[j / 4], j % 4), bias32);
    for (int i = 0; i < 8; ++i) {
      p.m2[i] = _mm512_sub_epi16(byte_pair_of(s[i / 2], 2 * (i % 2)), bias16);
    }
    p.d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(t[3], 16)));
  }
};

// TX activation rows (Q8K values, scales, 16-value sums) against `count` packed
// super-blocks starting at super-block b0; acc in/out.
template <typename K, int TX>
[[gnu::always_inline]] inline void multiply(const PackedSuper* packed, int b0, int count,
                                            const int8_t* const* xq, const float* const* xd,
                                            const int16_t* const* xs, __m512* acc) {
  constexpr int kSubs = kSuperElems / K::kSubLen;
  constexpr int kGroups = K::kSubLen / 4;
  for (int bi = 0; bi < count; ++bi) {
    const PackedSuper& p = packed[bi];
    const int b = b0 + bi;
    __m512i isum[TX], msum[TX];
    for (int s = 0; s < TX; ++s) {
      isum[s] = _mm512_setzero_si512();
      msum[s] = _mm512_setzero_si512();
    }
    for (int j = 0; j < kSubs; ++j) {
      __m512i dot[TX];
      for (int s = 0; s < TX; ++s) dot[s] = _mm512_setzero_si512();
      for (int g = 0; g < kGroups; ++g) {
        const int group = j * kGroups + g;
        for (int s = 0; s < TX; ++s) {
          const int8_t* x = xq[s] + static_cast<size_t>(b) * kSuperElems + 4 * group;
          dot[s] = _mm512_dpbusd_epi32(dot[s], p.g[group], _mm512_set1_epi32(load_i32(x)));
        }
      }
      for (int s = 0; s < TX; ++s)
        isum[s] = _mm512_add_epi32(isum[s], _mm512_mullo_epi32(dot[s], p.sc[j]));
    }
    for (int i = 0; i < 8; ++i) {
      for (int s = 0; s < TX; ++s) {
        const int16_t* sums = xs[s] + static_cast<size_t>(b) * 16 + 2 * i;
        msum[s] = _mm512_dpwssd_epi32(msum[s], p.m2[i], _mm512_set1_epi32(load_i32(sums)));
      }
    }
    for (int s = 0; s < TX; ++s) {
      const __m512 dx = _mm512_set1_ps(xd[s][b]);
      if constexpr (K::kHasMin) {
        acc[s] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[s]), _mm512_mul_ps(p.d, dx), acc[s]);
        acc[s] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum[s]), _mm512_mul_ps(p.dmin, dx), acc[s]);
      } else {
        const __m512i total =
            _mm512_sub_epi32(isum[s], _mm512_slli_epi32(msum[s], K::kOffsetShift));
        acc[s] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(total), _mm512_mul_ps(p.d, dx), acc[s]);
      }
    }
  }
}

struct XRows {
  const int8_t* q;
  const float* d;
  const int16_t* s;
};
XRows x_row(const MatmulArgs& a, int i) {
  const void* row = static_cast<const uint8_t*>(a.x) + static_cast<size_t>(i) * a.x_stride;
  return {q8k_values(row), q8k_scales(row, a.k), q8k_sums(row, a.k)};
}
float* y_row(const MatmulArgs& a, int i, int r) {
  return reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(a.y) +
                                  static_cast<size_t>(i) * a.y_stride) +
         r;
}

template <typename K, int TX>
void run_rows(const MatmulArgs& a, const PackedSuper* packed, int b0, int count, int i, int r,
              __mmask16 lanes) {
  const int8_t* xq[TX];
  const float* xd[TX];
  const int16_t* xs[TX];
  float* y[TX];
  __m512 acc[TX];
  for (int s = 0; s < TX; ++s) {
    const XRows x = x_row(a, i + s);
    xq[s] = x.q;
    xd[s] = x.d;
    xs[s] = x.s;
    y[s] = y_row(a, i + s, r);
    acc[s] = b0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(lanes, y[s]);
  }
  multiply<K, TX>(packed, b0, count, xq, xd, xs, acc);
  for (int s = 0; s < TX; ++s) _mm512_mask_storeu_ps(y[s], lanes, acc[s]);
}

// Packed tiles are one sequential stream, but the hardware prefetchers alone leave
// decode well short of the bandwidth: each super-block hints the one kPrefetchSupers
// ahead into L1 (measured, one thread, Q4_K 5632 x 2048 from DRAM, loaded machine:
// about 20 GB/s without, 25 with 1 ahead into L2, 28 / 33 / 36 with 1 / 2 / 4 ahead
// into L1, no better further).
constexpr int kPrefetchSupers = 4;

// Rows as stored (kPacked false: a.w, a.w_stride as MatmulArgs says) or repacked at
// load (kPacked true: a.w the packed matrix, a.w_stride its tile bytes; see
// pack_tiles).

template <typename K, bool kPacked>
void matmul_lanes(const MatmulArgs& a, int r0, int r1) {
  using Block = typename K::Block;
  const int nb = a.k / kSuperElems;
  PackedSuper packed[kChunkSupers];
  for (int r = r0; r < r1; r += kLanes) {
    const int rows = r1 - r < kLanes ? r1 - r : kLanes;
    const __mmask16 lanes = static_cast<__mmask16>((1u << rows) - 1);
    // Missing rows of a short tile repeat the last row; their lanes are never stored.
    const Block* w[kLanes];
    const uint8_t* tile = nullptr;
    if constexpr (kPacked) {
      tile = static_cast<const uint8_t*>(a.w) + static_cast<size_t>(r / kLanes) * a.w_stride;
    } else {
      for (int t = 0; t < kLanes; ++t) {
        const int row = t < rows ? t : rows - 1;
        w[t] = reinterpret_cast<const Block*>(static_cast<const uint8_t*>(a.w) +
                                              static_cast<size_t>(r + row) * a.w_stride);
      }
    }
    auto pack = [&](int b, PackedSuper& p) {
      if constexpr (kPacked) {
        const uint8_t* at = tile + static_cast<size_t>(b) * K::kPackedBytes;
        prefetch_lines_l1(at + kPrefetchSupers * K::kPackedBytes, K::kPackedBytes);
        ReplaySource src{at};
        K::pack(src, p);
      } else {
        prefetch_next_tile(a, r, b, nb);
        RowSource<Block> src{w, b};
        K::pack(src, p);
      }
    };
    if (a.n == 1) {  // decode: one super-block at a time, straight from the pack
      const XRows x = x_row(a, 0);
      const int8_t* xq[1] = {x.q};
      const float* xd[1] = {x.d};
      const int16_t* xs[1] = {x.s};
      __m512 acc[1] = {_mm512_setzero_ps()};
      for (int b = 0; b < nb; ++b) {
        pack(b, packed[0]);
        multiply<K, 1>(packed, b, 1, xq, xd, xs, acc);
      }
      _mm512_mask_storeu_ps(y_row(a, 0, r), lanes, acc[0]);
      continue;
    }
    for (int b0 = 0; b0 < nb; b0 += kChunkSupers) {
      const int count = nb - b0 < kChunkSupers ? nb - b0 : kChunkSupers;
      for (int b = b0; b < b0 + count; ++b) pack(b, packed[b - b0]);
      int i = 0;
      for (; i + 4 <= a.n; i += 4) run_rows<K, 4>(a, packed, b0, count, i, r, lanes);
      switch (a.n - i) {
        case 3:
          run_rows<K, 3>(a, packed, b0, count, i, r, lanes);
          break;
        case 2:
          run_rows<K, 2>(a, packed, b0, count, i, r, lanes);
          break;
        case 1:
          run_rows<K, 1>(a, packed, b0, count, i, r, lanes);
          break;
        default:
          break;
      }
    }
  }
}

// Writes the tiles holding rows [r0, r1) (r0 a multiple of 16) of a rows x k matrix:
// per tile, per super-block, the vectors K::pack reads, in its order.
template <typename K>
void pack_tiles(const void* w_rows, size_t w_stride, int rows, int k, int r0, int r1, void* out) {
  using Block = typename K::Block;
  const int nb = k / kSuperElems;
  const size_t tile_bytes = static_cast<size_t>(nb) * K::kPackedBytes;
  for (int r = r0; r < r1; r += kLanes) {
    const Block* w[kLanes];
    for (int t = 0; t < kLanes; ++t) {
      const int row = r + t < rows ? r + t : rows - 1;  // a short last tile repeats its last row
      w[t] = reinterpret_cast<const Block*>(static_cast<const uint8_t*>(w_rows) +
                                            static_cast<size_t>(row) * w_stride);
    }
    uint8_t* tile = static_cast<uint8_t*>(out) + static_cast<size_t>(r / kLanes) * tile_bytes;
    for (int b = 0; b < nb; ++b) {
      RecordSource<Block> src{w, b, tile + static_cast<size_t>(b) * K::kPackedBytes};
      PackedSuper unused;
      K::pack(src, unused);
    }
  }
}

}  // namespace

void fill_avx512_kquants(Kernels& t) {
  t.matmul_q2_k = matmul_lanes<Q2K, false>;
  t.matmul_q3_k = matmul_lanes<Q3K, false>;
  t.matmul_q4_k = matmul_lanes<Q4K, false>;
  t.matmul_q5_k = matmul_lanes<Q5K, false>;
  t.matmul_q6_k = matmul_lanes<Q6K, false>;
}

size_t kquant_packed_tile_bytes_avx512(GgmlType type, int k) {
  const size_t supers = static_cast<size_t>(k / kSuperElems);
  switch (type) {
    case GgmlType::kQ2_K:
      return supers * Q2K::kPackedBytes;
    case GgmlType::kQ3_K:
      return supers * Q3K::kPackedBytes;
    case GgmlType::kQ4_K:
      return supers * Q4K::kPackedBytes;
    case GgmlType::kQ5_K:
      return supers * Q5K::kPackedBytes;
    case GgmlType::kQ6_K:
      return supers * Q6K::kPackedBytes;
    default:
      return 0;
  }
}

void kquant_pack_tiles_avx512(GgmlType type, const void* w, size_t w_stride, int rows, int k,
                              int r0, int r1, void* out) {
  switch (type) {
    case GgmlType::kQ2_K:
      return pack_tiles<Q2K>(w, w_stride, rows, k, r0, r1, out);
    case GgmlType::kQ3_K:
      return pack_tiles<Q3K>(w, w_stride, rows, k, r0, r1, out);
    case GgmlType::kQ4_K:
      return pack_tiles<Q4K>(w, w_stride, rows, k, r0, r1, out);
    case GgmlType::kQ5_K:
      return pack_tiles<Q5K>(w, w_stride, rows, k, r0, r1, out);
    case GgmlType::kQ6_K:
      return pack_tiles<Q6K>(w, w_stride, rows, k, r0, r1, out);
    default:
      return;
  }
}

MatmulFn kquant_packed_matmul_avx512(GgmlType type) {
  switch (type) {
    case GgmlType::kQ2_K:
      return matmul_lanes<Q2K, true>;
    case GgmlType::kQ3_K:
      return matmul_lanes<Q3K, true>;
    case GgmlType::kQ4_K:
      return matmul_lanes<Q4K, true>;
    case GgmlType::kQ5_K:
      return matmul_lanes<Q5K, true>;
    case GgmlType::kQ6_K:
      return matmul_lanes<Q6K, true>;
    default:
      return nullptr;
  }
}

}  // namespace infera::engine::kernels
