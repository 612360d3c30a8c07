// question.h's word lists: small constant tables searched linearly (a question has a few
// dozen words, and a whole compatible() call takes a few microseconds).
#include "knowledge/question.h"

namespace infera::knowledge::detail {

namespace {

// Ignored when content words are compared: they change how a question is put, not what
// it asks. Negations, wh-words, tense markers (was, did, will), modals of obligation,
// "you", possessives ("my IP address" is not "an IP address") and asymmetric
// prepositions (to, from, than, by) are not here.
constexpr std::string_view kStopWords[] = {
    "a",         "about", "actually", "also",  "am",    "an",    "any",  "are",  "as",   "at",
    "basically", "be",    "been",     "being", "can",   "could", "do",   "does", "ever", "exactly",
    "for",       "i",     "in",       "is",    "it",    "its",   "just", "me",   "of",   "please",
    "really",    "some",  "that",     "the",   "there", "us",    "we",   "with", "would"};

constexpr std::string_view kNegations[] = {"neither", "never", "no",      "nobody",  "none",
                                           "nor",     "not",   "nothing", "nowhere", "without"};

constexpr Polar kPolar[] = {
    {"on", 1, 1},           {"off", 1, -1},           {"enable", 2, 1},
    {"enabled", 2, 1},      {"enabling", 2, 1},       {"disable", 2, -1},
    {"disabled", 2, -1},    {"disabling", 2, -1},     {"increase", 3, 1},
    {"increased", 3, 1},    {"increasing", 3, 1},     {"decrease", 3, -1},
    {"decreased", 3, -1},   {"decreasing", 3, -1},    {"before", 4, 1},
    {"after", 4, -1},       {"above", 5, 1},          {"over", 5, 1},
    {"below", 5, -1},       {"under", 5, -1},         {"min", 6, -1},
    {"minimal", 6, -1},     {"minimize", 6, -1},      {"minimise", 6, -1},
    {"max", 6, 1},          {"maximal", 6, 1},        {"maximize", 6, 1},
    {"maximise", 6, 1},     {"more", 7, 1},           {"less", 7, -1},
    {"most", 8, 1},         {"least", 8, -1},         {"large", 9, 1},
    {"larger", 9, 1},       {"largest", 9, 1},        {"small", 9, -1},
    {"smaller", 9, -1},     {"smallest", 9, -1},      {"high", 10, 1},
    {"higher", 10, 1},      {"highest", 10, 1},       {"low", 10, -1},
    {"lower", 10, -1},      {"lowest", 10, -1},       {"add", 11, 1},
    {"added", 11, 1},       {"adding", 11, 1},        {"remove", 11, -1},
    {"removed", 11, -1},    {"removing", 11, -1},     {"delete", 11, -1},
    {"deleted", 11, -1},    {"subtract", 11, -1},     {"open", 12, 1},
    {"opened", 12, 1},      {"opening", 12, 1},       {"close", 12, -1},
    {"closed", 12, -1},     {"closing", 12, -1},      {"true", 13, 1},
    {"false", 13, -1},      {"correct", 13, 1},       {"incorrect", 13, -1},
    {"allow", 14, 1},       {"allowed", 14, 1},       {"permit", 14, 1},
    {"permitted", 14, 1},   {"deny", 14, -1},         {"denied", 14, -1},
    {"block", 14, -1},      {"blocked", 14, -1},      {"forbid", 14, -1},
    {"forbidden", 14, -1},  {"start", 15, 1},         {"started", 15, 1},
    {"starting", 15, 1},    {"stop", 15, -1},         {"stopped", 15, -1},
    {"stopping", 15, -1},   {"end", 15, -1},          {"ended", 15, -1},
    {"finish", 15, -1},     {"finished", 15, -1},     {"up", 16, 1},
    {"down", 16, -1},       {"in", 17, 1, true},      {"into", 17, 1},
    {"inside", 17, 1},      {"out", 17, -1},          {"outside", 17, -1},
    {"lock", 18, 1},        {"locked", 18, 1},        {"unlock", 18, -1},
    {"unlocked", 18, -1},   {"mute", 19, 1},          {"muted", 19, 1},
    {"unmute", 19, -1},     {"connect", 20, 1},       {"connected", 20, 1},
    {"disconnect", 20, -1}, {"disconnected", 20, -1}, {"install", 21, 1},
    {"installed", 21, 1},   {"uninstall", 21, -1},    {"show", 22, 1},
    {"hide", 22, -1},       {"visible", 22, 1},       {"hidden", 22, -1},
    {"positive", 24, 1},    {"negative", 24, -1},     {"hot", 25, 1},
    {"hotter", 25, 1},      {"hottest", 25, 1},       {"cold", 25, -1},
    {"colder", 25, -1},     {"coldest", 25, -1},      {"fast", 26, 1},
    {"faster", 26, 1},      {"fastest", 26, 1},       {"slow", 26, -1},
    {"slower", 26, -1},     {"slowest", 26, -1},      {"long", 27, 1},
    {"longer", 27, 1},      {"longest", 27, 1},       {"short", 27, -1},
    {"shorter", 27, -1},    {"shortest", 27, -1},     {"win", 28, 1},
    {"won", 28, 1},         {"lose", 28, -1},         {"lost", 28, -1},
    {"buy", 29, 1},         {"bought", 29, 1},        {"sell", 29, -1},
    {"sold", 29, -1},       {"left", 30, 1},          {"right", 30, -1},
    {"north", 31, 1},       {"south", 31, -1},        {"east", 32, 1},
    {"west", 32, -1},       {"best", 33, 1},          {"better", 33, 1},
    {"good", 33, 1},        {"worst", 33, -1},        {"worse", 33, -1},
    {"bad", 33, -1},        {"upload", 34, 1},        {"download", 34, -1},
    {"import", 35, 1},      {"export", 35, -1},       {"encrypt", 36, 1},
    {"decrypt", 36, -1},    {"encode", 37, 1},        {"decode", 37, -1},
    {"accept", 38, 1},      {"accepted", 38, 1},      {"reject", 38, -1},
    {"rejected", 38, -1},   {"include", 39, 1},       {"included", 39, 1},
    {"exclude", 39, -1},    {"excluded", 39, -1},     {"input", 40, 1},
    {"output", 40, -1},     {"push", 41, 1},          {"pull", 41, -1},
    {"ascending", 42, 1},   {"descending", 42, -1},   {"uppercase", 43, 1},
    {"lowercase", 43, -1},  {"older", 44, 1},         {"oldest", 44, 1},
    {"younger", 44, -1},    {"youngest", 44, -1},     {"earlier", 45, 1},
    {"earliest", 45, 1},    {"later", 45, -1},        {"latest", 45, -1},
    {"heavier", 46, 1},     {"heaviest", 46, 1},      {"lighter", 46, -1},
    {"lightest", 46, -1},   {"stronger", 47, 1},      {"strongest", 47, 1},
    {"weaker", 47, -1},     {"weakest", 47, -1},      {"wider", 48, 1},
    {"widest", 48, 1},      {"narrower", 48, -1},     {"narrowest", 48, -1},
    {"top", 49, 1},         {"bottom", 49, -1},       {"front", 50, 1},
    {"back", 50, -1},       {"first", 51, 1},         {"last", 51, -1},
    {"odd", 52, 1},         {"even", 52, -1},         {"multiply", 53, 1},
    {"multiplied", 53, 1},  {"divide", 53, -1},       {"divided", 53, -1},
    {"rise", 54, 1},        {"rises", 54, 1},         {"fall", 54, -1},
    {"falls", 54, -1},      {"freeze", 55, 1},        {"freezing", 55, 1},
    {"melt", 55, -1},       {"melting", 55, -1},      {"boil", 55, -1},
    {"boiling", 55, -1},    {"gain", 56, 1},          {"loss", 56, -1},
    {"inner", 57, 1},       {"outer", 57, -1},        {"internal", 58, 1},
    {"external", 58, -1},   {"past", 59, 1},          {"future", 59, -1},
    {"yesterday", 60, 1},   {"tomorrow", 60, -1},     {"always", 61, 1},
    {"sometimes", 61, -1},  {"all", 62, 1},           {"every", 62, 1},
    {"few", 62, -1},        {"many", 63, 1},          {"much", 63, 1},
    {"little", 63, -1},     {"sunrise", 64, 1},       {"sunset", 64, -1},
};

// Synonyms folded into one form (normalize_question applies them): paraphrases that
// use either word are the same question.
struct Canonical {
  std::string_view word;
  std::string_view as;
};
constexpr Canonical kCanonical[] = {
    {"which", "what"},  {"has", "have"},       {"bigger", "larger"},    {"biggest", "largest"},
    {"big", "large"},   {"greater", "larger"}, {"greatest", "largest"}, {"tiny", "small"},
    {"fewer", "less"},  {"fewest", "least"},   {"minimum", "min"},      {"maximum", "max"},
    {"begin", "start"}, {"begins", "starts"},  {"began", "started"},    {"shut", "close"},
    {"versus", "vs"},   {"switch", "turn"},    {"whom", "who"},         {"plus", "+"},
    {"minus", "-"},
};

// Contractions written without an apostrophe, as people type them.
constexpr Expansion kBareContractions[] = {
    {"arent", "are", "not"},       {"cant", "can", "not"},  {"cannot", "can", "not"},
    {"couldnt", "could", "not"},   {"didnt", "did", "not"}, {"doesnt", "does", "not"},
    {"dont", "do", "not"},         {"hadnt", "had", "not"}, {"hasnt", "has", "not"},
    {"havent", "have", "not"},     {"hows", "how", "is"},   {"isnt", "is", "not"},
    {"shouldnt", "should", "not"}, {"thats", "that", "is"}, {"wasnt", "was", "not"},
    {"werent", "were", "not"},     {"whats", "what", "is"}, {"wheres", "where", "is"},
    {"whos", "who", "is"},         {"wont", "will", "not"}, {"wouldnt", "would", "not"},
};

// Words whose "'s" is "is" ("what's"), not a possessive ("Newton's").
constexpr std::string_view kIsContractions[] = {"he",    "here", "how",  "it",    "she", "that",
                                                "there", "what", "when", "where", "who", "why"};

// Fillers dropped at the start of a question (longest first; applied repeatedly).
constexpr Phrase kLeadingFillers[] = {
    {"can", "you", "please", "tell", "me", ""},
    {"could", "you", "please", "tell", "me", ""},
    {"i", "would", "like", "to", "know", ""},
    {"can", "you", "tell", "me", "", ""},
    {"could", "you", "tell", "me", "", ""},
    {"would", "you", "tell", "me", "", ""},
    {"i", "want", "to", "know", "", ""},
    {"please", "tell", "me", "", "", ""},
    {"do", "you", "know", "", "", ""},
    {"can", "you", "please", "", "", ""},
    {"could", "you", "please", "", "", ""},
    {"quick", "question", "", "", "", ""},
    {"tell", "me", "", "", "", ""},
    {"i", "wonder", "", "", "", ""},
    {"can", "you", "", "", "", ""},
    {"could", "you", "", "", "", ""},
    {"would", "you", "", "", "", ""},
    {"will", "you", "", "", "", ""},
    {"hey", "", "", "", "", ""},
    {"hi", "", "", "", "", ""},
    {"hello", "", "", "", "", ""},
    {"ok", "", "", "", "", ""},
    {"okay", "", "", "", "", ""},
    {"so", "", "", "", "", ""},
    {"well", "", "", "", "", ""},
    {"um", "", "", "", "", ""},
    {"question", "", "", "", "", ""},
};
constexpr Phrase kTrailingFillers[] = {
    {"thank", "you"}, {"thanks"}, {"for", "me"}, {"please"}, {"ok"},
};

constexpr NumberWord kNumberWords[] = {
    {"zero", 0, NumberKind::kUnit},
    {"one", 1, NumberKind::kUnit},
    {"two", 2, NumberKind::kUnit},
    {"three", 3, NumberKind::kUnit},
    {"four", 4, NumberKind::kUnit},
    {"five", 5, NumberKind::kUnit},
    {"six", 6, NumberKind::kUnit},
    {"seven", 7, NumberKind::kUnit},
    {"eight", 8, NumberKind::kUnit},
    {"nine", 9, NumberKind::kUnit},
    {"ten", 10, NumberKind::kTeen},
    {"eleven", 11, NumberKind::kTeen},
    {"twelve", 12, NumberKind::kTeen},
    {"thirteen", 13, NumberKind::kTeen},
    {"fourteen", 14, NumberKind::kTeen},
    {"fifteen", 15, NumberKind::kTeen},
    {"sixteen", 16, NumberKind::kTeen},
    {"seventeen", 17, NumberKind::kTeen},
    {"eighteen", 18, NumberKind::kTeen},
    {"nineteen", 19, NumberKind::kTeen},
    {"twenty", 20, NumberKind::kTens},
    {"thirty", 30, NumberKind::kTens},
    {"forty", 40, NumberKind::kTens},
    {"fifty", 50, NumberKind::kTens},
    {"sixty", 60, NumberKind::kTens},
    {"seventy", 70, NumberKind::kTens},
    {"eighty", 80, NumberKind::kTens},
    {"ninety", 90, NumberKind::kTens},
    {"hundred", 100, NumberKind::kHundred},
    {"thousand", 1e3, NumberKind::kBig},
    {"million", 1e6, NumberKind::kBig},
    {"billion", 1e9, NumberKind::kBig},
    {"dozen", 12, NumberKind::kBig},
    {"first", 1, NumberKind::kUnit, true},
    {"second", 2, NumberKind::kUnit, true},
    {"third", 3, NumberKind::kUnit, true},
    {"fourth", 4, NumberKind::kUnit, true},
    {"fifth", 5, NumberKind::kUnit, true},
    {"sixth", 6, NumberKind::kUnit, true},
    {"seventh", 7, NumberKind::kUnit, true},
    {"eighth", 8, NumberKind::kUnit, true},
    {"ninth", 9, NumberKind::kUnit, true},
    {"tenth", 10, NumberKind::kTeen, true},
    {"eleventh", 11, NumberKind::kTeen, true},
    {"twelfth", 12, NumberKind::kTeen, true},
    {"thirteenth", 13, NumberKind::kTeen, true},
    {"fourteenth", 14, NumberKind::kTeen, true},
    {"fifteenth", 15, NumberKind::kTeen, true},
    {"sixteenth", 16, NumberKind::kTeen, true},
    {"seventeenth", 17, NumberKind::kTeen, true},
    {"eighteenth", 18, NumberKind::kTeen, true},
    {"nineteenth", 19, NumberKind::kTeen, true},
    {"twentieth", 20, NumberKind::kTens, true},
    {"thirtieth", 30, NumberKind::kTens, true},
    {"fortieth", 40, NumberKind::kTens, true},
    {"fiftieth", 50, NumberKind::kTens, true},
    {"sixtieth", 60, NumberKind::kTens, true},
    {"seventieth", 70, NumberKind::kTens, true},
    {"eightieth", 80, NumberKind::kTens, true},
    {"ninetieth", 90, NumberKind::kTens, true},
    {"hundredth", 100, NumberKind::kHundred, true},
    {"thousandth", 1e3, NumberKind::kBig, true},
    {"millionth", 1e6, NumberKind::kBig, true},
};

template <typename T, size_t N>
const T* find_word(const T (&list)[N], std::string_view word) {
  for (const T& e : list) {
    if (e.word == word) return &e;
  }
  return nullptr;
}

template <size_t N>
bool in_list(const std::string_view (&list)[N], std::string_view word) {
  for (std::string_view w : list) {
    if (w == word) return true;
  }
  return false;
}

}  // namespace

bool is_stop_word(std::string_view word) { return in_list(kStopWords, word); }
bool is_negation_word(std::string_view word) { return in_list(kNegations, word); }
const Polar* find_polar(std::string_view word) { return find_word(kPolar, word); }

std::string_view canonical_form(std::string_view word) {
  const Canonical* c = find_word(kCanonical, word);
  return c != nullptr ? c->as : word;
}

const Expansion* find_bare_contraction(std::string_view word) {
  return find_word(kBareContractions, word);
}
bool takes_contracted_is(std::string_view word) { return in_list(kIsContractions, word); }
const NumberWord* find_number_word(std::string_view word) { return find_word(kNumberWords, word); }

std::span<const Phrase> leading_fillers() { return kLeadingFillers; }
std::span<const Phrase> trailing_fillers() { return kTrailingFillers; }

}  // namespace infera::knowledge::detail
