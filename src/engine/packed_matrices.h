// Internal to the engine: a decoder's weight matrices that the kernel table reads faster in
// its own layout (AVX-512: Q4_0/Q8_0 and the K-quants in lane order), placed at load in one
// region — repacked from the file into private huge-page memory, or mapped from a
// persisted image of an earlier load (packed_image.h) — and the background work that goes
// with them: handing a repacked region to the image writer, or copying a mapped image the
// kernel maps with small pages into private memory, adopted at an eval() boundary.
//
// Thread: place() and the eval hooks on the model's eval thread (place() during load);
// report() and wait_for_background_work() from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/kernels/kernels.h"
#include "engine/linear.h"

namespace infera::engine {

class GgufFile;
class ThreadPool;
class PackedImage;
struct PackedImageKey;
struct ImageWriteJob;
class PackedMemory;

class PackedMatrices {
 public:
  // REQUIRES: `file`, `table` and `pool` outlive this object. `source_path` names the
  // file in image names and warnings; `keep_rows` is the start of a matrix read in the
  // file's layout (the embedding table) whose pages are never released, even when a tied
  // output shares them.
  PackedMatrices(const GgufFile& file, std::string source_path, const kernels::Kernels& table,
                 ThreadPool& pool, const ModelOptions& options, const uint8_t* keep_rows);
  // Cancels a copy in progress; an image being written keeps its region until written.
  ~PackedMatrices();
  PackedMatrices(const PackedMatrices&) = delete;
  PackedMatrices& operator=(const PackedMatrices&) = delete;

  // Points the `candidates` with a packed layout (options.repack_weights) into one region:
  // their image when the cache directory holds this file's, else prefaults the file and
  // repacks them (then writes the image in the background). Without such matrices, only
  // prefaults the file. REQUIRES: the candidates outlive this object; called once.
  void place(const std::vector<Matrix*>& candidates);

  // Around every eval(): begin adopts a finished copy (re-pointing the matrices, unmapping
  // the image); both tell the copy when the engine is busy.
  void begin_eval();
  void end_eval();

  // weights, image_path, image_written and pack_ms of a LoadReport.
  LoadReport report() const;
  void wait_for_background_work();

 private:
  void plan(const std::vector<Matrix*>& candidates);
  PackedImageKey image_key() const;
  // Maps the image at `path` and points the packed matrices into it; false (with the
  // weights untouched) when there is none or it does not hold what repacking would.
  bool use_image(const std::string& path, const PackedImageKey& key);
  // Rewrites the packed matrices into private memory, in parallel on the pool, and
  // releases the file pages they came from.
  void repack_weights();
  // Gives the file's copy of a packed matrix's rows [r0, r1) back (whole pages), unless
  // it is also the embedding table (a tied output).
  void release_source_rows(const Matrix& m, int r0, int r1) const;
  // Hands the repacked region to the process's image writer (packed_image.h).
  void write_image(const std::string& path, const PackedImageKey& key);
  // The background thread: copies the mapped image into private memory, then sets
  // promoted_ready_.
  void start_promotion();
  void promote_image();
  void adopt_promoted();
  void warn(const std::string& message) const {
    if (options_.packed_cache_warning) options_.packed_cache_warning(message);
  }

  const GgufFile* file_;
  std::string source_path_;
  const kernels::Kernels* kernels_;
  ThreadPool* pool_;
  ModelOptions options_;
  const uint8_t* keep_rows_;

  // The matrices and their offsets in one region of bytes_, which is region_ (private
  // memory; shared with the image writer while it writes) or image_ (a mapped image, until
  // promoted_ is adopted).
  std::vector<Matrix*> matrices_;
  std::vector<size_t> offsets_;
  size_t bytes_ = 0;
  std::shared_ptr<PackedMemory> region_;
  std::shared_ptr<ImageWriteJob> write_job_;  // set by place(), then read-only
  std::unique_ptr<PackedImage> image_;
  std::unique_ptr<PackedMemory> promoted_;  // written by the background thread until ready
  std::atomic<bool> promoted_ready_{false};
  std::atomic<bool> cancel_background_{false};
  std::atomic<bool> evaluating_{false};
  std::atomic<int64_t> last_eval_end_ns_{0};
  std::thread background_;
  mutable std::mutex background_mu_;  // guards report_ and background_running_
  std::condition_variable background_cv_;
  bool background_running_ = false;
  LoadReport report_;
};

}  // namespace infera::engine
