// L1: in-process cache of response bytes. Sharded by key hash, each shard with its own lock
// and W-TinyLFU policy (tinylfu.h) bounding bytes and entries; entries expire after their
// TTL; values of at least compress_threshold_bytes are stored LZ4-compressed when that
// saves space. Thread-safe: any thread; compression and copies happen outside the locks.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/stats.h"

namespace infera::cache {

struct MemoryCacheOptions {
  std::size_t max_entries = 10000;
  std::size_t max_bytes = 256u << 20;  // charged: stored value + key + kEntryOverheadBytes
  std::size_t shards = 16;
  std::size_t compress_threshold_bytes = 1024;  // SIZE_MAX: never compress
  std::chrono::milliseconds default_ttl{std::chrono::hours(1)};
};

struct MemoryCacheStats {
  TierStats tier;
  std::uint64_t raw_bytes = 0;
  std::uint64_t stored_bytes = 0;
  std::uint64_t compressed_entries = 0;
};

class MemoryCache {
 public:
  static constexpr std::size_t kEntryOverheadBytes = 64;

  explicit MemoryCache(const MemoryCacheOptions& options);
  ~MemoryCache();
  MemoryCache(const MemoryCache&) = delete;
  MemoryCache& operator=(const MemoryCache&) = delete;

  std::optional<std::string> get(std::string_view key);
  // Like get() but leaves stats and the policy untouched (internal re-checks).
  std::optional<std::string> peek(std::string_view key);
  // ttl 0 means options.default_ttl. Replaces an existing entry. The policy may reject it.
  void put(std::string_view key, std::string_view value,
           std::chrono::milliseconds ttl = std::chrono::milliseconds(0));
  bool erase(std::string_view key);
  void clear();
  std::size_t evict_expired();  // O(entries); returns how many were dropped
  // Memory pressure: drops the coldest entries until each shard holds at most
  // `keep_fraction` of what it held; returns the stored bytes freed.
  std::uint64_t shrink(double keep_fraction);
  MemoryCacheStats stats() const;

 private:
  struct Shard;
  Shard& shard_for(std::uint64_t id);

  MemoryCacheOptions options_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace infera::cache
