// Structured logging: one JSON object per line, written by spdlog's async logger to
// stderr and, when configured, a rotating file. Callers never block on I/O: when
// the queue is full the oldest lines are dropped.
//
// Burst protection: a message key (the `event` field, e.g. "http.bad_request") that
// repeats more than `burst_limit` times within one second is collapsed: the excess
// lines are dropped and one line with "repeated": N is written when the second ends.
//
// Thread-safety: every function may be called from any thread after init_logging.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace infera::log {

enum class Level { kTrace, kDebug, kInfo, kWarn, kError, kOff };

struct LogConfig {
  std::string level = "info";      // INFERA_LOG_LEVEL / --log-level
  std::string file;                // INFERA_LOG_FILE / --log-file; empty = stderr only
  int64_t burst_limit = 20;        // INFERA_LOG_BURST_LIMIT, lines per second per key
  int64_t file_max_bytes = 16 << 20;
  int files_kept = 5;
};

// Sets up sinks and the async queue. Safe to call more than once (tests); the last
// configuration wins. Before it is called, lines go to stderr synchronously.
void init_logging(const LogConfig& config);
// Writes any pending collapsed-burst counts and flushes sinks.
void flush();
void shutdown();

bool enabled(Level level);
// Changes the level at run time; false (and no change) for an unknown name.
bool set_level(std::string_view name);
// `event` is the stable message key; `message` is free text (JSON-escaped here);
// `fields_json` is either empty or comma-separated JSON members ("\"k\":1,\"s\":\"x\"").
void write(Level level, std::string_view event, std::string_view message,
           std::string_view fields_json = {});

// Escapes `text` for use inside a JSON string literal.
std::string json_escape(std::string_view text);

template <typename... Args>
void info(std::string_view event, fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::kInfo)) write(Level::kInfo, event, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(std::string_view event, fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::kWarn)) write(Level::kWarn, event, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(std::string_view event, fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::kError)) write(Level::kError, event, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void debug(std::string_view event, fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::kDebug)) write(Level::kDebug, event, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace infera::log
