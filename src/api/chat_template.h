// Chat templates: turn a list of messages into the prompt text a model was trained
// on. The family is detected from the GGUF's `tokenizer.chat_template` (a Jinja
// text we do not execute) or chosen by name (--chat-template); an unknown template
// falls back to a plain "Role: text" format and says so.
//
// The rendered text carries no BOS: the tokenizer adds it. Special markers such as
// <|im_start|> are meant to be tokenized with special-token parsing on.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace infera::api {

enum class ChatFormat { kLlama2, kLlama3, kChatml, kMistral, kZephyr, kPhi3, kGemma, kPlain };

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// Detects the family from a Jinja chat template; kPlain when unknown or empty.
ChatFormat detect_chat_format(std::string_view jinja_template);
// Parses a --chat-template name (llama2, llama3, chatml, qwen, mistral, zephyr, phi3,
// gemma, plain); false when unknown.
bool chat_format_from_name(std::string_view name, ChatFormat& out);
const char* chat_format_name(ChatFormat format);

// Renders the conversation and the opening of the assistant's turn.
std::string render_chat(ChatFormat format, const std::vector<ChatMessage>& messages);

}  // namespace infera::api
