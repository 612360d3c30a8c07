// Small helpers shared by the AVX2 kernel files (and the AVX-512 ones, which are
// compiled with the AVX2 flags too). Include only from files compiled with -mavx2.
#pragma once

#include <immintrin.h>

namespace infera::engine::kernels::avx2 {

// Sum of the 8 lanes: halves, then pairs, then the last two (a fixed order, so every
// kernel using it sums the same way).
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

}  // namespace infera::engine::kernels::avx2
