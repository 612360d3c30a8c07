// A whole file's bytes in memory, read-only (RAII: released on destruction): either a
// mapping of the file (pages come from the page cache on first touch, shared with other
// processes) or, with kReadIntoMemory, a private copy read at open into anonymous memory
// that asks the kernel for 2 MiB transparent huge pages. The copy costs the read at load
// and its own memory, and spares decode the TLB misses of 4 KiB file pages.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "core/status.h"

namespace infera::engine {

enum class LoadMode { kMap, kReadIntoMemory };

// Which file was opened, as fstat saw it on the open descriptor: a file replaced or
// rewritten since (new inode, size or times) has another identity. Persisted data derived
// from a file (packed_image.h) is keyed by it.
struct FileIdentity {
  uint64_t device = 0;
  uint64_t inode = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;  // changes on any write, and cannot be set back by `touch`
};

class MappedFile {
 public:
  // Maps (or reads) `path`. An empty file maps to an empty span. Errors: kNotFound when
  // the file does not exist, kIoError otherwise (including a short read), naming the path.
  static Result<std::unique_ptr<MappedFile>> open(const std::string& path,
                                                  LoadMode mode = LoadMode::kMap);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  // The file's bytes; the start is page-aligned. Valid while this object lives.
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const FileIdentity& identity() const { return identity_; }

 private:
  static Result<std::unique_ptr<MappedFile>> read_copy(int fd, const std::string& path, size_t size);
  MappedFile(const uint8_t* data, size_t size, size_t mapped)
      : data_(data), size_(size), mapped_(mapped) {}

  const uint8_t* data_;
  size_t size_;
  size_t mapped_;  // bytes to unmap (the anonymous copy is rounded up to huge pages)
  FileIdentity identity_;
};

}  // namespace infera::engine
