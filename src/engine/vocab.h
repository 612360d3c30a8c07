// The vocabulary shared by the tokenizer implementations, as read from
// tokenizer.ggml.* metadata. Internal to the engine; see tokenizer.h.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/pretokenizer.h"
#include "engine/tokenizer.h"

namespace infera::engine {

// GGUF tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

struct VocabToken {
  std::string text;
  float score = 0.0f;
  TokenType type = TokenType::kNormal;
};

// Lets text_to_id be searched with a string_view, without building a string.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

struct Vocab {
  TokenizerKind kind = TokenizerKind::kSentencePiece;
  PreTokenizer pre = PreTokenizer::kDefault;
  std::vector<VocabToken> tokens;
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> text_to_id;
  // BPE merges "left right" -> rank (lower merges first).
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> merge_rank;
  // Tokens matched verbatim in input text before tokenizing (control, unknown and
  // user-defined), longest text first.
  std::vector<int32_t> special_tokens;
  std::vector<std::string> pieces;        // per id: token_to_piece without special rendering
  std::vector<bool> eog;                  // per id
  std::array<int32_t, 256> byte_token{};  // SentencePiece <0xNN> ids, -1 when absent

  int32_t bos = -1;
  int32_t eos = -1;
  int32_t unk = -1;
  int32_t pad = -1;
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;
  bool ignore_merges = false;
  bool clean_spaces = false;  // decode drops spaces before punctuation (BPE models)

  int32_t find(std::string_view text) const {
    auto it = text_to_id.find(text);
    return it == text_to_id.end() ? -1 : it->second;
  }
};

// Factories for the three kinds (tokenizer_spm.cpp, tokenizer_bpe.cpp, tokenizer_wpm.cpp).
std::unique_ptr<Tokenizer> make_spm_tokenizer(std::unique_ptr<Vocab> vocab);
std::unique_ptr<Tokenizer> make_bpe_tokenizer(std::unique_ptr<Vocab> vocab);
std::unique_ptr<Tokenizer> make_wpm_tokenizer(std::unique_ptr<Vocab> vocab);

}  // namespace infera::engine
