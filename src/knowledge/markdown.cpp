// Markdown to text and sections: headings (ATX and setext) become sections, fenced code
// keeps its text, and the inline syntax that only adds noise to retrieval (emphasis
// markers, link targets, image URLs, table rules) goes. A line-by-line reader after
// CommonMark's block structure, not a full parser: nested constructs degrade to text.
#include <string>
#include <string_view>

#include "knowledge/text_builder.h"

namespace infera::knowledge::detail {

namespace {

bool is_blank(std::string_view line) {
  return line.find_first_not_of(" \t") == std::string_view::npos;
}

bool is_word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         static_cast<unsigned char>(c) >= 0x80;
}

// Up to three leading spaces are allowed before block markers.
std::string_view strip_indent(std::string_view line) {
  size_t i = 0;
  while (i < 3 && i < line.size() && line[i] == ' ') ++i;
  return line.substr(i);
}

// "```" or "~~~" (3 or more); returns the fence length and sets *fence_char.
size_t fence_length(std::string_view line, char* fence_char) {
  line = strip_indent(line);
  if (line.empty() || (line[0] != '`' && line[0] != '~')) return 0;
  size_t n = 0;
  while (n < line.size() && line[n] == line[0]) ++n;
  if (n < 3) return 0;
  *fence_char = line[0];
  return n;
}

// "# Title ##" -> level 1, "Title".
int atx_heading(std::string_view line, std::string_view* title) {
  line = strip_indent(line);
  size_t level = 0;
  while (level < line.size() && line[level] == '#') ++level;
  if (level == 0 || level > 6) return 0;
  if (level < line.size() && line[level] != ' ' && line[level] != '\t') return 0;
  std::string_view t = line.substr(level);
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
  size_t closing = t.size();
  while (closing > 0 && t[closing - 1] == '#') --closing;
  if (closing == 0 || t[closing - 1] == ' ' || t[closing - 1] == '\t') t = t.substr(0, closing);
  *title = t;
  return static_cast<int>(level);
}

// A line of only '=' or only '-' (setext underline) returns that char; else 0.
char underline_char(std::string_view line) {
  line = strip_indent(line);
  while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
  if (line.empty() || (line[0] != '=' && line[0] != '-')) return 0;
  for (char c : line) {
    if (c != line[0]) return 0;
  }
  return line[0];
}

// "***", "- - -", "___": a thematic break.
bool is_rule(std::string_view line) {
  line = strip_indent(line);
  char mark = 0;
  int count = 0;
  for (char c : line) {
    if (c == ' ' || c == '\t') continue;
    if (c != '*' && c != '-' && c != '_') return false;
    if (mark != 0 && c != mark) return false;
    mark = c;
    ++count;
  }
  return count >= 3;
}

// "|---|:--:|" or "--- | ---": a table's delimiter row.
bool is_table_rule(std::string_view line) {
  bool pipe = false, dash = false;
  for (char c : line) {
    if (c == '|') {
      pipe = true;
    } else if (c == '-') {
      dash = true;
    } else if (c != ':' && c != ' ' && c != '\t') {
      return false;
    }
  }
  return pipe && dash;
}

// "[id]: http://..." link reference definitions carry no text.
bool is_link_definition(std::string_view line) {
  line = strip_indent(line);
  if (line.empty() || line[0] != '[') return false;
  const size_t close = line.find("]:");
  return close != std::string_view::npos && close > 1;
}

// Finds the ']' closing the '[' at `open`, within a bounded distance so that a line
// of unmatched brackets stays linear.
size_t find_close_bracket(std::string_view s, size_t open) {
  int depth = 0;
  const size_t limit = std::min(s.size(), open + 512);
  for (size_t i = open; i < limit; ++i) {
    if (s[i] == '\\') {
      ++i;
    } else if (s[i] == '[') {
      ++depth;
    } else if (s[i] == ']' && --depth == 0) {
      return i;
    }
  }
  return std::string_view::npos;
}

size_t find_close_paren(std::string_view s, size_t open) {
  int depth = 0;
  const size_t limit = std::min(s.size(), open + 2048);
  for (size_t i = open; i < limit; ++i) {
    if (s[i] == '(') ++depth;
    if (s[i] == ')' && --depth == 0) return i;
  }
  return std::string_view::npos;
}

// Inline Markdown to plain text: code spans keep their text, links and images keep
// their label, emphasis markers and inline tags go, entities and escapes decode.
void append_inline(std::string_view s, std::string& out) {
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '\\' && i + 1 < s.size() && !is_word_char(s[i + 1]) && s[i + 1] != ' ') {
      out.push_back(s[i + 1]);
      i += 2;
    } else if (c == '`') {
      size_t run = 0;
      while (i + run < s.size() && s[i + run] == '`') ++run;
      const size_t close = s.find(std::string(run, '`'), i + run);
      if (close == std::string_view::npos) {
        out.append(s.substr(i, run));
        i += run;
      } else {
        out.append(s.substr(i + run, close - i - run));
        i = close + run;
      }
    } else if (c == '!' && i + 1 < s.size() && s[i + 1] == '[') {
      ++i;  // an image: its alt text is read like a link label
    } else if (c == '[') {
      const size_t close = find_close_bracket(s, i);
      if (close == std::string_view::npos) {
        out.push_back(c);
        ++i;
        continue;
      }
      append_inline(s.substr(i + 1, close - i - 1), out);
      i = close + 1;
      if (i < s.size() && s[i] == '(') {
        const size_t end = find_close_paren(s, i);
        if (end != std::string_view::npos) i = end + 1;
      } else if (i < s.size() && s[i] == '[') {
        const size_t end = find_close_bracket(s, i);
        if (end != std::string_view::npos) i = end + 1;
      }
    } else if (c == '<') {
      // <https://...> autolinks keep the address; inline tags (<br>, <b>) go.
      const size_t close = s.find('>', i);
      const std::string_view inner =
          close == std::string_view::npos ? std::string_view{} : s.substr(i + 1, close - i - 1);
      if (!inner.empty() && inner.find(' ') == std::string_view::npos &&
          (inner.find("://") != std::string_view::npos ||
           inner.find('@') != std::string_view::npos)) {
        out.append(inner);
        i = close + 1;
      } else if (!inner.empty() && (inner[0] == '/' || (inner[0] >= 'a' && inner[0] <= 'z') ||
                                    (inner[0] >= 'A' && inner[0] <= 'Z') || inner[0] == '!')) {
        i = close + 1;
      } else {
        out.push_back(c);
        ++i;
      }
    } else if (c == '&') {
      const size_t n = decode_entity(s.substr(i), out);
      if (n == 0) out.push_back(c);
      i += n == 0 ? 1 : n;
    } else if (c == '*' || c == '~' || c == '_') {
      size_t run = 0;
      while (i + run < s.size() && s[i + run] == c) ++run;
      const char before = i > 0 ? s[i - 1] : ' ';
      const char after = i + run < s.size() ? s[i + run] : ' ';
      // A delimiter touches text on one side; "2 * 3" and snake_case are text.
      const bool flanking = (before == ' ') != (after == ' ') ||
                            (before != ' ' && !is_word_char(before)) ||
                            (after != ' ' && !is_word_char(after));
      const bool keep = (c == '_' && is_word_char(before) && is_word_char(after)) ||
                        (c == '~' && run < 2) || !flanking;
      if (keep) out.append(s.substr(i, run));
      i += run;
    } else {
      out.push_back(c);
      ++i;
    }
  }
}

// What starts a line of its own: a list item or a table row. Other lines continue the
// paragraph (a soft line break is a space, as CommonMark renders it).
enum class LineKind { kText, kBullet, kOrdered, kTableRow };

// "1. item", "12) item": an ordered list item (CommonMark allows up to 9 digits).
bool is_ordered_item(std::string_view t) {
  size_t digits = 0;
  while (digits < t.size() && digits < 10 && t[digits] >= '0' && t[digits] <= '9') ++digits;
  if (digits == 0 || digits > 9 || digits + 1 >= t.size()) return false;
  return (t[digits] == '.' || t[digits] == ')') && (t[digits + 1] == ' ' || t[digits + 1] == '\t');
}

// "- item", "* item", "+ item", "1. item", "> quote": quote markers and bullets are
// dropped (bullets become "- " so list items stay visibly separate lines); an ordered
// item keeps its number.
std::string_view strip_container_markers(std::string_view line, LineKind* kind) {
  *kind = LineKind::kText;
  for (;;) {
    std::string_view t = strip_indent(line);
    if (!t.empty() && t[0] == '>') {
      t.remove_prefix(1);
      if (!t.empty() && t[0] == ' ') t.remove_prefix(1);
      line = t;
      continue;
    }
    break;
  }
  size_t i = line.find_first_not_of(" \t");
  if (i == std::string_view::npos) return {};
  std::string_view t = line.substr(i);
  if (t.size() >= 2 && (t[0] == '-' || t[0] == '*' || t[0] == '+') &&
      (t[1] == ' ' || t[1] == '\t')) {
    *kind = LineKind::kBullet;
    t.remove_prefix(2);
    // Task lists: "- [ ] todo", "- [x] done".
    if (t.size() >= 4 && t[0] == '[' && t[2] == ']' && t[3] == ' ') t.remove_prefix(4);
  } else if (is_ordered_item(t)) {
    *kind = LineKind::kOrdered;
  } else if (t[0] == '|') {
    *kind = LineKind::kTableRow;
  }
  return t;
}

}  // namespace

void read_markdown(std::string_view text, TextBuilder& builder) {
  size_t pos = 0;
  size_t line_begin = 0;
  auto next_line = [&](std::string_view* line) {
    if (pos >= text.size()) return false;
    line_begin = pos;
    const size_t nl = text.find('\n', pos);
    const size_t end = nl == std::string_view::npos ? text.size() : nl;
    *line = text.substr(pos, end - pos);
    pos = end + 1;
    return true;
  };

  std::string_view line;
  // YAML front matter is metadata, not text.
  if (text.substr(0, 4) == "---\n") {
    const size_t close = text.find("\n---", 3);
    if (close != std::string_view::npos) {
      const size_t nl = text.find('\n', close + 4);
      pos = nl == std::string_view::npos ? text.size() : nl + 1;
    }
  }

  // The last paragraph line is held back: a setext underline may make it a heading.
  std::string pending;
  bool has_pending = false;
  bool pending_starts_paragraph = false;
  bool pending_ends_line = false;  // a table row or a hard line break
  bool paragraph_open = false;
  bool in_table = false;  // after a table's delimiter row, until a blank line
  auto flush_pending = [&]() {
    if (!has_pending) return;
    builder.append_collapsed(pending);
    if (pending_ends_line) {
      builder.line_break();
    } else {
      builder.append_collapsed(" ");  // a soft break; dropped at a line or paragraph end
    }
    has_pending = false;
  };
  auto end_paragraph = [&]() {
    flush_pending();
    builder.paragraph_break();
    paragraph_open = false;
    in_table = false;
  };

  char fence_char = 0;
  size_t fence_len = 0;
  while (next_line(&line)) {
    if (fence_len > 0) {
      char c = 0;
      const size_t n = fence_length(line, &c);
      if (n >= fence_len && c == fence_char && is_blank(strip_indent(line).substr(n))) {
        fence_len = 0;
        builder.paragraph_break();
      } else {
        builder.append_verbatim(line);
        builder.line_break();
      }
      continue;
    }
    if (const size_t n = fence_length(line, &fence_char); n > 0) {
      end_paragraph();
      fence_len = n;
      continue;
    }
    if (is_blank(line)) {
      end_paragraph();
      continue;
    }
    std::string_view title;
    if (const int level = atx_heading(line, &title); level > 0) {
      end_paragraph();
      std::string clean;
      append_inline(title, clean);
      builder.heading(level, clean);
      continue;
    }
    if (const char u = underline_char(line); u != 0) {
      if (has_pending && pending_starts_paragraph) {
        builder.heading(u == '=' ? 1 : 2, pending);
        has_pending = false;
        paragraph_open = false;
        continue;
      }
      if (u == '-' && is_rule(line)) {
        end_paragraph();
        continue;
      }
    }
    if (is_table_rule(line) && has_pending && !is_rule(line)) {
      // The header row above stays with the rows below.
      pending_ends_line = true;
      flush_pending();
      in_table = true;
      continue;
    }
    if (is_rule(line) || is_table_rule(line) || is_link_definition(line)) {
      end_paragraph();
      continue;
    }
    if (line.find("<!--") != std::string_view::npos) {
      // HTML comments, usually whole lines in Markdown; skip to the closing marker.
      const size_t open = line_begin + line.find("<!--");
      const size_t close = text.find("-->", open + 4);
      if (close == std::string_view::npos) break;
      const std::string_view before = text.substr(line_begin, open - line_begin);
      if (!is_blank(before)) {
        std::string clean;
        append_inline(before, clean);
        flush_pending();
        builder.append_collapsed(clean);
        builder.append_collapsed(" ");
      }
      pos = close + 3;
      continue;
    }
    LineKind kind = LineKind::kText;
    std::string_view body = strip_container_markers(line, &kind);
    if (in_table && kind == LineKind::kText && body.find('|') != std::string_view::npos) {
      kind = LineKind::kTableRow;
    }
    // Table rows lose their outer pipes.
    if (kind == LineKind::kTableRow) {
      if (!body.empty() && body[0] == '|') body.remove_prefix(1);
      while (!body.empty() && (body.back() == ' ' || body.back() == '|')) body.remove_suffix(1);
    }
    // A hard line break: two trailing spaces or a trailing backslash.
    bool hard_break = line.size() >= 2 && line.substr(line.size() - 2) == "  ";
    if (body.size() >= 2 && body.back() == '\\' && body[body.size() - 2] != '\\') {
      body.remove_suffix(1);
      hard_break = true;
    }
    flush_pending();
    if (kind != LineKind::kText) builder.line_break();
    pending.clear();
    if (kind == LineKind::kBullet) pending = "- ";
    append_inline(body, pending);
    has_pending = true;
    pending_ends_line = hard_break || kind == LineKind::kTableRow;
    pending_starts_paragraph = !paragraph_open && kind == LineKind::kText;
    paragraph_open = true;
  }
  end_paragraph();
}

}  // namespace infera::knowledge::detail
