// Paged KV cache: fixed-size blocks of positions, a block table per sequence, F16
// storage, and a prefix cache that lets sequences share the blocks of a common
// prompt prefix (e.g. one role's system prompt) instead of recomputing them.
//
// Blocks hold every layer's K and V rows for `block_tokens` positions. A block is
// shared by reference count; prefix-cache entries keep published full prompt
// blocks alive after their sequence ends and are evicted least recently used when
// a new block is needed. Shared blocks are never written: a sequence only writes
// positions past the prefix it reused.
//
// Thread: the engine loop calls the mutating methods; the forward pass reads and
// writes rows of the sequences in its batch from its worker threads.
#pragma once

#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

namespace infera::engine {

struct KvUsage {
  int64_t blocks_total = 0;
  int64_t blocks_used = 0;    // referenced by live sequences
  int64_t blocks_cached = 0;  // held only by the prefix cache (reusable, evictable)
  int32_t block_tokens = 0;
  int64_t block_bytes = 0;    // K and V of every layer for one block
};

// Zeroed anonymous memory that becomes resident only where it is written, so a
// large KV cache costs nothing at load and little until sequences fill it.
class KvStore {
 public:
  explicit KvStore(size_t halves);  // throws std::bad_alloc when it cannot map
  ~KvStore();
  KvStore(const KvStore&) = delete;
  KvStore& operator=(const KvStore&) = delete;
  uint16_t* data() { return data_; }

 private:
  uint16_t* data_ = nullptr;
  size_t bytes_ = 0;
};

class KvCache {
 public:
  KvCache(int n_layers, int kv_dim, int64_t n_blocks, int block_tokens);

  // Starts `seq` for `prompt`: attaches cached blocks for the longest published
  // prefix (always leaving at least the last prompt token to evaluate) and
  // reserves room for the whole prompt. Returns the number of reused tokens, or -1
  // (nothing held) when there is not enough room.
  int32_t begin_sequence(int32_t seq, std::span<const int32_t> prompt);
  // Ensures `seq` can hold `n_tokens` positions; false when out of blocks.
  bool reserve(int32_t seq, int32_t n_tokens);
  // Publishes the full blocks of `prompt` held by `seq` for reuse.
  void publish_prefix(int32_t seq, std::span<const int32_t> prompt);
  // Tokens of `prompt` that begin_sequence would reuse now (a multiple of
  // block_tokens, at most prompt.size() - 1); changes nothing.
  int32_t cached_prefix_tokens(std::span<const int32_t> prompt) const;
  // Starts `dst` as a copy of the first `n_tokens` positions of `src` (e.g. several
  // samples of one prompt): full blocks are shared, a partly filled last block is
  // copied so each sequence writes its own. Ends `dst` first if it exists. False
  // (and `dst` absent) when src holds fewer positions or no block is free.
  bool fork_sequence(int32_t src, int32_t dst, int32_t n_tokens);
  void end_sequence(int32_t seq);
  // Forgets every prefix-cache entry no live sequence holds and gives the pages of
  // those blocks back to the operating system (the memory guard's cleanup); blocks
  // still shared by live sequences stay cached. Returns the bytes of whole pages given
  // back (blocks smaller than a page free entries but no pages).
  uint64_t drop_cached_prefixes();
  bool has_sequence(int32_t seq) const { return tables_.count(seq) != 0; }

  KvUsage usage() const;
  int block_tokens() const { return block_tokens_; }
  int kv_dim() const { return kv_dim_; }

  // Rows of K and V (kv_dim halves) for a position of a sequence.
  // REQUIRES: pos < reserved positions of seq.
  uint16_t* k_row(int layer, int32_t seq, int32_t pos) { return row(k_, layer, seq, pos); }
  uint16_t* v_row(int layer, int32_t seq, int32_t pos) { return row(v_, layer, seq, pos); }
  // Block table of a sequence (for attention loops).
  const std::vector<int32_t>& table(int32_t seq) const { return tables_.at(seq); }
  uint16_t* k_block(int layer, int32_t block) { return block_ptr(k_, layer, block); }
  uint16_t* v_block(int layer, int32_t block) { return block_ptr(v_, layer, block); }

 private:
  uint16_t* block_ptr(KvStore& store, int layer, int32_t block) {
    size_t offset = ((static_cast<size_t>(layer) * static_cast<size_t>(n_blocks_) +
                      static_cast<size_t>(block)) *
                     static_cast<size_t>(block_tokens_)) *
                    static_cast<size_t>(kv_dim_);
    return store.data() + offset;
  }
  uint16_t* row(KvStore& store, int layer, int32_t seq, int32_t pos) {
    int32_t block = tables_[seq][static_cast<size_t>(pos / block_tokens_)];
    return block_ptr(store, layer, block) + static_cast<size_t>(pos % block_tokens_) * kv_dim_;
  }
  int32_t alloc_block();  // -1 when none can be freed
  uint64_t release_pages(int32_t block);  // MADV_DONTNEED on the block's whole pages; bytes
  void release_block(int32_t block);

  struct CacheEntry {
    uint64_t hash;
    int32_t block;
  };

  int n_layers_;
  int kv_dim_;
  int64_t n_blocks_;
  int block_tokens_;
  KvStore k_, v_;
  std::vector<int32_t> refs_;
  std::vector<int32_t> free_;
  std::unordered_map<int32_t, std::vector<int32_t>> tables_;
  std::list<CacheEntry> lru_;  // front = most recently used
  std::unordered_map<uint64_t, std::list<CacheEntry>::iterator> prefix_;
};

}  // namespace infera::engine
