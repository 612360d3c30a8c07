// The Cache of cache.h: L1 memory -> L2 RocksDB (optional) -> L3 Redis (optional).
// get() promotes a lower-tier hit into every tier above it with the entry's remaining TTL;
// put() fills every tier; misses are computed through single-flight. A failing L2/L3 is a
// miss (counted in its stats), never an error. Thread-safe: any thread; tiers do their own
// locking and no lock is held across L2/L3 I/O.
#pragma once

#include <memory>

#include "cache/cache.h"
#include "cache/disk_cache.h"
#include "cache/memory_cache.h"
#include "cache/redis_cache.h"
#include "cache/single_flight.h"

namespace infera::cache {

class TieredCache final : public Cache {
 public:
  // Any tier may be null except l1.
  TieredCache(std::unique_ptr<MemoryCache> l1, std::unique_ptr<DiskCache> l2,
              std::unique_ptr<RedisCache> l3, std::chrono::milliseconds ttl);

  Lookup get(std::string_view key) override;
  void put(std::string_view key, std::string_view value) override;
  FlightTicket begin(std::string_view key) override;
  Result<Lookup> get_or_compute(std::string_view key,
                                const std::function<Result<std::string>()>& compute) override;
  void clear() override;
  std::size_t evict_expired() override;
  std::uint64_t shrink_memory(double keep_fraction) override;
  Stats stats() const override;

 private:
  void put_until(std::string_view key, std::string_view value, std::int64_t expires_unix_ms,
                 bool fill_l2, bool fill_l3);

  std::unique_ptr<MemoryCache> l1_;
  std::unique_ptr<DiskCache> l2_;
  std::unique_ptr<RedisCache> l3_;
  std::chrono::milliseconds ttl_;
  SingleFlight flights_;
};

}  // namespace infera::cache
