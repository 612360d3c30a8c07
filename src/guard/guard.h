// infera guard: keeps the server answering under memory pressure and stuck engines. The
// only header other subsystems include.
//
// MemoryGuard samples memory (process RSS, system, cgroup v2) on its own thread, runs
// cleanup actions when use crosses a threshold or its trend predicts a crossing, and
// raises a critical flag that admission turns into 503 memory_pressure. Watchdog reports
// an engine loop with pending work and no steps as unhealthy. TtftGovernor lowers the
// scheduler's limits while P95 time to first token breaks its objective. Every
// self-healing step is written to one SelfHealingLog (metrics, log, /api/v1/status).
//
//   guard::SelfHealingLog healing(metrics);
//   guard::MemoryGuard memory(config, *source, {{"shrink_cache", shrink}, ...}, metrics);
//   memory.on_critical_change = [&](bool on, double fraction) { /* raise/resolve alert */ };
//   memory.start();                       // ... if (memory.critical()) reply 503
//   guard::Watchdog watchdog(std::chrono::seconds(30), healing, metrics);
//   watchdog.add("tiny", [&] { return guard::ProgressSample{steps(), pending()}; });
//   watchdog.tick(now);                   // from a maintenance loop; healthy() for /health
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

namespace infera::obs {
class Registry;
}

namespace infera::guard {

using Clock = std::chrono::steady_clock;

// One look at memory. Byte counts are 0 (or nullopt) when their source is unavailable.
struct MemoryReading {
  uint64_t process_rss_bytes = 0;
  uint64_t system_total_bytes = 0;
  uint64_t system_available_bytes = 0;
  std::optional<uint64_t> cgroup_current_bytes;  // nullopt outside a cgroup v2
  std::optional<uint64_t> cgroup_max_bytes;      // nullopt when "max" or outside a cgroup v2
  // The tighter of system use (1 - available/total) and cgroup current/max (when a
  // limit exists), in [0, 1+]; 0 when nothing is known.
  double used_fraction() const;
};

// Where readings come from; tests feed their own. Called only from the guard's thread.
class MemorySource {
 public:
  virtual ~MemorySource();
  virtual MemoryReading read() = 0;
};

// Roots of the files the system source reads; tests point them at a fake tree.
struct SystemMemoryPaths {
  std::string proc_dir = "/proc";             // self/status, self/cgroup, meminfo
  std::string cgroup_dir = "/sys/fs/cgroup";  // cgroup v2 mount
};
// Reads VmRSS (/proc/self/status), MemTotal/MemAvailable (/proc/meminfo; MemFree when
// MemAvailable is missing) and memory.current/memory.max of the process's own cgroup v2
// ("0::/path" in /proc/self/cgroup). Missing or malformed files leave fields empty.
std::unique_ptr<MemorySource> make_system_memory_source(SystemMemoryPaths paths = {});

struct GuardConfig {
  double cleanup_threshold = 0.80;          // MEMORY_CLEANUP_THRESHOLD, fraction of memory
  double critical_threshold = 0.95;         // CRITICAL_MEMORY_THRESHOLD, fraction of memory
  double critical_hysteresis = 0.02;        // critical clears below critical_threshold - this
  std::chrono::milliseconds interval{250};  // between samples on the guard thread
  std::chrono::milliseconds predict_horizon{10000};  // how far ahead the trend is trusted
  int trend_samples = 8;  // samples in the least-squares trend (>= 3 predicts)
};

// `run` frees what it can and returns the bytes it freed (an estimate; may be 0). It runs
// on the guard's thread and must not call back into the guard.
struct CleanupAction {
  std::string name;
  std::function<uint64_t()> run;
};

// Each tick: read a sample and keep the last trend_samples.
//  - At or above cleanup_threshold ("threshold"): run the actions in order, re-reading
//    after each, and stop as soon as a reading is below the threshold.
//  - Below it, when >= 3 samples rise and their least-squares line reaches the threshold
//    within predict_horizon ("predicted"): run only the first (cheapest) action; the rest
//    of the chain waits for the threshold itself.
//  After any cleanup the trend restarts from the post-cleanup reading, so a predicted
//  action needs two more rising samples before the next one.
//  critical() turns on when a reading reaches critical_threshold (before cleanup runs, so
//  admission stops at once) and off when one falls below critical_threshold -
//  critical_hysteresis (possibly the post-cleanup reading of the same tick).
// Threads: tick() runs on the "memory guard" thread after start() (or the caller's);
// critical(), retry_after_seconds() and stats() may be called from any thread.
class MemoryGuard {
 public:
  // REQUIRES: `source` and `metrics` outlive the guard; thresholds in (0, 1].
  MemoryGuard(GuardConfig config, MemorySource& source, std::vector<CleanupAction> actions,
              obs::Registry& metrics);
  ~MemoryGuard();  // stops the thread
  MemoryGuard(const MemoryGuard&) = delete;
  MemoryGuard& operator=(const MemoryGuard&) = delete;

  void start();  // starts the thread, ticking every interval; no-op when running
  void stop();   // joins the thread; no-op when stopped
  void tick(Clock::time_point now);  // one sample and its decisions; serialised internally

  bool critical() const;  // one atomic load
  // Retry-After for a 503 memory_pressure answer: 5 s while critical, else 2 s.
  double retry_after_seconds() const;
  // {"process":{"rss_bytes","rss_mb"}, "system":{"total_bytes","available_bytes",
  //  "used_percent"}, "cgroup":{"current_bytes","max_bytes"|null}|null, "used_fraction",
  //  "predicted_fraction" (at last sample + horizon)|null, "state":"normal"|"cleanup"|
  //  "critical", "thresholds":{"cleanup","critical"}, "actions":[{"action","at","reason",
  //  "fraction_before","fraction_after","freed_bytes"}] newest first (last 100), "samples"}
  nlohmann::json stats() const;

  // Called on the ticking thread, outside internal locks, on every change of critical().
  // Set before start().
  std::function<void(bool critical, double fraction)> on_critical_change;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Every self-healing step: counter infera_self_healing_actions_total{action}, a log line
// (event "self_healing") and the last 100 entries. Thread-safe.
class SelfHealingLog {
 public:
  explicit SelfHealingLog(obs::Registry& metrics);  // REQUIRES: metrics outlives the log
  ~SelfHealingLog();
  SelfHealingLog(const SelfHealingLog&) = delete;
  SelfHealingLog& operator=(const SelfHealingLog&) = delete;

  void record(const std::string& action, const std::string& detail);
  // {"total": N since start, "recent": [{"action","detail","at"}] newest first}
  nlohmann::json to_json() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct ProgressSample {
  int64_t steps_completed = 0;  // engine steps since start; any change is progress
  int64_t pending = 0;          // waiting + running sequences
};

// A stuck engine is never reported healthy. A loop is stalled when pending > 0 and
// steps_completed has not changed for stall_timeout (measured from the last tick that saw
// progress or no pending work); it recovers as soon as steps change or pending drops to 0.
// Transitions are recorded as "engine_stalled" / "engine_recovered" and passed to
// on_change. Gauge infera_watchdog_stalled_loops. Threads: all methods from any thread;
// probes run on the tick() caller's thread, outside internal locks.
class Watchdog {
 public:
  // REQUIRES: `log` and `metrics` outlive the watchdog.
  Watchdog(std::chrono::milliseconds stall_timeout, SelfHealingLog& log, obs::Registry& metrics);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Watches an engine loop (one per loaded model); replaces a loop of the same name.
  void add(const std::string& name, std::function<ProgressSample()> probe);
  // Stops watching; a stalled loop's removal is reported to on_change as stalled=false.
  void remove(const std::string& name);
  void tick(Clock::time_point now);

  bool healthy() const;
  // "engine 'tiny' made no step for 3.2 s with 4 requests pending" ("; "-joined when
  // several loops are stalled); empty when healthy.
  std::string reason() const;

  // Called on transitions, outside internal locks. Set before the first add().
  std::function<void(const std::string& loop, bool stalled, const std::string& reason)> on_change;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct Limits {
  int max_seqs = 0;          // sequences admitted together
  int max_batch_tokens = 0;  // tokens per step (prefill chunk)
  friend bool operator==(const Limits&, const Limits&) = default;
};

// Adaptive load shedding on time to first token. A window whose P95 is above the
// objective halves both limits (max_seqs >= 1, max_batch_tokens >= min(16, base)) and
// records "lower_limits"; each window at or below it doubles them back, capped at base,
// and records "raise_limits". Windows without requests change nothing. apply() is called
// with every new value, under the governor's lock: it must not call back into it.
// Threads: observe_window from one timer thread at a time; current() from any thread.
class TtftGovernor {
 public:
  // REQUIRES: base limits >= 1; `log` outlives the governor.
  TtftGovernor(double objective_p95_ms, Limits base, std::function<void(Limits)> apply,
               SelfHealingLog& log);
  ~TtftGovernor();
  TtftGovernor(const TtftGovernor&) = delete;
  TtftGovernor& operator=(const TtftGovernor&) = delete;

  void observe_window(double p95_ttft_ms, int64_t requests);
  Limits current() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Graceful degradation under overload, by levels with hysteresis:
//   0 normal;
//   1 shorten: low-priority requests that did not set max_tokens get at most
//     `shortened_max_tokens` (their answers are cached under that limit);
//   2 refuse-low: low-priority requests the cache cannot answer are refused (429 with
//     Retry-After); cached answers and higher priorities are still served.
// The signal is the longest estimated queue delay of any model (SchedulerStats::
// queue_delay_s). A level is entered as soon as the signal reaches its threshold, and
// left one level at a time once the signal has stayed below half the threshold for
// `hold`. Transitions are recorded ("degrade" / "recover"); gauge infera_degradation_level.
// Threads: observe() from one timer thread; level() from any thread.
struct DegradationConfig {
  double shorten_queue_s = 10;     // --degrade-shorten-after (0: never)
  double refuse_queue_s = 30;      // --degrade-refuse-after (0: never)
  std::chrono::milliseconds hold{10000};
  int shortened_max_tokens = 64;   // --degraded-max-tokens
};

class DegradationLadder {
 public:
  // REQUIRES: `log` and `metrics` outlive the ladder.
  DegradationLadder(DegradationConfig config, SelfHealingLog& log, obs::Registry& metrics);
  ~DegradationLadder();
  DegradationLadder(const DegradationLadder&) = delete;
  DegradationLadder& operator=(const DegradationLadder&) = delete;

  void observe(double queue_delay_s, std::chrono::steady_clock::time_point now);
  int level() const;
  static const char* name(int level);
  const DegradationConfig& config() const;
  // {"level", "name", "queue_delay_s", "since_s"}
  nlohmann::json to_json() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace infera::guard
