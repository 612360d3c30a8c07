#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "auth/auth.h"

namespace infera::auth {
namespace {

class KeysFileTest : public ::testing::Test {
 protected:
  std::string write(const std::string& text) {
    path_ = (std::filesystem::temp_directory_path() /
             ("infera-keys-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++) + ".toml"))
                .string();
    std::ofstream(path_) << text;
    return path_;
  }
  void TearDown() override {
    if (!path_.empty()) std::filesystem::remove(path_);
  }
  std::string path_;
  int counter_ = 0;
};

const std::string kAliceSha = sha256_hex("sk-alice");

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_F(KeysFileTest, RolesAndKeys) {
  auto f = parse_keys_file(write(R"(
[roles.student]
requests_per_minute = 30
tokens_per_day = 5000
models = ["tiny*"]

[roles.ta]
priority = 5
routes = ["/v1/", "/api/chat"]

[[keys]]
name = "alice"
sha256 = ")" + kAliceSha + R"("
role = "student"
concurrent = 2

[[keys]]
name = "bob"
sha256 = ")" + sha256_hex("sk-bob") + R"("
role = "ta"
models = ["big"]
)"));
  ASSERT_TRUE(f.ok()) << f.status().message();
  ASSERT_EQ(f->roles.size(), 4u);  // admin, teacher, student, ta
  EXPECT_EQ(f->roles[0].name, "admin");
  EXPECT_TRUE(f->roles[0].admin);
  EXPECT_EQ(f->roles[1].name, "teacher");
  EXPECT_GT(f->roles[1].priority, f->roles[2].priority);
  EXPECT_EQ(f->roles[2].limits.requests_per_minute, 30);
  EXPECT_EQ(f->roles[2].limits.tokens_per_day, 5000);
  EXPECT_EQ(f->roles[3].name, "ta");
  EXPECT_EQ(f->roles[3].priority, 5);
  EXPECT_EQ(f->roles[3].routes.size(), 2u);
  ASSERT_EQ(f->keys.size(), 2u);
  EXPECT_EQ(f->keys[0].name, "alice");
  EXPECT_EQ(f->keys[0].sha256, sha256("sk-alice"));
  EXPECT_EQ(f->keys[0].limits.concurrent, 2);
  EXPECT_EQ(f->keys[1].models, std::vector<std::string>{"big"});
}

TEST_F(KeysFileTest, ErrorsNameTheFileTheEntryAndTheProblem) {
  struct Case {
    std::string text, expect;
  };
  const std::vector<Case> cases = {
      {"[[keys]]\nname = \"a\"\nsha256 = \"abc\"\nrole = \"student\"\n", "key 'a': sha256 must be the 64 hex"},
      {"[[keys]]\nname = \"a\"\nsha256 = \"" + kAliceSha + "\"\nrole = \"ghost\"\n", "unknown role 'ghost'"},
      {"[[keys]]\nname = \"a\"\nsha256 = \"" + kAliceSha + "\"\nrole = \"student\"\ncolour = 1\n",
       "key 'a': unknown key 'colour'"},
      {"[[keys]]\nsha256 = \"" + kAliceSha + "\"\nrole = \"student\"\n", "[[keys]] #1: name is missing"},
      {"[[keys]]\nname = \"a\"\nsha256 = \"" + kAliceSha + "\"\nrole = \"student\"\n[[keys]]\nname = \"a\"\nsha256 = \"" +
           sha256_hex("x") + "\"\nrole = \"student\"\n",
       "listed twice"},
      {"[[keys]]\nname = \"a\"\nsha256 = \"" + kAliceSha + "\"\nrole = \"student\"\n[[keys]]\nname = \"b\"\nsha256 = \"" +
           kAliceSha + "\"\nrole = \"student\"\n",
       "same key (sha256) is listed twice"},
      {"[roles.student]\nrequests_per_minute = -1\n", "[roles.student]: requests_per_minute must be a whole number"},
      {"[roles.x]\npriority = 500\n", "priority must be a whole number from -100 to 100"},
      {"[roles.x]\nroutes = [\"v1\"]\n", "route 'v1' must start with /"},
      {"[server]\nport = 1\n", "unknown top-level key 'server'"},
      {"[[keys]\n", "invalid TOML"},
  };
  for (const auto& c : cases) {
    const std::string path = write(c.text);
    auto f = parse_keys_file(path);
    ASSERT_FALSE(f.ok()) << c.text;
    EXPECT_NE(f.status().message().find(path), std::string::npos) << f.status().message();
    EXPECT_NE(f.status().message().find(c.expect), std::string::npos) << f.status().message();
  }
}

TEST(Caller, ModelPermissions) {
  Caller anyone;
  EXPECT_TRUE(anyone.may_use_model("whatever"));
  Caller narrow;
  narrow.models = {"tiny*", "big"};
  EXPECT_TRUE(narrow.may_use_model("tiny"));
  EXPECT_TRUE(narrow.may_use_model("tinyllama-q4"));
  EXPECT_TRUE(narrow.may_use_model("big"));
  EXPECT_FALSE(narrow.may_use_model("bigger"));
  EXPECT_FALSE(narrow.may_use_model("tin"));
}

}  // namespace
}  // namespace infera::auth
