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

// Raw request bytes (a path, a percent-decoded model name) reach error bodies and log
// lines through json_escape; before, invalid UTF-8 passed through and made them
// unparsable JSON (found while writing fuzz/http_fuzz).
TEST(Log, JsonEscapeKeepsValidUtf8AndReplacesInvalidBytes) {
  EXPECT_EQ(json_escape("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(json_escape("a\xff"), "a\\ufffd");
  EXPECT_EQ(json_escape("\xc3"), "\\ufffd");                      // truncated
  EXPECT_EQ(json_escape("\xc0\xaf"), "\\ufffd\\ufffd");             // overlong
  EXPECT_EQ(json_escape("\xed\xa0\x80x"), "\\ufffd\\ufffd\\ufffdx");  // surrogate
  EXPECT_EQ(json_escape("\xf4\x90\x80\x80"), "\\ufffd\\ufffd\\ufffd\\ufffd");  // > U+10FFFF
  const std::string escaped = "{\"m\":\"" + json_escape("no route for /\xff\xfe\"") + "\"}";
  EXPECT_EQ(nlohmann::json::parse(escaped)["m"], "no route for /\xef\xbf\xbd\xef\xbf\xbd\"");
}

}  // namespace
}  // namespace infera::log
