// Tokenizer: vocabulary loading from GGUF, special-token partitioning, pieces,
// decoding and streaming. The SentencePiece and BPE algorithms live in
// tokenizer_spm.cpp and tokenizer_bpe.cpp.
#include "engine/tokenizer.h"

#include <algorithm>
#include <limits>

#include "engine/gguf.h"
#include "engine/unicode.h"
#include "engine/vocab.h"

namespace infera::engine {

namespace {

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581 "▁"

// Texts llama.cpp treats as end-of-generation (and therefore control) tokens.
constexpr std::string_view kEogTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",   "<|endoftext|>",
    "</s>",       "<|eom_id|>", "<EOT>",   "<|end_of_text|>", "<|return|>",
    "<|call|>",   "<eos>",      "[EOT]",   "[EOS]",
};

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// "<0xNN>" -> NN, or -1.
int parse_byte_token(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  const int hi = hex_digit(text[3]);
  const int lo = hex_digit(text[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// An id from metadata when present and in range, else `fallback` (when in range).
Result<int32_t> special_id(const GgufFile& f, std::string_view key, int32_t fallback, int32_t n) {
  int32_t id = (fallback >= 0 && fallback < n) ? fallback : -1;
  if (!f.has(key)) return id;
  Result<int64_t> v = f.get_integer(key);
  if (!v.ok()) return v.status();
  if (*v >= 0 && *v < n) id = static_cast<int32_t>(*v);
  return id;
}

// Replaces every byte sequence that is not well-formed UTF-8 (RFC 3629: no
// overlongs, surrogates or values past U+10FFFF) with U+FFFD.
void append_sanitized(std::string& out, std::string_view in) {
  size_t i = 0;
  while (i < in.size()) {
    const auto b0 = static_cast<uint8_t>(in[i]);
    size_t n = 0;
    uint8_t lo = 0x80;
    uint8_t hi = 0xBF;
    if (b0 < 0x80)
      n = 1;
    else if (b0 >= 0xC2 && b0 <= 0xDF)
      n = 2;
    else if (b0 >= 0xE0 && b0 <= 0xEF) {
      n = 3;
      if (b0 == 0xE0) lo = 0xA0;
      if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      n = 4;
      if (b0 == 0xF0) lo = 0x90;
      if (b0 == 0xF4) hi = 0x8F;
    }
    size_t ok = n == 0 ? 0 : 1;
    while (ok > 0 && ok < n && i + ok < in.size()) {
      const auto b = static_cast<uint8_t>(in[i + ok]);
      if (b < (ok == 1 ? lo : 0x80) || b > (ok == 1 ? hi : 0xBF)) break;
      ++ok;
    }
    if (n > 0 && ok == n) {
      out.append(in.substr(i, n));
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += std::max<size_t>(ok, 1);
    }
  }
}

// Removes spaces the BPE encoders' clean_up_tokenization_spaces would have
// removed (" ." " ," " 's" ...), as llama.cpp's detokenize does for those models.
std::string clean_spaces(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == ' ' && i + 1 < s.size()) {
      const char n1 = s[i + 1];
      if (n1 == '?' || n1 == '!' || n1 == '.' || n1 == ',') continue;
      if (n1 == '\'' && i + 2 < s.size()) {
        const char n2 = s[i + 2];
        const char n3 = i + 3 < s.size() ? s[i + 3] : '\0';
        if (n2 == ' ') {  // " ' " -> "'"
          out += '\'';
          i += 2;
          continue;
        }
        if (n2 == 's' || n2 == 'm' || (n2 == 'r' && n3 == 'e') || (n2 == 'v' && n3 == 'e'))
          continue;
      }
    }
    out += c;
  }
  return out;
}

// The bytes a token stands for when special tokens are not rendered.
std::string render_piece(const Vocab& vocab, const VocabToken& tok) {
  switch (tok.type) {
    case TokenType::kControl:
    case TokenType::kUnknown:
    case TokenType::kUnused:
    case TokenType::kUndefined:
      return {};
    case TokenType::kUserDefined:
      return tok.text;
    case TokenType::kByte: {
      const int b = parse_byte_token(tok.text);
      return b < 0 ? std::string() : std::string(1, static_cast<char>(b));
    }
    case TokenType::kNormal:
      break;
  }
  std::string piece;
  if (vocab.kind != TokenizerKind::kBytePairEncoding) {  // "▁" stands for a space
    piece.reserve(tok.text.size());
    for (size_t i = 0; i < tok.text.size();) {
      if (tok.text.compare(i, kSpmSpace.size(), kSpmSpace) == 0) {
        piece += ' ';
        i += kSpmSpace.size();
      } else {
        piece += tok.text[i++];
      }
    }
    return piece;
  }
  // Byte-level BPE: every code point of the token stands for one byte.
  for (size_t pos = 0; pos < tok.text.size();) {
    const size_t start = pos;
    const uint32_t cpt = unicode::decode(tok.text, pos);
    const int b = unicode::codepoint_to_byte(cpt);
    if (b >= 0) {
      piece += static_cast<char>(b);
    } else {
      piece.append(tok.text, start, pos - start);  // not a byte-level token; keep its text
    }
  }
  return piece;
}

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Vocab> vocab) : vocab_(std::move(vocab)) {}
Tokenizer::~Tokenizer() = default;

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_gguf(const GgufFile& f) {
  const std::string& file = f.name();
  auto model = f.get<std::string_view>("tokenizer.ggml.model");
  if (!model.ok()) return model.status();
  auto vocab = std::make_unique<Vocab>();
  if (*model == "llama") {
    vocab->kind = TokenizerKind::kSentencePiece;
  } else if (*model == "gpt2") {
    vocab->kind = TokenizerKind::kBytePairEncoding;
  } else if (*model == "bert") {
    vocab->kind = TokenizerKind::kWordPiece;
  } else {
    return Status::Unsupported(file + ": tokenizer.ggml.model '" + std::string(*model) +
                               "' is not supported (supported: llama, gpt2, bert)");
  }
  const bool spm = vocab->kind == TokenizerKind::kSentencePiece;
  const bool wpm = vocab->kind == TokenizerKind::kWordPiece;

  auto texts = f.get_array<std::string_view>("tokenizer.ggml.tokens");
  if (!texts.ok()) return texts.status();
  if (texts->empty() || texts->size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return Status::Corrupt(file + ": tokenizer.ggml.tokens has " + std::to_string(texts->size()) +
                           " entries");
  }
  const auto n = static_cast<int32_t>(texts->size());

  std::vector<float> scores;
  if (const GgufKv* kv = f.find("tokenizer.ggml.scores")) {
    if (kv->type == GgufType::kArray && kv->array_type == GgufType::kInt32) {
      auto ints = f.get_array<int32_t>("tokenizer.ggml.scores");
      if (!ints.ok()) return ints.status();
      scores.assign(ints->begin(), ints->end());
    } else {
      auto floats = f.get_array<float>("tokenizer.ggml.scores");
      if (!floats.ok()) return floats.status();
      scores = std::move(floats).value();
    }
    if (scores.size() < texts->size()) {
      return Status::Corrupt(file + ": tokenizer.ggml.scores has " + std::to_string(scores.size()) +
                             " entries for " + std::to_string(n) + " tokens");
    }
  }
  std::vector<int32_t> types;
  if (f.has("tokenizer.ggml.token_type")) {
    auto t = f.get_array<int32_t>("tokenizer.ggml.token_type");
    if (!t.ok()) return t.status();
    types = std::move(t).value();
    if (types.size() < texts->size()) {
      return Status::Corrupt(file + ": tokenizer.ggml.token_type has " +
                             std::to_string(types.size()) + " entries for " + std::to_string(n) +
                             " tokens");
    }
  }

  vocab->tokens.resize(texts->size());
  vocab->text_to_id.reserve(texts->size());
  for (int32_t i = 0; i < n; ++i) {
    VocabToken& tok = vocab->tokens[i];
    tok.text = (*texts)[i].empty() ? "[EMPTY_" + std::to_string(i) + "]" : std::string((*texts)[i]);
    tok.score = scores.empty() ? 0.0f : scores[i];
    if (!types.empty()) {
      const int32_t t = types[i];
      tok.type = (t >= 1 && t <= 6) ? static_cast<TokenType>(t) : TokenType::kUndefined;
    }
    vocab->text_to_id[tok.text] = i;  // a repeated text maps to its last id
  }

  if (spm) {
    vocab->add_bos = true;
    vocab->add_space_prefix = true;
  } else if (wpm) {
    vocab->add_bos = true;  // [CLS] ... [SEP]
    vocab->add_eos = true;
    vocab->clean_spaces = true;  // punctuation pieces are words of their own: "▁,"
  } else {
    auto pre_name = f.get_or<std::string_view>("tokenizer.ggml.pre", "");
    if (!pre_name.ok()) return pre_name.status();
    const std::optional<PreTokenizer> pre = pre_tokenizer_from_name(*pre_name);
    if (!pre) {
      return Status::Unsupported(file + ": tokenizer.ggml.pre '" + std::string(*pre_name) +
                                 "' is not supported (supported: default, gpt-2, llama3/llama-bpe, "
                                 "qwen2, deepseek-coder, falcon)");
    }
    vocab->pre = *pre;
    vocab->ignore_merges = pre_tokenizer_ignores_merges(*pre);
    vocab->add_bos = *pre == PreTokenizer::kLlama3;
    vocab->clean_spaces = *pre != PreTokenizer::kDeepseekCoder && *pre != PreTokenizer::kQwen2;

    auto merges = f.get_array<std::string_view>("tokenizer.ggml.merges");
    if (!merges.ok()) return merges.status();
    vocab->merge_rank.reserve(merges->size());
    for (size_t i = 0; i < merges->size(); ++i) {
      const std::string_view m = (*merges)[i];
      const size_t space = m.find(' ', 1);  // a merge's left side may itself start with ' '
      if (space == std::string_view::npos) {
        return Status::Corrupt(file + ": tokenizer.ggml.merges entry " + std::to_string(i) +
                               " has no space separating its two parts");
      }
      vocab->merge_rank.emplace(std::string(m), static_cast<int32_t>(i));  // first rank wins
    }
  }

  auto add_bos = f.get_or<bool>("tokenizer.ggml.add_bos_token", vocab->add_bos);
  auto add_eos = f.get_or<bool>("tokenizer.ggml.add_eos_token", vocab->add_eos);
  auto add_prefix = f.get_or<bool>("tokenizer.ggml.add_space_prefix", vocab->add_space_prefix);
  for (const Status* s : {&add_bos.status(), &add_eos.status(), &add_prefix.status()}) {
    if (!s->ok()) return *s;
  }
  vocab->add_bos = *add_bos;
  vocab->add_eos = *add_eos;
  vocab->add_space_prefix = spm && *add_prefix;

  struct SpecialKey {
    std::string_view key;
    int32_t fallback;
    int32_t* out;
  };
  int32_t eot = -1;
  int32_t eom = -1;
  // WordPiece models begin a sequence with [CLS] and end it with [SEP].
  const SpecialKey keys[] = {
      {wpm ? "tokenizer.ggml.cls_token_id" : "tokenizer.ggml.bos_token_id", spm ? 1 : wpm ? 101 : 11,
       &vocab->bos},
      {wpm ? "tokenizer.ggml.seperator_token_id" : "tokenizer.ggml.eos_token_id",
       spm ? 2 : wpm ? 102 : 11, &vocab->eos},
      {"tokenizer.ggml.unknown_token_id", spm ? 0 : wpm ? 100 : -1, &vocab->unk},
      {"tokenizer.ggml.padding_token_id", -1, &vocab->pad},
      {"tokenizer.ggml.eot_token_id", -1, &eot},
      {"tokenizer.ggml.eom_token_id", -1, &eom},
  };
  for (const SpecialKey& k : keys) {
    auto id = special_id(f, k.key, k.fallback, n);
    if (!id.ok()) return id.status();
    *k.out = *id;
  }

  vocab->eog.assign(texts->size(), false);
  for (int32_t id : {vocab->eos, eot, eom}) {
    if (id >= 0) vocab->eog[id] = true;
  }
  for (std::string_view text : kEogTexts) {
    const int32_t id = vocab->find(text);
    if (id < 0) continue;
    vocab->eog[id] = true;
    vocab->tokens[id].type = TokenType::kControl;
  }

  for (int b = 0; b < 256; ++b) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    const char name[] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'};
    int32_t id = vocab->find(std::string_view(name, sizeof(name)));
    if (id < 0) id = vocab->find(std::string(1, static_cast<char>(b)));
    vocab->byte_token[b] = id;
  }

  for (int32_t i = 0; i < n; ++i) {
    const TokenType t = vocab->tokens[i].type;
    if (t == TokenType::kControl || t == TokenType::kUserDefined || t == TokenType::kUnknown) {
      vocab->special_tokens.push_back(i);
    }
  }
  std::stable_sort(vocab->special_tokens.begin(), vocab->special_tokens.end(),
                   [&](int32_t a, int32_t b) {
                     return vocab->tokens[a].text.size() > vocab->tokens[b].text.size();
                   });

  // Pieces are rendered once so that streaming a token is a copy, not a decode.
  vocab->pieces.reserve(vocab->tokens.size());
  for (const VocabToken& tok : vocab->tokens) vocab->pieces.push_back(render_piece(*vocab, tok));

  if (wpm) return make_wpm_tokenizer(std::move(vocab));
  return spm ? make_spm_tokenizer(std::move(vocab)) : make_bpe_tokenizer(std::move(vocab));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos,
                                       bool parse_special) const {
  // Split the text around special-token texts, longest first, as llama.cpp's
  // tokenizer_st_partition does. User-defined tokens are always matched;
  // control and unknown ones only when parse_special.
  struct Fragment {
    int32_t token;  // -1 for raw text
    size_t begin;
    size_t end;
  };
  std::vector<Fragment> fragments;
  if (!text.empty()) fragments.push_back({-1, 0, text.size()});
  std::vector<Fragment> next;
  for (int32_t id : vocab_->special_tokens) {
    const VocabToken& tok = vocab_->tokens[id];
    if (!parse_special && tok.type != TokenType::kUserDefined) continue;
    next.clear();
    for (const Fragment& frag : fragments) {
      if (frag.token >= 0) {
        next.push_back(frag);
        continue;
      }
      size_t start = frag.begin;
      const std::string_view region = text.substr(0, frag.end);
      for (size_t m = region.find(tok.text, start); m != std::string_view::npos;
           m = region.find(tok.text, start)) {
        if (m > start) next.push_back({-1, start, m});
        next.push_back({id, m, m + tok.text.size()});
        start = m + tok.text.size();
      }
      if (frag.end > start) next.push_back({-1, start, frag.end});
    }
    fragments.swap(next);
  }

  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && vocab_->add_bos && vocab_->bos >= 0) out.push_back(vocab_->bos);
  bool at_text_start = true;
  for (const Fragment& frag : fragments) {
    if (frag.token >= 0) {
      out.push_back(frag.token);
      at_text_start = true;
    } else {
      encode_run(text.substr(frag.begin, frag.end - frag.begin), at_text_start, out);
      at_text_start = false;
    }
  }
  if (add_bos && vocab_->add_eos && vocab_->eos >= 0) out.push_back(vocab_->eos);
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool render_special) const {
  std::string piece;
  append_piece(id, piece, render_special);
  return piece;
}

void Tokenizer::append_piece(int32_t id, std::string& out, bool render_special) const {
  if (id < 0 || id >= n_vocab()) return;
  const TokenType type = vocab_->tokens[id].type;
  if (render_special && (type == TokenType::kControl || type == TokenType::kUnknown)) {
    out += vocab_->tokens[id].text;
  } else {
    out += vocab_->pieces[id];
  }
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  const bool wpm = vocab_->kind == TokenizerKind::kWordPiece;
  bool remove_space = vocab_->add_space_prefix || wpm;  // WordPiece: every word starts "▁"
  if (skip_special && vocab_->add_bos && !ids.empty() && ids.front() == vocab_->bos) {
    remove_space = wpm;  // the text after BOS keeps its space, as llama.cpp does
    ids = ids.subspan(1);
  }
  if (skip_special && vocab_->add_eos && !ids.empty() && ids.back() == vocab_->eos) {
    ids = ids.first(ids.size() - 1);
  }
  std::string text;
  for (int32_t id : ids) {
    append_piece(id, text, !skip_special);
    if (remove_space && !text.empty() && text.front() == ' ') text.erase(0, 1);
    remove_space = false;
  }
  return vocab_->clean_spaces ? clean_spaces(text) : text;
}

std::string_view Tokenizer::token_text(int32_t id) const {
  return id >= 0 && id < n_vocab() ? std::string_view(vocab_->tokens[id].text) : std::string_view();
}

TokenizerKind Tokenizer::kind() const { return vocab_->kind; }
int32_t Tokenizer::n_vocab() const { return static_cast<int32_t>(vocab_->tokens.size()); }
int32_t Tokenizer::bos() const { return vocab_->bos; }
int32_t Tokenizer::eos() const { return vocab_->eos; }
int32_t Tokenizer::unk() const { return vocab_->unk; }
int32_t Tokenizer::pad() const { return vocab_->pad; }
bool Tokenizer::add_bos_default() const { return vocab_->add_bos; }
bool Tokenizer::add_eos_default() const { return vocab_->add_eos; }
bool Tokenizer::add_space_prefix() const { return vocab_->add_space_prefix; }
bool Tokenizer::is_eog(int32_t id) const { return id >= 0 && id < n_vocab() && vocab_->eog[id]; }
bool Tokenizer::is_control(int32_t id) const {
  return id >= 0 && id < n_vocab() && vocab_->tokens[id].type == TokenType::kControl;
}

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string StreamingDetokenizer::push(int32_t id) {
  tokenizer_.append_piece(id, pending_, !skip_special_);
  const size_t complete = unicode::complete_prefix_length(pending_);
  std::string out;
  append_sanitized(out, std::string_view(pending_).substr(0, complete));
  pending_.erase(0, complete);
  return out;
}

std::string StreamingDetokenizer::flush() {
  std::string out;
  append_sanitized(out, pending_);
  pending_.clear();
  return out;
}

}  // namespace infera::engine
