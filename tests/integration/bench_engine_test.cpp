// `infera bench-engine` end to end: llama-bench-style tables and JSON records.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "integration/server_support.h"

namespace infera::testing {
namespace {

using nlohmann::json;

const std::string kModel = std::string(INFERA_SHARED_MODELS) + "/stories260K.gguf";

TEST(BenchEngine, MeasuresEveryLengthAndThreadCount) {
  if (!std::filesystem::exists(kModel)) GTEST_SKIP() << "no shared model at " << kModel;
  auto r = run_command(std::string(INFERA_BINARY) + " bench-engine -m " + kModel +
                       " -p 16,32 -n 8 -t 1,2 -r 2 -o json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json doc = json::parse(r.output.substr(r.output.find('[')));
  ASSERT_EQ(doc.size(), 6u) << doc.dump();  // (pp16, pp32, tg8) x (1, 2 threads)
  int pp = 0, tg = 0;
  for (const auto& rec : doc) {
    EXPECT_GT(rec["tokens_per_second"].get<double>(), 0) << rec.dump();
    EXPECT_GE(rec["stddev"].get<double>(), 0);
    EXPECT_GT(rec["weight_bytes_per_token"].get<double>(), 0);
    EXPECT_EQ(rec["type"], "F32");
    if (rec["n_prompt"].get<int>() > 0) ++pp;
    if (rec["n_gen"].get<int>() > 0) ++tg;
  }
  EXPECT_EQ(pp, 4);
  EXPECT_EQ(tg, 2);
  EXPECT_EQ(doc[0]["threads"], 1);
  EXPECT_EQ(doc[5]["threads"], 2);

  auto table = run_command(std::string(INFERA_BINARY) + " bench-engine -m " + kModel + " -p 8 -n 4 -r 1");
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_NE(table.output.find("| stories260K.gguf |"), std::string::npos) << table.output;
  EXPECT_NE(table.output.find("| pp8 |"), std::string::npos) << table.output;
  EXPECT_NE(table.output.find("| tg4 |"), std::string::npos) << table.output;
}

TEST(BenchEngine, MissingModelFailsNamingTheFile) {
  auto r = run_command(std::string(INFERA_BINARY) + " bench-engine -m /nonexistent/model.gguf -r 1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("/nonexistent/model.gguf"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace infera::testing
