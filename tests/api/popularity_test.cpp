#include "api/popularity.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace infera::api {
namespace {

std::string temp_file(const std::string& name) {
  return (std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()) + ".jsonl")).string();
}

TEST(PopularityLog, CountsPerKeyAndRanksMostAskedFirst) {
  PopularityLog log("");
  log.record("k1", R"({"question":"a"})");
  for (int i = 0; i < 3; ++i) log.record("k2", R"({"question":"b"})");
  log.record("k3", R"({"question":"c"})");
  log.record("k3", R"({"question":"c"})");
  EXPECT_EQ(log.size(), 3u);
  EXPECT_EQ(log.top(2), (std::vector<std::string>{R"({"question":"b"})", R"({"question":"c"})"}));
  EXPECT_EQ(log.top(10).size(), 3u);
  EXPECT_TRUE(log.save().ok());  // no path: nothing to write, not an error
}

TEST(PopularityLog, AFullLogDropsTheLeastAsked) {
  PopularityLog log("", 2);
  log.record("often", R"({"q":1})");
  log.record("often", R"({"q":1})");
  log.record("once", R"({"q":2})");
  log.record("new", R"({"q":3})");  // evicts "once"
  EXPECT_EQ(log.size(), 2u);
  EXPECT_EQ(log.top(2), (std::vector<std::string>{R"({"q":1})", R"({"q":3})"}));
}

TEST(PopularityLog, SavedCountsAreReadBackAndBadLinesSkipped) {
  const std::string path = temp_file("popularity");
  {
    PopularityLog log(path);
    for (int i = 0; i < 4; ++i) log.record("k2", R"({"question":"b"})");
    log.record("k1", R"({"question":"a"})");
    ASSERT_TRUE(log.save().ok());
  }
  std::ofstream(path, std::ios::app) << "not json\n{\"key\":\"x\"}\n";
  PopularityLog again(path);
  EXPECT_EQ(again.size(), 2u);
  EXPECT_EQ(again.top(1), (std::vector<std::string>{R"({"question":"b"})"}));
  again.record("k1", R"({"question":"a"})");  // counting goes on from the saved counts
  again.record("k1", R"({"question":"a"})");
  again.record("k1", R"({"question":"a"})");
  again.record("k1", R"({"question":"a"})");
  EXPECT_EQ(again.top(1), (std::vector<std::string>{R"({"question":"a"})"}));  // 5 > 4
  std::filesystem::remove(path);
}

TEST(PopularityLog, AnUnwritablePathIsAnErrorNamingIt) {
  PopularityLog log("/nonexistent-dir/popular.jsonl");
  log.record("k", "{}");
  Status st = log.save();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("/nonexistent-dir/popular.jsonl"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace infera::api
