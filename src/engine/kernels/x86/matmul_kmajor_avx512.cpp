// AVX-512 matmul_f16_kmajor and matmul_f32_kmajor: weights in k-major tiles of 16
// rows (kernels.h).
// Compiled with the avx512 flags (CMakeLists.txt, by file name).
//
// A block of up to 8 activation rows x 3 weight tiles (48 outputs) keeps 24
// accumulators, one per (activation row, tile), each lane one output: per j it
// loads (F16: and converts) 3 x 16 weights and multiply-adds them with 8 broadcast
// activations.
// No horizontal sums; each lane is the one FMA chain over j the contract fixes.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <array>
#include <utility>

#include "engine/kernels/tables.h"

namespace infera::engine::kernels {
namespace {

constexpr int kTile = kMatmulRowMultiple;  // 16 rows, one zmm of outputs
constexpr int kMaxRowsX = 8;
constexpr int kMaxTiles = 3;

struct F16W {
  static constexpr size_t kColumnBytes = 32;
  static __m512 load(const uint8_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
};
struct F32W {
  static constexpr size_t kColumnBytes = 64;
  static __m512 load(const uint8_t* p) { return _mm512_loadu_ps(p); }
};

// Activation rows [i, i + TX) against tiles [t, t + TT); outputs past `rows_end`
// (a short last tile, or the caller's range end) are not stored.
template <typename W, int TX, int TT>
void block(const MatmulArgs& a, int i, int t, int rows_end) {
  const uint8_t* w[TT];
  for (int u = 0; u < TT; ++u) w[u] = row_at(a.w, a.w_stride, t + u);
  const float* x[TX];
  for (int s = 0; s < TX; ++s) x[s] = reinterpret_cast<const float*>(row_at(a.x, a.x_stride, i + s));
  __m512 acc[TX][TT];
  for (int s = 0; s < TX; ++s)
    for (int u = 0; u < TT; ++u) acc[s][u] = _mm512_setzero_ps();
  for (int j = 0; j < a.k; ++j) {
    __m512 wv[TT];
    for (int u = 0; u < TT; ++u) wv[u] = W::load(w[u] + static_cast<size_t>(j) * W::kColumnBytes);
    for (int s = 0; s < TX; ++s) {
      const __m512 xb = _mm512_set1_ps(x[s][j]);
      for (int u = 0; u < TT; ++u) acc[s][u] = _mm512_fmadd_ps(wv[u], xb, acc[s][u]);
    }
  }
  for (int u = 0; u < TT; ++u) {
    const int r = (t + u) * kTile;
    const int valid = rows_end - r;
    if (valid <= 0) break;
    const __mmask16 m = valid >= kTile ? static_cast<__mmask16>(0xffff)
                                       : static_cast<__mmask16>((1u << valid) - 1);
    for (int s = 0; s < TX; ++s) _mm512_mask_storeu_ps(y_at(a, i + s) + r, m, acc[s][u]);
  }
}

using BlockFn = void (*)(const MatmulArgs&, int, int, int);

template <typename W, int TT, int... TX>
constexpr std::array<BlockFn, kMaxRowsX + 1> rows_table(std::integer_sequence<int, TX...>) {
  return {nullptr, &block<W, TX + 1, TT>...};
}

template <typename W, int... TT>
constexpr std::array<std::array<BlockFn, kMaxRowsX + 1>, kMaxTiles + 1> blocks_table(
    std::integer_sequence<int, TT...>) {
  return {std::array<BlockFn, kMaxRowsX + 1>{},
          rows_table<W, TT + 1>(std::make_integer_sequence<int, kMaxRowsX>{})...};
}

template <typename W>
constexpr auto kBlocks = blocks_table<W>(std::make_integer_sequence<int, kMaxTiles>{});

// Activation rows per chunk so that a chunk stays in L2 while weight tiles sweep it.
int x_chunk_rows(size_t x_stride) {
  const size_t rows = (size_t{256} << 10) / (x_stride == 0 ? 1 : x_stride);
  return static_cast<int>(rows < kMaxRowsX ? kMaxRowsX : rows / kMaxRowsX * kMaxRowsX);
}

template <typename W>
void matmul_kmajor(const MatmulArgs& a, int r0, int r1) {
  const int t0 = r0 / kTile, t1 = (r1 + kTile - 1) / kTile;
  const int chunk = x_chunk_rows(a.x_stride);
  for (int c0 = 0; c0 < a.n; c0 += chunk) {
    const int c1 = c0 + chunk < a.n ? c0 + chunk : a.n;
    for (int t = t0; t < t1; t += kMaxTiles) {
      const int tiles = t1 - t < kMaxTiles ? t1 - t : kMaxTiles;
      for (int i = c0; i < c1; i += kMaxRowsX) {
        const int rows_x = c1 - i < kMaxRowsX ? c1 - i : kMaxRowsX;
        kBlocks<W>[static_cast<size_t>(tiles)][static_cast<size_t>(rows_x)](a, i, t, r1);
      }
    }
  }
}

}  // namespace

void fill_avx512_kmajor(Kernels& t) {
  t.matmul_f16_kmajor = matmul_kmajor<F16W>;
  t.matmul_f32_kmajor = matmul_kmajor<F32W>;
}

}  // namespace infera::engine::kernels
