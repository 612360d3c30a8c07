#include "api/json_body.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace infera::api {
namespace {

std::string literal(std::string_view text) {
  std::string out = "prefix:";
  append_json_string(out, text);
  return out.substr(7);
}

TEST(AppendJsonString, WritesWhatNlohmannWrites) {
  const std::string cases[] = {
      "",
      "plain text",
      "quote \" backslash \\ slash /",
      "new\nline\rreturn\ttab",
      std::string("nul \0 and \x01 \x1f \x7f", sizeof("nul \0 and \x01 \x1f \x7f") - 1),
      "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
      "\b\f",
  };
  for (const auto& text : cases) {
    EXPECT_EQ(literal(text), nlohmann::json(text).dump()) << text;
    EXPECT_EQ(nlohmann::json::parse(literal(text)).get<std::string>(), text);
  }
}

TEST(AppendJsonString, EscapesEveryControlCharacter) {
  for (int c = 0; c < 0x20; ++c) {
    const std::string text(1, static_cast<char>(c));
    const std::string out = literal(text);
    EXPECT_EQ(out.find(static_cast<char>(c)), std::string::npos) << c;
    EXPECT_EQ(nlohmann::json::parse(out).get<std::string>(), text) << c;
  }
}

}  // namespace
}  // namespace infera::api
