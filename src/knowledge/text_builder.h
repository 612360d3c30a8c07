// Internal to knowledge/ (the extractors' shared parts; callers use extract.h): the
// builder that lays out extracted text and its sections, input clean-up, and HTML
// character references (HTML and Markdown both decode them).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "knowledge/extract.h"

namespace infera::knowledge::detail {

// Appends text while keeping whitespace tidy: no spaces at line starts or ends, at most
// one blank line in a row, and sections that tile the text. Not thread-safe (one per
// document).
class TextBuilder {
 public:
  TextBuilder();

  // Text whose whitespace runs collapse to one space (HTML, a Markdown paragraph).
  void append_collapsed(std::string_view text);
  // Text kept verbatim apart from line-end spaces (code blocks, <pre>, PDF lines).
  void append_verbatim(std::string_view text);
  void line_break();
  void paragraph_break();

  // Ends the current section and starts one under `title` at `level` (1..6); the
  // heading becomes a line of the text. Blank titles are ignored.
  void heading(int level, std::string_view title);
  // Ends the current section and starts the one for 1-based PDF page `page`.
  void start_page(int page);

  bool empty() const { return text_.empty(); }
  // The first level-1 heading, else the first heading.
  const std::string& first_heading() const { return first_heading_; }

  // Trims the end, drops empty sections. REQUIRES: called once.
  ExtractedText finish(DocumentFormat format);

 private:
  void start_section(std::vector<std::string> path, int level, int page);
  void put_space_if_pending();

  std::string text_;
  std::vector<Section> sections_;
  std::vector<std::pair<int, std::string>> heading_stack_;  // (level, title)
  std::string first_heading_;
  bool first_is_top_ = false;
  bool pending_space_ = false;
};

// Makes raw upload bytes into clean UTF-8: UTF-16 (by BOM) transcoded, UTF-8 BOM
// dropped, invalid sequences repaired, CRLF and CR made LF, form feeds made LF, other
// control characters but tab removed.
std::string clean_input(std::string_view bytes, bool* repaired);

// Decodes the character reference at the start of `text` ("&amp;", "&#233;",
// "&#x1F600;") into `out`; returns the bytes consumed, 0 when it is not one (the
// caller then keeps the '&'). Invalid code points decode to U+FFFD.
size_t decode_entity(std::string_view text, std::string& out);

void append_utf8(std::string& out, char32_t code_point);

// Plain-text, Markdown and HTML readers (knowledge/markdown.cpp, knowledge/html.cpp).
void read_plain_text(std::string_view text, TextBuilder& builder);
void read_markdown(std::string_view text, TextBuilder& builder);
// Returns the <title> text (may be empty).
std::string read_html(std::string_view text, TextBuilder& builder);

}  // namespace infera::knowledge::detail
