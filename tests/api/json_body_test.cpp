#include "api/json_body.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

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
TEST(AppendJsonFloats, ReadsBackAsTheSameFloats) {
  const std::vector<float> values = {0.0f, -0.0f, 0.1f, -1.5e-38f, 3.4028235e38f, 1.0f / 3.0f, 123456.789f,
                                     std::numeric_limits<float>::denorm_min()};
  std::string out = "x";
  infera::api::append_json_floats(out, values);
  ASSERT_EQ(out.front(), 'x');
  const nlohmann::json parsed = nlohmann::json::parse(out.substr(1));
  ASSERT_TRUE(parsed.is_array());
  ASSERT_EQ(parsed.size(), values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(static_cast<float>(parsed[i].get<double>()), values[i]) << i;
  }
  EXPECT_EQ(out.find("0.1,"), out.find("0.1")) << out;  // shortest form, not 0.10000000149011612
}

TEST(AppendJsonFloats, NonFiniteValuesAreNullAndEmptyIsAnEmptyArray) {
  std::string out;
  infera::api::append_json_floats(out, std::vector<float>{1.0f, std::nanf(""), INFINITY, -INFINITY});
  EXPECT_EQ(out, "[1,null,null,null]");
  out.clear();
  infera::api::append_json_floats(out, std::vector<float>{});
  EXPECT_EQ(out, "[]");
}

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
