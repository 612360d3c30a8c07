// Circuit breaker for a remote dependency (L3 Redis): after failure_threshold consecutive
// failures it opens and callers fail fast without I/O; after cooldown one probe call is
// let through (half-open); its success closes the breaker, its failure reopens it.
// Thread-safe: any thread; the lock is never held across the guarded call.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>

#include "cache/stats.h"

namespace infera::cache {

class CircuitBreaker {
 public:
  CircuitBreaker(std::uint32_t failure_threshold, std::chrono::milliseconds cooldown);

  // True when the caller may attempt the call; it must then report on_success/on_failure.
  bool allow();
  void on_success();
  void on_failure();
  BreakerState state() const;
  std::uint64_t opens() const;

 private:
  using Clock = std::chrono::steady_clock;
  void open_locked();

  const std::uint32_t failure_threshold_;
  const std::chrono::milliseconds cooldown_;
  mutable std::mutex mu_;
  BreakerState state_ = BreakerState::kClosed;
  std::uint32_t consecutive_failures_ = 0;
  bool probe_in_flight_ = false;
  Clock::time_point opened_at_{};
  std::uint64_t opens_ = 0;
};

}  // namespace infera::cache
