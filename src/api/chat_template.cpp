#include "api/chat_template.h"

#include <array>
#include <cctype>
#include <utility>

namespace infera::api {
namespace {

constexpr std::array<std::pair<const char*, ChatFormat>, 9> kNames = {{
    {"llama2", ChatFormat::kLlama2},
    {"llama3", ChatFormat::kLlama3},
    {"chatml", ChatFormat::kChatml},
    {"qwen", ChatFormat::kChatml},
    {"mistral", ChatFormat::kMistral},
    {"zephyr", ChatFormat::kZephyr},
    {"phi3", ChatFormat::kPhi3},
    {"gemma", ChatFormat::kGemma},
    {"plain", ChatFormat::kPlain},
}};

bool has(std::string_view text, std::string_view needle) {
  return text.find(needle) != std::string_view::npos;
}

// Formats without a system role fold the system text into the first user turn.
std::vector<ChatMessage> merge_system_into_first_user(const std::vector<ChatMessage>& messages) {
  std::string system;
  std::vector<ChatMessage> out;
  for (const auto& m : messages) {
    if (m.role == "system") {
      system += (system.empty() ? "" : "\n") + m.content;
      continue;
    }
    out.push_back(m);
  }
  if (!system.empty()) {
    for (auto& m : out) {
      if (m.role == "user") {
        m.content = system + "\n\n" + m.content;
        return out;
      }
    }
    out.insert(out.begin(), ChatMessage{"user", system});
  }
  return out;
}

std::string render_llama2(const std::vector<ChatMessage>& messages, bool with_sys_block) {
  // <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] ...
  // System text opens the next user turn; system text no user turn follows gets a
  // turn of its own, so that no message is dropped.
  std::string out;
  std::string system;
  bool first_turn = true;
  auto user_turn = [&](const std::string& text) {
    if (!first_turn) out += "<s>";
    out += "[INST] ";
    if (!system.empty()) {
      out += with_sys_block ? "<<SYS>>\n" + system + "\n<</SYS>>\n\n" : system + "\n\n";
      system.clear();
    }
    out += text + " [/INST]";
    first_turn = false;
  };
  for (const auto& m : messages) {
    if (m.role == "system") {
      system += (system.empty() ? "" : "\n") + m.content;
    } else if (m.role == "user") {
      user_turn(m.content);
    } else {
      out += " " + m.content + " </s>";
    }
  }
  if (!system.empty()) user_turn("");
  return out;
}

}  // namespace

ChatFormat detect_chat_format(std::string_view t) {
  if (has(t, "<|im_start|>")) return ChatFormat::kChatml;
  if (has(t, "<|start_header_id|>")) return ChatFormat::kLlama3;
  if (has(t, "<start_of_turn>")) return ChatFormat::kGemma;
  if (has(t, "<|user|>") && has(t, "<|end|>")) return ChatFormat::kPhi3;
  if (has(t, "<|user|>")) return ChatFormat::kZephyr;
  if (has(t, "[INST]") && has(t, "<<SYS>>")) return ChatFormat::kLlama2;
  if (has(t, "[INST]")) return ChatFormat::kMistral;
  return ChatFormat::kPlain;
}

bool chat_format_from_name(std::string_view name, ChatFormat& out) {
  for (const auto& [n, f] : kNames) {
    if (name == n) {
      out = f;
      return true;
    }
  }
  return false;
}

const char* chat_format_name(ChatFormat format) {
  for (const auto& [n, f] : kNames) {
    if (f == format) return n;
  }
  return "plain";
}

std::string render_chat(ChatFormat format, const std::vector<ChatMessage>& messages) {
  std::string out;
  switch (format) {
    case ChatFormat::kLlama2:
      return render_llama2(messages, /*with_sys_block=*/true);
    case ChatFormat::kMistral:
      return render_llama2(merge_system_into_first_user(messages), /*with_sys_block=*/false);
    case ChatFormat::kLlama3:
      for (const auto& m : messages) {
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + m.content + "<|eot_id|>";
      }
      return out + "<|start_header_id|>assistant<|end_header_id|>\n\n";
    case ChatFormat::kChatml:
      for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      return out + "<|im_start|>assistant\n";
    case ChatFormat::kZephyr:
      for (const auto& m : messages) out += "<|" + m.role + "|>\n" + m.content + "</s>\n";
      return out + "<|assistant|>\n";
    case ChatFormat::kPhi3:
      for (const auto& m : messages) out += "<|" + m.role + "|>\n" + m.content + "<|end|>\n";
      return out + "<|assistant|>\n";
    case ChatFormat::kGemma:
      for (const auto& m : merge_system_into_first_user(messages)) {
        out += "<start_of_turn>" + std::string(m.role == "assistant" ? "model" : "user") + "\n" +
               m.content + "<end_of_turn>\n";
      }
      return out + "<start_of_turn>model\n";
    case ChatFormat::kPlain:
      for (const auto& m : messages) {
        std::string role = m.role;
        if (!role.empty()) role[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(role[0])));
        out += role + ": " + m.content + "\n";
      }
      return out + "Assistant:";
  }
  return out;
}

}  // namespace infera::api
