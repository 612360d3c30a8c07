// ggml tensor types as stored in GGUF files: id, block size and bytes per block.
//
// The ids and block layouts are ggml's (ggml/include/ggml.h, ggml/src/ggml-common.h);
// they are a file-format fact, so they may never be renumbered. Kernels, the model
// loader and the GGUF reader/writer all size tensors through this one table.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace infera::engine {

enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  // 4 and 5 (Q4_2, Q4_3) were removed from ggml and never appear in GGUF files.
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
};

// How a type is laid out: a row of n elements takes n / block_size blocks of
// bytes_per_block bytes each (n must be a multiple of block_size).
struct GgmlTypeInfo {
  GgmlType type;
  std::string_view name;
  uint32_t block_size;
  uint32_t bytes_per_block;
};

inline constexpr uint32_t kQK_K = 256;  // elements per super-block of the K-quants

inline constexpr std::array<GgmlTypeInfo, 29> kGgmlTypes = {{
    {GgmlType::kF32, "F32", 1, 4},
    {GgmlType::kF16, "F16", 1, 2},
    {GgmlType::kQ4_0, "Q4_0", 32, 2 + 16},
    {GgmlType::kQ4_1, "Q4_1", 32, 2 + 2 + 16},
    {GgmlType::kQ5_0, "Q5_0", 32, 2 + 4 + 16},
    {GgmlType::kQ5_1, "Q5_1", 32, 2 + 2 + 4 + 16},
    {GgmlType::kQ8_0, "Q8_0", 32, 2 + 32},
    {GgmlType::kQ8_1, "Q8_1", 32, 2 + 2 + 32},
    {GgmlType::kQ2_K, "Q2_K", kQK_K, 2 + 2 + kQK_K / 16 + kQK_K / 4},
    {GgmlType::kQ3_K, "Q3_K", kQK_K, 2 + kQK_K / 4 + kQK_K / 8 + 12},
    {GgmlType::kQ4_K, "Q4_K", kQK_K, 2 + 2 + 12 + kQK_K / 2},
    {GgmlType::kQ5_K, "Q5_K", kQK_K, 2 + 2 + 12 + kQK_K / 2 + kQK_K / 8},
    {GgmlType::kQ6_K, "Q6_K", kQK_K, 2 + kQK_K / 16 + 3 * kQK_K / 4},
    {GgmlType::kQ8_K, "Q8_K", kQK_K, 4 + kQK_K + kQK_K / 16 * 2},
    {GgmlType::kIQ2_XXS, "IQ2_XXS", kQK_K, 2 + kQK_K / 8 * 2},
    {GgmlType::kIQ2_XS, "IQ2_XS", kQK_K, 2 + kQK_K / 8 * 2 + kQK_K / 32},
    {GgmlType::kIQ3_XXS, "IQ3_XXS", kQK_K, 2 + 3 * (kQK_K / 8)},
    {GgmlType::kIQ1_S, "IQ1_S", kQK_K, 2 + kQK_K / 8 + kQK_K / 16},
    {GgmlType::kIQ4_NL, "IQ4_NL", 32, 2 + 16},
    {GgmlType::kIQ3_S, "IQ3_S", kQK_K, 2 + 13 * (kQK_K / 32) + kQK_K / 64},
    {GgmlType::kIQ2_S, "IQ2_S", kQK_K, 2 + kQK_K / 4 + kQK_K / 16},
    {GgmlType::kIQ4_XS, "IQ4_XS", kQK_K, 2 + 2 + kQK_K / 64 + kQK_K / 2},
    {GgmlType::kI8, "I8", 1, 1},
    {GgmlType::kI16, "I16", 1, 2},
    {GgmlType::kI32, "I32", 1, 4},
    {GgmlType::kI64, "I64", 1, 8},
    {GgmlType::kF64, "F64", 1, 8},
    {GgmlType::kIQ1_M, "IQ1_M", kQK_K, kQK_K / 8 + kQK_K / 16 + kQK_K / 32},
    {GgmlType::kBF16, "BF16", 1, 2},
}};

// The layout of a raw type id read from a file, or nullptr for ids ggml does not
// define (or that GGUF files may not contain).
constexpr const GgmlTypeInfo* ggml_type_info(uint32_t type_id) {
  for (const GgmlTypeInfo& info : kGgmlTypes) {
    if (static_cast<uint32_t>(info.type) == type_id) return &info;
  }
  return nullptr;
}

constexpr const GgmlTypeInfo& ggml_type_info(GgmlType type) {
  return *ggml_type_info(static_cast<uint32_t>(type));
}

constexpr std::string_view ggml_type_name(GgmlType type) { return ggml_type_info(type).name; }

// Bytes of one row of n_elements, or nullopt when n_elements is not a whole number
// of blocks (or negative).
constexpr std::optional<uint64_t> ggml_row_bytes(GgmlType type, int64_t n_elements) {
  const GgmlTypeInfo& info = ggml_type_info(type);
  if (n_elements < 0 || n_elements % info.block_size != 0) return std::nullopt;
  return static_cast<uint64_t>(n_elements) / info.block_size * info.bytes_per_block;
}

static_assert(ggml_type_info(GgmlType::kQ4_0).bytes_per_block == 18);
static_assert(ggml_type_info(GgmlType::kQ8_0).bytes_per_block == 34);
static_assert(ggml_type_info(GgmlType::kQ4_K).bytes_per_block == 144);
static_assert(ggml_type_info(GgmlType::kQ6_K).bytes_per_block == 210);
static_assert(ggml_type_info(GgmlType::kQ8_K).bytes_per_block == 292);

}  // namespace infera::engine
