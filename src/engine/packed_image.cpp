#include "engine/packed_image.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "core/unique_fd.h"

namespace infera::engine {
namespace {

namespace fs = std::filesystem;

constexpr char kMagic[8] = {'I', 'N', 'F', 'P', 'A', 'C', 'K', '\0'};
constexpr std::string_view kSuffix = ".packed";
constexpr std::string_view kTempMarker = ".packed.tmp.";
// A temporary file this old was left by a writer that died.
constexpr auto kStaleTemporary = std::chrono::hours(1);

// FNV-1a, 64 bits (http://www.isthe.com/chongo/tech/comp/fnv/).
uint64_t fnv1a(const void* data, size_t n, uint64_t h = 0xcbf29ce484222325ull) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

template <typename T>
void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(value));
}

// The header: magic, version, key fields, matrices, FNV-1a of all that (the file pads it
// with zeros to kPackedImageHeaderAlign). Host byte order: an image is only ever read by
// the machine's own kernel table.
std::string header_of(const PackedImageKey& key) {
  std::string h(kMagic, sizeof(kMagic));
  put(h, kPackedImageVersion);
  put(h, key.source.device);
  put(h, key.source.inode);
  put(h, key.source.size);
  put(h, key.source.mtime_ns);
  put(h, key.source.ctime_ns);
  char kernels[32] = {};
  std::memcpy(kernels, key.kernels.data(), std::min(key.kernels.size(), sizeof(kernels) - 1));
  h.append(kernels, sizeof(kernels));
  put(h, key.row_multiple);
  put(h, static_cast<uint32_t>(key.matrices.size()));
  put(h, key.region_bytes);
  for (const PackedImageMatrix& m : key.matrices) {
    put(h, m.source_offset);
    put(h, m.region_offset);
    put(h, m.type);
    put(h, m.rows);
    put(h, m.cols);
    put(h, m.tile_bytes);
  }
  put(h, fnv1a(h.data(), h.size()));
  return h;
}

// Where the region starts: the header rounded up to kPackedImageHeaderAlign (zeros between).
uint64_t region_offset_of(const std::string& header) {
  return (header.size() + kPackedImageHeaderAlign - 1) / kPackedImageHeaderAlign *
         kPackedImageHeaderAlign;
}

std::string hex(uint64_t v, int digits) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(static_cast<size_t>(digits), '0');
  for (int i = digits - 1; i >= 0; --i, v >>= 4) out[static_cast<size_t>(i)] = kDigits[v & 15];
  return out;
}

// "<stem>-<path hash>-": every image of one source path starts so.
std::string source_prefix(const std::string& source_path) {
  std::error_code ec;
  const fs::path absolute = fs::absolute(source_path, ec);
  const std::string full = ec ? source_path : absolute.string();
  std::string stem = fs::path(source_path).stem().string();
  for (char& c : stem) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_') c = '_';
  }
  if (stem.size() > 64) stem.resize(64);
  return stem + "-" + hex(fnv1a(full.data(), full.size()), 8) + "-";
}

bool write_all(int fd, const uint8_t* data, size_t n, const std::atomic<bool>& cancel) {
  // Cancellation is checked between chunks; whole 2 MiB folios (the region is aligned).
  constexpr size_t kChunk = size_t{8} << 20;
  while (n > 0) {
    if (cancel.load(std::memory_order_relaxed)) {
      errno = ECANCELED;
      return false;
    }
    const ssize_t wrote = ::write(fd, data, std::min(n, kChunk));
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote <= 0) return false;
    data += wrote;
    n -= static_cast<size_t>(wrote);
  }
  return true;
}

// Deletes `path`'s older siblings of the same source, stale temporaries, then the least
// recently used images until the directory's images take at most `max_bytes`.
void trim_directory(const std::string& path, uint64_t max_bytes) {
  const fs::path kept(path);
  const std::string stale_prefix =
      kept.filename().string().substr(0, kept.filename().string().size() - kSuffix.size() - 16);
  struct Image {
    fs::path path;
    fs::file_time_type mtime;
    uint64_t bytes;
  };
  std::vector<Image> images;
  std::error_code ec;
  const auto now = fs::file_time_type::clock::now();
  for (const auto& entry : fs::directory_iterator(kept.parent_path(), ec)) {
    const std::string name = entry.path().filename().string();
    std::error_code entry_ec;
    const auto mtime = entry.last_write_time(entry_ec);
    if (entry_ec) continue;
    if (name.find(kTempMarker) != std::string::npos) {
      if (now - mtime > kStaleTemporary) fs::remove(entry.path(), entry_ec);
      continue;
    }
    if (!name.ends_with(kSuffix) || entry.path() == kept) continue;
    if (name.starts_with(stale_prefix)) {
      fs::remove(entry.path(), entry_ec);
      continue;
    }
    const uint64_t bytes = entry.file_size(entry_ec);
    if (!entry_ec) images.push_back({entry.path(), mtime, bytes});
  }
  uint64_t total = fs::file_size(kept, ec);
  for (const Image& i : images) total += i.bytes;
  std::sort(images.begin(), images.end(),
            [](const Image& a, const Image& b) { return a.mtime < b.mtime; });
  for (const Image& i : images) {
    if (total <= max_bytes) break;
    if (fs::remove(i.path, ec)) total -= i.bytes;
  }
}

}  // namespace

std::string packed_image_path(const std::string& dir, const std::string& source_path,
                              const PackedImageKey& key) {
  const std::string header = header_of(key);
  return (fs::path(dir) / (source_prefix(source_path) +
                           hex(fnv1a(header.data(), header.size()), 16) + std::string(kSuffix)))
      .string();
}

Result<std::unique_ptr<PackedImage>> PackedImage::open(const std::string& path,
                                                       const PackedImageKey& key) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    std::string message = path + ": cannot open: " + std::strerror(err);
    return err == ENOENT ? Status::NotFound(std::move(message))
                         : Status::IoError(std::move(message));
  }
  UniqueFd closer(fd);
  const std::string expected = header_of(key);
  const uint64_t region_offset = region_offset_of(expected);
  const uint64_t want_size = region_offset + key.region_bytes;
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    return Status::IoError(path + ": cannot stat: " + std::strerror(errno));
  auto refuse = [&](const std::string& why) {
    ::unlink(path.c_str());
    return Status::Corrupt(path + ": " + why + "; deleted");
  };
  if (static_cast<uint64_t>(st.st_size) != want_size) {
    return refuse("holds " + std::to_string(st.st_size) + " bytes, its key needs " +
                  std::to_string(want_size));
  }
  std::string header(expected.size(), '\0');
  size_t done = 0;
  while (done < header.size()) {
    const ssize_t got =
        ::pread(fd, header.data() + done, header.size() - done, static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0)
      return Status::IoError(path + ": cannot read the header: " + std::strerror(errno));
    done += static_cast<size_t>(got);
  }
  if (header != expected) return refuse("its header is not this model's key");
  void* map = ::mmap(nullptr, want_size, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) return Status::IoError(path + ": cannot mmap: " + std::strerror(errno));
  // Page-cache folios of 2 MiB (ext4 and xfs make them for large writes) are then mapped
  // as huge pages, and pages read back from disk come in such folios.
  ::madvise(map, want_size, MADV_HUGEPAGE);
  ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0);  // used now: last in eviction order
  return std::unique_ptr<PackedImage>(
      new PackedImage(static_cast<uint8_t*>(map), want_size, region_offset, key.region_bytes));
}

PackedImage::~PackedImage() { ::munmap(map_, map_bytes_); }

void PackedImage::populate(uint64_t begin, uint64_t end) const {
#ifdef MADV_POPULATE_READ
  const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  begin = begin / page * page;
  end = std::min(end, region_bytes_);
  if (end > begin) {
    ::madvise(const_cast<uint8_t*>(region_) + begin, end - begin, MADV_POPULATE_READ);
  }
#else
  (void)begin;
  (void)end;
#endif
}

uint64_t PackedImage::huge_mapped_bytes() const {
  std::ifstream smaps("/proc/self/smaps");
  const uintptr_t start = reinterpret_cast<uintptr_t>(map_);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    // A mapping's block starts with "start-end perms ..."; its fields follow.
    if (const size_t dash = line.find('-'); dash != std::string::npos && dash > 0 &&
                                            std::isxdigit(static_cast<unsigned char>(line[0])) &&
                                            line.find(' ') > dash) {
      if (inside) return 0;
      inside = std::strtoull(line.substr(0, dash).c_str(), nullptr, 16) == start;
      continue;
    }
    if (inside && line.starts_with("FilePmdMapped:")) {
      return std::strtoull(line.c_str() + std::strlen("FilePmdMapped:"), nullptr, 10) * 1024;
    }
  }
  return 0;
}

Status write_packed_image(const std::string& path, const PackedImageKey& key, const uint8_t* region,
                          uint64_t max_bytes, const std::atomic<bool>& cancel) {
  std::string header = header_of(key);
  header.resize(region_offset_of(header), '\0');
  if (header.size() + key.region_bytes > max_bytes) {
    return Status::ResourceExhausted(
        path + ": not written: the image's " + std::to_string(header.size() + key.region_bytes) +
        " bytes exceed the cache's cap of " + std::to_string(max_bytes));
  }
  std::error_code ec;
  const fs::path target(path);
  fs::create_directories(target.parent_path(), ec);
  if (ec)
    return Status::IoError(target.parent_path().string() + ": cannot create: " + ec.message());
  static std::atomic<uint64_t> counter{0};
  const std::string temp =
      path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IoError(temp + ": cannot create: " + std::strerror(errno));
  {
    UniqueFd closer(fd);
    const bool ok =
        write_all(fd, reinterpret_cast<const uint8_t*>(header.data()), header.size(), cancel) &&
        write_all(fd, region, key.region_bytes, cancel) && ::fdatasync(fd) == 0;
    if (!ok) {
      const int err = errno;
      ::unlink(temp.c_str());
      if (err == ECANCELED) return Status::Cancelled(temp + ": writing cancelled");
      return Status::IoError(temp + ": cannot write: " + std::strerror(err));
    }
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    return Status::IoError(path + ": cannot rename into place: " + std::strerror(err));
  }
  if (const int dir = ::open(target.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      dir >= 0) {
    ::fsync(dir);  // the rename survives a crash
    ::close(dir);
  }
  trim_directory(path, max_bytes);
  return Status::Ok();
}

ImageWriter& ImageWriter::get() {
  static ImageWriter writer;
  return writer;
}

ImageWriter::~ImageWriter() {
  std::unique_lock lock(mu_);
  stopping_ = true;
  for (auto& job : queue_) finish(*job, false);
  queue_.clear();
  if (running_) running_->cancel.store(true);
  cv_.notify_all();
  lock.unlock();
  if (thread_.joinable()) thread_.join();
}

void ImageWriter::finish(ImageWriteJob& job, bool written) {
  std::lock_guard lock(job.mu);
  job.done = true;
  job.written = written;
  job.cv.notify_all();
}

bool ImageWriter::submit(std::shared_ptr<ImageWriteJob> job) {
  std::lock_guard lock(mu_);
  const bool same_running = running_ != nullptr && running_->path == job->path;
  if (stopping_ || !queue_.empty() || same_running) {
    finish(*job, false);
    return false;
  }
  queue_.push_back(std::move(job));
  if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
  cv_.notify_all();
  return true;
}

void ImageWriter::run() {
  // Writing an image must not slow the engine and compute threads down.
  ::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), 19);
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    running_ = std::move(queue_.front());
    queue_.pop_front();
    ImageWriteJob& job = *running_;
    lock.unlock();
    // Another load of the same file may have queued it too, or another process written it.
    std::error_code ec;
    const Status s = fs::exists(job.path, ec) ? Status::Ok()
                                              : write_packed_image(job.path, job.key, job.region,
                                                                   job.max_bytes, job.cancel);
    if (!s.ok() && s.code() != StatusCode::kCancelled && job.warn) job.warn(s.message());
    job.region_owner.reset();  // the region goes back before the job is seen done
    finish(job, s.ok());
    lock.lock();
    running_.reset();
  }
}

}  // namespace infera::engine
