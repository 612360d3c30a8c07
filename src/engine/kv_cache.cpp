#include "engine/kv_cache.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <new>
#include <cstdint>

namespace infera::engine {
namespace {

// Hash of a block's tokens chained with the hash of everything before it, so a
// block matches only after the same full prefix (FNV-1a over 32-bit tokens).
uint64_t chain_hash(uint64_t previous, std::span<const int32_t> tokens) {
  uint64_t h = previous ^ 0x9e3779b97f4a7c15ull;
  for (int32_t t : tokens) {
    h ^= static_cast<uint32_t>(t);
    h *= 0x100000001b3ull;
    h ^= h >> 29;
  }
  return h;
}

size_t kv_halves(int n_layers, int kv_dim, int64_t n_blocks, int block_tokens) {
  return static_cast<size_t>(n_layers) * static_cast<size_t>(n_blocks) *
         static_cast<size_t>(block_tokens) * static_cast<size_t>(kv_dim);
}

}  // namespace

KvStore::KvStore(size_t halves) : bytes_(std::max<size_t>(halves, 1) * sizeof(uint16_t)) {
  void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  data_ = static_cast<uint16_t*>(p);
}

KvStore::~KvStore() { ::munmap(data_, bytes_); }

KvCache::KvCache(int n_layers, int kv_dim, int64_t n_blocks, int block_tokens)
    : n_layers_(n_layers),
      kv_dim_(kv_dim),
      n_blocks_(n_blocks),
      block_tokens_(block_tokens),
      k_(kv_halves(n_layers, kv_dim, n_blocks, block_tokens)),
      v_(kv_halves(n_layers, kv_dim, n_blocks, block_tokens)) {
  refs_.assign(static_cast<size_t>(n_blocks), 0);
  free_.reserve(static_cast<size_t>(n_blocks));
  for (int64_t b = n_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

int32_t KvCache::alloc_block() {
  if (free_.empty()) {
    // Evict the least recently used prefix entry nobody else holds.
    for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) {
      if (refs_[static_cast<size_t>(it->block)] == 1) {
        int32_t block = it->block;
        prefix_.erase(it->hash);
        lru_.erase(std::next(it).base());
        release_block(block);
        break;
      }
    }
    if (free_.empty()) return -1;
  }
  int32_t b = free_.back();
  free_.pop_back();
  refs_[static_cast<size_t>(b)] = 1;
  return b;
}

void KvCache::release_block(int32_t block) {
  if (--refs_[static_cast<size_t>(block)] == 0) free_.push_back(block);
}

int32_t KvCache::begin_sequence(int32_t seq, std::span<const int32_t> prompt) {
  end_sequence(seq);
  auto& table = tables_[seq];
  int32_t n = static_cast<int32_t>(prompt.size());
  // Reuse whole blocks, but leave the last prompt token to be evaluated.
  uint64_t h = 0;
  int32_t reused = 0;
  while ((reused + block_tokens_) <= n - 1) {
    h = chain_hash(h,
                   prompt.subspan(static_cast<size_t>(reused), static_cast<size_t>(block_tokens_)));
    auto it = prefix_.find(h);
    if (it == prefix_.end()) break;
    lru_.splice(lru_.begin(), lru_, it->second);
    ++refs_[static_cast<size_t>(it->second->block)];
    table.push_back(it->second->block);
    reused += block_tokens_;
  }
  if (!reserve(seq, n)) {
    end_sequence(seq);
    return -1;
  }
  return reused;
}

bool KvCache::reserve(int32_t seq, int32_t n_tokens) {
  auto& table = tables_[seq];
  size_t need = static_cast<size_t>((n_tokens + block_tokens_ - 1) / block_tokens_);
  while (table.size() < need) {
    int32_t b = alloc_block();
    if (b < 0) return false;
    table.push_back(b);
  }
  return true;
}

void KvCache::publish_prefix(int32_t seq, std::span<const int32_t> prompt) {
  auto found = tables_.find(seq);
  if (found == tables_.end()) return;
  const auto& table = found->second;
  uint64_t h = 0;
  size_t full = prompt.size() / static_cast<size_t>(block_tokens_);
  for (size_t i = 0; i < full && i < table.size(); ++i) {
    h = chain_hash(h, prompt.subspan(i * static_cast<size_t>(block_tokens_),
                                     static_cast<size_t>(block_tokens_)));
    auto it = prefix_.find(h);
    if (it != prefix_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      continue;
    }
    ++refs_[static_cast<size_t>(table[i])];
    lru_.push_front(CacheEntry{h, table[i]});
    prefix_[h] = lru_.begin();
  }
}

int32_t KvCache::cached_prefix_tokens(std::span<const int32_t> prompt) const {
  const int32_t n = static_cast<int32_t>(prompt.size());
  uint64_t h = 0;
  int32_t reused = 0;
  while ((reused + block_tokens_) <= n - 1) {
    h = chain_hash(h,
                   prompt.subspan(static_cast<size_t>(reused), static_cast<size_t>(block_tokens_)));
    if (prefix_.find(h) == prefix_.end()) break;
    reused += block_tokens_;
  }
  return reused;
}

bool KvCache::fork_sequence(int32_t src, int32_t dst, int32_t n_tokens) {
  if (src == dst || !has_sequence(src) || n_tokens < 0) return false;
  end_sequence(dst);
  const std::vector<int32_t> from = tables_.at(src);  // copy: tables_ may rehash
  const size_t full = static_cast<size_t>(n_tokens / block_tokens_);
  const bool partial = n_tokens % block_tokens_ != 0;
  if (from.size() < full + (partial ? 1 : 0)) return false;
  std::vector<int32_t> table(from.begin(), from.begin() + static_cast<std::ptrdiff_t>(full));
  if (partial) {
    const int32_t copy = alloc_block();
    if (copy < 0) return false;
    const size_t halves = static_cast<size_t>(block_tokens_) * static_cast<size_t>(kv_dim_);
    for (int layer = 0; layer < n_layers_; ++layer) {
      std::copy_n(block_ptr(k_, layer, from[full]), halves, block_ptr(k_, layer, copy));
      std::copy_n(block_ptr(v_, layer, from[full]), halves, block_ptr(v_, layer, copy));
    }
    table.push_back(copy);
  }
  for (size_t i = 0; i < full; ++i) ++refs_[static_cast<size_t>(table[i])];
  tables_[dst] = std::move(table);
  return true;
}

void KvCache::end_sequence(int32_t seq) {
  auto it = tables_.find(seq);
  if (it == tables_.end()) return;
  for (int32_t b : it->second) release_block(b);
  tables_.erase(it);
}

uint64_t KvCache::drop_cached_prefixes() {
  uint64_t released = 0;
  for (auto it = lru_.begin(); it != lru_.end();) {
    const int32_t block = it->block;
    if (refs_[static_cast<size_t>(block)] != 1) {
      ++it;
      continue;
    }
    prefix_.erase(it->hash);
    it = lru_.erase(it);
    release_block(block);
    released += release_pages(block);
  }
  return released;
}

uint64_t KvCache::release_pages(int32_t block) {
  uint64_t released = 0;
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const size_t bytes = static_cast<size_t>(block_tokens_) * static_cast<size_t>(kv_dim_) * sizeof(uint16_t);
  for (auto* store : {&k_, &v_}) {
    for (int layer = 0; layer < n_layers_; ++layer) {
      auto begin = reinterpret_cast<uintptr_t>(block_ptr(*store, layer, block));
      uintptr_t first = (begin + page - 1) & ~(page - 1);
      uintptr_t last = (begin + bytes) & ~(page - 1);
      // Freed blocks are always written before they are read again, so zeroed pages are fine.
      if (last > first && madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED) == 0) {
        released += last - first;
      }
    }
  }
  return released;
}

KvUsage KvCache::usage() const {
  KvUsage u;
  u.blocks_total = n_blocks_;
  u.block_tokens = block_tokens_;
  u.block_bytes = 2 * static_cast<int64_t>(n_layers_) * block_tokens_ * kv_dim_ * static_cast<int64_t>(sizeof(uint16_t));
  int64_t cached_only = 0;
  for (const auto& e : lru_) {
    if (refs_[static_cast<size_t>(e.block)] == 1) ++cached_only;
  }
  u.blocks_cached = cached_only;
  u.blocks_used = n_blocks_ - static_cast<int64_t>(free_.size()) - cached_only;
  return u;
}

}  // namespace infera::engine
