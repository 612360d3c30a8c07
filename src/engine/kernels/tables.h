// Internal to kernels/: how each implementation fills the dispatch table.
//
// dispatch.cpp builds every table once: it starts from the scalar entries and lets
// each ISA overwrite the entries it implements, so an ISA file need only provide
// what it speeds up.
#pragma once

#include "engine/kernels/kernels.h"

namespace infera::engine::kernels {

// Row i of a matrix whose rows are `stride` bytes apart.
inline const uint8_t* row_at(const void* base, size_t stride, int i) {
  return static_cast<const uint8_t*>(base) + static_cast<size_t>(i) * stride;
}
// The outputs of activation row i (MatmulArgs::y, y_stride).
inline float* y_at(const MatmulArgs& a, int i) {
  return reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(a.y) +
                                  static_cast<size_t>(i) * a.y_stride);
}
// y(i, r) = dot(weight row r as const Block*, i) for the weight rows [r0, r1) and every
// activation row: the driver of the kernels that compute one pair at a time.
template <typename Block, typename Dot>
void each_pair(const MatmulArgs& a, int r0, int r1, Dot dot) {
  for (int r = r0; r < r1; ++r) {
    const auto* w = reinterpret_cast<const Block*>(row_at(a.w, a.w_stride, r));
    for (int i = 0; i < a.n; ++i) y_at(a, i)[r] = dot(w, i);
  }
}

void fill_scalar_matmul(Kernels& table);  // scalar/matmul_scalar.cpp
void fill_scalar_ops(Kernels& table);     // scalar/ops_scalar.cpp
// scalar/matmul_kquants_scalar.cpp (K-quant matmuls, quantize_q8k)
void fill_scalar_kquants(Kernels& table);
// scalar/ggml_order_scalar.cpp: the scalar table's ggml_order entries (the reference
// of llama.cpp's x86 summation orders), and pieces of it the tests use.
void fill_scalar_ggml_order(Kernels& table);
// ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)): ggml's sum of 8 float lanes.
float ggml_lane_sum(const float* acc);
// One lane of ggml's vector expf: the AVX-512 variant (vscalefps) or the AVX2 one.
float ggml_expf_lane(float x, bool avx512_variant);
// ggml's vector SiLU times b, `width` lanes at a time (16 for its AVX-512 loop, 8 for
// AVX2), the tail by libm's expf.
// The scalar forms llama.cpp's AVX2 build uses where its AVX-512 build differs (the
// scalar table has the latter): Q2_K's vec_dot and F16 with 8 lanes.
void matmul_q2_k_ggml_lanes(const MatmulArgs& a, int r0, int r1);
void matmul_f16_ggml8(const MatmulArgs& a, int r0, int r1);
// ggml_vec_dot_f16's order for its AVX-512 (16 lanes) and AVX2 (8 lanes) builds, as
// Kernels::dot_f16_rows.
void dot_f16_rows_ggml16(const float* q, const uint16_t* k, size_t k_stride, int n_rows, int d,
                         float scale, float* out);
void dot_f16_rows_ggml8(const float* q, const uint16_t* k, size_t k_stride, int n_rows, int d,
                        float scale, float* out);
void silu_mul_ggml_lanes(const float* a, const float* b, float* y, int n, int width,
                         bool avx512_variant);
#if defined(__x86_64__) || defined(_M_X64)
void fill_avx2(Kernels& table);               // x86/matmul_avx2.cpp, calls fill_avx2_ops
void fill_avx2_ops(Kernels& table);           // x86/ops_avx2.cpp
void fill_avx2_kquants(Kernels& table);       // x86/matmul_kquants_avx2.cpp
void fill_avx2_q4_1_q5(Kernels& table);       // x86/matmul_q4_1_q5_avx2.cpp
void fill_avx2_ggml_order(Kernels& table);    // x86/ggml_order_avx2.cpp
void fill_avx512_kmajor(Kernels& table);      // x86/matmul_kmajor_avx512.cpp
MatmulFn matmul_q2_k_ggml_repacked_avx2();    // its Q2_K in the AVX-512 build's form
void fill_avx512_ggml_order(Kernels& table);  // x86/ggml_order_avx512.cpp
void matmul_q4_0_avx2(const MatmulArgs& args, int r0, int r1);  // x86/matmul_lanes_avx2.cpp
void fill_avx512(Kernels& table);                               // x86/matmul_avx512.cpp
void fill_avx512_kquants(Kernels& table);                       // x86/matmul_kquants_avx512.cpp
// The K-quants' packed layouts (x86/matmul_kquants_avx512.cpp), for the AVX-512
// table's packed_tile_bytes / pack_tiles / packed_matmul (0 / nullptr: not a K-quant).
size_t kquant_packed_tile_bytes_avx512(GgmlType type, int k);
void kquant_pack_tiles_avx512(GgmlType type, const void* w, size_t w_stride, int rows, int k,
                              int r0, int r1, void* out);
MatmulFn kquant_packed_matmul_avx512(GgmlType type);
// x86/matmul_lanes_avx512.cpp
void matmul_q4_0_avx512(const MatmulArgs& args, int r0, int r1);
void matmul_q8_0_avx512(const MatmulArgs& args, int r0, int r1);
void matmul_q4_1_avx512(const MatmulArgs& args, int r0, int r1);
void matmul_q5_0_avx512(const MatmulArgs& args, int r0, int r1);
void matmul_q5_1_avx512(const MatmulArgs& args, int r0, int r1);
void fill_packed_avx512(Kernels& table);  // Q4_0/Q8_0 weights repacked in lane order
#endif
#if defined(__aarch64__)
void fill_neon(Kernels& table);      // arm/matmul_neon.cpp, calls fill_neon_ops
void fill_neon_ops(Kernels& table);  // arm/ops_neon.cpp
void fill_neondot(Kernels& table);   // arm/matmul_neondot.cpp (dot-product extension)
#endif

// Row (de)quantization of the types with 256-element super-blocks
// (kquant_rows.cpp). REQUIRES: n % 256 == 0; `type` one of Q2_K .. Q6_K.
void dequantize_kquant_row(GgmlType type, const void* row, float* out, int n);
void quantize_kquant_row(GgmlType type, const float* x, void* out, int n);

// Q8 activation row parts (see q8_row_bytes): k int8 values, then k/32 float scales,
// then k/32 int32 block sums, then k/32 float min sums.
inline const int8_t* q8_values(const void* row) { return static_cast<const int8_t*>(row); }
inline const float* q8_scales(const void* row, int k) {
  return reinterpret_cast<const float*>(static_cast<const uint8_t*>(row) + k);
}
inline const int32_t* q8_sums(const void* row, int k) {
  return reinterpret_cast<const int32_t*>(static_cast<const uint8_t*>(row) + k + 4 * (k / 32));
}
inline const float* q8_min_sums(const void* row, int k) {
  return reinterpret_cast<const float*>(static_cast<const uint8_t*>(row) + k + 8 * (k / 32));
}

// Q8K activation row parts (see q8k_row_bytes): k int8 values, then k/256 float
// scales, then k/16 int16 sums of 16 values.
inline const int8_t* q8k_values(const void* row) { return static_cast<const int8_t*>(row); }
inline const float* q8k_scales(const void* row, int k) {
  return reinterpret_cast<const float*>(static_cast<const uint8_t*>(row) + k);
}
inline const int16_t* q8k_sums(const void* row, int k) {
  return reinterpret_cast<const int16_t*>(static_cast<const uint8_t*>(row) + k + 4 * (k / 256));
}

}  // namespace infera::engine::kernels
