#include "api/chat_template.h"

#include <gtest/gtest.h>

namespace infera::api {
namespace {

const std::vector<ChatMessage> kConversation = {
    {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "2+2?"}};

TEST(ChatTemplate, DetectsFamiliesFromJinjaText) {
  EXPECT_EQ(detect_chat_format("{% for m in messages %}<|im_start|>{{m.role}}"), ChatFormat::kChatml);
  EXPECT_EQ(detect_chat_format("<|start_header_id|>' + message['role']"), ChatFormat::kLlama3);
  EXPECT_EQ(detect_chat_format("[INST] <<SYS>>\\n' + system"), ChatFormat::kLlama2);
  EXPECT_EQ(detect_chat_format("{{ '[INST] ' + message['content'] + ' [/INST]' }}"), ChatFormat::kMistral);
  EXPECT_EQ(detect_chat_format("<|user|>\\n' + content + eos_token"), ChatFormat::kZephyr);
  EXPECT_EQ(detect_chat_format("<|user|>' + content + '<|end|>"), ChatFormat::kPhi3);
  EXPECT_EQ(detect_chat_format("<start_of_turn>user\\n"), ChatFormat::kGemma);
  EXPECT_EQ(detect_chat_format(""), ChatFormat::kPlain);
  EXPECT_EQ(detect_chat_format("{{ something unknown }}"), ChatFormat::kPlain);
}

TEST(ChatTemplate, NamesRoundTrip) {
  ChatFormat f;
  EXPECT_TRUE(chat_format_from_name("qwen", f));
  EXPECT_EQ(f, ChatFormat::kChatml);
  EXPECT_TRUE(chat_format_from_name("llama3", f));
  EXPECT_STREQ(chat_format_name(f), "llama3");
  EXPECT_FALSE(chat_format_from_name("jinja2", f));
}

TEST(ChatTemplate, RendersChatml) {
  EXPECT_EQ(render_chat(ChatFormat::kChatml, kConversation),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplate, RendersLlama2WithSystemBlockInFirstTurn) {
  EXPECT_EQ(render_chat(ChatFormat::kLlama2, kConversation),
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] 2+2? [/INST]");
}

// Found by fuzz/chat_template_fuzz: a system message with no user turn after it
// (the only message, or one sent after the first user turn) was silently dropped.
TEST(ChatTemplate, Llama2KeepsSystemMessagesNoFirstUserTurnFollows) {
  EXPECT_EQ(render_chat(ChatFormat::kLlama2, {{"system", "Be brief."}}),
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n [/INST]");
  EXPECT_EQ(render_chat(ChatFormat::kLlama2,
                        {{"user", "Hi"}, {"assistant", "Hello!"}, {"system", "Now in French."},
                         {"user", "2+2?"}}),
            "[INST] Hi [/INST] Hello! </s><s>[INST] <<SYS>>\nNow in French.\n<</SYS>>\n\n"
            "2+2? [/INST]");
  EXPECT_EQ(render_chat(ChatFormat::kLlama2, {{"user", "Hi"}, {"system", "Late."}}),
            "[INST] Hi [/INST]<s>[INST] <<SYS>>\nLate.\n<</SYS>>\n\n [/INST]");
}

TEST(ChatTemplate, RendersMistralWithSystemFoldedIntoUser) {
  EXPECT_EQ(render_chat(ChatFormat::kMistral, kConversation),
            "[INST] Be brief.\n\nHi [/INST] Hello! </s><s>[INST] 2+2? [/INST]");
}

TEST(ChatTemplate, RendersLlama3) {
  EXPECT_EQ(render_chat(ChatFormat::kLlama3, {{"user", "Hi"}}),
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, RendersGemmaWithModelRole) {
  EXPECT_EQ(render_chat(ChatFormat::kGemma, kConversation),
            "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!"
            "<end_of_turn>\n<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n");
}

TEST(ChatTemplate, RendersZephyrPhi3AndPlain) {
  EXPECT_EQ(render_chat(ChatFormat::kZephyr, {{"user", "Hi"}}), "<|user|>\nHi</s>\n<|assistant|>\n");
  EXPECT_EQ(render_chat(ChatFormat::kPhi3, {{"user", "Hi"}}), "<|user|>\nHi<|end|>\n<|assistant|>\n");
  EXPECT_EQ(render_chat(ChatFormat::kPlain, {{"system", "S"}, {"user", "Hi"}}),
            "System: S\nUser: Hi\nAssistant:");
}

}  // namespace
}  // namespace infera::api
