// AVX-512 VNNI Q4_0 matrix product with one weight row per lane.
//
// 16 weight rows are transposed on the fly, one block-chunk at a time, into a stack
// buffer in which lane r of each vector holds row r: for every block, the nibbles of
// elements 4j..4j+3 (and 16+4j..16+4j+3) of the 16 rows as unsigned bytes, plus the
// 16 scales. Each activation row then needs only, per block, eight vpdpbusd against
// broadcast 4-byte groups of its Q8 values, one int->float conversion and one FMA for
// all 16 rows, and no horizontal sums: lane r ends as y(i, r). The transpose is paid
// once per 16 rows and chunk, shared by every activation row (prefill), and costs
// about what the unpacking of a block-interleaved kernel does for one row (decode).
//
// Arithmetic per (activation row, weight row) is fixed whatever n, the row range or
// the tile: idot_b = dot(nibbles, x) - 8 * sum(x) exactly in int32, then
// acc = fma(float(idot_b), d_w * d_x, acc) over blocks in order. Chunks carry acc
// through y (a float store and reload is exact).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <cstring>

#include "engine/kernels/tables.h"

namespace infera::engine::kernels {
namespace {

constexpr int kLanes = 16;         // weight rows per tile
constexpr int kChunkBlocks = 64;   // blocks transposed at a time (36 KiB of stack)

struct alignas(64) PackedBlock {
  __m512i lo[4];  // lane r: nibbles of elements 4j..4j+3 of row r, j = 0..3
  __m512i hi[4];  // lane r: elements 16+4j..16+4j+3
  __m512 d;       // lane r: row r's scale
};

// Transposes blocks [b0, b0 + count) of the 16 rows w[0..15] into out.
void pack(const BlockQ4_0* const* w, int b0, int count, PackedBlock* out) {
  const __m512i mask = _mm512_set1_epi8(0x0f);
  for (int bi = 0; bi < count; ++bi) {
    const int b = b0 + bi;
    __m512i a[4];  // a[q], 128-bit lane L: the 16 nibble bytes of row 4L + q
    for (int q = 0; q < 4; ++q) {
      __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[q][b].qs)));
      v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[q + 4][b].qs)), 1);
      v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[q + 8][b].qs)), 2);
      a[q] = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[q + 12][b].qs)), 3);
    }
    // 4x4 transpose of dwords inside each 128-bit lane: lane r of t[j] = dword j of row r.
    const __m512i u0 = _mm512_unpacklo_epi32(a[0], a[1]);
    const __m512i u1 = _mm512_unpackhi_epi32(a[0], a[1]);
    const __m512i u2 = _mm512_unpacklo_epi32(a[2], a[3]);
    const __m512i u3 = _mm512_unpackhi_epi32(a[2], a[3]);
    const __m512i t[4] = {_mm512_unpacklo_epi64(u0, u2), _mm512_unpackhi_epi64(u0, u2),
                          _mm512_unpacklo_epi64(u1, u3), _mm512_unpackhi_epi64(u1, u3)};
    PackedBlock& p = out[bi];
    for (int j = 0; j < 4; ++j) {
      p.lo[j] = _mm512_and_si512(t[j], mask);
      p.hi[j] = _mm512_and_si512(_mm512_srli_epi16(t[j], 4), mask);
    }
    // The 16 scales, packed 4 to a 64-bit integer register (integer ports are idle
    // here; a hardware gather costs more than the whole transpose on some cores).
    uint64_t d4[4];
    for (int g = 0; g < 4; ++g) {
      d4[g] = static_cast<uint64_t>(w[4 * g][b].d) | static_cast<uint64_t>(w[4 * g + 1][b].d) << 16 |
              static_cast<uint64_t>(w[4 * g + 2][b].d) << 32 | static_cast<uint64_t>(w[4 * g + 3][b].d) << 48;
    }
    const __m256i d16 = _mm256_setr_epi64x(static_cast<long long>(d4[0]), static_cast<long long>(d4[1]),
                                           static_cast<long long>(d4[2]), static_cast<long long>(d4[3]));
    p.d = _mm512_cvtph_ps(d16);
  }
}

int32_t load_i32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// TX activation rows (xq/xd/xs) against one packed chunk; acc in/out.
template <int TX>
void multiply(const PackedBlock* packed, int b0, int count, const int8_t* const* xq, const float* const* xd,
              const int32_t* const* xs, __m512* acc) {
  for (int bi = 0; bi < count; ++bi) {
    const PackedBlock& p = packed[bi];
    const int b = b0 + bi;
    for (int s = 0; s < TX; ++s) {
      const int8_t* x = xq[s] + b * kBlockElems;
      __m512i d0 = _mm512_set1_epi32(-8 * xs[s][b]);  // the -8 offset of every nibble
      __m512i d1 = _mm512_setzero_si512();
      d0 = _mm512_dpbusd_epi32(d0, p.lo[0], _mm512_set1_epi32(load_i32(x + 0)));
      d1 = _mm512_dpbusd_epi32(d1, p.lo[1], _mm512_set1_epi32(load_i32(x + 4)));
      d0 = _mm512_dpbusd_epi32(d0, p.lo[2], _mm512_set1_epi32(load_i32(x + 8)));
      d1 = _mm512_dpbusd_epi32(d1, p.lo[3], _mm512_set1_epi32(load_i32(x + 12)));
      d0 = _mm512_dpbusd_epi32(d0, p.hi[0], _mm512_set1_epi32(load_i32(x + 16)));
      d1 = _mm512_dpbusd_epi32(d1, p.hi[1], _mm512_set1_epi32(load_i32(x + 20)));
      d0 = _mm512_dpbusd_epi32(d0, p.hi[2], _mm512_set1_epi32(load_i32(x + 24)));
      d1 = _mm512_dpbusd_epi32(d1, p.hi[3], _mm512_set1_epi32(load_i32(x + 28)));
      const __m512 scale = _mm512_mul_ps(p.d, _mm512_set1_ps(xd[s][b]));
      acc[s] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(d0, d1)), scale, acc[s]);
    }
  }
}

template <int TX>
void run_rows(const MatmulArgs& a, const PackedBlock* packed, int b0, int count, int i, int r, __mmask16 lanes) {
  const int8_t* xq[TX];
  const float* xd[TX];
  const int32_t* xs[TX];
  float* y[TX];
  __m512 acc[TX];
  for (int s = 0; s < TX; ++s) {
    const void* row = static_cast<const uint8_t*>(a.x) + static_cast<size_t>(i + s) * a.x_stride;
    xq[s] = q8_values(row);
    xd[s] = q8_scales(row, a.k);
    xs[s] = q8_sums(row, a.k);
    y[s] = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(a.y) + static_cast<size_t>(i + s) * a.y_stride) + r;
    acc[s] = b0 == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(lanes, y[s]);
  }
  multiply<TX>(packed, b0, count, xq, xd, xs, acc);
  for (int s = 0; s < TX; ++s) _mm512_mask_storeu_ps(y[s], lanes, acc[s]);
}

// One activation row against all blocks of the 16 rows, each block transposed into
// registers just before use. Same arithmetic as pack + multiply.
// Hints the block-b part of the next tile's 16 rows into L2. Weight rows are short
// (1152 bytes for k = 2048) and a tile reads 16 of them at once, too many short
// streams for the hardware prefetchers. Measured decode from DRAM, one thread: 6 GB/s
// without, 9 GB/s prefetching into L1 (too many outstanding misses), 21 GB/s into L2.
// Prefetches never fault, so rows past the matrix are harmless.
void prefetch_next_tile(const MatmulArgs& a, int r, int b) {
  const size_t offset = static_cast<size_t>(b) * sizeof(BlockQ4_0);
  if (offset % 64 >= sizeof(BlockQ4_0)) return;  // this block starts no new cache line
  const char* next = static_cast<const char*>(a.w) + static_cast<size_t>(r + kLanes) * a.w_stride + offset;
  for (int t = 0; t < kLanes; ++t) _mm_prefetch(next + static_cast<size_t>(t) * a.w_stride, _MM_HINT_T1);
}

void run_rows_direct(const MatmulArgs& a, const BlockQ4_0* const* w, int nb, int i, int r, __mmask16 lanes) {
  const void* row = static_cast<const uint8_t*>(a.x) + static_cast<size_t>(i) * a.x_stride;
  const int8_t* xq[1] = {q8_values(row)};
  const float* xd[1] = {q8_scales(row, a.k)};
  const int32_t* xs[1] = {q8_sums(row, a.k)};
  __m512 acc[1] = {_mm512_setzero_ps()};
  for (int b = 0; b < nb; ++b) {
    prefetch_next_tile(a, r, b);
    PackedBlock p;
    pack(w, b, 1, &p);
    multiply<1>(&p, b, 1, xq, xd, xs, acc);
  }
  float* y = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(a.y) + static_cast<size_t>(i) * a.y_stride) + r;
  _mm512_mask_storeu_ps(y, lanes, acc[0]);
}

}  // namespace

void matmul_q4_0_avx512(const MatmulArgs& a, int r0, int r1) {
  const int nb = a.k / kBlockElems;
  PackedBlock packed[kChunkBlocks];
  for (int r = r0; r < r1; r += kLanes) {
    const int rows = r1 - r < kLanes ? r1 - r : kLanes;
    const __mmask16 lanes = static_cast<__mmask16>((1u << rows) - 1);
    // Missing rows of a short tile repeat the last row; their lanes are never stored.
    const BlockQ4_0* w[kLanes];
    for (int t = 0; t < kLanes; ++t) {
      const int row = t < rows ? t : rows - 1;
      w[t] = reinterpret_cast<const BlockQ4_0*>(static_cast<const uint8_t*>(a.w) +
                                                static_cast<size_t>(r + row) * a.w_stride);
    }
    if (a.n == 1) {  // decode: transpose each block in registers, no buffer round trip
      run_rows_direct(a, w, nb, 0, r, lanes);
      continue;
    }
    for (int b0 = 0; b0 < nb; b0 += kChunkBlocks) {
      const int count = nb - b0 < kChunkBlocks ? nb - b0 : kChunkBlocks;
      for (int b = b0; b < b0 + count; ++b) prefetch_next_tile(a, r, b);
      pack(w, b0, count, packed);
      int i = 0;
      for (; i + 4 <= a.n; i += 4) run_rows<4>(a, packed, b0, count, i, r, lanes);
      switch (a.n - i) {
        case 3: run_rows<3>(a, packed, b0, count, i, r, lanes); break;
        case 2: run_rows<2>(a, packed, b0, count, i, r, lanes); break;
        case 1: run_rows<1>(a, packed, b0, count, i, r, lanes); break;
        default: break;
      }
    }
  }
}

}  // namespace infera::engine::kernels
