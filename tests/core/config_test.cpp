#include "core/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

namespace infera::core {
namespace {

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(Config, DefaultsApplyWhenNothingIsSet) {
  auto c = Config::load({}, env_of({}));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->get_int("port"), 8080);
  EXPECT_EQ(c->get_int("max_content_length"), 1 << 20);
  EXPECT_EQ(c->source("port"), ConfigSource::kDefault);
  EXPECT_TRUE(c->get_bool("model_warmup_enabled"));
}

TEST(Config, PrecedenceIsFlagThenEnvThenFileThenDefault) {
  const std::string path = ::testing::TempDir() + "/precedence.toml";
  {
    std::ofstream f(path);
    f << "port = 9000\nbatch_size = 4\nmax_workers = 2\nlog_level = \"debug\"\n";
  }
  FlagValues flags{{"config", path}, {"port", "9100"}};
  auto c = Config::load(flags, env_of({{"INFERA_PORT", "9050"}, {"BATCH_SIZE", "16"}}));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->get_int("port"), 9100);
  EXPECT_EQ(c->source("port"), ConfigSource::kFlag);
  EXPECT_EQ(c->get_int("batch_size"), 16);
  EXPECT_EQ(c->source("batch_size"), ConfigSource::kEnv);
  EXPECT_EQ(c->get_int("max_workers"), 2);
  EXPECT_EQ(c->source("max_workers"), ConfigSource::kFile);
  EXPECT_EQ(c->get_string("log_level"), "debug");
  EXPECT_EQ(c->source("cache_timeout"), ConfigSource::kDefault);
  std::remove(path.c_str());
}

TEST(Config, InvalidValuesNameKeyValueSourceAndAllowed) {
  auto bad_int = Config::load({}, env_of({{"MAX_WORKERS", "0"}}));
  ASSERT_FALSE(bad_int.ok());
  EXPECT_EQ(bad_int.status().code(), StatusCode::kInvalidArgument);
  const std::string& m = bad_int.status().message();
  EXPECT_NE(m.find("MAX_WORKERS"), std::string::npos) << m;
  EXPECT_NE(m.find("'0'"), std::string::npos) << m;
  EXPECT_NE(m.find("environment"), std::string::npos) << m;
  EXPECT_NE(m.find("from 1 to 1024"), std::string::npos) << m;

  auto bad_float = Config::load({{"memory-cleanup-threshold", "1.5"}}, env_of({}));
  ASSERT_FALSE(bad_float.ok());
  EXPECT_NE(bad_float.status().message().find("--memory-cleanup-threshold"), std::string::npos);

  auto bad_bool = Config::load({}, env_of({{"MODEL_WARMUP_ENABLED", "maybe"}}));
  ASSERT_FALSE(bad_bool.ok());
  EXPECT_NE(bad_bool.status().message().find("true or false"), std::string::npos);

  auto not_number = Config::load({{"port", "80a"}}, env_of({}));
  ASSERT_FALSE(not_number.ok());
}

TEST(Config, TomlErrorsNameTheFile) {
  const std::string path = ::testing::TempDir() + "/bad.toml";
  {
    std::ofstream f(path);
    f << "port = [1, 2]\n";
  }
  auto c = Config::load({{"config", path}}, env_of({}));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find(path), std::string::npos);
  EXPECT_NE(c.status().message().find("'port'"), std::string::npos);

  auto missing = Config::load({{"config", "/nonexistent/infera.toml"}}, env_of({}));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/infera.toml"), std::string::npos);
  std::remove(path.c_str());
}

TEST(Config, SizesAcceptBinarySuffixes) {
  EXPECT_EQ(parse_size_bytes("1024"), 1024);
  EXPECT_EQ(parse_size_bytes("64KiB"), 64 * 1024);
  EXPECT_EQ(parse_size_bytes("2MB"), 2 * 1024 * 1024);
  EXPECT_EQ(parse_size_bytes("1g"), int64_t{1} << 30);
  EXPECT_FALSE(parse_size_bytes("").has_value());
  EXPECT_FALSE(parse_size_bytes("MiB").has_value());
  EXPECT_FALSE(parse_size_bytes("5 parsecs").has_value());
  auto c = Config::load({}, env_of({{"MAX_CONTENT_LENGTH", "16MiB"}}));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->get_int("max_content_length"), 16 << 20);
}

TEST(Config, DescribeListsEveryKeyWithItsSource) {
  auto c = Config::load({{"port", "1234"}}, env_of({}));
  ASSERT_TRUE(c.ok());
  std::string table = c->describe();
  for (const auto& spec : option_specs()) EXPECT_NE(table.find(spec.key), std::string::npos);
  EXPECT_NE(table.find("flag --port"), std::string::npos);
}

}  // namespace
}  // namespace infera::core
