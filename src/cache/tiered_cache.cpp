#include "cache/tiered_cache.h"

#include <algorithm>

#include "core/log.h"

namespace infera::cache {

const char* x_cache_header(Tier tier) {
  switch (tier) {
    case Tier::kL1:
      return "HIT-L1";
    case Tier::kL2:
      return "HIT-L2";
    case Tier::kL3:
      return "HIT-L3";
    case Tier::kMiss:
      break;
  }
  return "MISS";
}

Result<std::unique_ptr<Cache>> Cache::open(const Config& config) {
  MemoryCacheOptions memory;
  memory.max_entries = config.max_entries;
  memory.max_bytes = config.max_bytes;
  memory.shards = config.shards;
  memory.compress_threshold_bytes = config.compress_threshold_bytes;
  memory.default_ttl = std::chrono::seconds(config.ttl_seconds);
  auto l1 = std::make_unique<MemoryCache>(memory);

  std::unique_ptr<DiskCache> l2;
  if (!config.dir.empty()) {
    Result<std::unique_ptr<DiskCache>> disk = DiskCache::open(
        {config.dir, config.disk_max_bytes, std::chrono::seconds(config.ttl_seconds)});
    if (disk.ok()) {
      l2 = std::move(disk).value();
    } else {
      // A cache is an optimisation: a directory that cannot be opened (read-only, full,
      // locked by another process) costs the disk tier, never the service.
      log::warn("cache.l2_disabled", "{}; serving without the disk tier (L2)",
                disk.status().message());
    }
  }
  std::unique_ptr<RedisCache> l3;
  if (!config.redis_url.empty()) {
    RedisCacheOptions redis;
    redis.url = config.redis_url;
    redis.pool_size = config.redis_pool_size;
    redis.connect_timeout = std::chrono::milliseconds(config.redis_timeout_ms);
    redis.command_timeout = std::chrono::milliseconds(config.redis_timeout_ms);
    redis.breaker_failures = config.breaker_failures;
    redis.breaker_cooldown = std::chrono::milliseconds(config.breaker_cooldown_ms);
    Result<std::unique_ptr<RedisCache>> remote = RedisCache::open(redis);
    if (!remote.ok()) return remote.status();
    l3 = std::move(remote).value();
  }
  return std::unique_ptr<Cache>(std::make_unique<TieredCache>(
      std::move(l1), std::move(l2), std::move(l3), std::chrono::seconds(config.ttl_seconds)));
}

TieredCache::TieredCache(std::unique_ptr<MemoryCache> l1, std::unique_ptr<DiskCache> l2,
                         std::unique_ptr<RedisCache> l3, std::chrono::milliseconds ttl)
    : l1_(std::move(l1)),
      l2_(std::move(l2)),
      l3_(std::move(l3)),
      ttl_(ttl),
      flights_([this](std::string_view key, const std::string& value) { put(key, value); }) {}

Lookup TieredCache::get(std::string_view key) {
  if (std::optional<std::string> value = l1_->get(key)) {
    return {Tier::kL1, std::move(value), false};
  }
  if (l2_) {
    if (std::optional<StoredValue> hit = l2_->get(key)) {
      put_until(key, hit->value, hit->expires_unix_ms, false, false);
      return {Tier::kL2, std::move(hit->value), false};
    }
  }
  if (l3_) {
    if (std::optional<StoredValue> hit = l3_->get(key)) {
      put_until(key, hit->value, hit->expires_unix_ms, true, false);
      return {Tier::kL3, std::move(hit->value), false};
    }
  }
  return {};
}

void TieredCache::put(std::string_view key, std::string_view value) {
  put_until(key, value, now_unix_ms() + ttl_.count(), true, true);
}

void TieredCache::put_until(std::string_view key, std::string_view value,
                            std::int64_t expires_unix_ms, bool fill_l2, bool fill_l3) {
  const std::int64_t remaining_ms = expires_unix_ms - now_unix_ms();
  if (remaining_ms <= 0) return;
  l1_->put(key, value, std::chrono::milliseconds(remaining_ms));
  if (fill_l2 && l2_) (void)l2_->put(key, value, expires_unix_ms);
  if (fill_l3 && l3_) (void)l3_->put(key, value, expires_unix_ms);
}

FlightTicket TieredCache::begin(std::string_view key) { return flights_.join(key); }

Result<Lookup> TieredCache::get_or_compute(std::string_view key,
                                           const std::function<Result<std::string>()>& compute) {
  Lookup hit = get(key);
  if (hit.value) return hit;
  FlightTicket ticket = flights_.join(key);
  if (!ticket.leader()) {
    Result<std::string> value = ticket.flight().wait();
    if (!value.ok()) return value.status();
    return Lookup{Tier::kMiss, std::move(value).value(), true};
  }
  // A flight for this key may have ended between our miss and our join: its value is in L1.
  if (std::optional<std::string> value = l1_->peek(key)) {
    ticket.complete(*value);
    return Lookup{Tier::kL1, std::move(value), false};
  }
  Result<std::string> value = compute();
  ticket.complete(value);  // fills every tier, then releases followers
  if (!value.ok()) return value.status();
  return Lookup{Tier::kMiss, std::move(value).value(), false};
}

void TieredCache::clear() {
  l1_->clear();
  if (l2_) (void)l2_->clear();
  if (l3_) (void)l3_->clear();
}

std::size_t TieredCache::evict_expired() { return l1_->evict_expired(); }

std::uint64_t TieredCache::shrink_memory(double keep_fraction) { return l1_->shrink(keep_fraction); }

Stats TieredCache::stats() const {
  Stats s;
  const MemoryCacheStats memory = l1_->stats();
  s.l1 = memory.tier;
  s.l1_raw_bytes = memory.raw_bytes;
  s.l1_stored_bytes = memory.stored_bytes;
  s.l1_compressed_entries = memory.compressed_entries;
  if (l2_) s.l2 = l2_->stats();
  if (l3_) {
    s.l3 = l3_->stats();
    s.breaker = l3_->breaker_state();
    s.breaker_opens = l3_->breaker_opens();
  }
  s.single_flight_leaders = flights_.leaders();
  s.single_flight_merges = flights_.merges();
  return s;
}

}  // namespace infera::cache
