#include "guard/utc_time.h"

#include <fmt/format.h>

#include <cstdint>
#include <ctime>

namespace infera::guard {

std::string utc_iso8601(std::chrono::system_clock::time_point at) {
  const int64_t since_epoch_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(at.time_since_epoch()).count();
  const std::time_t seconds = static_cast<std::time_t>(since_epoch_ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900,
                     utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                     since_epoch_ms % 1000);
}

}  // namespace infera::guard
