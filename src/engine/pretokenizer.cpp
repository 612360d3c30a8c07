#include "engine/pretokenizer.h"

#include "engine/unicode.h"

namespace infera::engine {

namespace {

using unicode::kLetter;
using unicode::kNumber;
using unicode::kPunctuation;
using unicode::kWhitespace;

// Decoded text; pieces are [begin, end) ranges of code points.
struct Text {
  std::vector<uint32_t> cpts;
  std::vector<uint16_t> flags;
};

struct Piece {
  size_t begin;
  size_t end;
};

// A regex alternative sees only its piece: past `end` there is nothing (flags 0),
// as when the reference implementation runs each regex on each piece separately.
struct View {
  const Text& t;
  size_t end;
  uint16_t flags(size_t p) const { return p < end ? t.flags[p] : 0; }
  uint32_t cpt(size_t p) const { return p < end ? t.cpts[p] : 0xFFFFFFFF; }
};

uint32_t ascii_lower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

// 's|'t|'re|'ve|'m|'ll|'d, optionally case-insensitive; returns the match length.
size_t match_contraction(const View& v, size_t p, bool any_case) {
  if (v.cpt(p) != '\'' || p + 1 >= v.end) return 0;
  const auto fold = [&](uint32_t c) { return any_case ? ascii_lower(c) : c; };
  const uint32_t a = fold(v.cpt(p + 1));
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (p + 2 >= v.end) return 0;
  const uint32_t b = fold(v.cpt(p + 2));
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// Whitespace handling shared by the GPT-2 family: \s+(?!\S) leaves the last space
// of a run for the word that follows; a run at the end of the piece stays whole.
size_t match_whitespace(const View& v, size_t p) {
  size_t n = 0;
  while (v.flags(p + n) & kWhitespace) ++n;
  if (n > 1 && p + n < v.end) return n - 1;
  return n;
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
void split_gpt2(const Text& t, Piece piece, std::vector<Piece>& out) {
  const View v{t, piece.end};
  size_t p = piece.begin;
  while (p < piece.end) {
    size_t len = match_contraction(v, p, false);
    if (len == 0) {
      const bool space = v.cpt(p) == ' ';
      const uint16_t f = v.flags(p + (space ? 1 : 0));
      size_t q = p + (space ? 1 : 0);
      if (f & kLetter) {
        while (v.flags(q) & kLetter) ++q;
      } else if (f & kNumber) {
        while (v.flags(q) & kNumber) ++q;
      } else if (f != 0 && !(f & (kWhitespace | kLetter | kNumber))) {
        while (v.flags(q) != 0 && !(v.flags(q) & (kWhitespace | kLetter | kNumber))) ++q;
      } else {
        q = p + std::max<size_t>(1, match_whitespace(v, p));
      }
      len = q - p;
    }
    out.push_back({p, p + len});
    p += len;
  }
}

// llama3 (max_digits 3) and qwen2 (max_digits 1):
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
//  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
void split_llama3(const Text& t, Piece piece, size_t max_digits, std::vector<Piece>& out) {
  const View v{t, piece.end};
  const auto is_newline = [&](size_t q) { return v.cpt(q) == '\r' || v.cpt(q) == '\n'; };
  size_t p = piece.begin;
  while (p < piece.end) {
    const uint32_t c = v.cpt(p);
    const uint16_t f = v.flags(p);
    size_t q = p;
    if (size_t len = match_contraction(v, p, true); len > 0) {
      q = p + len;
    } else if (!is_newline(p) && !(f & kNumber) && ((f & kLetter) || (v.flags(p + 1) & kLetter))) {
      q = p + 1;
      while (v.flags(q) & kLetter) ++q;
    } else if (f & kNumber) {
      while ((v.flags(q) & kNumber) && q - p < max_digits) ++q;
    } else if (const uint16_t f2 = c == ' ' ? v.flags(p + 1) : f;
               f != 0 && !(f2 & (kWhitespace | kLetter | kNumber))) {
      q = p + (c == ' ' ? 1 : 0);
      while (v.flags(q) != 0 && !(v.flags(q) & (kWhitespace | kLetter | kNumber))) ++q;
      while (is_newline(q)) ++q;
    } else {
      size_t n = 0;
      size_t after_last_newline = 0;
      while (v.flags(p + n) & kWhitespace) {
        if (is_newline(p + n)) after_last_newline = p + n + 1;
        ++n;
      }
      if (after_last_newline > 0) {
        q = after_last_newline;  // \s*[\r\n]+
      } else {
        q = p + std::max<size_t>(1, match_whitespace(v, p));
      }
    }
    out.push_back({p, q});
    p = q;
  }
}

// A single regex applied with search semantics, as std::regex_iterator does:
// matches and the unmatched gaps between them both become pieces.
template <typename Matcher>
void split_by(const Text& t, Piece piece, const Matcher& match, std::vector<Piece>& out) {
  const View v{t, piece.end};
  size_t gap = piece.begin;
  size_t p = piece.begin;
  while (p < piece.end) {
    const size_t len = match(v, p);
    if (len == 0) {
      ++p;
      continue;
    }
    if (p > gap) out.push_back({gap, p});
    out.push_back({p, p + len});
    p += len;
    gap = p;
  }
  if (piece.end > gap) out.push_back({gap, piece.end});
}

template <typename Pred>
size_t run(const View& v, size_t p, const Pred& in_class) {
  size_t q = p;
  while (q < v.end && in_class(v, q)) ++q;
  return q - p;
}

bool is_ascii_digit(const View& v, size_t p) { return v.cpt(p) >= '0' && v.cpt(p) <= '9'; }

// [\p{P}\$\+<=>\^~\|]+ (with_backtick adds `), the symbols GPT-2's default split keeps
// together with punctuation.
size_t match_punct_run(const View& v, size_t p, bool with_backtick) {
  return run(v, p, [&](const View& w, size_t q) {
    if (w.flags(q) & kPunctuation) return true;
    switch (w.cpt(q)) {
      case '$':
      case '+':
      case '<':
      case '=':
      case '>':
      case '^':
      case '~':
      case '|':
        return true;
      case '`':
        return with_backtick;
      default:
        return false;
    }
  });
}

// \s?X+ for a category X that never includes whitespace.
size_t match_space_opt_run(const View& v, size_t p, uint16_t category) {
  const auto in = [&](const View& w, size_t q) { return (w.flags(q) & category) != 0; };
  if ((v.flags(p) & kWhitespace) && in(v, p + 1)) return 1 + run(v, p + 1, in);
  return run(v, p, in);
}

// [一-龥ࠀ-一가-퟿]+ of deepseek-coder. The reference matches it on text whose
// non-ASCII whitespace was replaced by \v, so such spaces never match.
size_t match_cjk_run(const View& v, size_t p) {
  return run(v, p, [](const View& w, size_t q) {
    const uint32_t c = w.cpt(q);
    const bool in_range = (c >= 0x0800 && c <= 0x9FA5) || (c >= 0xAC00 && c <= 0xD7FF);
    return in_range && !(w.flags(q) & kWhitespace);
  });
}

using Stage = void (*)(const Text&, Piece, std::vector<Piece>&);

void stage_gpt2(const Text& t, Piece p, std::vector<Piece>& out) { split_gpt2(t, p, out); }
void stage_llama3(const Text& t, Piece p, std::vector<Piece>& out) { split_llama3(t, p, 3, out); }
void stage_qwen2(const Text& t, Piece p, std::vector<Piece>& out) { split_llama3(t, p, 1, out); }
void stage_punct(const Text& t, Piece p, std::vector<Piece>& out) {
  split_by(
      t, p, [](const View& v, size_t q) { return match_punct_run(v, q, false); }, out);
}
void stage_punct_backtick(const Text& t, Piece p, std::vector<Piece>& out) {
  split_by(
      t, p, [](const View& v, size_t q) { return match_punct_run(v, q, true); }, out);
}
void stage_digits3(const Text& t, Piece p, std::vector<Piece>& out) {
  split_by(
      t, p,
      [](const View& v, size_t q) -> size_t {
        return is_ascii_digit(v, q) && is_ascii_digit(v, q + 1) && is_ascii_digit(v, q + 2) ? 3 : 0;
      },
      out);
}
void stage_number_run(const Text& t, Piece p, std::vector<Piece>& out) {
  split_by(
      t, p,
      [](const View& v, size_t q) {
        return run(v, q, [](const View& w, size_t r) { return (w.flags(r) & kNumber) != 0; });
      },
      out);
}
void stage_number_single(const Text& t, Piece p, std::vector<Piece>& out) {
  split_by(
      t, p, [](const View& v, size_t q) -> size_t { return (v.flags(q) & kNumber) ? 1 : 0; }, out);
}
void stage_newline(const Text& t, Piece p, std::vector<Piece>& out) {
  split_by(
      t, p,
      [](const View& v, size_t q) -> size_t {
        return v.cpt(q) == '\r' || v.cpt(q) == '\n' ? 1 : 0;
      },
      out);
}
void stage_space_letters(const Text& t, Piece p, std::vector<Piece>& out) {
  split_by(
      t, p, [](const View& v, size_t q) { return match_space_opt_run(v, q, kLetter); }, out);
}
void stage_space_punct(const Text& t, Piece p, std::vector<Piece>& out) {
  split_by(
      t, p, [](const View& v, size_t q) { return match_space_opt_run(v, q, kPunctuation); }, out);
}
void stage_cjk(const Text& t, Piece p, std::vector<Piece>& out) {
  split_by(
      t, p, [](const View& v, size_t q) { return match_cjk_run(v, q); }, out);
}

// The regex sequence of each pre-tokenizer (llama.cpp's llm_tokenizer_bpe lists
// the same sequences as regexes).
std::vector<Stage> stages_of(PreTokenizer pre) {
  switch (pre) {
    case PreTokenizer::kDefault:
      return {stage_punct, stage_gpt2, stage_number_run, stage_digits3};
    case PreTokenizer::kGpt2:
      return {stage_gpt2};
    case PreTokenizer::kLlama3:
      return {stage_llama3};
    case PreTokenizer::kQwen2:
      return {stage_qwen2};
    case PreTokenizer::kDeepseekCoder:
      return {stage_newline, stage_space_letters, stage_space_punct, stage_cjk,
              stage_number_single};
    case PreTokenizer::kFalcon:
      return {stage_punct_backtick, stage_gpt2, stage_digits3};
  }
  return {stage_gpt2};
}

}  // namespace

std::optional<PreTokenizer> pre_tokenizer_from_name(std::string_view name) {
  if (name.empty() || name == "default") return PreTokenizer::kDefault;
  for (std::string_view n : {"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es",
                             "jina-v2-de", "a.x-4.0", "mellum", "modern-bert"}) {
    if (name == n) return PreTokenizer::kGpt2;
  }
  for (std::string_view n : {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                             "midm-2.0", "lfm2", "jina-v5-nano"}) {
    if (name == n) return PreTokenizer::kLlama3;
  }
  for (std::string_view n : {"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2"}) {
    if (name == n) return PreTokenizer::kQwen2;
  }
  if (name == "deepseek-coder") return PreTokenizer::kDeepseekCoder;
  if (name == "falcon") return PreTokenizer::kFalcon;
  return std::nullopt;
}

bool pre_tokenizer_ignores_merges(PreTokenizer pre) { return pre == PreTokenizer::kLlama3; }

void pre_tokenize(std::string_view text, PreTokenizer pre, std::vector<std::string>& words) {
  Text t;
  t.cpts.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) t.cpts.push_back(unicode::decode(text, pos));
  t.flags.reserve(t.cpts.size());
  for (uint32_t c : t.cpts) t.flags.push_back(unicode::flags(c));

  std::vector<Piece> pieces{{0, t.cpts.size()}};
  std::vector<Piece> next;
  for (Stage stage : stages_of(pre)) {
    next.clear();
    for (const Piece& p : pieces) stage(t, p, next);
    pieces.swap(next);
  }
  for (const Piece& p : pieces) {
    if (p.end == p.begin) continue;
    std::string word;
    for (size_t i = p.begin; i < p.end; ++i) unicode::append_utf8(word, t.cpts[i]);
    words.push_back(std::move(word));
  }
}

}  // namespace infera::engine
