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

http::Request body(std::string text) {
  http::Request req;
  req.body = std::move(text);
  return req;
}

// Found by fuzz/api_request_fuzz: nlohmann reports a number too large for a double
// as out_of_range, which escaped the parse_error handler and made the request a 500.
TEST(ParseJsonObject, NumberOutOfRangeIsA400) {
  for (const char* text : {"1e400", "{\"max_tokens\":1e400}", "[-1e99999]"}) {
    http::Response error;
    EXPECT_FALSE(parse_json_object(body(text), error).has_value()) << text;
    EXPECT_EQ(error.status, 400) << text;
    EXPECT_EQ(nlohmann::json::parse(error.body)["error"]["code"], "invalid_json") << text;
  }
}

TEST(ParseJsonObject, AcceptsOnlyObjects) {
  http::Response error;
  EXPECT_TRUE(parse_json_object(body(R"({"a":1e300})"), error).has_value());
  EXPECT_FALSE(parse_json_object(body("[]"), error).has_value());
  EXPECT_EQ(error.status, 400);
  EXPECT_FALSE(parse_json_object(body(""), error).has_value());
  EXPECT_FALSE(parse_json_object(body("{\"a\":"), error).has_value());
  EXPECT_NE(error.body.find("malformed at byte"), std::string::npos);
}

}  // namespace
}  // namespace infera::api
