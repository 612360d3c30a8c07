// Plain counters a cache exposes; copied out by Cache::stats() for /api/cache/stats and
// /metrics. Values are a snapshot: counters are read without a global lock.
#pragma once

#include <cstdint>

namespace infera::cache {

struct TierStats {
  bool enabled = false;
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t entries = 0;    // RocksDB: estimate
  std::uint64_t bytes = 0;      // charged bytes (L1: stored, after compression)
  std::uint64_t evictions = 0;  // dropped to stay within bounds
  std::uint64_t expired = 0;    // found past their TTL
  std::uint64_t corrupt = 0;    // failed checksum: reported as misses
  std::uint64_t errors = 0;     // failed operations (I/O, Redis, breaker open)
  double hit_rate() const {
    const std::uint64_t lookups = hits + misses;
    return lookups == 0 ? 0.0 : static_cast<double>(hits) / static_cast<double>(lookups);
  }
};

enum class BreakerState { kClosed, kOpen, kHalfOpen };
const char* breaker_state_name(BreakerState state);  // "closed" | "open" | "half-open"

struct Stats {
  TierStats l1, l2, l3;
  std::uint64_t l1_raw_bytes = 0;     // values before compression
  std::uint64_t l1_stored_bytes = 0;  // the same values as stored
  std::uint64_t l1_compressed_entries = 0;
  double compression_ratio() const {
    return l1_stored_bytes == 0
               ? 1.0
               : static_cast<double>(l1_raw_bytes) / static_cast<double>(l1_stored_bytes);
  }
  std::uint64_t single_flight_leaders = 0;  // computations started
  std::uint64_t single_flight_merges = 0;   // callers that joined one instead of computing
  BreakerState breaker = BreakerState::kClosed;
  std::uint64_t breaker_opens = 0;
};

}  // namespace infera::cache
