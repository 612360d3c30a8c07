#include "cache/circuit_breaker.h"

#include <algorithm>

namespace infera::cache {

const char* breaker_state_name(BreakerState state) {
  switch (state) {
    case BreakerState::kClosed:
      return "closed";
    case BreakerState::kOpen:
      return "open";
    case BreakerState::kHalfOpen:
      return "half-open";
  }
  return "closed";
}

CircuitBreaker::CircuitBreaker(std::uint32_t failure_threshold, std::chrono::milliseconds cooldown)
    : failure_threshold_(std::max<std::uint32_t>(1, failure_threshold)), cooldown_(cooldown) {}

bool CircuitBreaker::allow() {
  std::lock_guard lock(mu_);
  switch (state_) {
    case BreakerState::kClosed:
      return true;
    case BreakerState::kOpen:
      if (Clock::now() - opened_at_ < cooldown_) return false;
      state_ = BreakerState::kHalfOpen;
      probe_in_flight_ = true;
      return true;
    case BreakerState::kHalfOpen:
      if (probe_in_flight_) return false;
      probe_in_flight_ = true;
      return true;
  }
  return false;
}

void CircuitBreaker::on_success() {
  std::lock_guard lock(mu_);
  state_ = BreakerState::kClosed;
  consecutive_failures_ = 0;
  probe_in_flight_ = false;
}

void CircuitBreaker::on_failure() {
  std::lock_guard lock(mu_);
  ++consecutive_failures_;
  if (state_ == BreakerState::kHalfOpen ||
      (state_ == BreakerState::kClosed && consecutive_failures_ >= failure_threshold_)) {
    open_locked();
  }
}

void CircuitBreaker::open_locked() {
  state_ = BreakerState::kOpen;
  opened_at_ = Clock::now();
  probe_in_flight_ = false;
  ++opens_;
}

BreakerState CircuitBreaker::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

std::uint64_t CircuitBreaker::opens() const {
  std::lock_guard lock(mu_);
  return opens_;
}

}  // namespace infera::cache
