#include "knowledge/vector_index.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

// hnswlib's headers define non-inline functions and globals (CPU detection, distance
// function pointers): they may be included by this one file of the program only.
// Under AddressSanitizer its SSE path is off: 0.6.2 prefetches the entry one past the end
// of a link list, a read ASan reports (harmless otherwise; the prefetch only warms a
// cache line). Results agree up to float rounding; only sanitizer builds lose SIMD there.
#if defined(__SANITIZE_ADDRESS__)
#define NO_MANUAL_VECTORIZATION
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NO_MANUAL_VECTORIZATION
#endif
#endif
#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>

#include "core/unique_fd.h"

namespace infera::knowledge {

namespace {

// File layout (native byte order; a file from a host of the other order fails the magic
// check and is rebuilt): a 72-byte header, then for an exact index the payload (ids as
// int64, then vectors as float32, row-major); a graph index keeps its payload, hnswlib's
// own format, in file + ".graph". The header's checksums cover the header and payload.
constexpr char kMagic[8] = {'I', 'N', 'F', 'V', 'I', 'D', 'X', '1'};
constexpr std::uint32_t kFormatVersion = 1;
constexpr std::uint32_t kKindExact = 1;
constexpr std::uint32_t kKindGraph = 2;
constexpr std::size_t kHeaderBytes = 72;
// Graph insertions per exclusive-lock hold (~1 ms each at 384 dims), so that searches
// wait at most tens of milliseconds behind a large add.
constexpr std::size_t kGraphSlice = 32;
constexpr std::size_t kHnswSeed = 100;

// Eight independent sums let the compiler vectorise without reassociating (no
// -ffast-math): two SSE registers, one AVX register.
float dot(const float* a, const float* b, std::size_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float tail = 0;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

// Writes the unit vector of `in` to `out`; false for a zero, NaN or infinite vector.
bool normalise(std::span<const float> in, float* out) {
  double sum = 0;
  for (float x : in) {
    if (!std::isfinite(x)) return false;
    sum += double{x} * x;
  }
  if (sum <= 0 || !std::isfinite(sum)) return false;
  float inv = static_cast<float>(1.0 / std::sqrt(sum));
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = in[i] * inv;
  return true;
}

// A fast streaming 64-bit checksum (not cryptographic): detects truncation and damaged
// bytes in index files, at several GB/s.
class Checksum {
 public:
  void update(const void* data, std::size_t n) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    length_ += n;
    while (n > 0 && pending_bytes_ > 0) {
      pending_ |= std::uint64_t{*p++} << (8 * pending_bytes_);
      --n;
      if (++pending_bytes_ == 8) {
        mix(pending_);
        pending_ = 0;
        pending_bytes_ = 0;
      }
    }
    for (; n >= 8; n -= 8, p += 8) {
      std::uint64_t w;
      std::memcpy(&w, p, 8);
      mix(w);
    }
    for (; n > 0; --n) pending_ |= std::uint64_t{*p++} << (8 * pending_bytes_++);
  }

  std::uint64_t value() const {
    std::uint64_t h = hash_;
    if (pending_bytes_ > 0) h = mixed(h, pending_);
    h ^= length_;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
  }

 private:
  static std::uint64_t mixed(std::uint64_t h, std::uint64_t w) {
    h ^= w * 0x9e3779b97f4a7c15ull;
    return std::rotl(h, 27) * 0xc2b2ae3d27d4eb4full;
  }
  void mix(std::uint64_t w) { hash_ = mixed(hash_, w); }

  std::uint64_t hash_ = 0x243f6a8885a308d3ull;
  std::uint64_t pending_ = 0;
  int pending_bytes_ = 0;
  std::uint64_t length_ = 0;
};

struct Header {
  std::uint32_t kind = 0;
  std::uint32_t dims = 0;
  std::uint64_t count = 0;
  std::uint64_t payload_bytes = 0;
  std::uint64_t payload_checksum = 0;
  std::uint32_t hnsw_m = 0;
  std::uint32_t hnsw_ef_construction = 0;
};

std::vector<std::uint8_t> encode_header(const Header& h) {
  std::vector<std::uint8_t> out(kHeaderBytes, 0);
  std::size_t at = 0;
  auto put = [&](const void* p, std::size_t n) {
    std::memcpy(out.data() + at, p, n);
    at += n;
  };
  put(kMagic, 8);
  put(&kFormatVersion, 4);
  put(&h.kind, 4);
  put(&h.dims, 4);
  put(&h.hnsw_m, 4);
  put(&h.hnsw_ef_construction, 4);
  std::uint32_t reserved = 0;
  put(&reserved, 4);
  put(&h.count, 8);
  put(&h.payload_bytes, 8);
  put(&h.payload_checksum, 8);
  Checksum c;
  c.update(out.data(), at);
  std::uint64_t header_checksum = c.value();
  put(&header_checksum, 8);
  return out;
}

Result<Header> decode_header(const std::vector<std::uint8_t>& in, const std::string& file) {
  if (in.size() < kHeaderBytes) return Status::Corrupt(file + ": shorter than its header");
  std::size_t at = 0;
  auto get = [&](void* p, std::size_t n) {
    std::memcpy(p, in.data() + at, n);
    at += n;
  };
  char magic[8];
  std::uint32_t version = 0, reserved = 0;
  Header h;
  get(magic, 8);
  if (std::memcmp(magic, kMagic, 8) != 0) return Status::Corrupt(file + ": not a vector index");
  get(&version, 4);
  get(&h.kind, 4);
  get(&h.dims, 4);
  get(&h.hnsw_m, 4);
  get(&h.hnsw_ef_construction, 4);
  get(&reserved, 4);
  get(&h.count, 8);
  get(&h.payload_bytes, 8);
  get(&h.payload_checksum, 8);
  Checksum c;
  c.update(in.data(), at);
  std::uint64_t header_checksum = 0;
  get(&header_checksum, 8);
  if (header_checksum != c.value()) return Status::Corrupt(file + ": header checksum mismatch");
  if (version != kFormatVersion) {
    return Status::Corrupt(file + ": format version " + std::to_string(version) + ", expected " +
                           std::to_string(kFormatVersion));
  }
  if (h.kind != kKindExact && h.kind != kKindGraph) return Status::Corrupt(file + ": unknown kind");
  return h;
}

std::string errno_text() { return std::strerror(errno); }

Status write_all(int fd, const void* data, std::size_t n, const std::string& path) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return Status::IoError(path + ": write: " + errno_text());
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return Status::Ok();
}

Status sync_and_close(UniqueFd& fd, const std::string& path) {
  if (::fsync(fd.get()) != 0) return Status::IoError(path + ": fsync: " + errno_text());
  if (::close(fd.release()) != 0) return Status::IoError(path + ": close: " + errno_text());
  return Status::Ok();
}

void sync_directory(const std::filesystem::path& dir) {
  UniqueFd fd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() >= 0) (void)::fsync(fd.get());
}

// Size and checksum of a whole file, read in 1 MiB blocks.
Status checksum_file(const std::string& path, std::uint64_t* size, std::uint64_t* checksum) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    return errno == ENOENT ? Status::NotFound(path + ": missing")
                           : Status::IoError(path + ": open: " + errno_text());
  }
  std::vector<std::uint8_t> buffer(1 << 20);
  Checksum c;
  std::uint64_t total = 0;
  while (true) {
    ssize_t r = ::read(fd.get(), buffer.data(), buffer.size());
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Status::IoError(path + ": read: " + errno_text());
    if (r == 0) break;
    c.update(buffer.data(), static_cast<std::size_t>(r));
    total += static_cast<std::uint64_t>(r);
  }
  *size = total;
  *checksum = c.value();
  return Status::Ok();
}

// A shared mutex that lets a waiting writer in before new readers. std::shared_mutex
// (glibc's default rwlock) prefers readers, so a steady stream of searches could hold off
// an add indefinitely. Satisfies SharedMutex for std::shared_lock / std::unique_lock.
class WriterFirstMutex {
 public:
  void lock() {
    std::unique_lock l(mutex_);
    ++writers_waiting_;
    changed_.wait(l, [&] { return !writer_ && readers_ == 0; });
    --writers_waiting_;
    writer_ = true;
  }
  void unlock() {
    {
      std::lock_guard l(mutex_);
      writer_ = false;
    }
    changed_.notify_all();
  }
  void lock_shared() {
    std::unique_lock l(mutex_);
    changed_.wait(l, [&] { return !writer_ && writers_waiting_ == 0; });
    ++readers_;
  }
  void unlock_shared() {
    bool last = false;
    {
      std::lock_guard l(mutex_);
      last = --readers_ == 0;
    }
    if (last) changed_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  int readers_ = 0;
  int writers_waiting_ = 0;
  bool writer_ = false;
};

// The graph and the space whose distance function it calls (which must outlive it).
struct Graph {
  explicit Graph(int dims) : space(static_cast<std::size_t>(dims)) {}
  hnswlib::InnerProductSpace space;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> hnsw;

  std::size_t live() const { return hnsw->cur_element_count - hnsw->num_deleted_; }
  bool contains(std::int64_t id) const {
    auto it = hnsw->label_lookup_.find(static_cast<hnswlib::labeltype>(id));
    return it != hnsw->label_lookup_.end() && !hnsw->isMarkedDeleted(it->second);
  }
};

// Inserts points [begin, end) on `threads` threads. hnswlib allows concurrent addPoint.
Status insert_parallel(Graph& graph, std::span<const std::int64_t> ids, const float* vectors,
                       int dims, int threads) {
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::string error;
  std::mutex error_mutex;
  auto work = [&] {
    while (!failed.load(std::memory_order_relaxed)) {
      std::size_t i = next.fetch_add(1);
      if (i >= ids.size()) return;
      try {
        graph.hnsw->addPoint(vectors + i * dims, static_cast<hnswlib::labeltype>(ids[i]));
      } catch (const std::exception& e) {
        std::lock_guard lock(error_mutex);
        error = e.what();
        failed = true;
      }
    }
  };
  int n = std::max(1, std::min<int>(threads, static_cast<int>(ids.size() / 256) + 1));
  std::vector<std::thread> pool;
  for (int t = 1; t < n; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (failed) return Status::ResourceExhausted("vector index: " + error);
  return Status::Ok();
}

}  // namespace

struct VectorIndex::Impl {
  explicit Impl(const VectorIndexOptions& o) : options(o) {}

  // A graph holding the given normalised vectors, with room for `capacity`.
  Result<std::unique_ptr<Graph>> build_graph(std::span<const std::int64_t> ids,
                                             const float* vectors, std::size_t capacity) const;
  // Exact scan, best first. REQUIRES: data_mutex held (shared).
  std::vector<VectorHit> search_exact(const float* query, std::size_t k) const;
  // Graph insertions in short exclusive slices. REQUIRES: write_mutex held.
  Status insert_into_graph(std::span<const std::int64_t> ids, const float* vectors);
  // The graph rebuilt from its live points. REQUIRES: write_mutex held.
  Result<std::unique_ptr<Graph>> compacted_graph(std::size_t extra_capacity) const;
  // REQUIRES: data_mutex held (exclusive).
  void put_exact(std::int64_t id, const float* vector);
  void adopt_exact(std::vector<std::int64_t> ids, std::vector<float> vectors);

  VectorIndexOptions options;
  std::mutex write_mutex;  // serialises add, remove, rebuild
  mutable WriterFirstMutex data_mutex;
  // Exact mode (graph == nullptr).
  std::vector<std::int64_t> exact_ids;
  std::vector<float> exact_vectors;  // exact_ids.size() x dims
  std::unordered_map<std::int64_t, std::uint32_t> exact_slots;
  // Graph mode.
  std::unique_ptr<Graph> graph;
};

Result<std::unique_ptr<Graph>> VectorIndex::Impl::build_graph(std::span<const std::int64_t> ids,
                                                              const float* vectors,
                                                              std::size_t capacity) const {
  auto g = std::make_unique<Graph>(options.dims);
  try {
    g->hnsw = std::make_unique<hnswlib::HierarchicalNSW<float>>(
        &g->space, std::max<std::size_t>(capacity, 16), options.hnsw_m,
        options.hnsw_ef_construction, kHnswSeed);
  } catch (const std::exception& e) {
    return Status::ResourceExhausted(std::string("vector index: ") + e.what());
  }
  g->hnsw->setEf(static_cast<std::size_t>(options.hnsw_ef_search));
  Status s = insert_parallel(*g, ids, vectors, options.dims, options.build_threads);
  if (!s.ok()) return s;
  return g;
}

std::vector<VectorHit> VectorIndex::Impl::search_exact(const float* query, std::size_t k) const {
  const std::size_t n = exact_ids.size();
  const std::size_t dims = static_cast<std::size_t>(options.dims);
  k = std::min(k, n);
  std::vector<std::pair<float, std::uint32_t>> heap;  // min-heap of the best k so far
  heap.reserve(k + 1);
  auto better = [](const auto& a, const auto& b) { return a.first > b.first; };
  if (k == 0) return {};
  for (std::size_t i = 0; i < n; ++i) {
    float s = dot(query, exact_vectors.data() + i * dims, dims);
    if (heap.size() < k) {
      heap.emplace_back(s, static_cast<std::uint32_t>(i));
      std::push_heap(heap.begin(), heap.end(), better);
    } else if (s > heap.front().first) {
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.back() = {s, static_cast<std::uint32_t>(i)};
      std::push_heap(heap.begin(), heap.end(), better);
    }
  }
  std::sort_heap(heap.begin(), heap.end(), better);
  std::vector<VectorHit> out;
  out.reserve(heap.size());
  for (const auto& [score, slot] : heap) out.push_back({exact_ids[slot], score});
  return out;
}

void VectorIndex::Impl::put_exact(std::int64_t id, const float* vector) {
  const std::size_t dims = static_cast<std::size_t>(options.dims);
  auto [it, inserted] = exact_slots.try_emplace(id, static_cast<std::uint32_t>(exact_ids.size()));
  if (inserted) {
    exact_ids.push_back(id);
    exact_vectors.insert(exact_vectors.end(), vector, vector + dims);
  } else {
    std::copy(vector, vector + dims, exact_vectors.begin() + it->second * dims);
  }
}

void VectorIndex::Impl::adopt_exact(std::vector<std::int64_t> ids, std::vector<float> vectors) {
  exact_ids = std::move(ids);
  exact_vectors = std::move(vectors);
  exact_slots.clear();
  exact_slots.reserve(exact_ids.size());
  for (std::size_t i = 0; i < exact_ids.size(); ++i) {
    exact_slots[exact_ids[i]] = static_cast<std::uint32_t>(i);
  }
}

Result<std::unique_ptr<Graph>> VectorIndex::Impl::compacted_graph(std::size_t extra) const {
  const auto& h = *graph->hnsw;
  std::vector<std::int64_t> ids;
  std::vector<float> vectors;
  ids.reserve(graph->live());
  vectors.reserve(graph->live() * options.dims);
  for (std::size_t i = 0; i < h.cur_element_count; ++i) {
    auto internal = static_cast<hnswlib::tableint>(i);
    if (h.isMarkedDeleted(internal)) continue;
    ids.push_back(static_cast<std::int64_t>(h.getExternalLabel(internal)));
    const auto* v = reinterpret_cast<const float*>(h.getDataByInternalId(internal));
    vectors.insert(vectors.end(), v, v + options.dims);
  }
  return build_graph(ids, vectors.data(), ids.size() + extra);
}

Status VectorIndex::Impl::insert_into_graph(std::span<const std::int64_t> ids,
                                            const float* vectors) {
  std::size_t needed = graph->hnsw->cur_element_count + ids.size();
  if (needed > graph->hnsw->max_elements_) {
    if (graph->hnsw->num_deleted_ * 2 >= graph->hnsw->cur_element_count) {
      // Half the nodes are deleted: rebuilding costs about what growing would, and keeps
      // deleted nodes from slowing every search.
      Result<std::unique_ptr<Graph>> fresh = compacted_graph(ids.size() * 2);
      if (!fresh.ok()) return fresh.status();
      std::unique_lock lock(data_mutex);
      graph = std::move(fresh).value();
    } else {
      std::unique_lock lock(data_mutex);
      try {
        graph->hnsw->resizeIndex(std::max(needed, graph->hnsw->max_elements_ * 2));
      } catch (const std::exception& e) {
        return Status::ResourceExhausted(std::string("vector index: ") + e.what());
      }
    }
  }
  const std::size_t dims = static_cast<std::size_t>(options.dims);
  for (std::size_t begin = 0; begin < ids.size(); begin += kGraphSlice) {
    std::size_t end = std::min(ids.size(), begin + kGraphSlice);
    std::unique_lock lock(data_mutex);
    try {
      for (std::size_t i = begin; i < end; ++i) {
        graph->hnsw->addPoint(vectors + i * dims, static_cast<hnswlib::labeltype>(ids[i]));
      }
    } catch (const std::exception& e) {
      return Status::ResourceExhausted(std::string("vector index: ") + e.what());
    }
  }
  return Status::Ok();
}

VectorIndex::VectorIndex(const VectorIndexOptions& options)
    : impl_(std::make_unique<Impl>(options)) {
  if (impl_->options.dims <= 0) impl_->options.dims = 1;
  impl_->options.hnsw_m = std::max(2, impl_->options.hnsw_m);
  impl_->options.hnsw_ef_construction = std::max(1, impl_->options.hnsw_ef_construction);
  impl_->options.hnsw_ef_search = std::max(1, impl_->options.hnsw_ef_search);
}

VectorIndex::~VectorIndex() = default;

int VectorIndex::dims() const { return impl_->options.dims; }

std::size_t VectorIndex::size() const {
  std::shared_lock lock(impl_->data_mutex);
  return impl_->graph ? impl_->graph->live() : impl_->exact_ids.size();
}

bool VectorIndex::uses_graph() const {
  std::shared_lock lock(impl_->data_mutex);
  return impl_->graph != nullptr;
}

std::vector<std::int64_t> VectorIndex::ids() const {
  std::vector<std::int64_t> out;
  {
    std::shared_lock lock(impl_->data_mutex);
    if (impl_->graph) {
      out.reserve(impl_->graph->live());
      for (const auto& [label, internal] : impl_->graph->hnsw->label_lookup_) {
        if (!impl_->graph->hnsw->isMarkedDeleted(internal)) {
          out.push_back(static_cast<std::int64_t>(label));
        }
      }
    } else {
      out = impl_->exact_ids;
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

Status VectorIndex::add(std::span<const std::int64_t> ids, std::span<const float> vectors) {
  const std::size_t dims = static_cast<std::size_t>(impl_->options.dims);
  if (vectors.size() != ids.size() * dims) {
    return Status::InvalidArgument("vector index: " + std::to_string(ids.size()) + " ids need " +
                                   std::to_string(ids.size() * dims) + " floats, got " +
                                   std::to_string(vectors.size()));
  }
  std::vector<float> unit(vectors.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (!normalise(vectors.subspan(i * dims, dims), unit.data() + i * dims)) {
      return Status::InvalidArgument("vector index: the vector of id " + std::to_string(ids[i]) +
                                     " is zero or not finite");
    }
  }
  Impl& m = *impl_;
  std::lock_guard write(m.write_mutex);
  if (m.graph) return m.insert_into_graph(ids, unit.data());

  std::size_t new_ids = 0;
  {
    std::unordered_map<std::int64_t, bool> batch;
    for (std::int64_t id : ids) {
      if (!m.exact_slots.contains(id) && batch.emplace(id, true).second) ++new_ids;
    }
  }
  if (m.exact_ids.size() + new_ids <= m.options.exact_threshold) {
    std::unique_lock lock(m.data_mutex);
    for (std::size_t i = 0; i < ids.size(); ++i) m.put_exact(ids[i], unit.data() + i * dims);
    return Status::Ok();
  }
  // Past the threshold: everything moves into a graph, built while searches still use
  // the exact vectors (only this writer changes them, and it holds write_mutex).
  std::vector<std::int64_t> all_ids = m.exact_ids;
  std::vector<float> all_vectors = m.exact_vectors;
  {
    std::unordered_map<std::int64_t, std::size_t> slot;
    for (std::size_t i = 0; i < all_ids.size(); ++i) slot[all_ids[i]] = i;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      auto [it, inserted] = slot.try_emplace(ids[i], all_ids.size());
      if (inserted) {
        all_ids.push_back(ids[i]);
        all_vectors.insert(all_vectors.end(), unit.begin() + i * dims,
                           unit.begin() + (i + 1) * dims);
      } else {
        std::copy(unit.begin() + i * dims, unit.begin() + (i + 1) * dims,
                  all_vectors.begin() + it->second * dims);
      }
    }
  }
  Result<std::unique_ptr<Graph>> g =
      m.build_graph(all_ids, all_vectors.data(), all_ids.size() + all_ids.size() / 2);
  if (!g.ok()) return g.status();
  std::unique_lock lock(m.data_mutex);
  m.graph = std::move(g).value();
  m.adopt_exact({}, {});
  return Status::Ok();
}

std::size_t VectorIndex::remove(std::span<const std::int64_t> ids) {
  Impl& m = *impl_;
  const std::size_t dims = static_cast<std::size_t>(m.options.dims);
  std::lock_guard write(m.write_mutex);
  std::unique_lock lock(m.data_mutex);
  std::size_t removed = 0;
  for (std::int64_t id : ids) {
    if (m.graph) {
      if (!m.graph->contains(id)) continue;
      m.graph->hnsw->markDelete(static_cast<hnswlib::labeltype>(id));
      ++removed;
      continue;
    }
    auto it = m.exact_slots.find(id);
    if (it == m.exact_slots.end()) continue;
    std::uint32_t slot = it->second;
    std::uint32_t last = static_cast<std::uint32_t>(m.exact_ids.size() - 1);
    if (slot != last) {
      m.exact_ids[slot] = m.exact_ids[last];
      std::copy(m.exact_vectors.begin() + last * dims, m.exact_vectors.begin() + (last + 1) * dims,
                m.exact_vectors.begin() + slot * dims);
      m.exact_slots[m.exact_ids[slot]] = slot;
    }
    m.exact_ids.pop_back();
    m.exact_vectors.resize(m.exact_vectors.size() - dims);
    m.exact_slots.erase(id);
    ++removed;
  }
  return removed;
}

Status VectorIndex::rebuild(const VectorSource& source) {
  Impl& m = *impl_;
  const std::size_t dims = static_cast<std::size_t>(m.options.dims);
  std::lock_guard write(m.write_mutex);
  std::vector<std::int64_t> ids;
  std::vector<float> vectors;
  std::unordered_map<std::int64_t, std::size_t> slot;
  Status bad;
  Status s = source([&](std::int64_t id, std::span<const float> v) {
    if (!bad.ok()) return;
    if (v.size() != dims) {
      bad = Status::InvalidArgument("vector index: id " + std::to_string(id) + " has " +
                                    std::to_string(v.size()) + " dims, expected " +
                                    std::to_string(dims));
      return;
    }
    auto [it, inserted] = slot.try_emplace(id, ids.size());
    if (inserted) {
      ids.push_back(id);
      vectors.resize(vectors.size() + dims);
    }
    if (!normalise(v, vectors.data() + it->second * dims)) {
      bad = Status::InvalidArgument("vector index: the vector of id " + std::to_string(id) +
                                    " is zero or not finite");
    }
  });
  if (!s.ok()) return s;
  if (!bad.ok()) return bad;
  if (ids.size() <= m.options.exact_threshold) {
    std::unique_lock lock(m.data_mutex);
    m.graph.reset();
    m.adopt_exact(std::move(ids), std::move(vectors));
    return Status::Ok();
  }
  Result<std::unique_ptr<Graph>> g =
      m.build_graph(ids, vectors.data(), ids.size() + ids.size() / 2);
  if (!g.ok()) return g.status();
  std::unique_lock lock(m.data_mutex);
  m.graph = std::move(g).value();
  m.adopt_exact({}, {});
  return Status::Ok();
}

Result<std::vector<VectorHit>> VectorIndex::search(std::span<const float> query,
                                                   std::size_t k) const {
  const Impl& m = *impl_;
  if (query.size() != static_cast<std::size_t>(m.options.dims)) {
    return Status::InvalidArgument("vector index: query has " + std::to_string(query.size()) +
                                   " dims, the index " + std::to_string(m.options.dims));
  }
  thread_local std::vector<float> unit;
  unit.resize(query.size());
  if (!normalise(query, unit.data())) {
    return Status::InvalidArgument("vector index: the query vector is zero or not finite");
  }
  std::shared_lock lock(m.data_mutex);
  if (!m.graph) return m.search_exact(unit.data(), k);
  std::vector<VectorHit> out;
  if (k == 0 || m.graph->live() == 0) return out;
  std::priority_queue<std::pair<float, hnswlib::labeltype>> found;
  try {
    found = m.graph->hnsw->searchKnn(unit.data(), k);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("vector index search: ") + e.what());
  }
  out.resize(found.size());
  // The queue pops the worst (largest distance) first; distance is 1 - cosine.
  for (std::size_t i = out.size(); i-- > 0; found.pop()) {
    out[i] = {static_cast<std::int64_t>(found.top().second), 1.0f - found.top().first};
  }
  return out;
}

void VectorIndex::set_ef_search(int ef) {
  std::lock_guard write(impl_->write_mutex);  // build_graph reads the option
  std::unique_lock lock(impl_->data_mutex);
  impl_->options.hnsw_ef_search = std::max(1, ef);
  if (impl_->graph)
    impl_->graph->hnsw->setEf(static_cast<std::size_t>(impl_->options.hnsw_ef_search));
}

Status VectorIndex::save(const std::filesystem::path& file) const {
  const Impl& m = *impl_;
  const std::string path = file.string();
  const std::string tmp = path + ".tmp";
  const std::string graph_path = path + ".graph";
  const std::string graph_tmp = graph_path + ".tmp";
  std::error_code ec;
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path(), ec);

  std::shared_lock lock(m.data_mutex);  // writers wait; searches go on
  Header h;
  h.dims = static_cast<std::uint32_t>(m.options.dims);
  h.hnsw_m = static_cast<std::uint32_t>(m.options.hnsw_m);
  h.hnsw_ef_construction = static_cast<std::uint32_t>(m.options.hnsw_ef_construction);
  if (m.graph) {
    h.kind = kKindGraph;
    h.count = m.graph->live();
    try {
      m.graph->hnsw->saveIndex(graph_tmp);
    } catch (const std::exception& e) {
      return Status::IoError(graph_tmp + ": " + e.what());
    }
    {
      UniqueFd fd(::open(graph_tmp.c_str(), O_RDONLY | O_CLOEXEC));
      if (fd.get() < 0 || ::fsync(fd.get()) != 0) {
        return Status::IoError(graph_tmp + ": fsync: " + errno_text());
      }
    }
    Status s = checksum_file(graph_tmp, &h.payload_bytes, &h.payload_checksum);
    if (!s.ok()) return s;
  } else {
    h.kind = kKindExact;
    h.count = m.exact_ids.size();
    Checksum c;
    c.update(m.exact_ids.data(), m.exact_ids.size() * sizeof(std::int64_t));
    c.update(m.exact_vectors.data(), m.exact_vectors.size() * sizeof(float));
    h.payload_bytes =
        m.exact_ids.size() * sizeof(std::int64_t) + m.exact_vectors.size() * sizeof(float);
    h.payload_checksum = c.value();
  }
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) return Status::IoError(tmp + ": open: " + errno_text());
  std::vector<std::uint8_t> header = encode_header(h);
  Status s = write_all(fd.get(), header.data(), header.size(), tmp);
  if (s.ok() && h.kind == kKindExact) {
    s = write_all(fd.get(), m.exact_ids.data(), m.exact_ids.size() * sizeof(std::int64_t), tmp);
    if (s.ok()) {
      s = write_all(fd.get(), m.exact_vectors.data(), m.exact_vectors.size() * sizeof(float), tmp);
    }
  }
  if (s.ok()) s = sync_and_close(fd, tmp);
  if (!s.ok()) return s;
  // The graph first: a crash between the renames leaves a header whose checksum does
  // not match the new graph, which load() reports as damaged.
  if (h.kind == kKindGraph && ::rename(graph_tmp.c_str(), graph_path.c_str()) != 0) {
    return Status::IoError(graph_path + ": rename: " + errno_text());
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::IoError(path + ": rename: " + errno_text());
  }
  if (h.kind == kKindExact) std::filesystem::remove(graph_path, ec);
  sync_directory(file.parent_path());
  return Status::Ok();
}

Result<std::unique_ptr<VectorIndex>> VectorIndex::load(const std::filesystem::path& file,
                                                       const VectorIndexOptions& options) {
  const std::string path = file.string();
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!std::filesystem::exists(file, ec)) return Status::NotFound(path + ": missing");
    return Status::IoError(path + ": cannot open");
  }
  std::vector<std::uint8_t> header_bytes(kHeaderBytes);
  in.read(reinterpret_cast<char*>(header_bytes.data()), kHeaderBytes);
  header_bytes.resize(static_cast<std::size_t>(in.gcount()));
  Result<Header> h = decode_header(header_bytes, path);
  if (!h.ok()) return h.status();
  if (static_cast<int>(h->dims) != options.dims) {
    return Status::Corrupt(path + ": built for " + std::to_string(h->dims) + " dims, not " +
                           std::to_string(options.dims));
  }
  auto index = std::make_unique<VectorIndex>(options);
  Impl& m = *index->impl_;
  const std::size_t dims = h->dims;

  if (h->kind == kKindExact) {
    if (h->payload_bytes != h->count * (sizeof(std::int64_t) + dims * sizeof(float))) {
      return Status::Corrupt(path + ": payload size does not match its count");
    }
    std::uint64_t file_size = std::filesystem::file_size(file);
    if (file_size != kHeaderBytes + h->payload_bytes) {
      return Status::Corrupt(path + ": " + std::to_string(file_size) + " bytes, expected " +
                             std::to_string(kHeaderBytes + h->payload_bytes));
    }
    std::vector<std::int64_t> ids(h->count);
    std::vector<float> vectors(h->count * dims);
    in.read(reinterpret_cast<char*>(ids.data()), ids.size() * sizeof(std::int64_t));
    in.read(reinterpret_cast<char*>(vectors.data()), vectors.size() * sizeof(float));
    if (!in) return Status::Corrupt(path + ": truncated");
    Checksum c;
    c.update(ids.data(), ids.size() * sizeof(std::int64_t));
    c.update(vectors.data(), vectors.size() * sizeof(float));
    if (c.value() != h->payload_checksum) return Status::Corrupt(path + ": checksum mismatch");
    if (ids.size() > options.exact_threshold) {
      Result<std::unique_ptr<Graph>> g = m.build_graph(ids, vectors.data(), ids.size() * 3 / 2);
      if (!g.ok()) return g.status();
      m.graph = std::move(g).value();
    } else {
      m.adopt_exact(std::move(ids), std::move(vectors));
    }
    return index;
  }

  const std::string graph_path = path + ".graph";
  std::uint64_t size = 0, checksum = 0;
  Status s = checksum_file(graph_path, &size, &checksum);
  if (s.code() == StatusCode::kNotFound) return Status::Corrupt(graph_path + ": missing");
  if (!s.ok()) return s;
  if (size != h->payload_bytes || checksum != h->payload_checksum) {
    return Status::Corrupt(graph_path + ": does not match " + path + " (size " +
                           std::to_string(size) + ", expected " + std::to_string(h->payload_bytes) +
                           ", or checksum)");
  }
  auto g = std::make_unique<Graph>(options.dims);
  // hnswlib 0.6.2's loading constructor leaves num_deleted_ (which loadIndex increments)
  // and the pointers its destructor frees uninitialised: start from the bare constructor.
  g->hnsw = std::make_unique<hnswlib::HierarchicalNSW<float>>(&g->space);
  hnswlib::HierarchicalNSW<float>& hnsw = *g->hnsw;
  hnsw.num_deleted_ = 0;
  hnsw.cur_element_count = 0;
  hnsw.data_level0_memory_ = nullptr;
  hnsw.linkLists_ = nullptr;
  hnsw.visited_list_pool_ = nullptr;
  hnsw.metric_distance_computations = 0;
  hnsw.metric_hops = 0;
  try {
    hnsw.loadIndex(graph_path, &g->space, 0);
  } catch (const std::exception& e) {
    // What was read is unusable; let the destructor free only what was allocated.
    hnsw.cur_element_count = 0;
    return Status::Corrupt(graph_path + ": " + e.what());
  }
  if (g->hnsw->label_offset_ - g->hnsw->offsetData_ != dims * sizeof(float) ||
      g->live() != h->count) {
    return Status::Corrupt(graph_path + ": does not hold " + std::to_string(h->count) + " " +
                           std::to_string(dims) + "-dimensional vectors");
  }
  g->hnsw->setEf(static_cast<std::size_t>(options.hnsw_ef_search));
  m.graph = std::move(g);
  return index;
}

}  // namespace infera::knowledge
