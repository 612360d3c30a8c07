// HTML to text and sections: a tolerant single-pass tag stripper, not a DOM parser.
// script/style/head content is dropped (the <title> kept), block elements end lines,
// h1-h6 start sections, character references decode, <pre> keeps its whitespace.
// Malformed markup (unclosed tags, stray '<', missing end tags) degrades to text; every
// byte is looked at a bounded number of times, so the pass is linear.
#include <array>
#include <string>
#include <string_view>

#include "knowledge/text_builder.h"

namespace infera::knowledge::detail {

namespace {

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

bool is_name_char(char c) {
  return is_alpha(c) || (c >= '0' && c <= '9') || c == '-' || c == ':' || c == '_';
}

// Case-insensitive search for an ASCII needle (lower case).
size_t find_ci(std::string_view hay, std::string_view needle, size_t from) {
  if (needle.empty() || hay.size() < needle.size()) return std::string_view::npos;
  for (size_t i = from; i + needle.size() <= hay.size(); ++i) {
    if (lower(hay[i]) != needle[0]) continue;
    size_t k = 1;
    while (k < needle.size() && lower(hay[i + k]) == needle[k]) ++k;
    if (k == needle.size()) return i;
  }
  return std::string_view::npos;
}

// Elements whose content is never text.
constexpr std::array<std::string_view, 6> kDropped{"script",   "style", "noscript",
                                                   "template", "svg",   "iframe"};
// Elements that end a paragraph.
constexpr std::array<std::string_view, 22> kParagraphTags{
    "p",       "blockquote", "pre",     "table",    "ul",    "ol",   "dl",     "section",
    "article", "header",     "footer",  "nav",      "aside", "main", "figure", "form",
    "hr",      "address",    "details", "fieldset", "h1",    "body"};
// Elements that end a line.
constexpr std::array<std::string_view, 12> kLineTags{"br",      "div",    "li",         "tr",
                                                     "dd",      "dt",     "figcaption", "summary",
                                                     "caption", "option", "label",      "legend"};

// Elements that belong in <head>; any other start tag (or text) there means the author
// left out </head> and <body>, and the body has begun (as browsers read it).
constexpr std::array<std::string_view, 10> kHeadTags{
    "html", "head", "title", "meta", "link", "style", "script", "base", "noscript", "template"};

template <size_t N>
bool in(const std::array<std::string_view, N>& list, std::string_view name) {
  for (auto n : list) {
    if (n == name) return true;
  }
  return false;
}

int heading_level(std::string_view name) {
  if (name.size() == 2 && name[0] == 'h' && name[1] >= '1' && name[1] <= '6') return name[1] - '0';
  return 0;
}

class HtmlReader {
 public:
  HtmlReader(std::string_view html, TextBuilder& builder) : html_(html), builder_(builder) {}

  std::string run() {
    size_t i = 0;
    while (i < html_.size()) {
      const char c = html_[i];
      if (c == '<') {
        i = tag(i);
      } else if (c == '&') {
        std::string decoded;
        const size_t n = decode_entity(html_.substr(i), decoded);
        if (n == 0) {
          emit("&");
          ++i;
        } else {
          emit(decoded);
          i += n;
        }
      } else {
        size_t j = i;
        while (j < html_.size() && html_[j] != '<' && html_[j] != '&') ++j;
        emit(html_.substr(i, j - i));
        i = j;
      }
    }
    end_heading();
    return title_;
  }

 private:
  void emit(std::string_view text) {
    if (in_title_) {
      title_.append(text);
      return;
    }
    if (in_head_) {
      if (text.find_first_not_of(" \t\n") == std::string_view::npos) return;
      in_head_ = false;
    }
    if (heading_level_ > 0) {
      heading_text_.append(text);
    } else if (pre_depth_ > 0) {
      builder_.append_verbatim(text);
    } else {
      builder_.append_collapsed(text);
    }
  }

  void end_heading() {
    if (heading_level_ == 0) return;
    builder_.heading(heading_level_, heading_text_);
    heading_level_ = 0;
    heading_text_.clear();
  }

  // The '>' ending the tag that starts at `i`, honouring quoted attribute values. A
  // quote left open to the end of the input makes quotes untrusted from then on (the
  // first '>' ends each tag), so no byte is scanned to the end twice. npos: no '>'.
  size_t tag_end(size_t i) {
    if (!quotes_untrusted_) {
      char quote = 0;
      char previous = 0;  // the last non-space character outside quotes
      for (size_t k = i; k < html_.size(); ++k) {
        const char c = html_[k];
        if (quote != 0) {
          if (c == quote) quote = 0;
        } else if ((c == '"' || c == '\'') && previous == '=') {
          quote = c;  // only a value's quotes count: title=don't is not one
        } else if (c == '>') {
          return k;
        }
        if (quote == 0 && c != ' ' && c != '\t' && c != '\n') previous = c;
      }
      quotes_untrusted_ = true;
    }
    return html_.find('>', i);
  }

  // Handles the markup at html_[i] == '<'; returns where reading continues.
  size_t tag(size_t i) {
    if (no_more_tags_) {
      emit("<");
      return i + 1;
    }
    const std::string_view rest = html_.substr(i);
    if (rest.substr(0, 4) == "<!--") {
      const size_t close = html_.find("-->", i + 4);
      return close == std::string_view::npos ? html_.size() : close + 3;
    }
    const bool closing = rest.size() > 1 && rest[1] == '/';
    const size_t name_begin = i + (closing ? 2 : 1);
    const bool declaration = rest.size() > 1 && (rest[1] == '!' || rest[1] == '?');
    if (!declaration && (name_begin >= html_.size() || !is_alpha(html_[name_begin]))) {
      emit("<");  // "a < b" is text
      return i + 1;
    }
    const size_t end = tag_end(i);
    if (end == std::string_view::npos) {
      // Unterminated: no later '<' can close either, so the rest is text.
      no_more_tags_ = true;
      emit("<");
      return i + 1;
    }
    if (declaration) return end + 1;
    std::string name;
    for (size_t k = name_begin; k < end && is_name_char(html_[k]); ++k)
      name.push_back(lower(html_[k]));
    const bool self_closing = end > i && html_[end - 1] == '/';

    if (!closing && in(kDropped, name) && !self_closing) {
      const size_t close = find_ci(html_, "</" + name, end + 1);
      if (close == std::string_view::npos) return html_.size();
      const size_t gt = html_.find('>', close);
      return gt == std::string_view::npos ? html_.size() : gt + 1;
    }
    if (in_head_ && !closing && !in(kHeadTags, name)) in_head_ = false;
    if (name == "head") {
      in_head_ = !closing;
    } else if (name == "body") {
      in_head_ = false;
    } else if (name == "title") {
      in_title_ = !closing && title_.empty();
      return end + 1;
    }
    if (const int level = heading_level(name); level > 0) {
      end_heading();
      if (!closing && !in_head_) heading_level_ = level;
      return end + 1;
    }
    if (name == "pre") {
      if (closing) {
        if (pre_depth_ > 0) --pre_depth_;
      } else {
        ++pre_depth_;
      }
      builder_.paragraph_break();
      return end + 1;
    }
    if (heading_level_ > 0) {
      // A block inside a heading ends it only when it is a paragraph-level element;
      // inline markup (<a>, <span>, <br>) stays part of the title.
      if (in(kParagraphTags, name)) {
        end_heading();
      } else {
        if (in(kLineTags, name)) heading_text_.push_back(' ');
        return end + 1;
      }
    }
    if (in_head_) return end + 1;
    if (in(kParagraphTags, name)) {
      builder_.paragraph_break();
    } else if (in(kLineTags, name)) {
      builder_.line_break();
      if (name == "li" && !closing) builder_.append_collapsed("- ");
    } else if ((name == "td" || name == "th") && !closing) {
      if (cell_open_) builder_.append_collapsed(" | ");
      cell_open_ = true;
    }
    if (name == "tr") cell_open_ = false;
    return end + 1;
  }

  std::string_view html_;
  TextBuilder& builder_;
  std::string title_;
  std::string heading_text_;
  int heading_level_ = 0;
  int pre_depth_ = 0;
  bool in_head_ = false;
  bool in_title_ = false;
  bool cell_open_ = false;
  bool no_more_tags_ = false;
  bool quotes_untrusted_ = false;
};

}  // namespace

std::string read_html(std::string_view text, TextBuilder& builder) {
  std::string title = HtmlReader(text, builder).run();
  std::string clean;
  bool space = false;
  for (char c : title) {
    if (c == ' ' || c == '\t' || c == '\n') {
      space = !clean.empty();
      continue;
    }
    if (space) clean.push_back(' ');
    space = false;
    clean.push_back(c);
  }
  return clean;
}

}  // namespace infera::knowledge::detail
