// The embedded inference engine's public interface: load a GGUF model (llama
// family and qwen2) and evaluate batches of (sequence, token, position) entries
// over a paged KV cache — chunked prompt prefill and multi-sequence decode in one
// call — for the scheduler's continuous batching.
//
// A sequence's logits do not depend on what else is in the batch: every kernel
// computes each row the same way whatever the batch size.
//
// Thread: one thread (the engine loop) calls eval() and the KV methods; eval()
// uses the model's own compute pool internally.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "engine/ggml_types.h"
#include "engine/kv_cache.h"
#include "engine/tokenizer.h"

namespace infera::engine {

struct ModelOptions {
  int threads = 1;        // MAX_WORKERS / --max-workers
  // Pin compute thread i to cpus[i % size] (core/cpu_topology.h, --cpu-affinity);
  // empty: not pinned.
  std::vector<int> cpus;
  int ctx_tokens = 4096;  // --ctx-size: KV cache positions shared by all sequences
  int block_tokens = 16;  // positions per KV block
  int max_batch = 512;    // most entries in one eval() (scratch is sized for it)
  // Element type of the KV cache; only F16 is implemented (others: kUnsupported).
  GgmlType kv_type = GgmlType::kF16;
  // Read the weights into private huge-page memory instead of mapping the file
  // (--no-mmap): slower to load and not shared with other processes, faster decode
  // where TLB misses on 4 KiB pages cost (measured in docs/BENCHMARKS.md).
  bool read_into_memory = false;
  // Let the kernel table rewrite the weights it reads faster in its own layout
  // (AVX-512: Q4_0/Q8_0 in lane order) into a private copy at load; the file pages
  // of the rewritten matrices are released. Off: every matrix is read from the file.
  bool repack_weights = true;
  // Round attention as llama.cpp's CPU flash attention does for short batches and
  // contexts (ggml's one-query path: an online softmax whose weighted sum of V rows is
  // kept in F16, rounded at every position), so that logits and greedy ids can be
  // compared with llama.cpp's at float rounding (--ggml-attention). Off: the softmax
  // weights sum V in F32, which is more precise.
  bool ggml_attention_rounding = false;
  // Compute the products, rope, attention scores and SiLU in llama.cpp's float order
  // (kernels::ggml_order, x86 only), so that with ggml_attention_rounding the logits are
  // llama.cpp's bit for bit even through many layers (--ggml-compat sets both).
  // Slower, and no repacked weights. Off: infera's own (faster) kernels, as exact but
  // rounding in other places.
  bool ggml_kernel_order = false;
  // Directory of persisted packed-weight images (packed_image.h; --packed-cache-dir,
  // off with --no-packed-cache; empty = off). A load that repacks writes its image there
  // in the background; a later load of the same file with the same kernel table maps
  // the image instead of repacking, serves from it at once, and copies it into huge-page
  // memory in the background (adopted at the next eval()).
  std::string packed_cache_dir;
  // Most bytes of images the directory keeps; least recently used ones are deleted
  // beyond it (--packed-cache-max-bytes).
  uint64_t packed_cache_max_bytes = uint64_t{8} << 30;
  // When to copy a mapped image into private huge-page memory in the background (while
  // the engine is idle; adopted at an eval()). The default copies only when the kernel
  // maps less than 90% of the image with huge pages: 4 KiB file pages made prompt
  // processing up to a quarter slower, while a huge-page mapping reads as fast as the
  // copy (docs/BENCHMARKS.md) and is shared with other processes instead of doubling
  // the memory.
  enum class Promotion { kNever, kUnlessHugeMapped, kAlways };
  Promotion promote_packed_image = Promotion::kUnlessHugeMapped;
  // Told, from the loading thread or the model's background thread, why an image was
  // refused (it was then deleted and the weights repacked) or could not be written.
  // May be empty.
  std::function<void(const std::string&)> packed_cache_warning;
};

// Where a loaded model's packed weights are (Model::load_report).
enum class PackedWeights {
  kNone,      // nothing repacked: every matrix is read in the file's layout
  kRepacked,  // repacked from the file at this load into private huge-page memory
  kImage,     // mapped from a persisted image, not yet promoted
  kPromoted,  // copied from the image into private huge-page memory (same bytes)
};

struct LoadReport {
  PackedWeights weights = PackedWeights::kNone;
  std::string image_path;      // the image used or written; empty without a cache dir
  bool image_written = false;  // this model's background writer finished the image
  double load_ms = 0;          // Model::load, from open to return
  double pack_ms = 0;          // of it: repacking, or mapping and checking the image
};

struct ModelInfo {
  std::string path;
  std::string arch;  // "llama" or "qwen2"
  std::string name;  // general.name, may be empty
  int32_t n_vocab = 0;
  int32_t n_ctx_train = 0;
  int32_t dim = 0;
  int32_t n_layers = 0;
  int32_t n_heads = 0;
  int32_t n_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t ffn_dim = 0;
  std::string chat_template;              // tokenizer.chat_template, may be empty
  GgmlType weight_type = GgmlType::kF32;  // of the attention/FFN matrices
  uint64_t weight_bytes = 0;              // bytes of weights read per generated token
};

struct BatchEntry {
  int32_t seq_id;
  int32_t token;
  int32_t pos;
  bool want_logits;
};

class Model {
 public:
  // Loads and validates the model. Errors name the file and the problem
  // (unsupported architecture or tensor type, missing or misshapen tensor).
  static Result<std::unique_ptr<Model>> load(const std::string& path, const ModelOptions& options);
  virtual ~Model() = default;

  virtual const ModelInfo& info() const = 0;
  virtual const Tokenizer& tokenizer() const = 0;
  virtual KvCache& kv() = 0;

  // Evaluates `batch` (REQUIRES: every seq_id begun in kv() with room reserved for
  // its positions; positions of a sequence in the batch are consecutive and
  // follow what its KV already holds). `logits` receives one pointer to n_vocab
  // floats per entry with want_logits, in order; valid until the next eval().
  // Allocates nothing once its logits buffer has grown to the most rows asked
  // for (and `logits` has capacity), unless batch exceeds max_batch.
  virtual Status eval(std::span<const BatchEntry> batch, std::vector<const float*>& logits) = 0;

  // As eval(), but an entry with want_logits yields its final hidden state instead of
  // logits: info().dim floats after the output norm, before the output projection
  // (what a decoder used as an embedding model pools). Same REQUIRES and KV effects;
  // the rows are valid until the next eval() or eval_hidden().
  virtual Status eval_hidden(std::span<const BatchEntry> batch,
                             std::vector<const float*>& hidden) = 0;

  // How this load placed the packed weights. Any thread.
  virtual LoadReport load_report() const = 0;
  // Waits until the model's background work (writing its image, or copying the image
  // into private memory) has finished; the copy is adopted at the next eval(). For tests
  // and benchmarks; any thread but the one calling eval() is fine too.
  virtual void wait_for_background_work() = 0;
};

// A destroyed model's repacked weights stay mapped as one spare region, which the
// next load of a model needing about as much memory reuses instead of mapping (and
// having the kernel zero) fresh pages: a model swap then costs little more than the
// repacking. These free the spare region / report its size. Thread-safe.
void release_spare_weight_memory();
uint64_t spare_weight_memory_bytes();

}  // namespace infera::engine
