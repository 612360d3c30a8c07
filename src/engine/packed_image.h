// Persisted images of repacked weights. A load that repacks a model's matrices into the
// kernel table's own layout (one region, each matrix at its offset) can save the region
// in a cache directory; a later load of the same file with the same table maps the image
// instead of repacking, which skips a read and a write of every weight byte.
//
// An image is named and headed by its key: the source file's identity (device, inode,
// size, mtime, ctime), the kernel table's name, the tile row multiple, every packed
// matrix (source offset, type, shape, tile bytes, region offset), the region's size and
// kPackedImageVersion. open() compares the whole header with the key and the file's
// size with the header's; an image that does not match is deleted. The contents past
// the header are not checksummed (reading them all is what the image saves); the model
// repacks the first tile of a few matrices (one per packed layout) and compares them with
// the image (packed_matrices.cpp), which catches a changed packing code.
//
// Files in the directory: <stem>-<path hash>-<key hash>.packed, written as a temporary
// "<name>.tmp.<pid>.<n>" beside it, fsynced and renamed. Writing an image deletes the
// other images of the same source path (stale versions) and then the least recently
// used images (by mtime; open() touches the image it maps) until the directory holds at
// most the byte cap, never the new one.
//
// Thread: free functions and PackedImage are safe from any thread; a PackedImage is
// immutable once open. A mapped image must not be truncated in place (reads past the new
// end would fault): infera only ever replaces images by rename and deletes them.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "engine/mapped_file.h"

namespace infera::engine {

// Bump when the header or the meaning of the region changes in a way the key misses.
inline constexpr uint32_t kPackedImageVersion = 2;
// The header is padded to a multiple of this, so that the region starts on a 2 MiB
// boundary of the file: written in aligned chunks, the page cache holds it in 2 MiB
// folios, which a mapping then maps as huge pages (fewer TLB misses, and on some VMs
// a much cheaper first pass over a fresh mapping).
inline constexpr uint64_t kPackedImageHeaderAlign = uint64_t{2} << 20;

struct PackedImageMatrix {
  uint64_t source_offset = 0;  // of the matrix's rows, from the file's tensor data start
  uint64_t region_offset = 0;  // of its tiles in the packed region
  uint32_t type = 0;           // GgmlType
  int32_t rows = 0;
  int32_t cols = 0;
  uint64_t tile_bytes = 0;
};

struct PackedImageKey {
  FileIdentity source;
  std::string kernels;  // the kernel table's name
  uint32_t row_multiple = 0;
  std::vector<PackedImageMatrix> matrices;
  uint64_t region_bytes = 0;
};

// Where `key`'s image of `source_path` lives in `dir`.
std::string packed_image_path(const std::string& dir, const std::string& source_path,
                              const PackedImageKey& key);

// A read-only mapping of a verified image (munmapped on destruction).
class PackedImage {
 public:
  // Maps the image at `path` when its header is `key`'s and its size is the header's.
  // kNotFound when there is no file; kCorrupt when the file is another key's, short or
  // long (the file is then deleted); kIoError when it cannot be read or mapped. Marks a
  // mapped image as used (mtime now) for the directory's eviction order.
  static Result<std::unique_ptr<PackedImage>> open(const std::string& path,
                                                   const PackedImageKey& key);
  ~PackedImage();
  PackedImage(const PackedImage&) = delete;
  PackedImage& operator=(const PackedImage&) = delete;

  // The packed region (key.region_bytes bytes, page-aligned).
  const uint8_t* region() const { return region_; }
  uint64_t region_bytes() const { return region_bytes_; }
  // Maps bytes [begin, end) of the region now (MADV_POPULATE_READ; a no-op where the
  // kernel lacks it). Disjoint ranges may be populated from several threads at once.
  void populate(uint64_t begin, uint64_t end) const;
  // Bytes of the mapping the kernel maps with 2 MiB pages now (FilePmdMapped of
  // /proc/self/smaps); 0 when that cannot be read. Takes a few milliseconds.
  uint64_t huge_mapped_bytes() const;

 private:
  PackedImage(uint8_t* map, size_t map_bytes, uint64_t header_bytes, uint64_t region_bytes)
      : map_(map),
        map_bytes_(map_bytes),
        region_(map + header_bytes),
        region_bytes_(region_bytes) {}
  uint8_t* map_;
  size_t map_bytes_;
  const uint8_t* region_;
  uint64_t region_bytes_;
};

// Writes `region` (key.region_bytes bytes) as `key`'s image at `path`, creating the
// directory, then trims the directory as described above to `max_bytes`. Writes nothing
// and returns kResourceExhausted when the image alone would exceed `max_bytes`; returns
// kCancelled, leaving no file behind, once `cancel` is set; kIoError naming the path on a
// failed write. REQUIRES:
// `region` stays readable and unchanged until this returns.
Status write_packed_image(const std::string& path, const PackedImageKey& key, const uint8_t* region,
                          uint64_t max_bytes, const std::atomic<bool>& cancel);

// One image to write: what write_packed_image takes, the owner of the region (kept alive
// until the write ends, so that unloading the model does not lose its image) and the
// outcome.
struct ImageWriteJob {
  std::string path;
  PackedImageKey key;
  const uint8_t* region = nullptr;
  std::shared_ptr<const void> region_owner;
  uint64_t max_bytes = 0;
  std::function<void(const std::string&)> warn;  // a failed write's message; may be empty

  // Set by the writer.
  std::atomic<bool> cancel{false};
  std::mutex mu;
  std::condition_variable cv;
  bool started = false;
  bool done = false;
  bool written = false;

  void wait() {
    std::unique_lock lock(mu);
    cv.wait(lock, [this] { return done; });
  }
};

// The process's image writer: one thread, at the lowest nice level, writing one image at a
// time. At most one job waits behind the running one (each holds a model's region, often
// hundreds of MiB, beyond the models' memory budget when the model was unloaded): a job
// submitted beyond that is dropped and its model's next load tries again. Destruction (at
// exit) cancels the running job and drops the waiting one.
// Thread-safe.
class ImageWriter {
 public:
  static ImageWriter& get();
  ~ImageWriter();

  // Queues `job`; false (the job is marked done, not written) when one already waits or
  // the same image is being written. A job whose image exists when it starts is done at
  // once (written by another load or process).
  // A queued job runs to its end even if its model is gone, keeping the region alive.
  bool submit(std::shared_ptr<ImageWriteJob> job);

 private:
  ImageWriter() = default;
  void run();
  static void finish(ImageWriteJob& job, bool written);

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<ImageWriteJob>> queue_;
  std::shared_ptr<ImageWriteJob> running_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace infera::engine
