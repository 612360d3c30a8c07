#include "core/log.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

namespace infera::log {
namespace {

std::vector<nlohmann::json> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(Log, WritesJsonLinesAndCollapsesBursts) {
  const std::string path = ::testing::TempDir() + "/infera-log-test.jsonl";
  std::remove(path.c_str());
  LogConfig config;
  config.file = path;
  config.burst_limit = 5;
  init_logging(config);

  // Align to the start of a second so the burst falls into one window.
  auto now = std::chrono::steady_clock::now().time_since_epoch();
  auto next = std::chrono::ceil<std::chrono::seconds>(now);
  std::this_thread::sleep_for(next - now + std::chrono::milliseconds(5));
  for (int i = 0; i < 100; ++i) info("test.burst", "line {} with \"quotes\"", i);
  info("test.other", "a different key is not suppressed");

  // The collapsed count is reported once the second has passed.
  std::vector<nlohmann::json> lines;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  bool reported = false;
  while (!reported && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    flush();
    lines = read_lines(path);
    for (const auto& l : lines) reported = reported || l.contains("repeated");
  }
  int burst_lines = 0;
  int64_t repeated = 0;
  bool other = false;
  for (const auto& l : lines) {
    ASSERT_TRUE(l.contains("ts"));
    ASSERT_TRUE(l.contains("level"));
    if (l["event"] == "test.burst") {
      if (l.contains("repeated")) {
        repeated += l["repeated"].get<int64_t>();
      } else {
        ++burst_lines;
      }
    }
    if (l["event"] == "test.other") other = true;
  }
  EXPECT_EQ(burst_lines, 5);
  EXPECT_EQ(repeated, 95);
  EXPECT_TRUE(other);
  EXPECT_NE(lines.front()["msg"].get<std::string>().find("\"quotes\""), std::string::npos);
  std::remove(path.c_str());
}

TEST(Log, LevelFiltersAndCanChangeAtRunTime) {
  LogConfig config;
  config.level = "warn";
  init_logging(config);
  EXPECT_FALSE(enabled(Level::kInfo));
  EXPECT_TRUE(enabled(Level::kError));
  EXPECT_TRUE(set_level("debug"));
  EXPECT_TRUE(enabled(Level::kDebug));
  EXPECT_FALSE(set_level("chatty"));
  EXPECT_TRUE(enabled(Level::kDebug));
}

TEST(Log, JsonEscapeHandlesControlCharacters) {
  EXPECT_EQ(json_escape("a\"b\\c\n\x01"), "a\\\"b\\\\c\\n\\u0001");
}

}  // namespace
}  // namespace infera::log
