// infera response cache: the only header other subsystems include.
//
// A request is turned into a key (make_key) only when is_cacheable() says so; the key is
// looked up in L1 (memory) -> L2 (RocksDB) -> L3 (Redis), hits are promoted upwards, and a
// miss is computed once for all concurrent identical requests (begin / get_or_compute).
// Values are opaque bytes (the serialized response). Tier failures never fail a request:
// a broken tier behaves as a miss and is counted in its stats.
//
//   if (is_cacheable(config.policy, sampling)) key = make_key({model, identity, "chat", ...});
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

// What decides the output of a request. JSON texts are canonicalized: key order and
// whitespace between tokens never matter; runs of whitespace inside input strings collapse.
struct KeyRequest {
  std::string_view model_name;      // "llama-2-7b"
  std::string_view model_identity;  // identifies the file: e.g. "<size>:<mtime>:<header hash>"
  std::string_view endpoint;        // "chat", "completions", ... (different output shapes)
  std::string_view input_json;      // the prompt (JSON string) or messages (JSON array)
  std::string_view params_json;     // object of EVERY output-affecting parameter
};
Result<std::string> make_key(const KeyRequest& request);  // "v1-" + 32 hex digits

struct Sampling {
  double temperature = 1.0;
  int top_k = 0;
  std::optional<std::uint64_t> seed;
  bool client_no_cache = false;  // "Cache-Control: no-cache": skip lookup and fill
};
bool is_cacheable(CachePolicy policy, const Sampling& sampling);

enum class Tier { kMiss, kL1, kL2, kL3 };
const char* x_cache_header(Tier tier);  // "HIT-L1" | "HIT-L2" | "HIT-L3" | "MISS"

struct Lookup {
  Tier tier = Tier::kMiss;
  std::optional<std::string> value;  // set on a hit
  bool merged = false;               // get_or_compute: result came from another caller's flight
};

// Thread-safe: every method may be called from any thread concurrently. No method throws.
class Cache {
 public:
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
  virtual Stats stats() const = 0;
};

}  // namespace infera::cache
