// Rate limits and quotas as GCRA buckets (the generic cell rate algorithm: one
// "theoretical arrival time" per bucket, no timers, no per-request state).
//
// Per subject (a key "key:alice" or an address "ip:10.0.0.7"):
//   requests  one cell per request; up to `request_burst` at once, refilled at
//             requests_per_minute. A request is refused when no cell is free.
//   tokens    tokens_per_minute; a request is admitted while at least one token is
//             free, and tokens are charged as they are produced (the bucket may go
//             into debt: the next requests wait until it is paid back).
//   daily     tokens_per_day, per UTC day.
//   concurrent requests in flight; per instance.
// With a Redis URL the request, token and daily state lives in Redis and one Lua
// script checks and counts all of a request's subjects atomically, so several
// instances share one limit. While Redis is unreachable (breaker open) the local
// buckets decide — never no limit.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "auth/auth.h"

namespace infera::obs {
class Counter;
}

namespace infera::auth {

struct Subject {
  std::string id;  // "key:alice", "ip:127.0.0.1"
  Limits limits;
};

// The outcome of one admission, and what the x-ratelimit-* headers report.
struct Quote {
  bool allowed = true;
  std::string reason;           // refused: "requests_per_minute", "tokens_per_minute", ...
  std::string subject;          // refused: which subject's limit
  double retry_after_s = 0;     // refused: when the same request would be admitted
  // Of the subject the headers describe (the key's when it has limits, else the address's).
  int64_t limit_requests = 0, remaining_requests = 0;
  double reset_requests_s = 0;  // until the request bucket is full again
  int64_t limit_tokens = 0, remaining_tokens = 0;
  double reset_tokens_s = 0;
};

// Pure GCRA arithmetic on one bucket's state, in microseconds. Shared by the local
// buckets and mirrored by the Redis script (limiter.cpp).
struct Gcra {
  // Requests: `tat` is the bucket's theoretical arrival time (0 = never used).
  // Returns true and advances `tat` when a cell is free.
  static bool take(double& tat, double now, double interval, double capacity, double* retry_us);
  // Cells free now (0..capacity) and time until the bucket is full again.
  static int64_t remaining(double tat, double now, double interval, double capacity);
  static double reset_us(double tat, double now);
};

// Local GCRA state of every subject seen; entries whose buckets are full again are
// forgotten. Thread-safe.
class LocalBuckets {
 public:
  using Clock = std::chrono::steady_clock;
  // Checks all subjects; when every limit allows, counts the request on each.
  // `day` is the UTC day number (for tokens_per_day); `day_used` reads persisted usage.
  Quote admit(const std::vector<Subject>& subjects, double now_us, int64_t day);
  void charge(const std::vector<Subject>& subjects, int64_t tokens, double now_us, int64_t day);
  // Daily usage per subject for `day` (persistence and /admin/keys).
  std::unordered_map<std::string, int64_t> daily_usage(int64_t day) const;
  void restore_daily(const std::string& subject, int64_t day, int64_t used);
  size_t size() const;

 private:
  struct State {
    double request_tat = 0;
    double token_tat = 0;
    int64_t day = -1;
    int64_t day_used = 0;
  };
  void forget_idle(double now_us);
  mutable std::mutex mu_;
  std::unordered_map<std::string, State> states_;
  uint64_t admits_ = 0;
};

// Counts requests in flight per subject (per instance).
class Concurrency {
 public:
  // Takes a slot on every subject with a concurrent limit, or none (returns false,
  // `refused` = the subject at its limit).
  bool acquire(const std::vector<Subject>& subjects, std::string* refused);
  void release(const std::vector<Subject>& subjects);
  int64_t in_flight(const std::string& subject) const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, int64_t> counts_;
};

struct RedisLimiterOptions {
  std::string url;
  std::string prefix = "infera:rl:";
  std::chrono::milliseconds timeout{50};
};

// The shared buckets in Redis; any failure is reported (nullopt) so the caller falls
// back to the local buckets. Admissions go through one thread that pipelines every
// check waiting at that moment (one write and one read for many requests), so the
// I/O threads never wait for Redis.
class RedisBuckets {
 public:
  static Result<std::unique_ptr<RedisBuckets>> open(const RedisLimiterOptions& options);
  ~RedisBuckets();
  using AdmitCallback = std::function<void(std::vector<Subject>, std::optional<Quote>)>;
  // Calls `done` (on the pipeline thread) with the subjects and the quote.
  void admit_async(std::vector<Subject> subjects, AdmitCallback done);
  // Blocking form of admit_async.
  std::optional<Quote> admit(const std::vector<Subject>& subjects);
  bool charge(const std::vector<Subject>& subjects, int64_t tokens);
  // Today's usage of `subject`'s daily quota; nullopt on failure.
  std::optional<int64_t> daily_used(const std::string& subject);

 private:
  explicit RedisBuckets(RedisLimiterOptions options);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// UTC day number of a Unix time (days since 1970-01-01) and seconds to its end.
int64_t utc_day(int64_t unix_seconds);
double seconds_to_next_utc_day(int64_t unix_seconds);

}  // namespace infera::auth
