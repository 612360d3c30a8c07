// Internal to knowledge/ (semantic_guard.cpp's reader; callers use semantic_guard.h): a
// question read into tokens — lower-cased words, numbers with their values, symbols that
// change meaning — with what the raw text said about each (capitalised, at a sentence
// start, quoted), and the word lists the reader and the guard's rules share.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace infera::knowledge::detail {

enum TokenFlag : uint16_t {
  kCapitalized = 1,
  kAllCaps = 2,
  kSentenceStart = 4,
  kHasDigit = 8,
  kHasAlpha = 16,
  kNumber = 32,
  kOrdinal = 64,
  kSymbol = 128,
};

struct Token {
  std::string_view raw;   // as written, for reasons
  std::string_view norm;  // lower case, or a canonical literal
  double value = 0;       // with kNumber
  uint16_t flags = 0;
  uint16_t quote = 0;  // quoted span id; 0 outside quotes

  bool has(TokenFlag f) const { return (flags & f) != 0; }
};

// One read question. Token views point into `lower`, the caller's text and static word
// lists, so a Question is filled in place and never moved or copied.
struct Question {
  std::string lower;
  std::vector<Token> tokens;
};

// Reads `text` into `q` (REQUIRES: q is empty): words, numbers and symbols, then
// contractions expanded ("don't" -> do not), courtesy dropped ("can you tell me",
// "please", "thanks"), "how do I" as "how to", number words read as numbers ("twenty
// one" -> 21), synonyms folded ("which" -> what). `text` must outlive `q`.
void read_question(std::string_view text, Question& q);

// A number token as text: "3", "-2.5", "21st".
std::string format_number(const Token& t);

// --- word lists (question_words.cpp) ----------------------------------------------------

// Articles, auxiliaries and the like: ignored when content words are compared.
bool is_stop_word(std::string_view word);
// not, no, never, none, nobody, nothing, nowhere, neither, nor, without.
bool is_negation_word(std::string_view word);

// A word with an opposite: `group` pairs the two sides, `side` is +1 or -1. A weak word
// ("in") is too common to compare alone: it counts only when its group's other side
// appears in either question.
struct Polar {
  std::string_view word;
  uint8_t group;
  int8_t side;
  bool weak = false;
};
const Polar* find_polar(std::string_view word);

// The form a synonym is folded into ("bigger" -> "larger"); `word` itself if none.
std::string_view canonical_form(std::string_view word);

// A contraction typed without its apostrophe ("dont" -> do not).
struct Expansion {
  std::string_view word;
  std::string_view first;
  std::string_view second;
};
const Expansion* find_bare_contraction(std::string_view word);
// Whether "'s" after `word` is "is" ("what's"), not a possessive ("Newton's").
bool takes_contracted_is(std::string_view word);

// Number words: their value, and what may precede and follow them.
enum class NumberKind : uint8_t { kUnit, kTeen, kTens, kHundred, kBig };
struct NumberWord {
  std::string_view word;
  double value;
  NumberKind kind;
  bool ordinal = false;
};
const NumberWord* find_number_word(std::string_view word);

// Courtesy phrases, words padded with empty views: dropped at the start of a question
// (longest first, repeatedly) and at its end.
using Phrase = std::array<std::string_view, 6>;
std::span<const Phrase> leading_fillers();
std::span<const Phrase> trailing_fillers();

}  // namespace infera::knowledge::detail
