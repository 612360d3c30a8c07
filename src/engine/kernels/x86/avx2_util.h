// Small helpers shared by the AVX2 kernel files (and the AVX-512 ones, which are
// compiled with the AVX2 flags too). Include only from files compiled with -mavx2.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "engine/kernels/kernels.h"

namespace infera::engine::kernels::avx2 {

// Sum of the 8 lanes: halves, then pairs, then the last two (a fixed order, so every
// kernel using it sums the same way).
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Decode reads a few short weight rows at once, too many short streams for the
// hardware prefetchers: each step hints into L2 the cache lines that start within
// bytes [offset, offset + span) of the next tile's `count` rows (each line once over
// a row). Into L2, not L1: that many outstanding L1 misses stall. Prefetches never
// fault, so rows past the matrix are harmless.
inline void prefetch_next_rows(const MatmulArgs& a, int r_next, int count, size_t offset,
                               size_t span) {
  const uintptr_t base =
      reinterpret_cast<uintptr_t>(a.w) + static_cast<size_t>(r_next) * a.w_stride;
  for (int t = 0; t < count; ++t) {
    const uintptr_t lo = base + static_cast<size_t>(t) * a.w_stride + offset;
    for (uintptr_t line = (lo + 63) & ~uintptr_t{63}; line < lo + span; line += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(line), _MM_HINT_T1);
    }
  }
}

}  // namespace infera::engine::kernels::avx2
