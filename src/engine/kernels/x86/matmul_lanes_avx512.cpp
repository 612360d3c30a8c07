// AVX-512 VNNI Q4_0, Q8_0, Q4_1, Q5_0 and Q5_1 matrix products with one weight row per
// lane.
//
// 16 weight rows are transposed on the fly, one block-chunk at a time, into a stack
// buffer in which lane r of each vector holds row r: for every block, eight vectors
// whose lane r holds the 4 weight bytes (as unsigned bytes) that meet activation
// bytes 4g..4g+3, plus the 16 scales. Each activation row then needs only, per block,
// eight vpdpbusd against broadcast 4-byte groups of its Q8 values, one int->float
// conversion and one FMA for all 16 rows, and no horizontal sums: lane r ends as
// y(i, r). The transpose is paid once per 16 rows and chunk, shared by every
// activation row (prefill); for decode it is done in registers.
//
// Weight bytes are made unsigned for vpdpbusd (Q4_0: the nibbles 0..15, offset 8;
// Q8_0: q + 128, offset 128; Q5_0: 0..31, offset 16) and the offset is removed exactly
// in int32 through the activation block sums. Arithmetic per (activation row, weight
// row) is fixed whatever n, the row range or the tile: idot_b = dot(w_b, x_b) exactly,
// then acc = fma(float(idot_b), d_w * d_x, acc) and, for the types with a min (Q4_1,
// Q5_1), acc = fma(m_w, s_x, acc) with s_x the Q8 row's min sum, over blocks in order.
// Chunks carry acc through y (a float store and reload is exact).
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

constexpr int kChunkBlocks = 64;  // blocks transposed at a time (36 KiB of stack)

struct alignas(64) PackedBlock {
  // Lane r: row r's unsigned weight bytes for elements 4j..4j+3, times 2^kHighShift
  // for g[4..7] (see Q4).
  __m512i g[8];
  __m512 d;  // lane r: row r's scale
  __m512 m;  // lane r: row r's min (types with a min)
};

template <typename Block>
[[gnu::always_inline]] inline __m512 scales16(const Block* const* w, int b) {
  return _mm512_cvtph_ps(raw_halves16(w, b, offsetof(Block, d)));
}

// The 16 rows' 32-bit fifth-bit masks (qh) of block b: lane r = row r's.
template <typename Block>
[[gnu::always_inline]] inline __m512i fifth_bit_words16(const Block* const* w, int b) {
  alignas(64) uint32_t words[kLanes];
  for (int r = 0; r < kLanes; ++r) std::memcpy(&words[r], w[r][b].qh, 4);
  return _mm512_load_si512(words);
}

// Adds 16 to byte k of lane group j's dword where bit e0 + k of the lane's qh is set;
// e0 = 4 j for j < 4 (elements 0..15), 16 + 4 (j - 4) for the high nibbles.
[[gnu::always_inline]] inline void add_fifth_bits(__m512i qh, __m512i* g) {
  const __m512i lane_offsets =
      _mm512_setr_epi32(0, 0x04040404, 0x08080808, 0x0c0c0c0c, 0, 0x04040404, 0x08080808,
                        0x0c0c0c0c, 0, 0x04040404, 0x08080808, 0x0c0c0c0c, 0, 0x04040404,
                        0x08080808, 0x0c0c0c0c);
  const __m512i sixteen = _mm512_set1_epi8(0x10);
  for (int j = 0; j < 8; ++j) {
    const int e0 = j < 4 ? 4 * j : 16 + 4 * (j - 4);
    // Every byte of a dword takes byte e0 / 8 of the same dword (vpshufb indexes the
    // 128-bit lane, hence the offsets) and tests its own bit of it.
    const __m512i spread = _mm512_shuffle_epi8(
        qh, _mm512_add_epi32(_mm512_set1_epi32((e0 / 8) * 0x01010101), lane_offsets));
    const int shift = e0 % 8;
    const __m512i bits = _mm512_set1_epi32(static_cast<int>(
        (1u << shift) | (2u << shift) << 8 | (4u << shift) << 16 | (8u << shift) << 24));
    g[j] = _mm512_mask_add_epi8(g[j], _mm512_test_epi8_mask(spread, bits), g[j], sixteen);
  }
}

// Q4_0: low nibbles are elements 0..15, high nibbles 16..31; offset 8. The high
// nibbles stay in place (16 * nibble, one AND instead of shift + AND); their dot is
// shifted back down, exactly, once per block.
struct Q4 {
  using Block = BlockQ4_0;
  static constexpr int kOffset = 8;
  static constexpr int kHighShift = 4;
  static constexpr bool kHasMin = false;
  [[gnu::always_inline]] static void pack_block(const Block* const* w, int b, PackedBlock& p) {
    const __m512i low = _mm512_set1_epi8(0x0f);
    const __m512i high = _mm512_set1_epi8(static_cast<char>(0xf0));
    __m512i t[4];
    transpose16(w, b, offsetof(Block, qs), t);
    for (int j = 0; j < 4; ++j) {
      p.g[j] = _mm512_and_si512(t[j], low);
      p.g[4 + j] = _mm512_and_si512(t[j], high);
    }
    p.d = scales16(w, b);
  }
  // Packed layout (see pack_tiles_avx512) per block: the 4 transposed dword vectors
  // of the 16 rows' nibble bytes, then their 16 half scales.
  static constexpr size_t kPackedBlockBytes = 4 * 64 + 32;
  [[gnu::always_inline]] static void load_packed(const uint8_t* pk, PackedBlock& p) {
    const __m512i low = _mm512_set1_epi8(0x0f);
    const __m512i high = _mm512_set1_epi8(static_cast<char>(0xf0));
    for (int j = 0; j < 4; ++j) {
      const __m512i t = _mm512_loadu_si512(pk + 64 * j);
      p.g[j] = _mm512_and_si512(t, low);
      p.g[4 + j] = _mm512_and_si512(t, high);
    }
    p.d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(pk + 256)));
  }
  static void pack_block_bytes(const Block* const* w, int b, uint8_t* out) {
    __m512i t[4];
    transpose16(w, b, offsetof(Block, qs), t);
    for (int j = 0; j < 4; ++j) _mm512_storeu_si512(out + 64 * j, t[j]);
    for (int r = 0; r < kLanes; ++r) std::memcpy(out + 256 + 2 * r, &w[r][b].d, 2);
  }
};

// Q8_0: 32 signed bytes, made unsigned by adding 128 (xor 0x80); offset 128.
struct Q8 {
  using Block = BlockQ8_0;
  static constexpr int kOffset = 128;
  static constexpr int kHighShift = 0;
  static constexpr bool kHasMin = false;
  [[gnu::always_inline]] static void pack_block(const Block* const* w, int b, PackedBlock& p) {
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    transpose16(w, b, offsetof(Block, qs), p.g);
    transpose16(w, b, offsetof(Block, qs) + 16, p.g + 4);
    for (int j = 0; j < 8; ++j) p.g[j] = _mm512_xor_si512(p.g[j], flip);
    p.d = scales16(w, b);
  }
  // Packed layout per block: the 8 transposed dword vectors, already made unsigned,
  // then the 16 half scales.
  static constexpr size_t kPackedBlockBytes = 8 * 64 + 32;
  [[gnu::always_inline]] static void load_packed(const uint8_t* pk, PackedBlock& p) {
    for (int j = 0; j < 8; ++j) p.g[j] = _mm512_loadu_si512(pk + 64 * j);
    p.d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(pk + 512)));
  }
  static void pack_block_bytes(const Block* const* w, int b, uint8_t* out) {
    PackedBlock p;
    pack_block(w, b, p);
    for (int j = 0; j < 8; ++j) _mm512_storeu_si512(out + 64 * j, p.g[j]);
    for (int r = 0; r < kLanes; ++r) std::memcpy(out + 512 + 2 * r, &w[r][b].d, 2);
  }
};

// Q4_1: nibbles as Q4_0 (high ones kept in place), no offset, a min.
struct Q41 {
  using Block = BlockQ4_1;
  static constexpr int kOffset = 0;
  static constexpr int kHighShift = 4;
  static constexpr bool kHasMin = true;
  [[gnu::always_inline]] static void levels(const __m512i* t, PackedBlock& p) {
    const __m512i low = _mm512_set1_epi8(0x0f);
    const __m512i high = _mm512_set1_epi8(static_cast<char>(0xf0));
    for (int j = 0; j < 4; ++j) {
      p.g[j] = _mm512_and_si512(t[j], low);
      p.g[4 + j] = _mm512_and_si512(t[j], high);
    }
  }
  [[gnu::always_inline]] static void pack_block(const Block* const* w, int b, PackedBlock& p) {
    __m512i t[4];
    transpose16(w, b, offsetof(Block, qs), t);
    levels(t, p);
    p.d = scales16(w, b);
    p.m = _mm512_cvtph_ps(raw_halves16(w, b, offsetof(Block, m)));
  }
  // Packed layout per block: the 4 transposed dword vectors of the nibble bytes, the
  // 16 half scales, the 16 half mins.
  static constexpr size_t kPackedBlockBytes = 4 * 64 + 32 + 32;
  [[gnu::always_inline]] static void load_packed(const uint8_t* pk, PackedBlock& p) {
    __m512i t[4];
    for (int j = 0; j < 4; ++j) t[j] = _mm512_loadu_si512(pk + 64 * j);
    levels(t, p);
    p.d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(pk + 256)));
    p.m = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(pk + 288)));
  }
  static void pack_block_bytes(const Block* const* w, int b, uint8_t* out) {
    __m512i t[4];
    transpose16(w, b, offsetof(Block, qs), t);
    for (int j = 0; j < 4; ++j) _mm512_storeu_si512(out + 64 * j, t[j]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 256), raw_halves16(w, b, offsetof(Block, d)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 288), raw_halves16(w, b, offsetof(Block, m)));
  }
};

// Q5_0 / Q5_1: nibbles shifted down (the fifth bit takes bit 4), levels 0..31; Q5_0
// has offset 16, Q5_1 a min.
template <typename B, int kOffsetLevels>
struct Q5 {
  using Block = B;
  static constexpr int kOffset = kOffsetLevels;
  static constexpr int kHighShift = 0;
  static constexpr bool kHasMin = kOffsetLevels == 0;
  static constexpr size_t kMinBytes = kHasMin ? 32 : 0;
  [[gnu::always_inline]] static void levels(const __m512i* t, __m512i qh, PackedBlock& p) {
    const __m512i low = _mm512_set1_epi8(0x0f);
    for (int j = 0; j < 4; ++j) {
      p.g[j] = _mm512_and_si512(t[j], low);
      p.g[4 + j] = _mm512_and_si512(_mm512_srli_epi32(t[j], 4), low);
    }
    add_fifth_bits(qh, p.g);
  }
  [[gnu::always_inline]] static void pack_block(const Block* const* w, int b, PackedBlock& p) {
    __m512i t[4];
    transpose16(w, b, offsetof(Block, qs), t);
    levels(t, fifth_bit_words16(w, b), p);
    p.d = scales16(w, b);
    if constexpr (kHasMin) p.m = _mm512_cvtph_ps(raw_halves16(w, b, offsetof(Block, m)));
  }
  // Packed layout per block: the 4 transposed dword vectors of the nibble bytes, the
  // 16 qh words, the 16 half scales, then (Q5_1) the 16 half mins.
  static constexpr size_t kPackedBlockBytes = 4 * 64 + 64 + 32 + kMinBytes;
  [[gnu::always_inline]] static void load_packed(const uint8_t* pk, PackedBlock& p) {
    __m512i t[4];
    for (int j = 0; j < 4; ++j) t[j] = _mm512_loadu_si512(pk + 64 * j);
    levels(t, _mm512_loadu_si512(pk + 256), p);
    p.d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(pk + 320)));
    if constexpr (kHasMin) {
      p.m = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(pk + 352)));
    }
  }
  static void pack_block_bytes(const Block* const* w, int b, uint8_t* out) {
    __m512i t[4];
    transpose16(w, b, offsetof(Block, qs), t);
    for (int j = 0; j < 4; ++j) _mm512_storeu_si512(out + 64 * j, t[j]);
    _mm512_storeu_si512(out + 256, fifth_bit_words16(w, b));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 320), raw_halves16(w, b, offsetof(Block, d)));
    if constexpr (kHasMin) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 352),
                          raw_halves16(w, b, offsetof(Block, m)));
    }
  }
};
using Q50 = Q5<BlockQ5_0, 16>;
using Q51 = Q5<BlockQ5_1, 0>;

// TX activation rows (xq/xd/xs/xm) against one packed chunk; acc in/out.
template <typename W, int TX>
void multiply(const PackedBlock* packed, int b0, int count, const int8_t* const* xq,
              const float* const* xd, const int32_t* const* xs, const float* const* xm,
              __m512* acc) {
  for (int bi = 0; bi < count; ++bi) {
    const PackedBlock& p = packed[bi];
    const int b = b0 + bi;
    for (int s = 0; s < TX; ++s) {
      const int8_t* x = xq[s] + b * kBlockElems;
      __m512i d0 = _mm512_set1_epi32(-W::kOffset * xs[s][b]);  // removes the weight offset
      __m512i d1 = _mm512_setzero_si512();
      for (int g = 0; g < 4; ++g) {
        d0 = _mm512_dpbusd_epi32(d0, p.g[g], _mm512_set1_epi32(load_i32(x + 4 * g)));
        d1 = _mm512_dpbusd_epi32(d1, p.g[4 + g], _mm512_set1_epi32(load_i32(x + 16 + 4 * g)));
      }
      if (W::kHighShift != 0) d1 = _mm512_srai_epi32(d1, W::kHighShift);
      const __m512 scale = _mm512_mul_ps(p.d, _mm512_set1_ps(xd[s][b]));
      acc[s] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(d0, d1)), scale, acc[s]);
      if constexpr (W::kHasMin) acc[s] = _mm512_fmadd_ps(p.m, _mm512_set1_ps(xm[s][b]), acc[s]);
    }
  }
}

template <typename W, int TX>
void run_rows(const MatmulArgs& a, const PackedBlock* packed, int b0, int count, int i, int r,
              __mmask16 lanes) {
  const int8_t* xq[TX];
  const float* xd[TX];
  const int32_t* xs[TX];
  const float* xm[TX];
  float* y[TX];
  __m512 acc[TX];
  for (int s = 0; s < TX; ++s) {
    const void* row = static_cast<const uint8_t*>(a.x) + static_cast<size_t>(i + s) * a.x_stride;
    xq[s] = q8_values(row);
    xd[s] = q8_scales(row, a.k);
    xs[s] = q8_sums(row, a.k);
    xm[s] = q8_min_sums(row, a.k);
    y[s] = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(a.y) +
                                    static_cast<size_t>(i + s) * a.y_stride) +
           r;
    acc[s] = b0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(lanes, y[s]);
  }
  multiply<W, TX>(packed, b0, count, xq, xd, xs, xm, acc);
  for (int s = 0; s < TX; ++s) _mm512_mask_storeu_ps(y[s], lanes, acc[s]);
}

// Every activation row against one packed chunk of a 16-row tile, 4 rows at a time.
template <typename W>
void run_all_rows(const MatmulArgs& a, const PackedBlock* packed, int b0, int count, int r,
                  __mmask16 lanes) {
  int i = 0;
  for (; i + 4 <= a.n; i += 4) run_rows<W, 4>(a, packed, b0, count, i, r, lanes);
  switch (a.n - i) {
    case 3: return run_rows<W, 3>(a, packed, b0, count, i, r, lanes);
    case 2: return run_rows<W, 2>(a, packed, b0, count, i, r, lanes);
    case 1: return run_rows<W, 1>(a, packed, b0, count, i, r, lanes);
    default: return;
  }
}

// Decode of packed tiles reads one sequential stream; asking for the lines
// kPrefetchAhead bytes past the block being read keeps more of the memory bandwidth
// busy (the same gain as for float rows, see matmul_avx512.cpp). 8 KiB against 4 KiB,
// TinyLlama decode on one thread: Q4_0 55-58 -> 60-62 tok/s, Q8_0 32-33 -> 32-35.
constexpr size_t kPrefetchAhead = 8192;

// One activation row against all blocks of the 16 rows, each block transposed into
// registers just before use. Same arithmetic as pack + multiply.
template <typename W>
void run_rows_direct(const MatmulArgs& a, const typename W::Block* const* w, int nb, int i, int r,
                     __mmask16 lanes) {
  const void* row = static_cast<const uint8_t*>(a.x) + static_cast<size_t>(i) * a.x_stride;
  const int8_t* xq[1] = {q8_values(row)};
  const float* xd[1] = {q8_scales(row, a.k)};
  const int32_t* xs[1] = {q8_sums(row, a.k)};
  const float* xm[1] = {q8_min_sums(row, a.k)};
  __m512 acc[1] = {_mm512_setzero_ps()};
  for (int b = 0; b < nb; ++b) {
    prefetch_next_tile(a, r, b, nb);
    PackedBlock p;
    W::pack_block(w, b, p);
    multiply<W, 1>(&p, b, 1, xq, xd, xs, xm, acc);
  }
  float* y = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(a.y) +
                                      static_cast<size_t>(i) * a.y_stride) +
             r;
  _mm512_mask_storeu_ps(y, lanes, acc[0]);
}

template <typename W>
void matmul_lanes(const MatmulArgs& a, int r0, int r1) {
  using Block = typename W::Block;
  const int nb = a.k / kBlockElems;
  PackedBlock packed[kChunkBlocks];
  for (int r = r0; r < r1; r += kLanes) {
    const int rows = r1 - r < kLanes ? r1 - r : kLanes;
    const __mmask16 lanes = static_cast<__mmask16>((1u << rows) - 1);
    // Missing rows of a short tile repeat the last row; their lanes are never stored.
    const Block* w[kLanes];
    for (int t = 0; t < kLanes; ++t) {
      const int row = t < rows ? t : rows - 1;
      w[t] = reinterpret_cast<const Block*>(static_cast<const uint8_t*>(a.w) +
                                            static_cast<size_t>(r + row) * a.w_stride);
    }
    if (a.n == 1) {  // decode: transpose each block in registers, no buffer round trip
      run_rows_direct<W>(a, w, nb, 0, r, lanes);
      continue;
    }
    for (int b0 = 0; b0 < nb; b0 += kChunkBlocks) {
      const int count = nb - b0 < kChunkBlocks ? nb - b0 : kChunkBlocks;
      for (int b = b0; b < b0 + count; ++b) {
        prefetch_next_tile(a, r, b, nb);
        W::pack_block(w, b, packed[b - b0]);
      }
      run_all_rows<W>(a, packed, b0, count, r, lanes);
    }
  }
}

// Weights repacked at load (pack_tiles_avx512): each 16-row tile is one contiguous
// run of blocks already in lane order, so decode reads each thread's rows as one
// sequential stream and skips the transpose (measured, one thread, Q4_0 from DRAM:
// 36-37 GB/s against 23-24 GB/s unpacked). Same arithmetic as matmul_lanes, so the
// results are bit-identical. a.w is the packed matrix, a.w_stride its tile bytes.
template <typename W>
void matmul_lanes_packed(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kBlockElems;
  PackedBlock packed[kChunkBlocks];
  for (int r = r0; r < r1; r += kLanes) {
    const int rows = r1 - r < kLanes ? r1 - r : kLanes;
    const __mmask16 lanes = static_cast<__mmask16>((1u << rows) - 1);
    const uint8_t* tile = static_cast<const uint8_t*>(a.w) + static_cast<size_t>(r / kLanes) * a.w_stride;
    if (a.n == 1) {
      const void* row = a.x;
      const int8_t* xq[1] = {q8_values(row)};
      const float* xd[1] = {q8_scales(row, a.k)};
      const int32_t* xs[1] = {q8_sums(row, a.k)};
      const float* xm[1] = {q8_min_sums(row, a.k)};
      __m512 acc[1] = {_mm512_setzero_ps()};
      for (int b = 0; b < nb; ++b) {
        PackedBlock p;
        prefetch_lines_l1(tile + static_cast<size_t>(b) * W::kPackedBlockBytes + kPrefetchAhead,
                          W::kPackedBlockBytes);
        W::load_packed(tile + static_cast<size_t>(b) * W::kPackedBlockBytes, p);
        multiply<W, 1>(&p, b, 1, xq, xd, xs, xm, acc);
      }
      _mm512_mask_storeu_ps(a.y + r, lanes, acc[0]);
      continue;
    }
    for (int b0 = 0; b0 < nb; b0 += kChunkBlocks) {
      const int count = nb - b0 < kChunkBlocks ? nb - b0 : kChunkBlocks;
      for (int b = b0; b < b0 + count; ++b)
        W::load_packed(tile + static_cast<size_t>(b) * W::kPackedBlockBytes, packed[b - b0]);
      run_all_rows<W>(a, packed, b0, count, r, lanes);
    }
  }
}

template <typename W>
void pack_tiles(const void* w, size_t w_stride, int rows, int k, int r0, int r1, void* out) {
  using Block = typename W::Block;
  const int nb = k / kBlockElems;
  const size_t tile_bytes = static_cast<size_t>(nb) * W::kPackedBlockBytes;
  for (int r = r0; r < r1; r += kLanes) {
    const Block* wr[kLanes];
    for (int t = 0; t < kLanes; ++t) {
      const int row = r + t < rows ? r + t : rows - 1;  // a short last tile repeats its last row
      wr[t] = reinterpret_cast<const Block*>(static_cast<const uint8_t*>(w) +
                                             static_cast<size_t>(row) * w_stride);
    }
    uint8_t* tile = static_cast<uint8_t*>(out) + static_cast<size_t>(r / kLanes) * tile_bytes;
    for (int b = 0; b < nb; ++b) W::pack_block_bytes(wr, b, tile + static_cast<size_t>(b) * W::kPackedBlockBytes);
  }
}

size_t packed_tile_bytes(GgmlType type, int k) {
  switch (type) {
    case GgmlType::kQ4_0: return static_cast<size_t>(k / kBlockElems) * Q4::kPackedBlockBytes;
    case GgmlType::kQ8_0: return static_cast<size_t>(k / kBlockElems) * Q8::kPackedBlockBytes;
    case GgmlType::kQ4_1: return static_cast<size_t>(k / kBlockElems) * Q41::kPackedBlockBytes;
    case GgmlType::kQ5_0: return static_cast<size_t>(k / kBlockElems) * Q50::kPackedBlockBytes;
    case GgmlType::kQ5_1: return static_cast<size_t>(k / kBlockElems) * Q51::kPackedBlockBytes;
    default: return kquant_packed_tile_bytes_avx512(type, k);
  }
}

void pack_tiles_any(GgmlType type, const void* w, size_t w_stride, int rows, int k, int r0, int r1,
                    void* out) {
  if (type == GgmlType::kQ4_0) pack_tiles<Q4>(w, w_stride, rows, k, r0, r1, out);
  if (type == GgmlType::kQ8_0) pack_tiles<Q8>(w, w_stride, rows, k, r0, r1, out);
  if (type == GgmlType::kQ4_1) pack_tiles<Q41>(w, w_stride, rows, k, r0, r1, out);
  if (type == GgmlType::kQ5_0) pack_tiles<Q50>(w, w_stride, rows, k, r0, r1, out);
  if (type == GgmlType::kQ5_1) pack_tiles<Q51>(w, w_stride, rows, k, r0, r1, out);
  kquant_pack_tiles_avx512(type, w, w_stride, rows, k, r0, r1, out);
}

MatmulFn packed_matmul(GgmlType type) {
  switch (type) {
    case GgmlType::kQ4_0: return matmul_lanes_packed<Q4>;
    case GgmlType::kQ8_0: return matmul_lanes_packed<Q8>;
    case GgmlType::kQ4_1: return matmul_lanes_packed<Q41>;
    case GgmlType::kQ5_0: return matmul_lanes_packed<Q50>;
    case GgmlType::kQ5_1: return matmul_lanes_packed<Q51>;
    default: return kquant_packed_matmul_avx512(type);
  }
}

}  // namespace

void matmul_q4_0_avx512(const MatmulArgs& a, int r0, int r1) { matmul_lanes<Q4>(a, r0, r1); }
void matmul_q8_0_avx512(const MatmulArgs& a, int r0, int r1) { matmul_lanes<Q8>(a, r0, r1); }
void matmul_q4_1_avx512(const MatmulArgs& a, int r0, int r1) { matmul_lanes<Q41>(a, r0, r1); }
void matmul_q5_0_avx512(const MatmulArgs& a, int r0, int r1) { matmul_lanes<Q50>(a, r0, r1); }
void matmul_q5_1_avx512(const MatmulArgs& a, int r0, int r1) { matmul_lanes<Q51>(a, r0, r1); }

void fill_packed_avx512(Kernels& t) {
  t.packed_tile_bytes = packed_tile_bytes;
  t.pack_tiles = pack_tiles_any;
  t.packed_matmul = packed_matmul;
}

}  // namespace infera::engine::kernels
