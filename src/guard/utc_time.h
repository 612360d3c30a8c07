// Internal to guard: timestamps in the JSON that /api/v1/status shows.
#pragma once

#include <chrono>
#include <string>

namespace infera::guard {

// "2024-05-01T12:00:00.123Z" (UTC, millisecond precision).
std::string utc_iso8601(std::chrono::system_clock::time_point at);

}  // namespace infera::guard
