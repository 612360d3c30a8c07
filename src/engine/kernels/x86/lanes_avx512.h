// Pieces shared by the AVX-512 kernels that put one weight row per vector lane
// (matmul_lanes_avx512.cpp: Q4_0, Q8_0, Q4_1, Q5_0, Q5_1; matmul_kquants_avx512.cpp:
// the K-quants). Include only from files compiled with the avx512 flags.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "engine/kernels/kernels.h"

namespace infera::engine::kernels::lanes512 {

inline constexpr int kLanes = 16;  // weight rows per tile

// Lane r of t[j] = dword j of the 16 bytes at byte `offset` of row r's block b.
// The helpers here must inline into the block loops: called, they pass vectors
// through memory (measured: GCC left them out of line).
template <typename Block>
[[gnu::always_inline]] inline void transpose16(const Block* const* w, int b, size_t offset,
                                               __m512i* t) {
  auto piece = [&](int row) {
    return _mm_loadu_si128(
        reinterpret_cast<const __m128i*>(reinterpret_cast<const uint8_t*>(&w[row][b]) + offset));
  };
  __m512i a[4];  // a[q], 128-bit lane L: the piece of row 4L + q
  for (int q = 0; q < 4; ++q) {
    __m512i v = _mm512_castsi128_si512(piece(q));
    v = _mm512_inserti32x4(v, piece(q + 4), 1);
    v = _mm512_inserti32x4(v, piece(q + 8), 2);
    a[q] = _mm512_inserti32x4(v, piece(q + 12), 3);
  }
  // 4x4 transpose of dwords inside each 128-bit lane.
  const __m512i u0 = _mm512_unpacklo_epi32(a[0], a[1]);
  const __m512i u1 = _mm512_unpackhi_epi32(a[0], a[1]);
  const __m512i u2 = _mm512_unpacklo_epi32(a[2], a[3]);
  const __m512i u3 = _mm512_unpackhi_epi32(a[2], a[3]);
  t[0] = _mm512_unpacklo_epi64(u0, u2);
  t[1] = _mm512_unpackhi_epi64(u0, u2);
  t[2] = _mm512_unpacklo_epi64(u1, u3);
  t[3] = _mm512_unpackhi_epi64(u1, u3);
}

// The 16 rows' halves at byte `offset` of block b, packed 4 to a 64-bit integer
// register (integer ports are idle here; a hardware gather costs more than the whole
// transpose on some cores).
template <typename Block>
[[gnu::always_inline]] inline __m256i raw_halves16(const Block* const* w, int b, size_t offset) {
  uint64_t h4[4];
  for (int q = 0; q < 4; ++q) {
    uint64_t v = 0;
    for (int i = 0; i < 4; ++i) {
      uint16_t h;
      std::memcpy(&h, reinterpret_cast<const uint8_t*>(&w[4 * q + i][b]) + offset, 2);
      v |= static_cast<uint64_t>(h) << (16 * i);
    }
    h4[q] = v;
  }
  return _mm256_setr_epi64x(static_cast<long long>(h4[0]), static_cast<long long>(h4[1]),
                            static_cast<long long>(h4[2]), static_cast<long long>(h4[3]));
}

inline int32_t load_i32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Hints the next tile's 16 rows into L2 while block b (of nb) of this tile is
// computed: the next tile is one contiguous range (16 rows of w_stride bytes),
// prefetched front to back, 1/nb of it per block, so DRAM sees one sequential stream
// instead of 16 short ones (which defeat the hardware prefetchers: measured decode
// from DRAM, one thread, Q4_0: 6 GB/s without software prefetch, 9 GB/s prefetching
// into L1, 21 GB/s into L2). Prefetches never fault, so rows past the matrix are
// harmless.
inline void prefetch_next_tile(const MatmulArgs& a, int r, int b, int nb) {
  const size_t span = static_cast<size_t>(kLanes) * a.w_stride;
  const size_t lo = span * static_cast<size_t>(b) / static_cast<size_t>(nb);
  const size_t hi = span * static_cast<size_t>(b + 1) / static_cast<size_t>(nb);
  const uintptr_t base =
      reinterpret_cast<uintptr_t>(a.w) + static_cast<size_t>(r + kLanes) * a.w_stride;
  for (uintptr_t line = (base + lo + 63) & ~uintptr_t{63}; line < base + hi; line += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(line), _MM_HINT_T1);
  }
}

// Hints the cache lines of [p, p + bytes) into L1: packed tiles are one sequential
// stream, and asking for the part a few KiB ahead of the one being read keeps more of
// the memory bandwidth busy than the hardware prefetchers alone (measured per kernel
// file). Prefetches never fault: past the matrix is harmless.
inline void prefetch_lines_l1(const uint8_t* p, size_t bytes) {
  const uintptr_t lo = reinterpret_cast<uintptr_t>(p);
  for (uintptr_t line = lo & ~uintptr_t{63}; line < lo + bytes; line += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(line), _MM_HINT_T0);
  }
}

}  // namespace infera::engine::kernels::lanes512
