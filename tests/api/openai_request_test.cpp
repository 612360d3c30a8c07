#include "api/openai_request.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace infera::api {
namespace {

using nlohmann::json;

std::string error_of(const json& body) {
  auto r = parse_chat_completion(body, 128);
  return r.ok() ? "" : r.status().message();
}

TEST(OpenAiRequest, ParsesAFullChatRequest) {
  json body = json::parse(R"({
    "model": "tiny", "messages": [{"role": "system", "content": "S"},
                                  {"role": "user", "content": [{"type": "text", "text": "Q"}]}],
    "max_tokens": 12, "temperature": 0, "top_p": 0.9, "top_k": 40, "min_p": 0.05,
    "presence_penalty": 0.5, "frequency_penalty": -0.5, "seed": 7, "stop": ["\n\n", "END"],
    "stream": true, "stream_options": {"include_usage": true}, "user": "u1", "priority": 5})");
  auto r = parse_chat_completion(body, 128);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->model, "tiny");
  ASSERT_EQ(r->messages.size(), 2u);
  EXPECT_EQ(r->messages[1].content, "Q");
  EXPECT_EQ(r->sampling.max_tokens, 12);
  EXPECT_EQ(r->sampling.temperature, 0);
  EXPECT_EQ(r->sampling.top_k, 40);
  EXPECT_EQ(r->sampling.seed, 7u);
  EXPECT_EQ(r->sampling.stop.size(), 2u);
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  EXPECT_EQ(r->priority, 5);
}

TEST(OpenAiRequest, DefaultsApply) {
  auto r = parse_chat_completion(json::parse(R"({"messages":[{"role":"user","content":"x"}]})"), 99);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->sampling.max_tokens, 99);
  EXPECT_EQ(r->sampling.temperature, 1.0);
  EXPECT_FALSE(r->stream);
}

TEST(OpenAiRequest, EveryInvalidFieldIsNamed) {
  const json user = json::array({{{"role", "user"}, {"content", "x"}}});
  EXPECT_NE(error_of({{"messages", user}, {"max_tokens", -1}}).find("'max_tokens'"), std::string::npos);
  EXPECT_NE(error_of({{"messages", user}, {"max_tokens", "ten"}}).find("'max_tokens'"), std::string::npos);
  EXPECT_NE(error_of({{"messages", user}, {"temperature", 5}}).find("'temperature'"), std::string::npos);
  EXPECT_NE(error_of({{"messages", user}, {"top_p", "high"}}).find("'top_p'"), std::string::npos);
  EXPECT_NE(error_of({{"messages", user}, {"stop", 3}}).find("'stop'"), std::string::npos);
  EXPECT_NE(error_of({{"messages", user}, {"stream", "yes"}}).find("'stream'"), std::string::npos);
  EXPECT_NE(error_of({{"messages", user}, {"seed", 1.5}}).find("'seed'"), std::string::npos);
  EXPECT_NE(error_of({{"messages", user}, {"n", 3}}).find("'n'"), std::string::npos);
  EXPECT_NE(error_of({{"messages", json::array()}}).find("'messages'"), std::string::npos);
  EXPECT_NE(error_of(json::object()).find("'messages' is required"), std::string::npos);
  EXPECT_NE(error_of({{"messages", {{{"role", "robot"}, {"content", "x"}}}}}).find("messages[0].role"),
            std::string::npos);
  EXPECT_NE(error_of({{"messages", {{{"role", "user"}}}}}).find("messages[0].content"), std::string::npos);
}

TEST(OpenAiRequest, CompletionNeedsAPrompt) {
  EXPECT_FALSE(parse_completion(json::object(), 16).ok());
  EXPECT_FALSE(parse_completion({{"prompt", 42}}, 16).ok());
  auto r = parse_completion({{"prompt", "Once"}}, 16);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->prompt, "Once");
  EXPECT_FALSE(r->chat);
}

TEST(OpenAiRequest, AssistantChatValidatesQuestionAndRole) {
  auto ok = parse_assistant_chat({{"question", "What is a noun?"}, {"role", "teacher"}});
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->role, "teacher");
  EXPECT_NE(parse_assistant_chat({{"question", "  "}}).status().message().find("'question'"),
            std::string::npos);
  EXPECT_NE(parse_assistant_chat({{"question", "q"}, {"role", "admin"}}).status().message().find("'role'"),
            std::string::npos);
  EXPECT_FALSE(parse_assistant_chat({{"role", "student"}}).ok());
}

}  // namespace
}  // namespace infera::api
