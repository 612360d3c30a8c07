// Document text extraction: an uploaded file (plain text, Markdown, HTML or PDF) becomes
// one UTF-8 text plus its structure, the sections a chunk cites ("Intro > Setup",
// "page 3").
//
//   auto doc = knowledge::extract(body, "notes.md");        // or "application/pdf"
//   if (!doc.ok()) return doc.status();                     // InvalidArgument / Unsupported
//   for (const auto& s : doc->sections) ... doc->text.substr(s.begin, s.end - s.begin)
//
// The caller enforces size limits; extraction of text formats is linear in the input
// (PDF cost is poppler's). Output is always valid UTF-8: invalid input bytes become
// U+FFFD. Thread-safe (no shared state besides poppler's own).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace infera::knowledge {

enum class DocumentFormat { kPlainText, kMarkdown, kHtml, kPdf };

std::string_view format_name(DocumentFormat format);  // "text", "markdown", "html", "pdf"

// A run of the text under one heading (or one PDF page). Sections tile `text` in order:
// each begins where the previous ends.
struct Section {
  std::vector<std::string> heading_path;  // {"Intro", "Setup"}; empty before any heading
  int level = 0;                          // heading level 1..6; 0 without a heading
  int page = 0;                           // 1-based PDF page; 0 for formats without pages
  size_t begin = 0;                       // byte range in ExtractedText::text
  size_t end = 0;

  // "Intro > Setup"; empty without a heading.
  std::string heading() const;
};

struct ExtractedText {
  DocumentFormat format = DocumentFormat::kPlainText;
  std::string title;              // HTML <title>, else the first top heading; may be empty
  std::string text;               // the whole document; headings kept as plain lines
  std::vector<Section> sections;  // never empty when extract() succeeds
  int page_count = 0;             // PDF only
  bool repaired_utf8 = false;     // invalid UTF-8 was replaced by U+FFFD
};

// Picks the format from `hint` — a MIME type ("text/html; charset=utf-8") or a file
// name ("notes.md") — then from magic bytes. Magic bytes win over a text hint (browsers
// often label uploads wrongly; reading a PDF as text would index binary): a "%PDF-"
// header is a PDF, and ZIP containers, images and data with NULs are Unsupported
// whatever the hint. Unsupported too for hints naming non-text formats (Office, images,
// archives). A PDF hint goes to the PDF reader, which names the damage if it is none.
Result<DocumentFormat> detect_format(std::string_view bytes, std::string_view hint);

// Extracts text and sections. InvalidArgument names the problem for a damaged or
// password-protected PDF and for a document with no text at all.
Result<ExtractedText> extract(std::string_view bytes, std::string_view mime_or_filename_hint);

// The same with the format already known.
Result<ExtractedText> extract_as(DocumentFormat format, std::string_view bytes);

// Replaces each maximal invalid UTF-8 subsequence (bad lead byte, truncated sequence,
// overlong form, surrogate, > U+10FFFF) with U+FFFD; sets *repaired when it did. Linear.
std::string repair_utf8(std::string_view bytes, bool* repaired = nullptr);

}  // namespace infera::knowledge
