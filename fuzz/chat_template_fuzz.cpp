// libFuzzer target for chat-template rendering. The input is text: its first line
// is a format name (llama2, chatml, ...) or else a Jinja template to detect the
// format from; every further line is one message, "role:content" (the role may be
// anything, the content any bytes). Rendering must never crash, and for
// conversations of the documented roles (system, user, assistant) every message's
// content must reach the prompt: a dropped system or user turn is a silent change
// of what the model is asked. Build and run: docs/FUZZING.md.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "api/chat_template.h"
#include "require.h"

namespace {

using infera::api::ChatFormat;
using infera::api::ChatMessage;


bool documented_role(const std::string& role) {
  return role == "system" || role == "user" || role == "assistant";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t first_end = std::min(input.find('\n'), input.size());
  const std::string_view head = input.substr(0, first_end);

  ChatFormat format;
  if (!infera::api::chat_format_from_name(head, format)) {
    format = infera::api::detect_chat_format(head);
  }
  ChatFormat named;
  require(infera::api::chat_format_from_name(infera::api::chat_format_name(format), named));
  require(named == format);

  std::vector<ChatMessage> messages;
  bool all_documented = true;
  for (size_t pos = first_end + 1; pos <= input.size();) {
    const size_t end = std::min(input.find('\n', pos), input.size());
    const std::string_view line = input.substr(pos, end - pos);
    const size_t colon = line.find(':');
    ChatMessage m;
    m.role = std::string(line.substr(0, std::min(colon, line.size())));
    if (colon != std::string_view::npos) m.content = std::string(line.substr(colon + 1));
    all_documented = all_documented && documented_role(m.role);
    messages.push_back(std::move(m));
    pos = end + 1;
  }

  const std::string prompt = infera::api::render_chat(format, messages);
  require(prompt == infera::api::render_chat(format, messages));
  if (all_documented) {
    for (const auto& m : messages) require(prompt.find(m.content) != std::string::npos);
  }
  return 0;
}
