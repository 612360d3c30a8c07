#include "engine/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/unique_fd.h"

namespace infera::engine {

// Reads the file into fresh anonymous memory backed by transparent huge pages where
// the kernel allows (madvise before the first touch), then makes it read-only.
Result<std::unique_ptr<MappedFile>> MappedFile::read_copy(int fd, const std::string& path, size_t size) {
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t mapped = (size + kHuge - 1) / kHuge * kHuge;
  void* data = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (data == MAP_FAILED) {
    return Status::IoError(path + ": cannot allocate " + std::to_string(size) +
                           " bytes to read the file into: " + std::strerror(errno));
  }
  ::madvise(data, mapped, MADV_HUGEPAGE);  // advisory: without THP the copy still works
  auto* out = static_cast<uint8_t*>(data);
  size_t done = 0;
  while (done < size) {
    const size_t want = std::min(size - done, size_t{64} << 20);
    const ssize_t got = ::pread(fd, out + done, want, static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      const std::string why = got < 0 ? std::strerror(errno) : "the file shrank while being read";
      ::munmap(data, mapped);
      return Status::IoError(path + ": cannot read at byte " + std::to_string(done) + ": " + why);
    }
    done += static_cast<size_t>(got);
  }
  ::mprotect(data, mapped, PROT_READ);
  return std::unique_ptr<MappedFile>(new MappedFile(out, size, mapped));
}

Result<std::unique_ptr<MappedFile>> MappedFile::open(const std::string& path, LoadMode mode) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    std::string message = path + ": cannot open: " + std::strerror(err);
    return err == ENOENT ? Status::NotFound(std::move(message))
                         : Status::IoError(std::move(message));
  }
  UniqueFd closer(fd);  // the mapping keeps the file alive
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    return Status::IoError(path + ": cannot stat: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return Status::IoError(path + ": not a regular file");
  const size_t size = static_cast<size_t>(st.st_size);
  std::unique_ptr<MappedFile> out;
  if (size == 0) {
    out.reset(new MappedFile(nullptr, 0, 0));
  } else if (mode == LoadMode::kReadIntoMemory) {
    auto copy = read_copy(fd, path, size);
    if (!copy.ok()) return copy.status();
    out = std::move(copy).value();
  } else {
    void* data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (data == MAP_FAILED) return Status::IoError(path + ": cannot mmap: " + std::strerror(errno));
    out.reset(new MappedFile(static_cast<const uint8_t*>(data), size, size));
  }
  out->identity_ = {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
                    static_cast<uint64_t>(st.st_size),
                    int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec,
                    int64_t{st.st_ctim.tv_sec} * 1000000000 + st.st_ctim.tv_nsec};
  return out;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), mapped_);
}

}  // namespace infera::engine
