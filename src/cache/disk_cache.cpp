#include "cache/disk_cache.h"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <filesystem>

#include "core/log.h"

namespace infera::cache {

namespace {

rocksdb::Slice slice(std::string_view s) { return {s.data(), s.size()}; }

// RocksDB's own diagnostics go to infera's log (warnings and errors only) instead of a LOG
// file in the cache directory. Besides keeping the directory to data, this matters on a
// full disk: the Debian build of RocksDB asserts (aborting the server) when its file logger
// writes again after one failed write, which the first failed cache write triggers.
class ForwardingLogger : public rocksdb::Logger {
 public:
  explicit ForwardingLogger(std::string dir)
      : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL), dir_(std::move(dir)) {}

  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }

  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel()) return;
    char line[1024];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    std::vsnprintf(line, sizeof line, format, ap);
#pragma GCC diagnostic pop
    log::warn("cache.rocksdb", "L2 cache dir {}: {}", dir_, line);
  }

 private:
  std::string dir_;
};

}  // namespace

std::uint64_t DiskCache::block_cache_bytes(std::uint64_t max_bytes) {
  return std::clamp<std::uint64_t>(max_bytes / 32, 256u << 10, 8u << 20);
}

Result<std::unique_ptr<DiskCache>> DiskCache::open(const DiskCacheOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) {
    return Status::IoError("cache dir " + options.dir + ": " + ec.message());
  }
  rocksdb::Options db_options;
  db_options.create_if_missing = true;
  db_options.compaction_style = rocksdb::kCompactionStyleFIFO;
  db_options.compaction_options_fifo.max_table_files_size = options.max_bytes;
  db_options.ttl = static_cast<std::uint64_t>(std::max<std::int64_t>(1, options.ttl.count()));
  db_options.write_buffer_size =
      std::clamp<std::uint64_t>(options.max_bytes / 8, 1u << 20, 64u << 20);
  db_options.max_background_jobs = 1;
  // Memory RocksDB would otherwise add by default and keep growing for hours after start
  // (a soak shows it as RSS growth): an 8 MiB block cache that fills with the blocks of
  // table files FIFO compaction already dropped, and up to 1 MiB of statistics history
  // snapshotted every 10 minutes, which infera never reads.
  rocksdb::BlockBasedTableOptions table_options;
  table_options.block_cache = rocksdb::NewLRUCache(block_cache_bytes(options.max_bytes));
  // A miss (the common case for a new question) is answered by the filter, without
  // reading a data block from disk into the block cache.
  table_options.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  db_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table_options));
  db_options.stats_persist_period_sec = 0;
  db_options.stats_dump_period_sec = 0;
  db_options.info_log = std::make_shared<ForwardingLogger>(options.dir);
  db_options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, options.dir, &raw);
  if (!s.ok()) {
    return Status::IoError("cache dir " + options.dir + ": RocksDB open failed: " + s.ToString());
  }
  return std::make_unique<DiskCache>(OpenToken(), std::unique_ptr<rocksdb::DB>(raw), options.dir);
}

DiskCache::DiskCache(OpenToken, std::unique_ptr<rocksdb::DB> db, std::string dir)
    : db_(std::move(db)), dir_(std::move(dir)) {}

void DiskCache::disable(std::string_view operation, const std::string& error) {
  if (disabled_.exchange(true)) return;
  log::warn("cache.l2_disabled",
            "L2 cache dir {}: {} failed ({}); the disk tier is off until restart, requests are "
            "served from memory, Redis and the engine",
            dir_, operation, error);
}

DiskCache::~DiskCache() {
  if (db_) {
    // Flush so a restart does not depend on WAL replay; errors only cost cached entries.
    (void)db_->Flush(rocksdb::FlushOptions());
    (void)db_->Close();
  }
}

std::optional<StoredValue> DiskCache::get(std::string_view key) {
  if (disabled()) return std::nullopt;
  std::string bytes;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), slice(key), &bytes);
  if (s.IsNotFound()) {
    ++misses_;
    return std::nullopt;
  }
  if (!s.ok()) {
    ++errors_;
    ++misses_;
    return std::nullopt;
  }
  Result<StoredValue> entry = decode_entry(key, bytes);
  if (!entry.ok()) {
    ++corrupt_;
    ++misses_;
    (void)erase(key);
    return std::nullopt;
  }
  if (entry->expires_unix_ms <= now_unix_ms()) {
    ++expired_;
    ++misses_;
    (void)erase(key);
    return std::nullopt;
  }
  ++hits_;
  return std::move(entry).value();
}

Status DiskCache::put(std::string_view key, std::string_view value, std::int64_t expires_unix_ms) {
  if (disabled()) return Status::Unavailable("L2 is disabled");
  rocksdb::WriteOptions write_options;
  write_options.sync = false;
  rocksdb::Status s =
      db_->Put(write_options, slice(key), encode_entry(key, value, expires_unix_ms));
  if (!s.ok()) {
    ++errors_;
    disable("write", s.ToString());
    return Status::IoError("L2 put: " + s.ToString());
  }
  return Status::Ok();
}

Status DiskCache::erase(std::string_view key) {
  if (disabled()) return Status::Unavailable("L2 is disabled");
  rocksdb::Status s = db_->Delete(rocksdb::WriteOptions(), slice(key));
  if (!s.ok()) {
    ++errors_;
    disable("delete", s.ToString());
    return Status::IoError("L2 delete: " + s.ToString());
  }
  return Status::Ok();
}

Status DiskCache::clear() {
  if (disabled()) return Status::Ok();
  rocksdb::WriteBatch batch;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) batch.Delete(it->key());
  if (!it->status().ok()) return Status::IoError("L2 clear: " + it->status().ToString());
  rocksdb::Status s = db_->Write(rocksdb::WriteOptions(), &batch);
  if (!s.ok()) return Status::IoError("L2 clear: " + s.ToString());
  return Status::Ok();
}

std::uint64_t DiskCache::memory_bytes() const {
  std::uint64_t total = 0, value = 0;
  for (const char* property : {"rocksdb.cur-size-all-mem-tables", "rocksdb.block-cache-usage",
                               "rocksdb.estimate-table-readers-mem"}) {
    if (db_->GetIntProperty(property, &value)) total += value;
  }
  return total;
}

TierStats DiskCache::stats() const {
  TierStats s;
  s.enabled = !disabled();
  s.hits = hits_.load();
  s.misses = misses_.load();
  s.expired = expired_.load();
  s.corrupt = corrupt_.load();
  s.errors = errors_.load();
  std::uint64_t value = 0;
  if (db_->GetIntProperty("rocksdb.estimate-num-keys", &value)) s.entries = value;
  if (db_->GetIntProperty("rocksdb.total-sst-files-size", &value)) s.bytes = value;
  if (db_->GetIntProperty("rocksdb.cur-size-all-mem-tables", &value)) s.bytes += value;
  return s;
}

}  // namespace infera::cache
