#include "engine/packed_matrices.h"

#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <utility>

#include "engine/gguf.h"
#include "engine/packed_image.h"
#include "engine/thread_pool.h"

namespace infera::engine {
namespace {

namespace k = kernels;

// The model's background thread (promoting an image) yields to the engine
// and compute threads: it runs at the lowest nice level.
void lower_this_thread_priority() {
  ::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), 19);
}

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

// The repacked-weight region of the last model destroyed, kept for the next load:
// swapping between models of one shape (budget eviction, file reloads) then skips
// the kernel's zero-filling of fresh pages, which costs more than the repacking.
// Every byte a load reads back is rewritten by pack_tiles (whole tiles), so stale
// contents never show. One region at most; release_spare_weight_memory() frees it.
class SpareRegion {
 public:
  static SpareRegion& get() {
    static SpareRegion spare;
    return spare;
  }
  // A region of at least `bytes` (and not much more), or nullptr.
  std::pair<uint8_t*, size_t> take(size_t bytes) {
    std::lock_guard lock(mu_);
    if (data_ == nullptr) return {nullptr, 0};
    if (size_ >= bytes && size_ <= bytes + bytes / 4) {
      auto out = std::make_pair(data_, size_);
      data_ = nullptr;
      size_ = 0;
      return out;
    }
    release_locked();  // the wrong size: give it back before mapping a new one
    return {nullptr, 0};
  }
  void give(uint8_t* data, size_t size) {
    std::lock_guard lock(mu_);
    release_locked();
    data_ = data;
    size_ = size;
  }
  void release() {
    std::lock_guard lock(mu_);
    release_locked();
  }
  uint64_t bytes() {
    std::lock_guard lock(mu_);
    return size_;
  }

 private:
  void release_locked() {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = nullptr;
    size_ = 0;
  }
  std::mutex mu_;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// Anonymous memory for repacked weights, 2 MiB transparent huge pages where the kernel
// allows. Handed to the SpareRegion on destruction.
class PackedMemory {
 public:
  explicit PackedMemory(size_t bytes) {
    constexpr size_t kHuge = size_t{2} << 20;
    size_ = (bytes + kHuge - 1) / kHuge * kHuge;
    if (auto [spare, spare_size] = SpareRegion::get().take(size_); spare != nullptr) {
      data_ = spare;
      size_ = spare_size;
      return;
    }
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      size_ = 0;
      return;
    }
    ::madvise(p, size_, MADV_HUGEPAGE);
    data_ = static_cast<uint8_t*>(p);
  }
  ~PackedMemory() {
    if (data_ != nullptr) SpareRegion::get().give(data_, size_);
  }
  PackedMemory(const PackedMemory&) = delete;
  PackedMemory& operator=(const PackedMemory&) = delete;
  uint8_t* data() const { return data_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

PackedMatrices::PackedMatrices(const GgufFile& file, std::string source_path,
                               const kernels::Kernels& table, ThreadPool& pool,
                               const ModelOptions& options, const uint8_t* keep_rows)
    : file_(&file),
      source_path_(std::move(source_path)),
      kernels_(&table),
      pool_(&pool),
      options_(options),
      keep_rows_(keep_rows) {}

PackedMatrices::~PackedMatrices() {
  // An image being written, or waiting to be, keeps the region alive until it is done.
  cancel_background_.store(true);
  if (background_.joinable()) background_.join();
}

void PackedMatrices::plan(const std::vector<Matrix*>& candidates) {
  if (!options_.repack_weights || kernels_->packed_tile_bytes == nullptr) return;
  const int unit = k::kMatmulRowMultiple;
  for (Matrix* m : candidates) {
    if (m->data == nullptr) continue;
    const size_t tile = kernels_->packed_tile_bytes(m->type, m->cols);
    if (tile == 0) continue;
    matrices_.push_back(m);
    offsets_.push_back(bytes_);
    bytes_ += (tile * static_cast<size_t>((m->rows + unit - 1) / unit) + 63) / 64 * 64;
  }
}

PackedImageKey PackedMatrices::image_key() const {
  PackedImageKey key;
  key.source = file_->identity();
  key.kernels = kernels_->name;
  key.row_multiple = static_cast<uint32_t>(k::kMatmulRowMultiple);
  key.region_bytes = bytes_;
  const GgufTensor& first = file_->tensors().front();
  const uint8_t* data_start = first.data - first.offset;
  for (size_t i = 0; i < matrices_.size(); ++i) {
    const Matrix& m = *matrices_[i];
    key.matrices.push_back({static_cast<uint64_t>(m.data - data_start), offsets_[i],
                            static_cast<uint32_t>(m.type), m.rows, m.cols,
                            kernels_->packed_tile_bytes(m.type, m.cols)});
  }
  return key;
}

void PackedMatrices::place(const std::vector<Matrix*>& candidates) {
  const auto start = std::chrono::steady_clock::now();
  plan(candidates);
  const bool cached = !matrices_.empty() && !options_.packed_cache_dir.empty();
  PackedImageKey key;
  std::string path;
  if (cached) {
    key = image_key();
    path = packed_image_path(options_.packed_cache_dir, source_path_, key);
    std::lock_guard lock(background_mu_);
    report_.image_path = path;
  }
  if (cached && use_image(path, key)) {
    std::lock_guard lock(background_mu_);
    report_.weights = PackedWeights::kImage;
    report_.pack_ms = ms_since(start);
  } else {
    file_->prefault();
    repack_weights();
    std::lock_guard lock(background_mu_);
    report_.weights = region_ != nullptr ? PackedWeights::kRepacked : PackedWeights::kNone;
    report_.pack_ms = ms_since(start);
  }
  if (!cached) return;
  if (image_ != nullptr) {
    if (options_.promote_packed_image != ModelOptions::Promotion::kNever) start_promotion();
  } else if (region_ != nullptr) {
    write_image(path, key);
  }
}

bool PackedMatrices::use_image(const std::string& path, const PackedImageKey& key) {
  auto image = PackedImage::open(path, key);
  if (!image.ok()) {
    if (image.status().code() != StatusCode::kNotFound) warn(image.status().message());
    return false;
  }
  const PackedImage& mapped = **image;
  // The first tile of the first matrix of each (type, width) — the packed layout depends
  // on nothing else — and of the last one, repacked now, must be the image's: this
  // catches a packing that changed without kPackedImageVersion. Only a few: each reads
  // file pages not faulted in yet (all of them: ~10 ms for TinyLlama's 155 matrices).
  std::vector<size_t> checked;
  for (size_t i = 0; i < matrices_.size(); ++i) {
    const Matrix& m = *matrices_[i];
    const bool first_of_layout = std::none_of(checked.begin(), checked.end(), [&](size_t j) {
      return matrices_[j]->type == m.type && matrices_[j]->cols == m.cols;
    });
    if (first_of_layout || i + 1 == matrices_.size()) checked.push_back(i);
  }
  size_t widest_tile = 0;
  for (const Matrix* m : matrices_)
    widest_tile = std::max(widest_tile, kernels_->packed_tile_bytes(m->type, m->cols));
  std::vector<uint8_t> tile(widest_tile);
  bool same = true;
  for (size_t i : checked) {
    const Matrix& m = *matrices_[i];
    kernels_->pack_tiles(m.type, m.data, m.row_bytes, m.rows, m.cols, 0,
                         std::min(m.rows, k::kMatmulRowMultiple), tile.data());
    same = same && std::memcmp(tile.data(), mapped.region() + offsets_[i],
                               kernels_->packed_tile_bytes(m.type, m.cols)) == 0;
  }
  if (!same) {
    ::unlink(path.c_str());
    warn(path + ": its tiles differ from this build's repacking; deleted");
    return false;
  }
  // Map every page now, in parallel: the warm-up pass would fault them in one by one.
  constexpr uint64_t kChunk = uint64_t{32} << 20;
  const int chunks = static_cast<int>((mapped.region_bytes() + kChunk - 1) / kChunk);
  pool_->parallel_for(chunks, [&](int c, int) {
    mapped.populate(static_cast<uint64_t>(c) * kChunk, static_cast<uint64_t>(c + 1) * kChunk);
  });
  for (size_t i = 0; i < matrices_.size(); ++i) {
    Matrix& m = *matrices_[i];
    // A --no-mmap copy is private memory: its packed rows are no longer read.
    if (options_.read_into_memory) release_source_rows(m, 0, m.rows);
    m.data = mapped.region() + offsets_[i];
    m.tile_bytes = kernels_->packed_tile_bytes(m.type, m.cols);
  }
  image_ = std::move(image).value();
  return true;
}

void PackedMatrices::release_source_rows(const Matrix& m, int r0, int r1) const {
  if (m.data == keep_rows_) return;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t lo = reinterpret_cast<uintptr_t>(m.data) + m.row_bytes * static_cast<size_t>(r0);
  const uintptr_t hi = reinterpret_cast<uintptr_t>(m.data) + m.row_bytes * static_cast<size_t>(r1);
  const uintptr_t first = (lo + page - 1) / page * page, last = hi / page * page;
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

void PackedMatrices::repack_weights() {
  if (matrices_.empty()) return;
  const int unit = k::kMatmulRowMultiple;
  const std::vector<Matrix*>& todo = matrices_;
  auto memory = std::make_unique<PackedMemory>(bytes_);
  if (memory->data() == nullptr) return;  // no memory for a copy: run unpacked
  // Tasks of up to 64 tiles over all matrices, handed out to the pool.
  struct Task {
    size_t matrix;
    int r0, r1;
  };
  std::vector<Task> tasks;
  for (size_t i = 0; i < todo.size(); ++i) {
    for (int r = 0; r < todo[i]->rows; r += 64 * unit)
      tasks.push_back({i, r, std::min(todo[i]->rows, r + 64 * unit)});
  }
  // The file's copy of packed rows is no longer read (unless it is also the embedding
  // table, a tied output): give its whole pages back. A --no-mmap copy is private
  // memory, released per task so that the copy and the packed weights never both stay
  // resident (its released pages would read as zeros); a file mapping only loses page
  // table entries (the page cache keeps the file), released once at the end, which
  // spares the other threads a TLB shootdown per task.
  const bool release_per_task = options_.read_into_memory;
  pool_->parallel_for(static_cast<int>(tasks.size()), [&](int t, int) {
    const Task& task = tasks[static_cast<size_t>(t)];
    const Matrix& m = *todo[task.matrix];
    kernels_->pack_tiles(m.type, m.data, m.row_bytes, m.rows, m.cols, task.r0, task.r1,
                         memory->data() + offsets_[task.matrix]);
    if (release_per_task) release_source_rows(m, task.r0, task.r1);
  });
  if (!release_per_task) {
    for (const Matrix* m : todo) release_source_rows(*m, 0, m->rows);
  }
  for (size_t i = 0; i < todo.size(); ++i) {
    Matrix& m = *todo[i];
    m.data = memory->data() + offsets_[i];
    m.tile_bytes = kernels_->packed_tile_bytes(m.type, m.cols);
  }
  region_ = std::move(memory);
}

void PackedMatrices::write_image(const std::string& path, const PackedImageKey& key) {
  auto job = std::make_shared<ImageWriteJob>();
  job->path = path;
  job->key = key;
  job->region = region_->data();
  job->region_owner = region_;
  job->max_bytes = options_.packed_cache_max_bytes;
  job->warn = options_.packed_cache_warning;
  write_job_ = job;
  ImageWriter::get().submit(std::move(job));
}

void PackedMatrices::start_promotion() {
  {
    std::lock_guard lock(background_mu_);
    background_running_ = true;
  }
  background_ = std::thread([this] {
    lower_this_thread_priority();
    promote_image();
    std::lock_guard lock(background_mu_);
    background_running_ = false;
    background_cv_.notify_all();
  });
}

// Unless the image is mapped with huge pages already, copies one huge page at a time, and
// only while the engine is idle (no eval() for 2 ms):
// the copy and a forward pass would share the memory bandwidth both are bound by, and the
// first passes after a load are the ones a user waits for. Under steady traffic it copies a
// page per 10 ms (200 MB/s) anyway, so that promotion ends.
void PackedMatrices::promote_image() {
  // Mapped as huge pages (2 MiB page-cache folios, the usual case for an image this
  // process or another wrote), the image reads as fast as a private copy (measured in
  // docs/BENCHMARKS.md): the copy would only double the memory.
  if (options_.promote_packed_image == ModelOptions::Promotion::kUnlessHugeMapped &&
      image_->huge_mapped_bytes() >= image_->region_bytes() / 10 * 9) {
    return;
  }
  auto memory = std::make_unique<PackedMemory>(bytes_);
  if (memory->data() == nullptr) return;  // no memory for a copy: keep serving the image
  constexpr size_t kChunk = size_t{2} << 20;
  constexpr int64_t kIdleNs = 2'000'000, kPaceNs = 10'000'000;
  int64_t last_copy_ns = 0;
  for (size_t off = 0; off < bytes_; off += kChunk) {
    while (true) {
      if (cancel_background_.load(std::memory_order_relaxed)) return;
      const int64_t now = now_ns();
      const bool idle = !evaluating_.load(std::memory_order_relaxed) &&
                        now - last_eval_end_ns_.load(std::memory_order_relaxed) >= kIdleNs;
      if (idle || now - last_copy_ns >= kPaceNs) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::memcpy(memory->data() + off, image_->region() + off, std::min(kChunk, bytes_ - off));
    last_copy_ns = now_ns();
  }
  promoted_ = std::move(memory);
  promoted_ready_.store(true, std::memory_order_release);
}

void PackedMatrices::adopt_promoted() {
  for (size_t i = 0; i < matrices_.size(); ++i)
    matrices_[i]->data = promoted_->data() + offsets_[i];
  region_ = std::move(promoted_);
  image_.reset();
  promoted_ready_.store(false, std::memory_order_relaxed);
  std::lock_guard lock(background_mu_);
  report_.weights = PackedWeights::kPromoted;
}

void PackedMatrices::begin_eval() {
  if (promoted_ready_.load(std::memory_order_acquire)) adopt_promoted();
  evaluating_.store(true, std::memory_order_relaxed);
}

void PackedMatrices::end_eval() {
  last_eval_end_ns_.store(now_ns(), std::memory_order_relaxed);
  evaluating_.store(false, std::memory_order_relaxed);
}

LoadReport PackedMatrices::report() const {
  LoadReport report;
  {
    std::lock_guard lock(background_mu_);
    report = report_;
  }
  if (write_job_ != nullptr) {
    std::lock_guard lock(write_job_->mu);
    report.image_written = write_job_->written;
  }
  return report;
}

void PackedMatrices::wait_for_background_work() {
  if (write_job_ != nullptr) write_job_->wait();
  std::unique_lock lock(background_mu_);
  background_cv_.wait(lock, [this] { return !background_running_; });
}

void release_spare_weight_memory() { SpareRegion::get().release(); }
uint64_t spare_weight_memory_bytes() { return SpareRegion::get().bytes(); }

}  // namespace infera::engine
