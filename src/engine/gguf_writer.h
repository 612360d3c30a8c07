// GGUF v3 writer: metadata of every kind and tensors at aligned offsets.
//
// Used by `infera synth` to write benchmark models and by tests to build valid
// and deliberately malformed files. Metadata keeps insertion order; setting a key
// again replaces its value in place. Tensor data is either copied in up front or
// produced by a callback at write time, so a multi-GiB model never has to sit in
// memory twice.
//
// Thread safety: none; one thread builds and writes.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "engine/ggml_types.h"
#include "engine/gguf.h"

namespace infera::engine {

class GgufWriter {
 public:
  // Fills a tensor's bytes at write time; `out` has exactly the tensor's size.
  using TensorFiller = std::function<void(std::span<uint8_t> out)>;

  // ggml refuses tensor names this long or longer (GGML_MAX_NAME).
  static constexpr size_t kMaxTensorNameBytes = 63;

  // Scalars and strings. T: uint8_t..int64_t, float, double, bool.
  template <typename T>
  void set(std::string_view key, T value);
  void set_string(std::string_view key, std::string_view value);

  // Arrays of scalars or of strings.
  template <typename T>
  void set_array(std::string_view key, std::span<const T> values);
  void set_string_array(std::string_view key, std::span<const std::string_view> values);
  void set_string_array(std::string_view key, std::span<const std::string> values);

  // Copies every metadata entry of `src` for which keep(key) is true (all when
  // keep is empty), byte for byte, e.g. a vocabulary into a synthetic model.
  void copy_metadata(const GgufFile& src, const std::function<bool(std::string_view)>& keep = {});

  void remove(std::string_view key);
  bool has(std::string_view key) const;

  // Sets general.alignment. REQUIRES: a power of two.
  void set_alignment(uint32_t alignment);

  // Adds a tensor; dims[0] is the row (contiguous) dimension. Errors
  // (kInvalidArgument): empty or too long or duplicate name, 0 or more than 4
  // dims, a non-positive dim, a row not a whole number of blocks, or `bytes` of
  // the wrong size.
  Status add_tensor(std::string_view name, GgmlType type, std::span<const int64_t> dims,
                    std::span<const uint8_t> bytes);
  Status add_tensor(std::string_view name, GgmlType type, std::span<const int64_t> dims,
                    TensorFiller fill);

  // Writes the file to `path` (through a temporary file renamed into place).
  Status write(const std::string& path) const;

  // The whole file in memory (tests, fuzz seeds).
  std::vector<uint8_t> to_bytes() const;

 private:
  struct Kv {
    std::string key;
    GgufType type;
    GgufType array_type;
    uint64_t array_count;
    std::vector<uint8_t> payload;  // encoded exactly as in the file after the type
  };
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> dims;
    uint64_t n_bytes;
    std::vector<uint8_t> bytes;  // used when fill is empty
    TensorFiller fill;
  };

  Kv& slot(std::string_view key);
  Status check_tensor(std::string_view name, GgmlType type, std::span<const int64_t> dims,
                      uint64_t& n_bytes) const;
  uint64_t alignment() const;
  // Streams the file through `sink` (called with consecutive chunks).
  Status emit(const std::function<Status(std::span<const uint8_t>)>& sink) const;

  std::vector<Kv> kvs_;
  std::vector<Tensor> tensors_;
};

}  // namespace infera::engine
