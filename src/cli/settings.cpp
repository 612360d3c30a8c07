#include "cli/settings.h"

namespace infera::cli {

http::ServerConfig server_config_from(const core::Config& c) {
  http::ServerConfig s;
  s.host = c.get_string("host");
  s.port = static_cast<uint16_t>(c.get_int("port"));
  s.io_threads = static_cast<int>(c.get_int("io_threads"));
  s.max_content_length = static_cast<uint64_t>(c.get_int("max_content_length"));
  s.header_timeout_ms = c.get_int("header_timeout_ms");
  s.idle_timeout_ms = c.get_int("idle_timeout_ms");
  s.drain_timeout_ms = c.get_int("drain_timeout_ms");
  s.gzip_min_bytes = static_cast<uint64_t>(c.get_int("gzip_min_bytes"));
  return s;
}

log::LogConfig log_config_from(const core::Config& c) {
  log::LogConfig l;
  l.level = c.get_string("log_level");
  l.file = c.get_string("log_file");
  l.burst_limit = c.get_int("log_burst_limit");
  return l;
}

}  // namespace infera::cli
