// The semantic cache's last check: an embedder found question B close to cached question
// A; may A's answer be reused? Embeddings rate "turn on the light" and "turn off the
// light", or "3 apples" and "4 apples", as near-identical; this guard compares the words
// themselves and refuses whenever they could ask for a different answer.
//
//   auto verdict = knowledge::compatible(cached_question, new_question);
//   if (!verdict.ok) log("semantic miss: {}", verdict.reason);  // "numbers differ: 3 vs 4"
//
// Rules, in order (the first that fails gives the reason):
//   numbers    digits and number words ("3" == "three", "twenty-one" == "21", "3rd" ==
//              "third", "1,000" == "one thousand"): the same values in the same order;
//   negation   not, no, never, n't, without, none, nobody, nothing, nowhere, neither,
//              nor: the same count;
//   opposites  on/off, enable/disable, increase/decrease, before/after, above/below,
//              min/max, more/less, larger/smaller, add/remove, open/close, true/false,
//              allow/deny, start/stop, up/down, in/out and more: the same sides;
//   entities   capitalised words not at a sentence start, ALLCAPS, words with digits
//              (CO2, H2O), quoted strings: each must appear in the other question;
//   wording    the content words (all but articles, auxiliaries, "I/me/we/us", a few
//              prepositions and fillers) as a multiset, plurals folded;
//   order      the content words in the same order ("Paris ... Lyon" vs "Lyon ...
//              Paris"), since the guard cannot tell where order is harmless; verb
//              particles (on, off, up, down, in, out) may move ("turn the light on").
// It is deliberately conservative: a paraphrase with other content words ("make" vs
// "produce") is refused; the cost is a miss, never a wrong answer. Questions whose
// normalize_question() forms are equal are always compatible.
//
// English only. Pure functions, thread-safe; microseconds per call; the only
// allocations are the normalised copies of the two questions and their token lists.
#pragma once

#include <string>
#include <string_view>

namespace infera::knowledge {

struct GuardVerdict {
  bool ok = false;
  // Empty when ok; else the first failed rule and the words that made it fail:
  // "numbers differ: 3 vs 4", "negation differs: not vs (none)", "opposites differ: on
  // vs off", "entities differ: Paris vs Lyon", "wording differs: make vs produce",
  // "order differs: paris before lyon vs lyon before paris".
  std::string reason;
};

// Whether an answer to question `a` may serve question `b` (symmetric).
GuardVerdict compatible(std::string_view a, std::string_view b);

// A canonical form for exact-match lookups and logs: lower case, punctuation dropped
// (symbols that change meaning, such as + - * / ^ = < > % $ #, kept), contractions
// expanded ("don't" -> "do not", "what's" -> "what is"), number words as digits,
// polite fillers dropped ("can you tell me", "please", "thanks"), "how do I" as
// "how to", words single-spaced. "Can you tell me what's 2+2, please?" -> "what is 2 +
// 2".
std::string normalize_question(std::string_view question);

}  // namespace infera::knowledge
