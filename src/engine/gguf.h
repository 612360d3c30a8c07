// GGUF reader: validates and memory-maps a GGUF v2/v3 file and exposes its
// metadata and tensors as zero-copy views.
//
// Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (little-endian
// only). Everything a hostile file could get wrong (magic, version, counts, string
// and array lengths, value and tensor types, shapes, alignment, offsets, overlaps)
// is checked in open() before any view is handed out; afterwards every accessor is
// a bounds-safe read of validated bytes. Memory used is proportional to the number
// of entries actually present in the file, never to a count the file claims.
//
// Thread safety: a GgufFile is immutable after open(); any thread may read it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "engine/ggml_types.h"
#include "engine/mapped_file.h"

namespace infera::engine {

class MappedFile;

// Value types of GGUF metadata (gguf.md: gguf_metadata_value_type).
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

std::string_view gguf_type_name(GgufType type);

inline constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as little-endian u32
inline constexpr uint64_t kGgufDefaultAlignment = 32;
inline constexpr uint32_t kGgufMaxDims = 4;

// One metadata entry. `payload` views the value's encoded bytes inside the file:
// the scalar itself, a string's bytes (without its length), or an array's
// elements (strings there keep their u64 length prefixes). Valid while the
// GgufFile lives. Use the typed getters of GgufFile rather than decoding by hand.
struct GgufKv {
  std::string_view key;
  GgufType type;
  GgufType array_type;   // element type when type == kArray (never kArray itself)
  uint64_t array_count;  // number of elements when type == kArray, else 0
  std::span<const uint8_t> payload;
};

// One tensor. dims[0] is the contiguous (row) dimension, as in ggml's ne[];
// dims past n_dims are 1. `data` points into the mapping, aligned to the file's
// alignment relative to the start of the file (mmap'd files start page-aligned).
struct GgufTensor {
  std::string_view name;
  GgmlType type;
  uint32_t n_dims;
  std::array<int64_t, kGgufMaxDims> dims;
  uint64_t offset;  // from the start of the data section
  const uint8_t* data;
  uint64_t n_bytes;

  int64_t n_elements() const { return dims[0] * dims[1] * dims[2] * dims[3]; }
  std::span<const uint8_t> bytes() const { return {data, static_cast<size_t>(n_bytes)}; }
};

class GgufFile {
 public:
  // Maps and validates the file at `path`. Errors name the file and the problem
  // (kNotFound / kIoError for the OS, kCorrupt for bad contents, kUnsupported for
  // what may be well-formed but is not read here: big-endian files, GGUF v1,
  // arrays of arrays, tensor types missing from ggml_types.h).
  // `mode`: map the file (default) or read it into huge-page memory (mapped_file.h).
  static Result<std::unique_ptr<GgufFile>> open(const std::string& path,
                                                LoadMode mode = LoadMode::kMap);

  // Validates a GGUF image already in memory; `name` is used in error messages.
  // REQUIRES: `bytes` outlives the returned object (nothing is copied).
  static Result<std::unique_ptr<GgufFile>> from_memory(std::span<const uint8_t> bytes,
                                                       std::string name);

  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& name() const { return name_; }  // path or the name given
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }  // general.alignment or 32
  uint64_t file_size() const { return bytes_.size(); }
  // Maps every page of the file now (MADV_POPULATE_READ): from the page cache this
  // costs a fraction of faulting 4 KiB pages in one by one during the first forward
  // pass; from disk it reads the file. A no-op where the kernel lacks it.
  void prefault() const;
  uint64_t data_offset() const { return data_offset_; }  // start of tensor data
  // The opened file's identity (mapped_file.h); all zero for from_memory.
  FileIdentity identity() const;

  // Metadata in file order.
  const std::vector<GgufKv>& metadata() const { return kvs_; }
  const GgufKv* find(std::string_view key) const;  // nullptr when absent
  bool has(std::string_view key) const { return find(key) != nullptr; }

  // Typed getters. T is one of uint8_t, int8_t, uint16_t, int16_t, uint32_t,
  // int32_t, uint64_t, int64_t, float, double, bool, std::string_view; the stored
  // type must match exactly. Errors: kNotFound when absent, kInvalidArgument on a
  // type mismatch, both naming the file and key. Strings view the mapping.
  template <typename T>
  Result<T> get(std::string_view key) const;

  // Like get<T>, but `fallback` when the key is absent (a wrong type is still an error).
  template <typename T>
  Result<T> get_or(std::string_view key, T fallback) const;

  // Any integer type, range-checked into int64_t (model hyper-parameters are
  // written as u32 by some converters and i32 or u64 by others).
  Result<int64_t> get_integer(std::string_view key) const;

  // Array elements copied out (elements in the file are not aligned). T as for
  // get<T>; std::string_view elements view the mapping.
  template <typename T>
  Result<std::vector<T>> get_array(std::string_view key) const;

  // Tensors in file order; find_tensor is O(1).
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(std::string_view name) const;  // nullptr when absent

 private:
  GgufFile() = default;
  static Result<std::unique_ptr<GgufFile>> parse(std::unique_ptr<GgufFile> file);

  std::string name_;
  std::unique_ptr<MappedFile> mapping_;  // null for from_memory
  std::span<const uint8_t> bytes_;
  uint32_t version_ = 0;
  uint64_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<GgufKv> kvs_;
  std::unordered_map<std::string_view, size_t> kv_index_;
  std::vector<GgufTensor> tensors_;
  std::unordered_map<std::string_view, size_t> tensor_index_;
};

}  // namespace infera::engine
