// L2: RocksDB directory of checksummed entries (entry_codec.h) that survives restarts.
// Size is bounded by FIFO compaction: once the table files exceed max_bytes the oldest
// files are dropped whole, and files older than the TTL are dropped too; the bound is
// therefore approximate (plus the memtable). TTL is also checked on every read, and an
// entry failing its checksum is deleted and reported as a miss.
// A failed write (disk full, directory turned read-only, I/O error) turns the tier off
// until restart, with one warning in the log: RocksDB keeps a write error as a background
// error and fails every later write the same way, so retrying would only cost each request
// a failed write. While off, get() is a miss and put() does nothing; stats() reports it
// disabled.
// Thread-safe: RocksDB serializes internally; no lock of ours is held across I/O.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "cache/entry_codec.h"
#include "cache/stats.h"
#include "core/status.h"

namespace rocksdb {
class DB;
}

namespace infera::cache {

struct DiskCacheOptions {
  std::string dir;
  std::uint64_t max_bytes = 1ull << 30;
  std::chrono::seconds ttl{3600};  // coarse file-level TTL; per-entry expiry is exact
};

class DiskCache {
 public:
  // Creates the directory if needed. kIoError when RocksDB cannot open it (e.g. locked).
  static Result<std::unique_ptr<DiskCache>> open(const DiskCacheOptions& options);
  ~DiskCache();
  DiskCache(const DiskCache&) = delete;
  DiskCache& operator=(const DiskCache&) = delete;

  // A miss for absent, expired and corrupt entries alike (counted apart in stats).
  std::optional<StoredValue> get(std::string_view key);
  Status put(std::string_view key, std::string_view value, std::int64_t expires_unix_ms);
  Status erase(std::string_view key);
  Status clear();
  TierStats stats() const;
  // Memory RocksDB holds for this cache: memtables, block cache, table readers (index and
  // filter blocks). Bounded by about write buffer + block_cache_bytes(max_bytes) + the
  // readers of at most max_bytes of table files.
  std::uint64_t memory_bytes() const;
  // The block cache's capacity for a disk budget: 1/32 of it, within 256 KiB..8 MiB.
  static std::uint64_t block_cache_bytes(std::uint64_t max_bytes);

 private:
  struct OpenToken {
    explicit OpenToken() = default;
  };

 public:
  DiskCache(OpenToken, std::unique_ptr<rocksdb::DB> db, std::string dir);  // use open()

  bool disabled() const { return disabled_.load(std::memory_order_relaxed); }

 private:
  void disable(std::string_view operation, const std::string& error);

  std::unique_ptr<rocksdb::DB> db_;
  std::string dir_;
  std::atomic<bool> disabled_{false};
  std::atomic<std::uint64_t> hits_{0}, misses_{0}, expired_{0}, corrupt_{0}, errors_{0};
};

}  // namespace infera::cache
