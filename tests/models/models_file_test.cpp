// Durations of keep_alive (models file, Ollama's per-request field).
#include "models/models_file.h"

#include <gtest/gtest.h>

#include <string>

namespace infera::models {
namespace {

using namespace std::chrono_literals;

TEST(ParseKeepAlive, ReadsUnitsSecondsAndForever) {
  EXPECT_EQ(*parse_keep_alive("5m"), 300000ms);
  EXPECT_EQ(*parse_keep_alive("30s"), 30000ms);
  EXPECT_EQ(*parse_keep_alive("250ms"), 250ms);
  EXPECT_EQ(*parse_keep_alive("1.5"), 1500ms);
  EXPECT_EQ(*parse_keep_alive("1h "), 3600000ms);
  EXPECT_EQ(*parse_keep_alive("-1"), -1ms);
  EXPECT_EQ(*parse_keep_alive("0"), 0ms);
  EXPECT_FALSE(parse_keep_alive("").ok());
  EXPECT_FALSE(parse_keep_alive("5 days").ok());
  EXPECT_FALSE(parse_keep_alive("400d").ok());
  EXPECT_FALSE(parse_keep_alive("1e300").ok());
  EXPECT_FALSE(parse_keep_alive("nan").ok());
}

// A JSON keep_alive may hold NULs ("5m\u0000x"); the unit was read as a C string, so
// whatever followed a NUL was ignored and "5m\0x" or "5\0" passed as valid durations
// (found while writing fuzz/api_request_fuzz).
TEST(ParseKeepAlive, RefusesTextAfterAnEmbeddedNul) {
  EXPECT_FALSE(parse_keep_alive(std::string("5m\0x", 4)).ok());
  EXPECT_FALSE(parse_keep_alive(std::string("5\0", 2)).ok());
  EXPECT_FALSE(parse_keep_alive(std::string("5s\0", 3)).ok());
}

}  // namespace
}  // namespace infera::models
