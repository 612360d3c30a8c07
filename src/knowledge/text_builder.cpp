// TextBuilder, input clean-up and UTF-8 repair, HTML character references.
#include "knowledge/text_builder.h"

#include <algorithm>
#include <array>

namespace infera::knowledge {

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Length of the valid UTF-8 sequence at `p` (1..4), or 0 when it is invalid. The ranges
// are the Unicode standard's table 3-7 (well-formed UTF-8 byte sequences).
size_t valid_utf8_length(const unsigned char* p, size_t avail) {
  const unsigned char c = p[0];
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // > U+10FFFF
  } else {
    return 0;
  }
  if (avail < 2 || p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < n; ++i) {
    if (i >= avail || p[i] < 0x80 || p[i] > 0xBF) return 0;
  }
  return n;
}

// How many bytes of the invalid sequence at `p` one U+FFFD replaces: the lead byte
// and the continuation bytes that could still have been part of it ("maximal subpart").
size_t invalid_subpart_length(const unsigned char* p, size_t avail) {
  const unsigned char c = p[0];
  size_t want = c >= 0xF0 && c <= 0xF4   ? 4
                : c >= 0xE0 && c <= 0xEF ? 3
                : c >= 0xC2 && c <= 0xDF ? 2
                                         : 1;
  size_t n = 1;
  while (n < want && n < avail && (p[n] & 0xC0) == 0x80) {
    if (n == 1 && ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F) ||
                   (c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F))) {
      break;
    }
    ++n;
  }
  return n;
}

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

std::string utf16_to_utf8(std::string_view bytes, bool big_endian, bool* repaired) {
  std::string out;
  out.reserve(bytes.size());
  auto unit = [&](size_t i) -> char32_t {
    const auto a = static_cast<unsigned char>(bytes[i]);
    const auto b = static_cast<unsigned char>(bytes[i + 1]);
    return big_endian ? (char32_t(a) << 8 | b) : (char32_t(b) << 8 | a);
  };
  size_t i = 2;  // past the BOM
  while (i + 1 < bytes.size()) {
    char32_t u = unit(i);
    i += 2;
    if (u >= 0xD800 && u <= 0xDBFF && i + 1 < bytes.size()) {
      const char32_t low = unit(i);
      if (low >= 0xDC00 && low <= 0xDFFF) {
        i += 2;
        detail::append_utf8(out, 0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00));
        continue;
      }
    }
    if (u >= 0xD800 && u <= 0xDFFF) {
      *repaired = true;
      u = 0xFFFD;
    }
    detail::append_utf8(out, u);
  }
  if (i < bytes.size()) *repaired = true;  // odd trailing byte
  return out;
}

struct NamedEntity {
  std::string_view name;
  char32_t code_point;
};

// The references documents actually use; an unknown name is kept as written.
constexpr std::array<NamedEntity, 56> kNamedEntities{{
    {"amp", '&'},      {"lt", '<'},       {"gt", '>'},       {"quot", '"'},     {"apos", '\''},
    {"nbsp", ' '},     {"copy", 0xA9},    {"reg", 0xAE},     {"trade", 0x2122}, {"hellip", 0x2026},
    {"mdash", 0x2014}, {"ndash", 0x2013}, {"lsquo", 0x2018}, {"rsquo", 0x2019}, {"ldquo", 0x201C},
    {"rdquo", 0x201D}, {"laquo", 0xAB},   {"raquo", 0xBB},   {"deg", 0xB0},     {"plusmn", 0xB1},
    {"times", 0xD7},   {"divide", 0xF7},  {"middot", 0xB7},  {"bull", 0x2022},  {"euro", 0x20AC},
    {"pound", 0xA3},   {"yen", 0xA5},     {"cent", 0xA2},    {"sect", 0xA7},    {"para", 0xB6},
    {"frac12", 0xBD},  {"frac14", 0xBC},  {"frac34", 0xBE},  {"sup2", 0xB2},    {"sup3", 0xB3},
    {"micro", 0xB5},   {"le", 0x2264},    {"ge", 0x2265},    {"ne", 0x2260},    {"minus", 0x2212},
    {"rarr", 0x2192},  {"larr", 0x2190},  {"alpha", 0x3B1},  {"beta", 0x3B2},   {"gamma", 0x3B3},
    {"delta", 0x3B4},  {"pi", 0x3C0},     {"sigma", 0x3C3},  {"omega", 0x3C9},  {"mu", 0x3BC},
    {"eacute", 0xE9},  {"egrave", 0xE8},  {"aacute", 0xE1},  {"uuml", 0xFC},    {"ouml", 0xF6},
    {"auml", 0xE4},
}};

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

}  // namespace

std::string repair_utf8(std::string_view bytes, bool* repaired) {
  std::string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t i = 0;
  bool any = false;
  while (i < bytes.size()) {
    // Runs of ASCII are the common case: copy them in one go.
    size_t j = i;
    while (j < bytes.size() && p[j] < 0x80) ++j;
    out.append(bytes.data() + i, j - i);
    i = j;
    if (i >= bytes.size()) break;
    const size_t n = valid_utf8_length(p + i, bytes.size() - i);
    if (n > 0) {
      out.append(bytes.data() + i, n);
      i += n;
    } else {
      out.append(kReplacement);
      i += invalid_subpart_length(p + i, bytes.size() - i);
      any = true;
    }
  }
  if (repaired != nullptr) *repaired = any;
  return out;
}

namespace detail {

void append_utf8(std::string& out, char32_t cp) {
  if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) cp = 0xFFFD;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string clean_input(std::string_view bytes, bool* repaired) {
  bool any = false;
  std::string utf8;
  if (bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0xFF &&
      static_cast<unsigned char>(bytes[1]) == 0xFE) {
    utf8 = utf16_to_utf8(bytes, false, &any);
  } else if (bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0xFE &&
             static_cast<unsigned char>(bytes[1]) == 0xFF) {
    utf8 = utf16_to_utf8(bytes, true, &any);
  } else {
    if (bytes.substr(0, 3) == "\xEF\xBB\xBF") bytes.remove_prefix(3);
    utf8 = repair_utf8(bytes, &any);
  }
  std::string out;
  out.reserve(utf8.size());
  for (size_t i = 0; i < utf8.size(); ++i) {
    const char c = utf8[i];
    if (c == '\r') {
      out.push_back('\n');
      if (i + 1 < utf8.size() && utf8[i + 1] == '\n') ++i;
    } else if (c == '\f' || c == '\v') {
      out.push_back('\n');
    } else if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') {
      continue;  // NUL and other controls carry no text
    } else if (c == '\x7F') {
      continue;
    } else {
      out.push_back(c);
    }
  }
  if (repaired != nullptr) *repaired = any;
  return out;
}

size_t decode_entity(std::string_view text, std::string& out) {
  if (text.size() < 3 || text[0] != '&') return 0;
  if (text[1] == '#') {
    const bool hex = text.size() > 2 && (text[2] == 'x' || text[2] == 'X');
    size_t i = hex ? 3 : 2;
    const size_t digits_begin = i;
    char32_t value = 0;
    bool too_big = false;
    while (i < text.size() && i - digits_begin < 16) {
      const char c = text[i];
      int digit;
      if (c >= '0' && c <= '9') {
        digit = c - '0';
      } else if (hex && c >= 'a' && c <= 'f') {
        digit = c - 'a' + 10;
      } else if (hex && c >= 'A' && c <= 'F') {
        digit = c - 'A' + 10;
      } else {
        break;
      }
      value = value * (hex ? 16 : 10) + static_cast<char32_t>(digit);
      if (value > 0x10FFFF) too_big = true, value = 0x110000;
      ++i;
    }
    if (i == digits_begin) return 0;
    if (i < text.size() && text[i] == ';') ++i;  // browsers accept a missing ';'
    append_utf8(out, too_big ? 0xFFFD : value);
    return i;
  }
  size_t i = 1;
  while (i < text.size() && i < 12 && is_alnum(text[i])) ++i;
  if (i >= text.size() || text[i] != ';') return 0;
  const std::string_view name = text.substr(1, i - 1);
  for (const auto& e : kNamedEntities) {
    if (e.name == name) {
      append_utf8(out, e.code_point);
      return i + 1;
    }
  }
  return 0;
}

TextBuilder::TextBuilder() { start_section({}, 0, 0); }

void TextBuilder::put_space_if_pending() {
  if (pending_space_ && !text_.empty() && text_.back() != '\n') text_.push_back(' ');
  pending_space_ = false;
}

void TextBuilder::append_collapsed(std::string_view text) {
  for (char c : text) {
    if (is_space(c)) {
      pending_space_ = true;
      continue;
    }
    put_space_if_pending();
    text_.push_back(c);
  }
}

void TextBuilder::append_verbatim(std::string_view text) {
  put_space_if_pending();
  size_t start = 0;
  bool blank_run = false;
  while (start < text.size()) {
    const size_t nl = text.find('\n', start);
    const bool has_nl = nl != std::string_view::npos;
    std::string_view line = text.substr(start, has_nl ? nl - start : std::string_view::npos);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
    if (line.empty()) {
      blank_run = true;
    } else {
      if (blank_run) paragraph_break();
      blank_run = false;
      text_.append(line);
      if (has_nl) line_break();
    }
    if (!has_nl) break;
    start = nl + 1;
  }
  if (blank_run) paragraph_break();
}

void TextBuilder::line_break() {
  pending_space_ = false;
  while (!text_.empty() && (text_.back() == ' ' || text_.back() == '\t')) text_.pop_back();
  // No newline opens a section, and a line break after a line break is a no-op.
  if (text_.size() == sections_.back().begin || text_.back() == '\n') return;
  text_.push_back('\n');
}

void TextBuilder::paragraph_break() {
  if (text_.size() == sections_.back().begin) return;
  line_break();
  if (text_.size() >= 2 && text_[text_.size() - 2] == '\n') return;
  text_.push_back('\n');
}

void TextBuilder::start_section(std::vector<std::string> path, int level, int page) {
  if (!sections_.empty()) {
    paragraph_break();
    sections_.back().end = text_.size();
  }
  pending_space_ = false;
  Section s;
  s.heading_path = std::move(path);
  s.level = level;
  s.page = page;
  s.begin = text_.size();
  s.end = text_.size();
  sections_.push_back(std::move(s));
}

void TextBuilder::heading(int level, std::string_view title) {
  std::string clean;
  bool space = false;
  for (char c : title) {
    if (is_space(c)) {
      space = !clean.empty();
      continue;
    }
    if (space) clean.push_back(' ');
    space = false;
    clean.push_back(c);
  }
  if (clean.empty()) return;
  level = std::clamp(level, 1, 6);
  while (!heading_stack_.empty() && heading_stack_.back().first >= level) heading_stack_.pop_back();
  heading_stack_.emplace_back(level, clean);
  if (first_heading_.empty() || (level == 1 && !first_is_top_)) {
    if (first_heading_.empty() || level == 1) first_heading_ = clean;
    first_is_top_ = level == 1;
  }
  std::vector<std::string> path;
  path.reserve(heading_stack_.size());
  for (const auto& [l, t] : heading_stack_) path.push_back(t);
  start_section(std::move(path), level, sections_.back().page);
  text_.append(clean);
  line_break();
}

void TextBuilder::start_page(int page) { start_section({}, 0, page); }

ExtractedText TextBuilder::finish(DocumentFormat format) {
  while (!text_.empty() && is_space(text_.back())) text_.pop_back();
  sections_.back().end = text_.size();
  ExtractedText out;
  out.format = format;
  for (auto& s : sections_) {
    s.end = std::min(s.end, text_.size());
    s.begin = std::min(s.begin, s.end);
    if (s.end > s.begin) out.sections.push_back(std::move(s));
  }
  // Sections must tile the text: a dropped empty one leaves no gap, but the text's
  // trimmed end may; the last section reaches the end.
  if (!out.sections.empty()) out.sections.back().end = text_.size();
  out.text = std::move(text_);
  return out;
}

void read_plain_text(std::string_view text, TextBuilder& builder) { builder.append_verbatim(text); }

}  // namespace detail
}  // namespace infera::knowledge
