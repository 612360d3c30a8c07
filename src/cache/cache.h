// infera response cache: the only header other subsystems include.
//
// A request is turned into a key (KeyBuilder) only when is_cacheable() says so; the key is
// looked up in L1 (memory) -> L2 (RocksDB) -> L3 (Redis), hits are promoted upwards, and a
// miss is computed once for all concurrent identical requests (begin / get_or_compute).
// Values are opaque bytes (the serialized response). Tier failures never fail a request:
// a broken tier behaves as a miss and is counted in its stats.
//
//   if (is_cacheable(config.policy, sampling)) key = KeyBuilder(model, identity, "chat")...key();
//   Lookup hit = cache->get(*key);           // X-Cache: x_cache_header(hit.tier)
//   if (!hit.value) { FlightTicket t = cache->begin(*key);
//     if (t.leader()) { ...t.publish_chunk(piece)...; t.complete(serialized); }
//     else t.flight().subscribe(on_chunk, on_done); }
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "cache/single_flight.h"
#include "cache/stats.h"
#include "core/status.h"

namespace infera::cache {

enum class CachePolicy { kDeterministic, kAll, kOff };
Result<CachePolicy> parse_cache_policy(std::string_view text);  // "deterministic" | "all" | "off"

// Loader-filled settings (flags > env > TOML > these defaults). Empty dir / redis_url
// disables that tier.
struct Config {
  std::size_t max_entries = 10000;            // CACHE_MAX_SIZE, --cache-max-size (L1 entries)
  std::size_t max_bytes = 256u << 20;         // --cache-max-bytes (L1 bytes)
  std::uint32_t ttl_seconds = 3600;           // CACHE_TIMEOUT, --cache-timeout (every tier)
  std::string dir;                            // --cache-dir (L2 RocksDB directory)
  std::uint64_t disk_max_bytes = 1ull << 30;  // --cache-disk-max-bytes (L2 bytes, approx.)
  std::string redis_url;                      // --redis-url redis://host:port[/db]
  CachePolicy policy = CachePolicy::kDeterministic;  // --cache-policy
  std::size_t compress_threshold_bytes = 1024;       // --cache-compress-threshold (LZ4 above)
  std::size_t shards = 16;                           // --cache-shards (L1 lock shards)
  std::size_t redis_pool_size = 4;                   // --redis-pool-size (connections)
  std::uint32_t redis_timeout_ms = 50;               // --redis-timeout-ms (connect and command)
  std::uint32_t breaker_failures = 5;                // --redis-breaker-failures (to open)
  std::uint32_t breaker_cooldown_ms = 5000;          // --redis-breaker-cooldown-ms (to probe)
};

// The key of a typed request: the caller appends, in its own fixed order, everything
// that decides the output (so JSON key order and formatting never reach the key).
// Input strings have whitespace runs collapsed to one space and are trimmed; parameters
// are kept exactly (a stop sequence of "\n" differs from "\n\n"). Every field is
// length-prefixed, so different field sequences never share a canonical form.
//
//   KeyBuilder k(model_name, model_identity, "chat");
//   for (auto& m : messages) { k.input(m.role); k.input(m.content); }
//   k.param("max_tokens", 64); k.param("temperature", 0.0); ...
//   std::string key = k.key();  // "v2-" + 32 hex digits
class KeyBuilder {
 public:
  KeyBuilder(std::string_view model_name, std::string_view model_identity, std::string_view endpoint);
  KeyBuilder& input(std::string_view text);
  KeyBuilder& param(std::string_view name, std::string_view value);
  KeyBuilder& param(std::string_view name, double value);  // 1.0 and 1 are the same value
  KeyBuilder& param(std::string_view name, std::int64_t value);
  KeyBuilder& param(std::string_view name, int value) { return param(name, std::int64_t{value}); }
  KeyBuilder& absent(std::string_view name);  // an optional parameter that was not given
  std::string key() const;
  const std::string& canonical() const { return form_; }  // what key() hashes (tests, logs)

 private:
  void field(char tag, std::string_view name, std::string_view value);
  std::string form_;
};

struct Sampling {
  double temperature = 1.0;
  int top_k = 0;
  std::optional<std::uint64_t> seed;
  bool client_no_cache = false;  // "Cache-Control: no-cache": skip lookup and fill
};
bool is_cacheable(CachePolicy policy, const Sampling& sampling);

enum class Tier { kMiss, kL1, kL2, kL3 };
const char* x_cache_header(Tier tier);  // "HIT-L1" | "HIT-L2" | "HIT-L3" | "MISS"
// The farther of two tiers (L1 < L2 < L3 < miss): what an answer assembled from several
// lookups reports.
inline Tier slower_tier(Tier a, Tier b) {
  auto rank = [](Tier t) { return t == Tier::kMiss ? 4 : static_cast<int>(t); };
  return rank(a) >= rank(b) ? a : b;
}

struct Lookup {
  Tier tier = Tier::kMiss;
  std::optional<std::string> value;  // set on a hit
  bool merged = false;               // get_or_compute: result came from another caller's flight
};

// Thread-safe: every method may be called from any thread concurrently. No method throws.
class Cache {
 public:
  // An L2 directory RocksDB cannot open (read-only, full, locked) is not an error: the
  // cache opens without its disk tier and logs a "cache.l2_disabled" warning. Fails only
  // for a Redis URL that does not parse.
  static Result<std::unique_ptr<Cache>> open(const Config& config);
  virtual ~Cache() = default;

  virtual Lookup get(std::string_view key) = 0;
  virtual void put(std::string_view key, std::string_view value) = 0;
  // Miss path for streaming: the leader publishes chunks and completes the ticket (which
  // fills every tier); followers subscribe to chunks or wait. Check get() first.
  virtual FlightTicket begin(std::string_view key) = 0;
  // get(), else computes once per key across concurrent callers and fills every tier.
  virtual Result<Lookup> get_or_compute(std::string_view key,
                                        const std::function<Result<std::string>()>& compute) = 0;
  virtual void clear() = 0;                 // every tier (L3: only this cache's key prefix)
  virtual std::size_t evict_expired() = 0;  // L1 TTL sweep for a maintenance thread
  // Memory pressure: L1 keeps at most `keep_fraction` of its bytes, coldest entries
  // leaving first (L2/L3 keep them). Returns the bytes freed.
  virtual std::uint64_t shrink_memory(double keep_fraction) = 0;
  virtual Stats stats() const = 0;
};

}  // namespace infera::cache
