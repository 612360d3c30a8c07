// `infera config` and start-up validation through the real binary.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "integration/server_support.h"

namespace infera::testing {
namespace {

std::string config_line(const std::string& output, const std::string& key) {
  size_t pos = output.find("\n" + key + " ");
  if (pos == std::string::npos) return {};
  size_t end = output.find('\n', pos + 1);
  return output.substr(pos + 1, end - pos - 1);
}

TEST(ConfigCommand, FlagsBeatEnvironmentBeatFileBeatDefaults) {
  const std::string toml = "/tmp/infera-config-test.toml";
  {
    std::ofstream f(toml);
    f << "port = 9001\nmax_workers = 3\nbatch_size = 5\ncache_timeout = 10\n";
  }
  auto r = run_command(std::string("MAX_WORKERS=7 BATCH_SIZE=6 ") + INFERA_BINARY +
                       " config --config " + toml + " --batch-size 9");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(config_line(r.output, "batch_size").find("9"), std::string::npos);
  EXPECT_NE(config_line(r.output, "batch_size").find("flag"), std::string::npos);
  EXPECT_NE(config_line(r.output, "max_workers").find("7"), std::string::npos);
  EXPECT_NE(config_line(r.output, "max_workers").find("env"), std::string::npos);
  EXPECT_NE(config_line(r.output, "port").find("9001"), std::string::npos);
  EXPECT_NE(config_line(r.output, "port").find("file"), std::string::npos);
  EXPECT_NE(config_line(r.output, "cache_timeout").find("10"), std::string::npos);
  EXPECT_NE(config_line(r.output, "max_content_length").find("default"), std::string::npos);
  std::remove(toml.c_str());
}

TEST(ConfigCommand, InvalidValueNamesKeyValueAndAllowedRange) {
  auto r = run_command(std::string(INFERA_BINARY) + " serve --port 99999");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("INFERA_PORT"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("'99999'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("from 0 to 65535"), std::string::npos) << r.output;

  auto env = run_command(std::string("MAX_WORKERS=lots ") + INFERA_BINARY + " config");
  EXPECT_NE(env.exit_code, 0);
  EXPECT_NE(env.output.find("MAX_WORKERS"), std::string::npos) << env.output;
  EXPECT_NE(env.output.find("environment"), std::string::npos) << env.output;

  auto size = run_command(std::string("MAX_CONTENT_LENGTH=12parsecs ") + INFERA_BINARY + " config");
  EXPECT_NE(size.exit_code, 0);
  EXPECT_NE(size.output.find("MAX_CONTENT_LENGTH"), std::string::npos) << size.output;

  auto level = run_command(std::string(INFERA_BINARY) + " config --log-level loud");
  EXPECT_NE(level.exit_code, 0);
  EXPECT_NE(level.output.find("one of trace, debug, info, warn, error, off"), std::string::npos)
      << level.output;
}

TEST(ConfigCommand, BadTomlFileIsReported) {
  const std::string toml = "/tmp/infera-config-bad.toml";
  {
    std::ofstream f(toml);
    f << "port = \nnot toml";
  }
  auto r = run_command(std::string(INFERA_BINARY) + " config --config " + toml);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(toml), std::string::npos) << r.output;
  {
    std::ofstream f(toml);
    f << "prot = 80\n";
  }
  auto unknown = run_command(std::string(INFERA_BINARY) + " config --config " + toml);
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_NE(unknown.output.find("unknown key 'prot'"), std::string::npos) << unknown.output;
  std::remove(toml.c_str());
}

TEST(ConfigCommand, ServeUsesEnvironmentSettings) {
  // MAX_CONTENT_LENGTH from the environment limits bodies of the running server.
  ServerProcess server({}, {{"MAX_CONTENT_LENGTH", "64"}});
  ASSERT_GT(server.port(), 0);
  auto r = http_request(server.port(), "PUT", "/admin/log-level", std::string(100, ' '));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
}

TEST(CpuAffinity, StatusSaysWhichCoresRunAndThreadsAliasMaxWorkers) {
  ServerProcess server({"--cpu-affinity", "0", "--threads", "2"});
  ASSERT_GT(server.port(), 0);
  auto r = http_request(server.port(), "GET", "/api/v1/status");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const nlohmann::json status = nlohmann::json::parse(r->body);
  const nlohmann::json& cpu = status.at("cpu");
  EXPECT_EQ(cpu.at("threads"), 2);
  EXPECT_EQ(cpu.at("pinned"), true);
  EXPECT_EQ(cpu.at("cores"), nlohmann::json::array({0}));
  EXPECT_NE(cpu.at("placement").get<std::string>().find("pinned to CPUs 0"), std::string::npos) << cpu;
}

TEST(CpuAffinity, UnavailableCpusAreRefusedAtStart) {
  auto r = run_command(std::string(INFERA_BINARY) + " serve --port 0 --cpu-affinity 900-901");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--cpu-affinity 900-901: CPU 900-901 not available"), std::string::npos)
      << r.output;
  auto bad = run_command(std::string(INFERA_BINARY) + " generate --model x --cpu-affinity little");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("'little' is not a CPU number"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace infera::testing
