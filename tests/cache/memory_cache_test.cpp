#include "cache/memory_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <list>
#include <random>
#include <thread>
#include <unordered_map>

namespace infera::cache {
namespace {

using std::chrono::milliseconds;

MemoryCacheOptions small_options() {
  MemoryCacheOptions o;
  o.max_entries = 1000;
  o.max_bytes = 1 << 20;
  o.shards = 4;
  o.compress_threshold_bytes = 256;
  o.default_ttl = std::chrono::hours(1);
  return o;
}

TEST(MemoryCache, ReturnsWhatWasPutAndCountsHitsAndMisses) {
  MemoryCache cache(small_options());
  EXPECT_FALSE(cache.get("a").has_value());
  cache.put("a", "alpha");
  ASSERT_TRUE(cache.get("a").has_value());
  EXPECT_EQ(*cache.get("a"), "alpha");
  cache.put("a", "again");
  EXPECT_EQ(*cache.get("a"), "again");
  const MemoryCacheStats s = cache.stats();
  EXPECT_EQ(s.tier.hits, 3u);
  EXPECT_EQ(s.tier.misses, 1u);
  EXPECT_EQ(s.tier.entries, 1u);
  EXPECT_TRUE(cache.erase("a"));
  EXPECT_FALSE(cache.get("a").has_value());
}

TEST(MemoryCache, ShrinkDropsColdEntriesFirstAndFreesBytes) {
  MemoryCacheOptions o = small_options();
  o.shards = 1;
  o.compress_threshold_bytes = SIZE_MAX;
  MemoryCache cache(o);
  for (int i = 0; i < 20; ++i) cache.put("k" + std::to_string(i), std::string(100, 'x'));
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(cache.get("k" + std::to_string(i)).has_value());
  }
  const auto before = cache.stats();
  const std::uint64_t freed = cache.shrink(0.5);
  const auto after = cache.stats();
  EXPECT_GT(freed, 0u);
  EXPECT_EQ(before.stored_bytes - after.stored_bytes, freed);
  EXPECT_LE(after.tier.entries, before.tier.entries / 2 + 1);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(cache.peek("k" + std::to_string(i)).has_value()) << i;
  EXPECT_EQ(cache.shrink(0.0) > 0, true);
  EXPECT_EQ(cache.stats().tier.entries, 0u);
}

TEST(MemoryCache, PeekDoesNotCountAsALookup) {
  MemoryCache cache(small_options());
  EXPECT_FALSE(cache.peek("a").has_value());
  cache.put("a", std::string(2000, 'a'));  // compressed: peek decompresses too
  EXPECT_EQ(*cache.peek("a"), std::string(2000, 'a'));
  EXPECT_EQ(cache.stats().tier.hits + cache.stats().tier.misses, 0u);
}

TEST(MemoryCache, EntriesExpireAfterTheirTtl) {
  MemoryCache cache(small_options());
  cache.put("short", "v", milliseconds(30));
  cache.put("long", "v", std::chrono::hours(1));
  EXPECT_TRUE(cache.get("short").has_value());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (cache.get("short").has_value() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));  // poll interval
  }
  EXPECT_FALSE(cache.get("short").has_value());
  EXPECT_TRUE(cache.get("long").has_value());
  EXPECT_GE(cache.stats().tier.expired, 1u);
}

TEST(MemoryCache, EvictExpiredSweepsUntouchedEntries) {
  MemoryCache cache(small_options());
  for (int i = 0; i < 10; ++i) cache.put("k" + std::to_string(i), "v", milliseconds(1));
  cache.put("keep", "v");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::size_t swept = 0;
  while (swept < 10 && std::chrono::steady_clock::now() < deadline) swept += cache.evict_expired();
  EXPECT_EQ(swept, 10u);
  EXPECT_EQ(cache.stats().tier.entries, 1u);
}

TEST(MemoryCache, StaysWithinEntryAndByteBounds) {
  MemoryCacheOptions o = small_options();
  o.max_entries = 100;
  o.max_bytes = 1 << 30;
  MemoryCache by_entries(o);
  for (int i = 0; i < 5000; ++i) by_entries.put("key" + std::to_string(i), "value");
  EXPECT_LE(by_entries.stats().tier.entries, 100u);
  EXPECT_GT(by_entries.stats().tier.evictions, 0u);

  o.max_entries = 1 << 20;
  o.max_bytes = 64 * 1024;
  o.compress_threshold_bytes = SIZE_MAX;
  MemoryCache by_bytes(o);
  const std::string value(1000, 'x');
  for (int i = 0; i < 5000; ++i) by_bytes.put("key" + std::to_string(i), value);
  const MemoryCacheStats s = by_bytes.stats();
  EXPECT_LE(s.tier.bytes, 64u * 1024);
  EXPECT_GE(s.tier.entries, 30u);  // the budget is actually used
}

TEST(MemoryCache, RejectsAValueLargerThanItsShard) {
  MemoryCacheOptions o = small_options();
  o.max_bytes = 4096;
  o.compress_threshold_bytes = SIZE_MAX;
  MemoryCache cache(o);
  cache.put("huge", std::string(100000, 'y'));
  EXPECT_FALSE(cache.get("huge").has_value());
  EXPECT_EQ(cache.stats().tier.bytes, 0u);
}

TEST(MemoryCache, CompressesLargeValuesAndRoundTripsThem) {
  MemoryCache cache(small_options());
  std::string text;
  for (int i = 0; i < 200; ++i)
    text += "The answer to question " + std::to_string(i % 7) + " is 4. ";
  cache.put("big", text);
  cache.put("small", "tiny");
  std::string random_bytes(4096, '\0');
  std::mt19937_64 rng(1);
  for (char& c : random_bytes) c = static_cast<char>(rng());
  cache.put("noise", random_bytes);  // incompressible: stored as is
  EXPECT_EQ(*cache.get("big"), text);
  EXPECT_EQ(*cache.get("small"), "tiny");
  EXPECT_EQ(*cache.get("noise"), random_bytes);
  const MemoryCacheStats s = cache.stats();
  EXPECT_EQ(s.compressed_entries, 1u);
  EXPECT_EQ(s.raw_bytes, text.size() + 4 + random_bytes.size());
  EXPECT_LT(s.stored_bytes, s.raw_bytes - text.size() / 2);
}

// Plain LRU over the same charge formula: the floor W-TinyLFU must beat.
class LruReference {
 public:
  explicit LruReference(std::size_t max_bytes) : max_bytes_(max_bytes) {}
  bool get(std::uint64_t k) {
    auto it = index_.find(k);
    if (it == index_.end()) return false;
    order_.splice(order_.begin(), order_, it->second);
    return true;
  }
  void put(std::uint64_t k, std::size_t charge) {
    order_.push_front({k, charge});
    index_[k] = order_.begin();
    bytes_ += charge;
    while (bytes_ > max_bytes_) {
      bytes_ -= order_.back().second;
      index_.erase(order_.back().first);
      order_.pop_back();
    }
  }

 private:
  std::size_t max_bytes_, bytes_ = 0;
  std::list<std::pair<std::uint64_t, std::size_t>> order_;
  std::unordered_map<std::uint64_t, std::list<std::pair<std::uint64_t, std::size_t>>::iterator>
      index_;
};

TEST(MemoryCache, AdmissionBeatsLruOnASkewedTrace) {
  constexpr int kKeys = 10000;
  constexpr int kRequests = 200000;
  std::vector<double> cdf(kKeys);
  double sum = 0;
  for (int i = 0; i < kKeys; ++i) cdf[i] = (sum += 1.0 / std::pow(i + 1, 0.9));
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> uniform(0, sum);

  const std::string value(200, 'v');
  const std::size_t charge = value.size() + 8 + MemoryCache::kEntryOverheadBytes;
  const std::size_t budget = charge * kKeys / 100;  // 1% of the key space
  MemoryCacheOptions o;
  o.max_entries = kKeys;
  o.max_bytes = budget;
  o.shards = 4;
  o.compress_threshold_bytes = SIZE_MAX;
  MemoryCache cache(o);
  LruReference lru(budget);
  int lru_hits = 0;
  char key[16];
  for (int n = 0; n < kRequests; ++n) {
    const auto rank = static_cast<std::uint64_t>(
        std::lower_bound(cdf.begin(), cdf.end(), uniform(rng)) - cdf.begin());
    std::snprintf(key, sizeof(key), "k%07llu", static_cast<unsigned long long>(rank));
    if (!cache.get(key)) cache.put(key, value);
    if (lru.get(rank)) {
      ++lru_hits;
    } else {
      lru.put(rank, charge);
    }
  }
  const double tinylfu_rate = cache.stats().tier.hit_rate();
  const double lru_rate = static_cast<double>(lru_hits) / kRequests;
  EXPECT_LE(cache.stats().tier.bytes, budget);
  EXPECT_GT(tinylfu_rate, lru_rate + 0.05)
      << "W-TinyLFU " << tinylfu_rate << " vs LRU " << lru_rate;
}

TEST(MemoryCache, ConcurrentReadersAndWritersKeepCountsConsistent) {
  MemoryCache cache(small_options());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&cache, t] {
      for (int i = 0; i < 5000; ++i) {
        const std::string key = "k" + std::to_string((i * 7 + t) % 300);
        if (!cache.get(key)) cache.put(key, key);
      }
    });
  }
  for (auto& th : threads) th.join();
  const MemoryCacheStats s = cache.stats();
  EXPECT_EQ(s.tier.hits + s.tier.misses, 20000u);
  for (int i = 0; i < 300; ++i) {
    const std::string key = "k" + std::to_string(i);
    if (auto v = cache.get(key)) {
      EXPECT_EQ(*v, key);
    }
  }
}

}  // namespace
}  // namespace infera::cache
