// question.h: a lexer over the raw text (words, numbers, quotes, symbols, sentence
// starts), then passes over the tokens that put a question in its canonical form.
#include "knowledge/question.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace infera::knowledge::detail {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }
bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
bool is_alnum(char c) { return is_digit(c) || is_upper(c) || is_lower(c); }
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Length of the UTF-8 sequence starting with lead byte `c` (1 for stray bytes).
size_t sequence_length(unsigned char c) {
  return c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
}

// Non-ASCII characters that are punctuation or symbols, not letters; `as` is what a
// symbol stands for (empty: punctuation, dropped).
struct Special {
  std::string_view bytes;
  std::string_view as;
};
constexpr Special kSpecials[] = {
    {"\xE2\x80\x9C", "\""},   {"\xE2\x80\x9D", "\""},
    {"\xE2\x80\x98", "'"},    {"\xE2\x80\x99", "'"},
    {"\xC2\xAB", "\""},       {"\xC2\xBB", "\""},
    {"\xE2\x80\x94", ""},     {"\xE2\x80\x93", ""},
    {"\xE2\x80\xA6", ""},     {"\xC2\xA0", ""},
    {"\xC2\xBF", ""},         {"\xC2\xA1", ""},
    {"\xE2\x88\x92", "-"},    {"\xC3\x97", "*"},
    {"\xC3\xB7", "/"},        {"\xE2\x82\xAC", "\xE2\x82\xAC"},
    {"\xC2\xA3", "\xC2\xA3"}, {"\xC2\xB0", "\xC2\xB0"},
    {"\xE2\x89\xA4", "<="},   {"\xE2\x89\xA5", ">="},
    {"\xE2\x89\xA0", "!="},
};

const Special* special_at(std::string_view text, size_t i) {
  for (const Special& s : kSpecials) {
    if (text.substr(i, s.bytes.size()) == s.bytes) return &s;
  }
  return nullptr;
}

// ASCII symbols that change what a question asks ("2 + 3" vs "2 * 3").
std::string_view symbol_for(char c) {
  switch (c) {
    case '+':
      return "+";
    case '*':
      return "*";
    case '/':
      return "/";
    case '^':
      return "^";
    case '=':
      return "=";
    case '<':
      return "<";
    case '>':
      return ">";
    case '%':
      return "%";
    case '$':
      return "$";
    case '#':
      return "#";
    case '&':
      return "and";
    case '@':
      return "@";
    case '|':
      return "|";
    case '~':
      return "~";
    default:
      return {};
  }
}

// An apostrophe inside a word ("don't", "Newton's"): ASCII or U+2019.
size_t apostrophe_at(std::string_view text, size_t i) {
  if (text[i] == '\'') return 1;
  if (text.substr(i, 3) == "\xE2\x80\x99") return 3;
  return 0;
}

// Lower case for ASCII and Latin-1 capitals (U+00C0..U+00DE but U+00D7); same length.
std::string fold_case(std::string_view text) {
  std::string out(text);
  for (size_t i = 0; i < out.size(); ++i) {
    if (is_upper(out[i])) {
      out[i] = static_cast<char>(out[i] - 'A' + 'a');
    } else if (out[i] == '\xC3' && i + 1 < out.size()) {
      const auto c = static_cast<unsigned char>(out[i + 1]);
      if (c >= 0x80 && c <= 0x9E && c != 0x97) out[i + 1] = static_cast<char>(c + 0x20);
      ++i;
    }
  }
  return out;
}

bool starts_upper(std::string_view raw) {
  if (raw.empty()) return false;
  if (is_upper(raw[0])) return true;
  if (raw[0] == '\xC3' && raw.size() > 1) {
    const auto c = static_cast<unsigned char>(raw[1]);
    return c >= 0x80 && c <= 0x9E && c != 0x97;
  }
  return false;
}

// Parses "12", "-3.5", "1,000" (commas were only let in as thousands separators).
double parse_number(std::string_view s) {
  bool negative = false;
  if (!s.empty() && s[0] == '-') {
    negative = true;
    s.remove_prefix(1);
  }
  double value = 0, scale = 0;
  for (char c : s) {
    if (c == ',') continue;
    if (c == '.') {
      scale = 1;
      continue;
    }
    if (!is_digit(c)) break;
    if (scale > 0) {
      scale /= 10;
      value += (c - '0') * scale;
    } else {
      value = value * 10 + (c - '0');
    }
  }
  return negative ? -value : value;
}

class Lexer {
 public:
  Lexer(std::string_view text, Question& q) : text_(text), q_(q) {}

  void run() {
    q_.lower = fold_case(text_);
    lower_ = q_.lower;
    size_t i = 0;
    while (i < text_.size()) i = step(i);
  }

 private:
  size_t step(size_t i) {
    const char c = text_[i];
    if (is_alnum(c)) return word(i, i);
    if (static_cast<unsigned char>(c) >= 0x80) {
      if (const Special* s = special_at(text_, i)) {
        if (s->as == "\"") {
          toggle_quote('"');
        } else if (s->as == "'") {
          // U+2019 inside a word is an apostrophe, handled by word(); here it closes
          // or opens a single-quoted span.
          toggle_quote('\'');
        } else if (s->as == "-") {
          return dash(i, s->bytes.size());
        } else if (!s->as.empty()) {
          push_symbol(text_.substr(i, s->bytes.size()), s->as);
        }
        return i + s->bytes.size();
      }
      return word(i, i);  // a letter outside ASCII: part of a word
    }
    if (c == '-') return dash(i, 1);
    if (c == '"' || c == '`') {
      toggle_quote(c);
      return i + 1;
    }
    if (c == '\'') {
      // A single quote opens a span before a word and closes one after a word.
      const bool before_word = i + 1 < text_.size() && is_alnum(text_[i + 1]);
      const bool after_word = i > 0 && is_alnum(text_[i - 1]);
      if ((before_word && !after_word && quote_char_ == 0) || (after_word && quote_char_ == '\'')) {
        toggle_quote('\'');
      }
      return i + 1;
    }
    if (c == '.' || c == '!' || c == '?') {
      if (i + 1 >= text_.size() || is_space(text_[i + 1])) sentence_start_ = true;
      return i + 1;
    }
    if (const std::string_view sym = symbol_for(c); !sym.empty()) {
      push_symbol(text_.substr(i, 1), sym);
    }
    return i + 1;
  }

  void toggle_quote(char c) {
    if (quote_char_ == 0) {
      quote_char_ = c;
      quote_ = ++quote_count_;
    } else if (quote_char_ == c) {
      quote_char_ = 0;
      quote_ = 0;
    }
  }

  // '-' (or U+2212): a negative sign before a digit, a minus between numbers, else a
  // dash or hyphen (a word separator).
  size_t dash(size_t i, size_t width) {
    const size_t next = i + width;
    const bool digit_next = next < text_.size() && is_digit(text_[next]);
    const bool glued_before = i > 0 && is_alnum(text_[i - 1]);
    // A number just before, with only spaces between ("5 - 3", not "2.5, -4").
    bool number_before = !q_.tokens.empty() && q_.tokens.back().has(kNumber);
    if (number_before) {
      const Token& last = q_.tokens.back();
      const char* p = last.raw.data() + last.raw.size();
      const char* here = text_.data() + i;
      number_before = p <= here;
      for (; number_before && p < here; ++p) number_before = is_space(*p);
    }
    size_t after = next;
    while (after < text_.size() && is_space(text_[after])) ++after;
    const bool digit_after = after < text_.size() && is_digit(text_[after]);
    if (number_before && digit_after) {
      push_symbol(text_.substr(i, width), "-");
      return next;
    }
    if (digit_next && !glued_before && width == 1) return word(i, i + 1);
    if (digit_next && !glued_before) {
      push_symbol(text_.substr(i, width), "-");
      return next;
    }
    return next;
  }

  // A word from `begin` (where a leading '-' may sit) whose characters start at `from`.
  size_t word(size_t begin, size_t from) {
    size_t j = from;
    while (j < text_.size()) {
      const char c = text_[j];
      if (is_alnum(c)) {
        ++j;
      } else if (static_cast<unsigned char>(c) >= 0x80) {
        if (const size_t a = apostrophe_at(text_, j);
            a > 0 && j > from && j + a < text_.size() && is_alnum(text_[j + a])) {
          j += a;
        } else if (special_at(text_, j) != nullptr) {
          break;
        } else {
          j += sequence_length(static_cast<unsigned char>(c));
        }
      } else if (c == '\'' && j > from && j + 1 < text_.size() && is_alnum(text_[j + 1]) &&
                 quote_char_ != '\'') {
        ++j;
      } else if (c == '.' && j > from && is_digit(text_[j - 1]) && j + 1 < text_.size() &&
                 is_digit(text_[j + 1])) {
        ++j;
      } else if (c == ',' && j > from && is_digit(text_[j - 1]) && thousands_group(j + 1)) {
        ++j;
      } else {
        break;
      }
    }
    j = std::min(j, text_.size());
    push_word(begin, j);
    return j;
  }

  // Three digits then no digit: "1,000" but not "1,2,3" or "3,14".
  bool thousands_group(size_t at) const {
    for (size_t k = at; k < at + 3; ++k) {
      if (k >= text_.size() || !is_digit(text_[k])) return false;
    }
    return at + 3 >= text_.size() || !is_digit(text_[at + 3]);
  }

  void push_word(size_t begin, size_t end) {
    std::string_view raw = text_.substr(begin, end - begin);
    // Leading digits: a number, an ordinal ("3rd"), or a number and a unit ("10km").
    const size_t digits_from = raw[0] == '-' ? 1 : 0;
    if (digits_from < raw.size() && is_digit(raw[digits_from])) {
      size_t k = digits_from;
      while (k < raw.size() && (is_digit(raw[k]) || raw[k] == '.' || raw[k] == ',')) ++k;
      const std::string_view suffix = lower_.substr(begin + k, end - begin - k);
      Token t = make(begin, suffix.empty() || is_ordinal_suffix(suffix) ? end : begin + k);
      t.flags = kNumber | kHasDigit;
      if (is_ordinal_suffix(suffix)) t.flags |= kOrdinal;
      t.value = parse_number(raw.substr(0, k));
      push(t);
      if (!suffix.empty() && !is_ordinal_suffix(suffix)) push_word(begin + k, end);
      return;
    }
    Token t = make(begin, end);
    size_t letters = 0, uppers = 0;
    for (char c : raw) {
      if (is_digit(c)) t.flags |= kHasDigit;
      if (is_upper(c) || is_lower(c) || static_cast<unsigned char>(c) >= 0x80) t.flags |= kHasAlpha;
      letters += is_upper(c) || is_lower(c);
      uppers += is_upper(c);
    }
    if (starts_upper(raw)) t.flags |= kCapitalized;
    if (letters >= 2 && uppers == letters) t.flags |= kAllCaps;
    push(t);
  }

  static bool is_ordinal_suffix(std::string_view s) {
    return s == "st" || s == "nd" || s == "rd" || s == "th";
  }

  Token make(size_t begin, size_t end) const {
    Token t;
    t.raw = text_.substr(begin, end - begin);
    t.norm = lower_.substr(begin, end - begin);
    return t;
  }

  void push_symbol(std::string_view raw, std::string_view as) {
    Token t;
    t.raw = raw;
    t.norm = as;
    t.flags = kSymbol;
    push(t);
  }

  void push(Token t) {
    if (sentence_start_ && !t.has(kSymbol)) {
      t.flags |= kSentenceStart;
      sentence_start_ = false;
    }
    t.quote = quote_;
    q_.tokens.push_back(t);
  }

  std::string_view text_;
  std::string_view lower_;
  Question& q_;
  bool sentence_start_ = true;
  char quote_char_ = 0;
  uint16_t quote_ = 0;
  uint16_t quote_count_ = 0;
};

// --- normalisation passes --------------------------------------------------------------

Token literal(const Token& from, std::string_view norm) {
  Token t = from;
  t.norm = norm;
  t.flags &= static_cast<uint16_t>(~(kCapitalized | kAllCaps));
  return t;
}

// "don't" -> do not, "what's" -> what is, "Newton's" -> newton, "dont" -> do not.
void expand_contractions(std::vector<Token>& tokens) {
  std::vector<Token> out;
  out.reserve(tokens.size() + 4);
  for (const Token& t : tokens) {
    if (t.has(kSymbol) || t.has(kNumber) || t.quote != 0) {
      out.push_back(t);
      continue;
    }
    if (const Expansion* e = find_bare_contraction(t.norm)) {
      out.push_back(literal(t, e->first));
      out.push_back(literal(t, e->second));
      continue;
    }
    size_t at = std::string_view::npos, width = 0;
    for (size_t k = 1; k < t.norm.size(); ++k) {
      if ((width = apostrophe_at(t.norm, k)) > 0) {
        at = k;
        break;
      }
    }
    if (at == std::string_view::npos) {
      out.push_back(t);
      continue;
    }
    std::string_view base = t.norm.substr(0, at);
    const std::string_view suffix = t.norm.substr(at + width);
    Token head = t;
    head.norm = base;
    head.raw = t.raw.substr(0, std::min(at, t.raw.size()));
    if (suffix == "t" && base.size() >= 2 && base.back() == 'n') {
      base.remove_suffix(1);
      std::string_view verb = base;
      if (base == "wo") verb = "will";
      if (base == "ca") verb = "can";
      if (base == "sha") verb = "shall";
      if (base == "ai") verb = "is";
      if (verb == base) {
        head.norm = base;
        out.push_back(head);
      } else {
        out.push_back(literal(t, verb));
      }
      out.push_back(literal(t, "not"));
    } else if (suffix == "s") {
      out.push_back(head);
      if (base == "let") {
        out.push_back(literal(t, "us"));
      } else if (takes_contracted_is(base)) {
        out.push_back(literal(t, "is"));
      }
    } else if (suffix == "re" || suffix == "ve" || suffix == "ll" || suffix == "d" ||
               suffix == "m") {
      out.push_back(head);
      out.push_back(literal(t, suffix == "re"   ? "are"
                               : suffix == "ve" ? "have"
                               : suffix == "ll" ? "will"
                               : suffix == "d"  ? "would"
                                                : "am"));
    } else {
      out.push_back(t);
    }
  }
  tokens.swap(out);
}

// The length of `phrase` when the tokens from `at` spell it; else 0.
size_t match_phrase(const std::vector<Token>& tokens, size_t at, const Phrase& phrase) {
  size_t n = 0;
  while (n < phrase.size() && !phrase[n].empty()) {
    if (at + n >= tokens.size() || tokens[at + n].norm != phrase[n] || tokens[at + n].quote != 0) {
      return 0;
    }
    ++n;
  }
  return n;
}

void drop_fillers(std::vector<Token>& tokens) {
  // "please" anywhere; courtesy at the start and the end.
  std::erase_if(tokens, [](const Token& t) {
    return t.quote == 0 &&
           (t.norm == "please" || t.norm == "pls" || t.norm == "plz" || t.norm == "kindly");
  });
  size_t start = 0;
  for (bool again = true; again;) {
    again = false;
    for (const Phrase& phrase : leading_fillers()) {
      if (const size_t n = match_phrase(tokens, start, phrase);
          n > 0 && start + n < tokens.size()) {
        start += n;
        again = true;
        break;
      }
    }
  }
  size_t end = tokens.size();
  for (bool again = true; again;) {
    again = false;
    for (const Phrase& phrase : trailing_fillers()) {
      size_t len = 0;
      while (len < phrase.size() && !phrase[len].empty()) ++len;
      if (end >= start + len + 1 && match_phrase(tokens, end - len, phrase) == len) {
        end -= len;
        again = true;
        break;
      }
    }
  }
  if (start > 0 || end < tokens.size()) {
    // The first remaining word now starts the question.
    tokens.erase(tokens.begin() + static_cast<ptrdiff_t>(end), tokens.end());
    tokens.erase(tokens.begin(), tokens.begin() + static_cast<ptrdiff_t>(start));
    if (start > 0 && !tokens.empty()) tokens.front().flags |= kSentenceStart;
  }
}

// "how do I", "how can I", "how should we", "how does one" -> "how to".
void canonical_how_to(std::vector<Token>& tokens) {
  for (size_t i = 0; i + 2 < tokens.size(); ++i) {
    if (tokens[i].norm != "how") continue;
    const std::string_view verb = tokens[i + 1].norm, who = tokens[i + 2].norm;
    const bool verb_ok = verb == "do" || verb == "can" || verb == "should" || verb == "would" ||
                         verb == "could" || verb == "does";
    const bool who_ok = who == "i" || who == "we" || who == "one";
    if (!verb_ok || !who_ok || (verb == "does") != (who == "one")) continue;
    tokens[i + 1] = literal(tokens[i + 1], "to");
    tokens.erase(tokens.begin() + static_cast<ptrdiff_t>(i) + 2);
  }
}

// Number words become number tokens: "twenty one" -> 21, "a hundred and five" -> 105,
// "3 million" -> 3000000, "twenty-first" -> 21st.
void read_number_words(std::vector<Token>& tokens) {
  std::vector<Token> out;
  out.reserve(tokens.size());
  size_t i = 0;
  auto number_word = [&](size_t k) -> const NumberWord* {
    if (k >= tokens.size() || tokens[k].quote != 0 || tokens[k].has(kSymbol)) return nullptr;
    return find_number_word(tokens[k].norm);
  };
  while (i < tokens.size()) {
    const Token& first = tokens[i];
    const bool digits = first.has(kNumber) && !first.has(kOrdinal) && first.quote == 0;
    const bool a_multiplier = first.norm == "a" && first.quote == 0 && number_word(i + 1) &&
                              (number_word(i + 1)->kind == NumberKind::kHundred ||
                               number_word(i + 1)->kind == NumberKind::kBig) &&
                              !number_word(i + 1)->ordinal;
    if (!digits && !a_multiplier && number_word(i) == nullptr) {
      out.push_back(first);
      ++i;
      continue;
    }
    double total = 0, current = 0;
    enum { kNone, kUnit, kTeen, kTens, kHundred, kBig, kDigits } last = kNone;
    bool ordinal = false;
    size_t j = i;
    if (digits) {
      current = first.value;
      last = kDigits;
      j = i + 1;
    } else if (a_multiplier) {
      current = 1;
      last = kUnit;
      j = i + 1;
    }
    while (j < tokens.size() && !ordinal) {
      size_t at = j;
      // "and" joins "hundred and five", "two thousand and ten".
      if (tokens[j].norm == "and" && tokens[j].quote == 0 && (last == kHundred || last == kBig) &&
          number_word(j + 1) != nullptr && number_word(j + 1)->kind <= NumberKind::kTens) {
        at = j + 1;
      }
      const NumberWord* w = number_word(at);
      if (w == nullptr) break;
      bool fits = false;
      switch (w->kind) {
        case NumberKind::kUnit:
          fits = (last == kNone || last == kTens || last == kHundred || last == kBig) &&
                 !(w->value == 0 && last != kNone);
          if (fits) current += w->value;
          break;
        case NumberKind::kTeen:
        case NumberKind::kTens:
          fits = last == kNone || last == kHundred || last == kBig;
          if (fits) current += w->value;
          break;
        case NumberKind::kHundred:
          fits =
              last == kNone || last == kUnit || last == kTeen || last == kTens || last == kDigits;
          if (fits) current = (current == 0 ? 1 : current) * 100;
          break;
        case NumberKind::kBig:
          fits = last != kBig || w->value > 12;
          if (fits) {
            total += (current == 0 && last == kNone ? 1 : current) * w->value;
            current = 0;
          }
          break;
      }
      if (!fits) break;
      last = w->kind == NumberKind::kUnit      ? kUnit
             : w->kind == NumberKind::kTeen    ? kTeen
             : w->kind == NumberKind::kTens    ? kTens
             : w->kind == NumberKind::kHundred ? kHundred
                                               : kBig;
      ordinal = w->ordinal;
      j = at + 1;
      if (w->value == 0) break;  // "zero" stands alone
    }
    if (j == i + 1 && digits) {
      out.push_back(first);
      i = j;
      continue;
    }
    if (j == i || (a_multiplier && j == i + 1)) {  // a lone "a" or a word that did not fit
      out.push_back(first);
      i += 1;
      continue;
    }
    Token t = first;
    const Token& last_token = tokens[j - 1];
    if (last_token.raw.data() >= first.raw.data()) {
      t.raw = std::string_view(
          first.raw.data(),
          static_cast<size_t>(last_token.raw.data() + last_token.raw.size() - first.raw.data()));
    }
    t.norm = {};
    t.value = total + current;
    t.flags =
        static_cast<uint16_t>(kNumber | (ordinal ? kOrdinal : 0) | (first.flags & kSentenceStart));
    out.push_back(t);
    i = j;
  }
  tokens.swap(out);
}

void canonical_words(std::vector<Token>& tokens) {
  for (Token& t : tokens) {
    if (t.quote != 0 || t.has(kNumber) || t.has(kSymbol)) continue;
    t.norm = canonical_form(t.norm);
  }
}

}  // namespace

void read_question(std::string_view text, Question& q) {
  q.tokens.reserve(32);
  Lexer(text, q).run();
  expand_contractions(q.tokens);
  drop_fillers(q.tokens);
  canonical_how_to(q.tokens);
  read_number_words(q.tokens);
  canonical_words(q.tokens);
}

std::string format_number(const Token& t) {
  char buf[48];
  if (std::fabs(t.value) < 1e15 && t.value == std::floor(t.value)) {
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(t.value));
  } else {
    std::snprintf(buf, sizeof buf, "%.10g", t.value);
  }
  std::string s(buf);
  if (t.has(kOrdinal)) {
    const long long v = static_cast<long long>(std::fabs(t.value));
    const char* suffix = (v % 100 >= 11 && v % 100 <= 13) ? "th"
                         : v % 10 == 1                    ? "st"
                         : v % 10 == 2                    ? "nd"
                         : v % 10 == 3                    ? "rd"
                                                          : "th";
    s += suffix;
  }
  return s;
}

}  // namespace infera::knowledge::detail
