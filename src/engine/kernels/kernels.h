// The engine's compute kernels behind one dispatch table.
//
// A table of plain function pointers is chosen once at start-up from CPU detection
// (scalar reference, x86 AVX2+FMA+F16C, x86 AVX-512 with VNNI/BF16, ARM NEON, ARM NEON
// with the dot-product extension).
// Model code calls only this table, never an intrinsic. Every SIMD kernel has a
// scalar reference it is tested against (tests/engine/kernels_test.cpp).
//
// Conventions: plain pointers, element counts and row strides in BYTES. Kernels never
// allocate; scratch buffers are the caller's. Every kernel may be called from any
// thread at once on disjoint outputs. Each (activation row, weight row) dot product
// is computed the same way whatever n and the row range, so a sequence's results do
// not depend on what else is in the batch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/ggml_types.h"
#include "engine/kernels/block_types.h"

namespace infera::engine::kernels {

enum class Level { kScalar, kAvx2, kAvx512, kNeon, kNeonDot };

// Y[n x rows] = X[n x k] * W[rows x k]^T, for weight rows [r0, r1) only:
//   y(i, r) = sum_j W(r, j) * X(i, j),  i in [0, n), r in [r0, r1).
// W row r starts at w + r * w_stride, in its GGUF layout (any type matmul_for has).
// X row i starts at x + i * x_stride, encoded as matmul_input(type) says: f32, a Q8
// row made by `quantize_q8` (x_stride >= q8_row_bytes(k)) or a Q8K row made by
// `quantize_q8k` (x_stride >= q8k_row_bytes(k)).
// y(i, r) is stored at (float*)((char*)y + i * y_stride) + r.
// REQUIRES: k a multiple of the type's block (32 for Q8 inputs, 256 for Q8K; any
// k > 0 for float types). Strides and pointers may be unaligned, except activation
// rows (4-byte aligned). Callers split
// [0, rows) into ranges across threads; any range is correct, ranges that start at
// multiples of kMatmulRowMultiple are fastest (some kernels work on 16 rows at once).
// Cost: decode (n = 1) streams W once and is memory bound (kernels prefetch the
// rows that follow in the same call, so give each thread long ranges, e.g. one per
// thread or several hundred rows); larger n reuses each weight load across activation
// rows, so prefill should pass all its rows in one call.
struct MatmulArgs {
  const void* w;
  size_t w_stride;
  const void* x;
  size_t x_stride;
  float* y;
  size_t y_stride;
  int n;  // activation rows
  int k;  // inner dimension (elements)
};
using MatmulFn = void (*)(const MatmulArgs& args, int r0, int r1);
inline constexpr int kMatmulRowMultiple = 16;

// How a weight type's matmul takes its activation rows X.
enum class MatmulInput {
  kF32,  // f32 (F32, F16, BF16 weights)
  kQ8,   // Q8 rows from quantize_q8 (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1)
  kQ8K,  // Q8K rows from quantize_q8k (the K-quants Q2_K .. Q6_K)
};

// Q8 activation row for k elements (k % 32 == 0): k int8 values, then k/32 float
// scales, then k/32 int32 block sums (value = q * scale), then k/32 float "min sums"
// (for the types with a min: ggml's Q8_1 s, the sum times the scale before rounding,
// rounded to half precision). Opaque to callers apart from its size; multiple of 64
// bytes so rows stay cache-line aligned in a buffer.
inline constexpr size_t q8_row_bytes(int k) {
  const size_t raw = static_cast<size_t>(k) + 12 * static_cast<size_t>(k / 32);
  return (raw + 63) / 64 * 64;
}
// Q8K activation row for k elements (k % 256 == 0): k int8 values, then k/256 float
// scales (one per 256 values), then k/16 int16 sums of 16 consecutive values. Opaque
// like the Q8 row; a multiple of 64 bytes.
inline constexpr size_t q8k_row_bytes(int k) {
  const size_t raw =
      static_cast<size_t>(k) + 4 * static_cast<size_t>(k / 256) + 2 * static_cast<size_t>(k / 16);
  return (raw + 63) / 64 * 64;
}

enum class RopeStyle {
  kNormal,  // rotates pairs (2i, 2i+1) (llama, mistral)
  kNeox,    // rotates pairs (i, i + rot_dim/2) (qwen2, gpt-neox, phi)
};

struct Kernels {
  const char* name;  // "scalar", "avx2", "avx512", "neon", "neondot"
  Level level;

  // ---- matrix products (see MatmulArgs) -------------------------------------------
  MatmulFn matmul_f32;
  MatmulFn matmul_f16;
  MatmulFn matmul_bf16;
  MatmulFn matmul_q8_0;
  MatmulFn matmul_q4_0;
  MatmulFn matmul_q4_1;
  MatmulFn matmul_q5_0;
  MatmulFn matmul_q5_1;
  MatmulFn matmul_q2_k;
  MatmulFn matmul_q3_k;
  MatmulFn matmul_q4_k;
  MatmulFn matmul_q5_k;
  MatmulFn matmul_q6_k;
  // Quantizes k floats (k % 32 == 0) into one Q8 activation row at `out`
  // (q8_row_bytes(k) bytes): per 32 values d = max|x| / 127 rounded to half precision,
  // q = round(x * 127 / max|x|), the sum of q, and s = sum * (max|x| / 127) rounded
  // to half precision (ggml's Q8_0 and Q8_1). Done once per matmul; the row is
  // read-only afterwards and can be shared by all threads. Every table gives
  // bit-identical rows.
  void (*quantize_q8)(const float* x, void* out, int k);
  // The same for a Q8K row (k % 256 == 0, q8k_row_bytes(k) bytes): per 256 values,
  // with m the (first) value of largest magnitude, iscale = -127 / m,
  // q = min(127, round(iscale * x)) to nearest even and d = 1 / iscale as a float
  // (ggml's Q8_K). Every table gives bit-identical rows.
  void (*quantize_q8k)(const float* x, void* out, int k);

  // ---- weight repacking (optional; null in tables without it) ---------------------
  // A table may read some weight types faster from its own layout, written once at
  // load: tiles of kMatmulRowMultiple rows, each packed_tile_bytes(type, k) bytes
  // (0: no packed layout for this type). pack_tiles writes the tiles holding rows
  // [r0, r1) of a rows x k matrix into `out` (the packed matrix's start; r0 a multiple
  // of kMatmulRowMultiple; a short last tile repeats the matrix's last row), and may run
  // on disjoint ranges from several threads. packed_matmul(type) then takes the packed
  // matrix as MatmulArgs::w and its tile bytes as w_stride, ranges starting at
  // multiples of kMatmulRowMultiple, and gives bit-identical results to matmul_for.
  size_t (*packed_tile_bytes)(GgmlType type, int k);
  void (*pack_tiles)(GgmlType type, const void* w, size_t w_stride, int rows, int k, int r0, int r1,
                     void* out);
  MatmulFn (*packed_matmul)(GgmlType type);

  // ---- F16 weights in k-major tiles (the encoder's batched products) -------------------
  // W packed by pack_f16_kmajor: tiles of kMatmulRowMultiple rows, MatmulArgs::w_stride
  // bytes apart (f16_kmajor_tile_bytes(k)), each holding for j = 0, 1, ..., k - 1 the
  // 16 F16 values W(16t, j) .. W(16t + 15, j). X rows f32 as for matmul_f16. Every
  // (activation row, weight row) pair is one fused multiply-add chain over j in
  // increasing order from 0: the same bits in every table and whatever n, the tile
  // or the row range. Ranges start at multiples of kMatmulRowMultiple. Unlike
  // matmul_f16 (16 partial sums per pair, reduced at the end) each output is a lane of
  // a vector accumulator, so a tile of activation rows x weight rows needs no
  // horizontal sums and reads each X value as one broadcast. Optional: null in tables
  // where it would not beat matmul_f16 (AVX2, NEON); the scalar table's is the
  // reference (std::fma per element: slow, for tests).
  MatmulFn matmul_f16_kmajor;
  // The same for F32 weights (16 floats per column of a tile, f32_kmajor_tile_bytes(k)
  // a tile): small products such as attention's, where matmul_f32's horizontal sums
  // would cost as much as the multiply-adds.
  MatmulFn matmul_f32_kmajor;

  // ---- small f32 ops (y may alias x / a where noted) ---------------------------------
  // y = x / sqrt(mean(x^2) + eps) * w; w may be null (no weight). y may alias x.
  void (*rmsnorm)(const float* x, const float* w, float* y, int n, float eps);
  // In place: x = exp(x - max) / sum. n > 0.
  void (*softmax)(float* x, int n);
  // y = silu(a) * b, silu(a) = a / (1 + exp(-a)). y may alias a or b.
  void (*silu_mul)(const float* a, const float* b, float* y, int n);
  // y = a + b. y may alias a or b.
  void (*add)(const float* a, const float* b, float* y, int n);
  // x *= s.
  void (*scale)(float* x, float s, int n);
  // Rotates the first rot_dim elements of each of n_heads heads (head i at
  // x + i * head_dim) by the angles whose cos/sin are given (rot_dim/2 each, see
  // rope_angles). rot_dim even, rot_dim <= head_dim.
  void (*rope)(float* x, int n_heads, int head_dim, int rot_dim, const float* cos, const float* sin,
               RopeStyle style);
  // LayerNorm: y = (x - mean) / sqrt(var + eps) * w + b over n elements, the sums of x
  // and of (x - mean)^2 accumulated in double as ggml's norm does. y may alias x.
  void (*layer_norm)(const float* x, const float* w, const float* b, float* y, int n, float eps);
  // GELU looked up as ggml's F16 table does it, in place: x <= -10 gives 0, x >= 10
  // (and NaN) stay, anything else becomes table[f32_to_fp16(x)] (the caller's 65,536
  // floats indexed by F16 bits, round to nearest even). Every table gives
  // bit-identical results.
  void (*gelu_f16_table)(const float* table, float* x, int n);
  float (*dot_f32)(const float* a, const float* b, int n);
  void (*axpy_f32)(float alpha, const float* x, float* y, int n);  // y += alpha * x

  // ---- F16 KV cache --------------------------------------------------------------------
  float (*dot_f16)(const uint16_t* a, const float* b, int n);
  void (*axpy_f16)(float alpha, const uint16_t* x, float* y, int n);  // y += alpha * x
  // out[r] = scale * dot(q, K row r), K row r at (char*)k + r * k_stride, d elements.
  void (*dot_f16_rows)(const float* q, const uint16_t* k, size_t k_stride, int n_rows, int d,
                       float scale, float* out);
  // y += sum_r p[r] * V row r, V row r at (char*)v + r * v_stride, d elements.
  void (*axpy_f16_rows)(const float* p, const uint16_t* v, size_t v_stride, int n_rows, int d,
                        float* y);
  void (*f32_to_f16)(const float* x, uint16_t* out, int n);  // round to nearest even
  void (*f16_to_f32)(const uint16_t* x, float* out, int n);
  // y = x rounded to F16 and back (nearest even) in one pass; y may alias x. Every
  // table gives the same bits.
  void (*round_f16)(const float* x, float* y, int n);
};

// The table in use: the best this CPU supports, unless INFERA_KERNELS names one
// ("scalar", "avx2", "avx512", "neon", "neondot"; a debugging and benchmark override,
// ignored when the CPU cannot run it) or force() was called. Thread-safe; cheap (one
// atomic load).
const Kernels& active();
// A specific table, or nullptr when this CPU (or this build) cannot run it.
const Kernels* by_level(Level level);
const Kernels* by_name(std::string_view name);
// Makes `name` the active table. Returns false (and changes nothing) when unknown or
// unsupported here. Call before any compute starts (tests, benchmarks, --kernels).
bool force(std::string_view name);
// The best level this CPU supports.
Level detected_level();

// `base` with every entry whose float order differs from llama.cpp's CPU backend
// (3f545bec, built for x86 as it builds by default, -march=native) replaced by one
// that computes in exactly its order: the products of every weight type (in the form
// llama.cpp picks for the type, the ISA and the batch: its vec_dot functions, its
// 8-row repacked gemv / gemm for Q4_0, Q4_K and, on AVX-512, Q2_K, its tinyBLAS for
// F16 batches), rope's rotation, attention scores against the F16 K cache
// (dot_f16_rows) and the vector expf of SiLU. With them, and the Q8_0 / Q8_K
// activation rounding every table shares, those steps give llama.cpp's floats bit for
// bit, so even deep models give its greedy ids (ModelOptions::ggml_kernel_order).
// Unlike the other tables some products depend on the batch, as llama.cpp's do: F16
// sums one way for a single row and another for more; Q4_K and Q2_K sum per 64 / 128
// elements for the first n - n % 4 rows of a batch of n > 3, per 256 for the rest.
// Slower (one weight row at a time, no repacked weights). The AVX2 table follows
// llama.cpp's AVX2 build and the AVX-512 table its AVX-512 build (SiLU, the score and
// F16 reductions and Q2_K differ); the scalar table's variant spells the AVX-512
// build's order out one operation at a time, the reference the SIMD versions are
// tested against. Other tables (ARM, whose ggml orders differ) return `base`.
const Kernels& ggml_order(const Kernels& base);

// The k-major F16 layout of Kernels::matmul_f16_kmajor: bytes per tile of 16 rows,
// and the packing of the tiles holding rows [r0, r1) of a rows x k F16 matrix (rows
// w_stride bytes apart) into `out` (the packed matrix's start; r0 a multiple of 16; a
// short last tile repeats the matrix's last row). Disjoint ranges may be packed from
// several threads at once.
inline constexpr size_t f16_kmajor_tile_bytes(int k) {
  return static_cast<size_t>(k) * kMatmulRowMultiple * 2;
}
void pack_f16_kmajor(const void* w, size_t w_stride, int rows, int k, int r0, int r1, void* out);
// The F32 layout of Kernels::matmul_f32_kmajor: tiles of 16 rows, each k columns of
// 16 floats; pack_f32_kmajor as pack_f16_kmajor, from f32 rows.
inline constexpr size_t f32_kmajor_tile_bytes(int k) {
  return static_cast<size_t>(k) * kMatmulRowMultiple * 4;
}
void pack_f32_kmajor(const float* w, size_t w_stride, int rows, int k, int r0, int r1, float* out);

// The table's matmul for a weight type, or nullptr if the type is not supported.
MatmulFn matmul_for(const Kernels& table, GgmlType type);
// How that matmul's X rows are encoded (kF32 for types it does not support).
MatmulInput matmul_input(GgmlType type);

// cos/sin of freq_scale * pos * base^(-2i/rot_dim) for i in [0, rot_dim/2): the
// angles for rope at one position (compute once, use for q and k of all heads).
// Rounds as ggml does (the power by repeated float multiplication).
void rope_angles(int pos, int rot_dim, float base, float freq_scale, float* cos, float* sin);

// Decodes n elements of a row of a supported type into floats (embeddings lookup).
// REQUIRES: n a multiple of the type's block size. Returns false for unsupported types.
bool dequantize_row(GgmlType type, const void* row, float* out, int n);
// Encodes floats into a row of `type` (infera synth, tests). Float types and the
// 32-element types round exactly as ggml's reference quantizers do; the K-quants
// choose their scales by their own search (a valid encoding ggml decodes alike, not
// ggml's bytes). REQUIRES as dequantize_row; false for unsupported types.
bool quantize_row(GgmlType type, const float* x, void* out, int n);

}  // namespace infera::engine::kernels
