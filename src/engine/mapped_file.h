// Read-only memory mapping of a whole file (RAII: unmapped and closed on destruction).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "core/status.h"

namespace infera::engine {

class MappedFile {
 public:
  // Maps `path` read-only. An empty file maps to an empty span. Errors:
  // kNotFound when the file does not exist, kIoError otherwise, naming the path.
  static Result<std::unique_ptr<MappedFile>> open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  // The file's bytes; the start is page-aligned. Valid while this object lives.
  std::span<const uint8_t> bytes() const { return {data_, size_}; }

 private:
  MappedFile(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  const uint8_t* data_;
  size_t size_;
};

}  // namespace infera::engine
