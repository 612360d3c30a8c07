// Pre-tokenizers of byte-level BPE models: split text into words before merges, as
// the regexes named by tokenizer.ggml.pre do in the reference tokenizers. The
// regexes are implemented by hand (no std::regex): each is a small matcher over
// code-point categories with the same leftmost, first-alternative semantics.
// Internal to the engine.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace infera::engine {

enum class PreTokenizer {
  kDefault,        // "default" or absent: punctuation runs, GPT-2 words, digit groups
  kGpt2,           // "gpt-2" and its aliases
  kLlama3,         // "llama3", "llama-v3", "llama-bpe": digits in groups of up to 3
  kQwen2,          // "qwen2" and aliases: digits one at a time
  kDeepseekCoder,  // "deepseek-coder"
  kFalcon,         // "falcon"
};

// The pre-tokenizer for a tokenizer.ggml.pre value, or nullopt when unknown.
std::optional<PreTokenizer> pre_tokenizer_from_name(std::string_view name);

// llama3 reads whole words as tokens before trying merges ("ignore_merges").
bool pre_tokenizer_ignores_merges(PreTokenizer pre);

// Splits `text` into words. Malformed UTF-8 bytes become U+FFFD, as in the
// reference implementation, so every word is valid UTF-8. Appends to `words`.
void pre_tokenize(std::string_view text, PreTokenizer pre, std::vector<std::string>& words);

}  // namespace infera::engine
