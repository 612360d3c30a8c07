#include "cache/disk_cache.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>

#include <algorithm>
#include <random>
#include <thread>

#include "cache/temp_dir.h"

namespace infera::cache {
namespace {

using testing::TempDir;

std::unique_ptr<DiskCache> open_at(const std::string& dir) {
  Result<std::unique_ptr<DiskCache>> cache =
      DiskCache::open({dir, 64u << 20, std::chrono::seconds(3600)});
  EXPECT_TRUE(cache.ok()) << cache.status().message();
  return cache.ok() ? std::move(cache).value() : nullptr;
}

std::int64_t in_an_hour() { return now_unix_ms() + 3600 * 1000; }

TEST(DiskCache, HitAfterMiss) {
  TempDir dir;
  auto cache = open_at(dir.path());
  ASSERT_TRUE(cache);
  EXPECT_FALSE(cache->get("k").has_value());
  ASSERT_TRUE(cache->put("k", "value", in_an_hour()).ok());
  auto hit = cache->get("k");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->value, "value");
  EXPECT_EQ(cache->stats().hits, 1u);
  EXPECT_EQ(cache->stats().misses, 1u);
}

TEST(DiskCache, EntriesSurviveARestart) {
  TempDir dir;
  const std::int64_t expires = in_an_hour();
  {
    auto cache = open_at(dir.path());
    ASSERT_TRUE(cache);
    ASSERT_TRUE(cache->put("persist", "across restarts", expires).ok());
  }
  auto reopened = open_at(dir.path());
  ASSERT_TRUE(reopened);
  auto hit = reopened->get("persist");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->value, "across restarts");
  EXPECT_EQ(hit->expires_unix_ms, expires);
}

TEST(DiskCache, ExpiredEntriesAreMisses) {
  TempDir dir;
  auto cache = open_at(dir.path());
  ASSERT_TRUE(cache);
  ASSERT_TRUE(cache->put("soon", "v", now_unix_ms() + 30).ok());
  ASSERT_TRUE(cache->put("later", "v", in_an_hour()).ok());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (cache->get("soon").has_value() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll interval
  }
  EXPECT_FALSE(cache->get("soon").has_value());
  EXPECT_TRUE(cache->get("later").has_value());
  EXPECT_GE(cache->stats().expired, 1u);
}

TEST(DiskCache, CorruptedEntryIsAMissNeverAWrongAnswer) {
  TempDir dir;
  {
    auto cache = open_at(dir.path());
    ASSERT_TRUE(cache);
    ASSERT_TRUE(cache->put("damaged", "the right answer", in_an_hour()).ok());
    ASSERT_TRUE(cache->put("intact", "fine", in_an_hour()).ok());
    ASSERT_TRUE(cache->put("moved", "answer for moved", in_an_hour()).ok());
  }
  {
    // Damage the stored bytes behind the cache's back: flip one payload byte, and store
    // a valid entry of another key under "moved".
    rocksdb::Options options;
    options.compaction_style = rocksdb::kCompactionStyleFIFO;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, dir.path(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string bytes;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), "damaged", &bytes).ok());
    bytes[bytes.size() - 3] ^= 0x20;  // "the right answer" -> "the right anSwer"
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "damaged", bytes).ok());
    std::string other;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), "intact", &other).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "moved", other).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "short", "I").ok());
    ASSERT_TRUE(db->Close().ok());
  }
  auto cache = open_at(dir.path());
  ASSERT_TRUE(cache);
  EXPECT_FALSE(cache->get("damaged").has_value());
  EXPECT_FALSE(cache->get("moved").has_value());
  EXPECT_FALSE(cache->get("short").has_value());
  EXPECT_EQ(cache->get("intact")->value, "fine");
  EXPECT_EQ(cache->stats().corrupt, 3u);
  EXPECT_FALSE(cache->get("damaged").has_value());  // deleted, now a plain miss
  EXPECT_EQ(cache->stats().corrupt, 3u);
}

TEST(DiskCache, SizeStaysBoundedByDroppingTheOldestEntries) {
  TempDir dir;
  constexpr std::uint64_t kMaxBytes = 2u << 20;
  auto opened = DiskCache::open({dir.path(), kMaxBytes, std::chrono::seconds(3600)});
  ASSERT_TRUE(opened.ok());
  DiskCache& cache = **opened;
  std::mt19937_64 rng(3);
  std::string value(128 * 1024, '\0');
  for (int i = 0; i < 64; ++i) {  // 8 MiB of incompressible values
    for (char& c : value) c = static_cast<char>(rng());
    ASSERT_TRUE(cache.put("k" + std::to_string(i), value, in_an_hour()).ok());
  }
  // FIFO compaction runs in the background after flushes: poll for the bound. The memtable
  // (1 MiB write buffer at this size) comes on top of the table files.
  const std::uint64_t bound = kMaxBytes + (2u << 20);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (cache.stats().bytes > bound && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // poll interval
  }
  EXPECT_LE(cache.stats().bytes, bound);
  EXPECT_FALSE(cache.get("k0").has_value());  // oldest dropped
  EXPECT_TRUE(cache.get("k63").has_value());  // newest kept
}

// Hours of traffic through a small L2 (table files written, dropped by FIFO compaction,
// read by hits and probed by misses) must not grow RocksDB's memory past the write buffers,
// the block cache sized for the budget and the table readers: by default the block cache
// (8 MiB) kept the blocks of dropped files and grew for hours (bench_soak's RSS).
TEST(DiskCache, MemoryStaysBoundedWhileTableFilesChurn) {
  TempDir dir;
  constexpr std::uint64_t kMaxBytes = 2u << 20;
  auto opened = DiskCache::open({dir.path(), kMaxBytes, std::chrono::seconds(3600)});
  ASSERT_TRUE(opened.ok());
  DiskCache& cache = **opened;
  std::mt19937_64 rng(5);
  std::string value(2048, '\0');
  std::uint64_t peak = 0;
  for (int i = 0; i < 8000; ++i) {  // 16 MiB written through a 2 MiB budget
    for (char& c : value) c = static_cast<char>(rng());
    ASSERT_TRUE(cache.put("k" + std::to_string(i), value, in_an_hour()).ok());
    (void)cache.get("k" + std::to_string(rng() % static_cast<std::uint64_t>(i + 1)));  // hits
    (void)cache.get("absent" + std::to_string(i));                                     // misses
    if (i % 500 == 0) peak = std::max(peak, cache.memory_bytes());
  }
  peak = std::max(peak, cache.memory_bytes());
  // Two 1 MiB write buffers (one flushing), the block cache, and slack for table readers.
  const std::uint64_t bound = (2u << 20) + DiskCache::block_cache_bytes(kMaxBytes) + (512u << 10);
  EXPECT_LE(peak, bound) << "RocksDB memory peaked at " << peak << " bytes";
}

TEST(DiskCache, ClearRemovesEverything) {
  TempDir dir;
  auto cache = open_at(dir.path());
  ASSERT_TRUE(cache);
  for (int i = 0; i < 50; ++i)
    ASSERT_TRUE(cache->put("k" + std::to_string(i), "v", in_an_hour()).ok());
  ASSERT_TRUE(cache->clear().ok());
  for (int i = 0; i < 50; ++i) EXPECT_FALSE(cache->get("k" + std::to_string(i)).has_value());
}

TEST(DiskCache, SecondOpenOfTheSameDirectoryFailsWithAMessage) {
  TempDir dir;
  auto first = open_at(dir.path());
  ASSERT_TRUE(first);
  Result<std::unique_ptr<DiskCache>> second =
      DiskCache::open({dir.path(), 1u << 20, std::chrono::seconds(60)});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kIoError);
  EXPECT_NE(second.status().message().find(dir.path()), std::string::npos);
}

}  // namespace
}  // namespace infera::cache
