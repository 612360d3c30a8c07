// semantic_guard.h: both questions are read into tokens (knowledge/question.h); the
// rules then compare the two token lists, first failure first.
#include "knowledge/semantic_guard.h"

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "knowledge/question.h"

namespace infera::knowledge {

namespace {

using detail::find_polar;
using detail::format_number;
using detail::is_negation_word;
using detail::is_stop_word;
using detail::Polar;
using detail::Question;
using detail::Token;
using detail::TokenFlag;
using enum detail::TokenFlag;

std::string display(const Token& t) {
  return t.has(kNumber) ? format_number(t) : std::string(t.norm);
}

// Equal words, plurals and third-person -s folded: "legs" == "leg", "boxes" == "box",
// "studies" == "study".
bool same_word(std::string_view a, std::string_view b) {
  if (a == b) return true;
  if (a.size() > b.size()) std::swap(a, b);
  if (a.size() < 2) return false;
  if (b.size() == a.size() + 1 && b.back() == 's' && b.substr(0, a.size()) == a) {
    return a.back() != 's';
  }
  if (b.size() == a.size() + 2 && b.substr(a.size()) == "es" && b.substr(0, a.size()) == a) {
    return a.back() == 's' || a.back() == 'x' || a.back() == 'z' || a.back() == 'h' ||
           a.back() == 'o';
  }
  if (b.size() == a.size() + 2 && a.back() == 'y' && b.substr(b.size() - 3) == "ies" &&
      b.substr(0, a.size() - 1) == a.substr(0, a.size() - 1)) {
    return true;
  }
  return false;
}

bool same_token(const Token& a, const Token& b) {
  if (a.has(kNumber) || b.has(kNumber)) {
    return a.has(kNumber) && b.has(kNumber) && a.value == b.value &&
           a.has(kOrdinal) == b.has(kOrdinal);
  }
  if (a.has(kSymbol) || b.has(kSymbol)) return a.norm == b.norm;
  return same_word(a.norm, b.norm);
}

bool is_content(const Token& t) {
  if (t.quote != 0 || t.has(kNumber) || t.has(kSymbol)) return true;
  const Polar* p = find_polar(t.norm);
  return !is_stop_word(t.norm) && (p == nullptr || !p->weak);
}

using Tokens = std::vector<const Token*>;

Tokens select(const Question& q, bool (*keep)(const Token&)) {
  Tokens out;
  out.reserve(q.tokens.size());
  for (const Token& t : q.tokens) {
    if (keep(t)) out.push_back(&t);
  }
  return out;
}

// Matches the tokens of `a` and `b` one to one; sets the first unmatched of each (or
// null). True when all match.
bool same_multiset(const Tokens& a, const Tokens& b, const Token** only_a, const Token** only_b) {
  std::vector<bool> used(b.size(), false);
  *only_a = *only_b = nullptr;
  for (const Token* x : a) {
    bool found = false;
    for (size_t k = 0; k < b.size() && !found; ++k) {
      if (!used[k] && same_token(*x, *b[k])) used[k] = found = true;
    }
    if (!found && *only_a == nullptr) *only_a = x;
  }
  for (size_t k = 0; k < b.size(); ++k) {
    if (!used[k]) {
      *only_b = b[k];
      break;
    }
  }
  return *only_a == nullptr && *only_b == nullptr;
}

std::string versus(const Token* a, const Token* b) {
  return (a != nullptr ? display(*a) : std::string("(none)")) + " vs " +
         (b != nullptr ? display(*b) : std::string("(none)"));
}

GuardVerdict refuse(std::string reason) { return GuardVerdict{false, std::move(reason)}; }

std::optional<GuardVerdict> check_numbers(const Question& a, const Question& b) {
  auto numbers = [](const Token& t) { return t.has(kNumber); };
  const Tokens na = select(a, numbers), nb = select(b, numbers);
  const Token *only_a, *only_b;
  if (!same_multiset(na, nb, &only_a, &only_b))
    return refuse("numbers differ: " + versus(only_a, only_b));
  return std::nullopt;
}

bool is_negation(const Token& t) { return t.quote == 0 && is_negation_word(t.norm); }

std::optional<GuardVerdict> check_negation(const Question& a, const Question& b) {
  const Tokens na = select(a, is_negation), nb = select(b, is_negation);
  if (na.size() == nb.size()) return std::nullopt;
  // The negation the other question lacks, by word if both negate.
  const Token *only_a, *only_b;
  same_multiset(na, nb, &only_a, &only_b);
  return refuse("negation differs: " + versus(only_a, only_b));
}

std::optional<GuardVerdict> check_opposites(const Question& a, const Question& b) {
  struct Side {
    const Token* token;
    const Polar* polar;
  };
  auto collect = [](const Question& q, std::vector<Side>& out) {
    for (const Token& t : q.tokens) {
      if (t.quote != 0 || t.has(kNumber) || t.has(kSymbol)) continue;
      if (const Polar* p = find_polar(t.norm)) out.push_back({&t, p});
    }
  };
  std::vector<Side> pa, pb;
  collect(a, pa);
  collect(b, pb);
  for (const auto& [token, polar] : pa) {
    const uint8_t g = polar->group;
    int plus_a = 0, minus_a = 0, plus_b = 0, minus_b = 0;
    bool strong = false, in_b = false;
    for (const Side& s : pa) {
      if (s.polar->group != g) continue;
      strong = strong || !s.polar->weak;
      (s.polar->side > 0 ? plus_a : minus_a)++;
    }
    for (const Side& s : pb) {
      if (s.polar->group != g) continue;
      strong = strong || !s.polar->weak;
      in_b = true;
      (s.polar->side > 0 ? plus_b : minus_b)++;
    }
    // A group on one side only is a wording difference; weak words alone are not one.
    if (!strong || !in_b || (plus_a == plus_b && minus_a == minus_b)) continue;
    // Name a word of each side in the direction that side leans to more.
    const int excess = plus_a - minus_a > plus_b - minus_b ? 1 : -1;
    const Token *wa = nullptr, *wb = nullptr;
    for (const Side& s : pa) {
      if (s.polar->group == g && s.polar->side == excess && wa == nullptr) wa = s.token;
    }
    for (const Side& s : pb) {
      if (s.polar->group == g && s.polar->side == -excess && wb == nullptr) wb = s.token;
    }
    return refuse("opposites differ: " + versus(wa, wb));
  }
  return std::nullopt;
}

bool is_entity(const Token& t) {
  if (t.quote != 0) return true;
  if (t.has(kNumber) || t.has(kSymbol)) return false;
  if (t.has(kAllCaps)) return true;
  if (t.has(kHasDigit) && t.has(kHasAlpha)) return true;
  return t.has(kCapitalized) && !t.has(kSentenceStart) && t.raw != "I";
}

// Runs of entity tokens (a quoted span, or adjacent capitalised words: "New York").
struct Span {
  size_t begin, end;
};
std::vector<Span> entities(const Question& q) {
  std::vector<Span> out;
  const auto& t = q.tokens;
  for (size_t i = 0; i < t.size();) {
    if (!is_entity(t[i])) {
      ++i;
      continue;
    }
    size_t j = i + 1;
    while (j < t.size() && is_entity(t[j]) && t[j].quote == t[i].quote) ++j;
    out.push_back({i, j});
    i = j;
  }
  return out;
}

bool contains(const Question& hay, const Question& q, Span s) {
  const size_t n = s.end - s.begin;
  for (size_t i = 0; i + n <= hay.tokens.size(); ++i) {
    size_t k = 0;
    while (k < n && same_token(hay.tokens[i + k], q.tokens[s.begin + k])) ++k;
    if (k == n) return true;
  }
  return false;
}

std::string span_text(const Question& q, Span s) {
  const Token& first = q.tokens[s.begin];
  const Token& last = q.tokens[s.end - 1];
  if (last.raw.data() >= first.raw.data()) {
    return std::string(first.raw.data(),
                       static_cast<size_t>(last.raw.data() + last.raw.size() - first.raw.data()));
  }
  return std::string(first.raw);
}

std::optional<GuardVerdict> check_entities(const Question& a, const Question& b) {
  std::string missing_a, missing_b;
  for (Span s : entities(a)) {
    if (!contains(b, a, s)) {
      missing_a = span_text(a, s);
      break;
    }
  }
  for (Span s : entities(b)) {
    if (!contains(a, b, s)) {
      missing_b = span_text(b, s);
      break;
    }
  }
  if (missing_a.empty() && missing_b.empty()) return std::nullopt;
  return refuse("entities differ: " + (missing_a.empty() ? std::string("(none)") : missing_a) +
                " vs " + (missing_b.empty() ? std::string("(none)") : missing_b));
}

// Verb particles (on, off, up, down, in, out) move without changing the question
// ("turn the light on"), so they are ordered among themselves only.
bool is_particle(const Token& t) {
  if (t.quote != 0 || t.has(kNumber) || t.has(kSymbol)) return false;
  const Polar* p = find_polar(t.norm);
  return p != nullptr && (p->group == 1 || p->group == 16 || p->group == 17);
}

std::optional<GuardVerdict> check_order(const Tokens& ca, const Tokens& cb, bool particles) {
  size_t i = 0, k = 0;
  for (;;) {
    while (i < ca.size() && is_particle(*ca[i]) != particles) ++i;
    while (k < cb.size() && is_particle(*cb[k]) != particles) ++k;
    if (i >= ca.size() || k >= cb.size()) return std::nullopt;
    if (!same_token(*ca[i], *cb[k])) {
      return refuse("order differs: " + display(*ca[i]) + " before " + display(*cb[k]) + " vs " +
                    display(*cb[k]) + " before " + display(*ca[i]));
    }
    ++i;
    ++k;
  }
}

std::optional<GuardVerdict> check_wording_and_order(const Question& a, const Question& b) {
  const Tokens ca = select(a, is_content), cb = select(b, is_content);
  const Token *only_a, *only_b;
  if (!same_multiset(ca, cb, &only_a, &only_b)) {
    return refuse("wording differs: " + versus(only_a, only_b));
  }
  if (auto v = check_order(ca, cb, false)) return v;
  return check_order(ca, cb, true);
}

bool same_normal_form(const Question& a, const Question& b) {
  if (a.tokens.size() != b.tokens.size()) return false;
  for (size_t i = 0; i < a.tokens.size(); ++i) {
    const Token &x = a.tokens[i], &y = b.tokens[i];
    if (x.has(kNumber) != y.has(kNumber)) return false;
    if (x.has(kNumber) ? (x.value != y.value || x.has(kOrdinal) != y.has(kOrdinal))
                       : x.norm != y.norm) {
      return false;
    }
  }
  return true;
}

}  // namespace

GuardVerdict compatible(std::string_view a, std::string_view b) {
  Question qa, qb;
  read_question(a, qa);
  read_question(b, qb);
  if (same_normal_form(qa, qb)) return GuardVerdict{true, {}};
  for (auto check :
       {check_numbers, check_negation, check_opposites, check_entities, check_wording_and_order}) {
    if (std::optional<GuardVerdict> v = check(qa, qb)) return std::move(*v);
  }
  return GuardVerdict{true, {}};
}

std::string normalize_question(std::string_view question) {
  Question q;
  read_question(question, q);
  std::string out;
  out.reserve(question.size());
  for (const Token& t : q.tokens) {
    if (!out.empty()) out.push_back(' ');
    if (t.has(kNumber)) {
      out += format_number(t);
    } else {
      out.append(t.norm);
    }
  }
  return out;
}

}  // namespace infera::knowledge
