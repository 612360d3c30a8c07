#include "core/log.h"

#include <spdlog/async.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace infera::log {
namespace {

spdlog::level::level_enum to_spdlog(Level level) {
  switch (level) {
    case Level::kTrace: return spdlog::level::trace;
    case Level::kDebug: return spdlog::level::debug;
    case Level::kInfo: return spdlog::level::info;
    case Level::kWarn: return spdlog::level::warn;
    case Level::kError: return spdlog::level::err;
    case Level::kOff: return spdlog::level::off;
  }
  return spdlog::level::info;
}

// Counts lines per key in the current one-second window; past the limit, lines are
// suppressed and their count is reported once the window has passed.
class BurstLimiter {
 public:
  struct Decision {
    bool emit = true;
    int64_t previously_suppressed = 0;  // to report before this line
  };

  void set_limit(int64_t limit) { limit_.store(limit, std::memory_order_relaxed); }

  Decision check(std::string_view key, int64_t now_s) {
    std::lock_guard lock(mu_);
    Window& w = windows_[std::string(key)];
    Decision d;
    if (w.second != now_s) {
      d.previously_suppressed = w.suppressed;
      w = Window{now_s, 0, 0};
    }
    if (++w.count > limit_.load(std::memory_order_relaxed)) {
      ++w.suppressed;
      d.emit = false;
    }
    return d;
  }

  // Reports windows that ended with suppressed lines (called by flush()).
  template <typename Fn>
  void drain(int64_t now_s, Fn&& report) {
    std::lock_guard lock(mu_);
    for (auto it = windows_.begin(); it != windows_.end();) {
      if (it->second.second != now_s) {
        if (it->second.suppressed > 0) report(it->first, it->second.suppressed);
        it = windows_.erase(it);
      } else {
        ++it;
      }
    }
  }

 private:
  struct Window {
    int64_t second = 0;
    int64_t count = 0;
    int64_t suppressed = 0;
  };
  std::atomic<int64_t> limit_{20};
  std::mutex mu_;
  std::unordered_map<std::string, Window> windows_;
};

BurstLimiter& limiter() {
  static BurstLimiter l;
  return l;
}

std::shared_ptr<spdlog::logger>& logger() {
  static std::shared_ptr<spdlog::logger> l = [] {
    auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    auto lg = std::make_shared<spdlog::logger>("infera", sink);
    lg->set_pattern("{\"ts\":\"%Y-%m-%dT%H:%M:%S.%fZ\",\"level\":\"%l\",%v}",
                    spdlog::pattern_time_type::utc);
    return lg;
  }();
  return l;
}

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};

std::optional<Level> parse_level(std::string_view name) {
  static constexpr std::pair<const char*, Level> kLevels[] = {
      {"trace", Level::kTrace}, {"debug", Level::kDebug}, {"info", Level::kInfo},
      {"warn", Level::kWarn},   {"error", Level::kError}, {"off", Level::kOff}};
  for (const auto& [n, l] : kLevels) {
    if (name == n) return l;
  }
  return std::nullopt;
}

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void emit(Level level, std::string_view event, std::string_view message, std::string_view fields,
          int64_t repeated) {
  std::string line;
  line.reserve(64 + event.size() + message.size() + fields.size());
  line += "\"event\":\"";
  line += json_escape(event);
  line += "\",\"msg\":\"";
  line += json_escape(message);
  line += '"';
  if (repeated > 0) line += fmt::format(",\"repeated\":{}", repeated);
  if (!fields.empty()) {
    line += ',';
    line += fields;
  }
  logger()->log(to_spdlog(level), "{}", line);
}

// Bytes in the well-formed UTF-8 character starting text[i] (RFC 3629: no overlong
// forms, surrogates or values past U+10FFFF), or 0 when it is not one.
size_t utf8_char_bytes(std::string_view text, size_t i) {
  const auto b = static_cast<unsigned char>(text[i]);
  const size_t n = b >= 0xC2 && b <= 0xDF   ? 2
                   : b >= 0xE0 && b <= 0xEF ? 3
                   : b >= 0xF0 && b <= 0xF4 ? 4
                                            : 0;
  if (n == 0 || i + n > text.size()) return 0;
  const auto second = static_cast<unsigned char>(text[i + 1]);
  const unsigned char lo = b == 0xE0 ? 0xA0 : b == 0xF0 ? 0x90 : 0x80;
  const unsigned char hi = b == 0xED ? 0x9F : b == 0xF4 ? 0x8F : 0xBF;
  if (second < lo || second > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return 0;
  }
  return n;
}

}  // namespace

std::string json_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (static_cast<unsigned char>(c) >= 0x80) {
      // JSON text is UTF-8: a byte that starts no well-formed character becomes
      // U+FFFD, so that a request's raw bytes never make a log line or an error body
      // unparsable.
      const size_t n = utf8_char_bytes(text, i);
      if (n == 0) {
        out += "\\ufffd";
      } else {
        out.append(text, i, n);
        i += n - 1;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
  }
  return out;
}

void init_logging(const LogConfig& config) {
  static std::once_flag pool_once;
  std::call_once(pool_once, [] { spdlog::init_thread_pool(16384, 1); });
  std::vector<spdlog::sink_ptr> sinks;
  sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (!config.file.empty()) {
    sinks.push_back(std::make_shared<spdlog::sinks::rotating_file_sink_mt>(
        config.file, static_cast<size_t>(config.file_max_bytes),
        static_cast<size_t>(config.files_kept)));
  }
  auto lg = std::make_shared<spdlog::async_logger>("infera", sinks.begin(), sinks.end(),
                                                   spdlog::thread_pool(),
                                                   spdlog::async_overflow_policy::overrun_oldest);
  lg->set_pattern("{\"ts\":\"%Y-%m-%dT%H:%M:%S.%fZ\",\"level\":\"%l\",%v}",
                  spdlog::pattern_time_type::utc);
  Level level = parse_level(config.level).value_or(Level::kInfo);
  lg->set_level(to_spdlog(level));
  lg->flush_on(spdlog::level::warn);
  g_level.store(static_cast<int>(level));
  limiter().set_limit(config.burst_limit);
  logger() = lg;
}

bool set_level(std::string_view name) {
  auto level = parse_level(name);
  if (!level) return false;
  g_level.store(static_cast<int>(*level));
  logger()->set_level(to_spdlog(*level));
  return true;
}

bool enabled(Level level) { return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed); }

void write(Level level, std::string_view event, std::string_view message,
           std::string_view fields_json) {
  if (!enabled(level)) return;
  auto d = limiter().check(event, now_seconds());
  if (d.previously_suppressed > 0) {
    emit(level, event, "repeated message collapsed", {}, d.previously_suppressed);
  }
  if (d.emit) emit(level, event, message, fields_json, 0);
}

void flush() {
  limiter().drain(now_seconds(), [](const std::string& key, int64_t n) {
    emit(Level::kWarn, key, "repeated message collapsed", {}, n);
  });
  logger()->flush();
}

void shutdown() {
  flush();
  spdlog::shutdown();
}

}  // namespace infera::log
