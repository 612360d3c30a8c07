// L3: Redis shared by several infera instances. A small pool of blocking hiredis
// connections with connect and command timeouts, a TTL on every key (SET .. PX), entries
// checksummed (entry_codec.h), and a circuit breaker: a dead or slow Redis costs each call
// at most connect_timeout + command_timeout until the breaker opens, then nothing until a
// probe after the cool-down. Broken connections are dropped and re-dialled on demand.
// Failures are misses, never errors to the request.
// Thread-safe: any thread; the pool lock is released before any network I/O.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/circuit_breaker.h"
#include "cache/entry_codec.h"
#include "cache/stats.h"
#include "core/status.h"

struct redisContext;

namespace infera::cache {

struct RedisEndpoint {
  std::string host;
  int port = 6379;
  int db = 0;
};
// redis://host:port[/db] (port defaults to 6379). kInvalidArgument otherwise.
Result<RedisEndpoint> parse_redis_url(std::string_view url);

struct RedisCacheOptions {
  std::string url;
  std::size_t pool_size = 4;
  std::chrono::milliseconds connect_timeout{50};
  std::chrono::milliseconds command_timeout{50};
  std::uint32_t breaker_failures = 5;
  std::chrono::milliseconds breaker_cooldown{5000};
  std::string key_prefix = "infera:cache:";
};

class RedisCache {
 public:
  // Validates the URL only; Redis need not be up (the first calls count as failures).
  static Result<std::unique_ptr<RedisCache>> open(const RedisCacheOptions& options);
  ~RedisCache();
  RedisCache(const RedisCache&) = delete;
  RedisCache& operator=(const RedisCache&) = delete;

  std::optional<StoredValue> get(std::string_view key);
  Status put(std::string_view key, std::string_view value, std::int64_t expires_unix_ms);
  Status clear();  // deletes this prefix's keys only (SCAN + UNLINK), never FLUSHDB
  TierStats stats() const;
  BreakerState breaker_state() const { return breaker_.state(); }
  std::uint64_t breaker_opens() const { return breaker_.opens(); }

 private:
  struct ContextDeleter {
    void operator()(redisContext* context) const;
  };
  using ContextPtr = std::unique_ptr<redisContext, ContextDeleter>;
  struct OpenToken {
    explicit OpenToken() = default;
  };

 public:
  RedisCache(OpenToken, RedisCacheOptions options, RedisEndpoint endpoint);  // use open()

 private:
  Result<ContextPtr> acquire();
  void release(ContextPtr context, bool healthy);
  void report_acquire_failure(const Status& status);
  Result<ContextPtr> connect() const;

  const RedisCacheOptions options_;
  const RedisEndpoint endpoint_;
  CircuitBreaker breaker_;
  std::mutex pool_mu_;
  std::condition_variable pool_cv_;
  std::vector<ContextPtr> idle_;
  std::size_t live_ = 0;  // idle + lent out + being dialled
  std::atomic<std::uint64_t> hits_{0}, misses_{0}, expired_{0}, corrupt_{0}, errors_{0};
};

}  // namespace infera::cache
