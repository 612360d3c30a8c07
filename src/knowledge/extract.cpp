// extract.h: format detection, the PDF reader (poppler-cpp), and the dispatch to the
// text readers of text_builder.h.
#include "knowledge/extract.h"

#include <poppler/cpp/poppler-document.h>
#include <poppler/cpp/poppler-global.h>
#include <poppler/cpp/poppler-page.h>

#include <climits>
#include <memory>
#include <mutex>

#include "core/log.h"
#include "knowledge/text_builder.h"

namespace infera::knowledge {

namespace {

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

struct Known {
  std::string_view name;
  int format;  // a DocumentFormat, or -1 for a known unsupported type
};

constexpr Known kMimeTypes[] = {
    {"text/plain", 0},
    {"text/markdown", 1},
    {"text/x-markdown", 1},
    {"text/html", 2},
    {"application/xhtml+xml", 2},
    {"application/pdf", 3},
    {"application/x-pdf", 3},
    {"text/csv", 0},
    {"application/msword", -1},
    {"application/zip", -1},
    {"application/rtf", -1},
    {"image/", -1},
    {"audio/", -1},
    {"video/", -1},
    {"application/vnd.", -1},
};

constexpr Known kExtensions[] = {
    {"txt", 0},   {"text", 0},  {"log", 0},  {"csv", 0},   {"md", 1},    {"markdown", 1},
    {"mdown", 1}, {"mkd", 1},   {"html", 2}, {"htm", 2},   {"xhtml", 2}, {"pdf", 3},
    {"doc", -1},  {"docx", -1}, {"odt", -1}, {"rtf", -1},  {"pptx", -1}, {"xlsx", -1},
    {"zip", -1},  {"png", -1},  {"jpg", -1}, {"jpeg", -1}, {"gif", -1},  {"epub", -1},
};

// From a MIME type or a file name; 4 = unknown.
int format_from_hint(std::string_view hint, std::string* unsupported) {
  const std::string h = lower_ascii(trim(hint.substr(0, hint.find(';'))));
  if (h.empty()) return 4;
  for (const auto& k : kMimeTypes) {
    const bool prefix = k.name.back() == '/' || k.name.back() == '.';
    if (prefix ? h.rfind(k.name, 0) == 0 : h == k.name) {
      if (k.format < 0) *unsupported = "documents of type " + h;
      return k.format < 0 ? 5 : k.format;
    }
  }
  const size_t dot = h.rfind('.');
  if (dot == std::string::npos || h.find('/', dot) != std::string::npos) return 4;
  const std::string_view ext = std::string_view(h).substr(dot + 1);
  for (const auto& k : kExtensions) {
    if (k.name == ext) {
      if (k.format < 0) *unsupported = "." + std::string(ext) + " files";
      return k.format < 0 ? 5 : k.format;
    }
  }
  return 4;
}

bool has_pdf_magic(std::string_view bytes) {
  // The PDF reference lets the header start within the first 1024 bytes.
  return bytes.substr(0, 1024).find("%PDF-") != std::string_view::npos;
}

bool looks_like_html(std::string_view bytes) {
  std::string_view head = bytes.substr(0, 512);
  if (head.substr(0, 3) == "\xEF\xBB\xBF") head.remove_prefix(3);
  const size_t start = head.find_first_not_of(" \t\r\n");
  if (start == std::string_view::npos) return false;
  const std::string h = lower_ascii(head.substr(start));
  for (std::string_view p : {"<!doctype html", "<html", "<head", "<body", "<!--"}) {
    if (h.rfind(p, 0) == 0) return true;
  }
  return false;
}

// "PNG", "JPEG", "GIF", "WebP" from the magic bytes; empty otherwise (other image formats
// hold NULs early and are caught as binary).
std::string_view image_kind(std::string_view bytes) {
  if (bytes.substr(0, 8) == "\x89PNG\r\n\x1A\n") return "PNG";
  if (bytes.substr(0, 3) == "\xFF\xD8\xFF") return "JPEG";
  if (bytes.substr(0, 6) == "GIF87a" || bytes.substr(0, 6) == "GIF89a") return "GIF";
  if (bytes.substr(0, 4) == "RIFF" && bytes.substr(8, 4) == "WEBP") return "WebP";
  return {};
}

// Binary data (NULs in the first 8 KiB without a UTF-16 byte-order mark).
bool looks_binary(std::string_view bytes) {
  if (bytes.size() >= 2 &&
      ((bytes[0] == '\xFF' && bytes[1] == '\xFE') || (bytes[0] == '\xFE' && bytes[1] == '\xFF'))) {
    return false;
  }
  return bytes.substr(0, 8192).find('\0') != std::string_view::npos;
}

void on_poppler_message(const std::string& message, void*) {
  log::debug("knowledge.pdf_message", "poppler: {}", message);
}

Result<ExtractedText> extract_pdf(std::string_view bytes) {
  static std::once_flag once;
  std::call_once(once, [] { poppler::set_debug_error_function(on_poppler_message, nullptr); });
  if (bytes.size() > static_cast<size_t>(INT_MAX)) {
    return Status::InvalidArgument("PDF of " + std::to_string(bytes.size()) +
                                   " bytes is larger than the reader supports (2 GiB)");
  }
  // poppler reads from `bytes` in place; they outlive `doc`.
  std::unique_ptr<poppler::document> doc(
      poppler::document::load_from_raw_data(bytes.data(), static_cast<int>(bytes.size())));
  if (!doc) {
    return Status::InvalidArgument(
        "PDF could not be read: the file is damaged or not a PDF (no valid document structure "
        "found)");
  }
  if (doc->is_locked()) {
    return Status::InvalidArgument(
        "PDF is encrypted and needs a password to open; upload an unprotected copy");
  }
  const int pages = doc->pages();
  if (pages <= 0) return Status::InvalidArgument("PDF has no pages (the file is damaged)");

  detail::TextBuilder builder;
  bool repaired = false;
  for (int i = 0; i < pages; ++i) {
    std::unique_ptr<poppler::page> page(doc->create_page(i));
    builder.start_page(i + 1);
    if (!page) continue;
    // Reading order (as pdftotext prints it), not the physical layout's padded columns.
    const poppler::byte_array utf8 =
        page->text(poppler::rectf(), poppler::page::non_raw_non_physical_layout).to_utf8();
    bool page_repaired = false;
    const std::string text =
        detail::clean_input(std::string_view(utf8.data(), utf8.size()), &page_repaired);
    repaired = repaired || page_repaired;
    builder.append_verbatim(text);
  }
  ExtractedText out = builder.finish(DocumentFormat::kPdf);
  out.page_count = pages;
  out.repaired_utf8 = repaired;
  if (out.text.empty()) {
    return Status::InvalidArgument("PDF has " + std::to_string(pages) +
                                   " page(s) but no text layer (a scanned document?); OCR is "
                                   "not supported");
  }
  const poppler::ustring title = doc->info_key("Title");
  if (!title.empty()) {
    const poppler::byte_array t = title.to_utf8();
    out.title = detail::clean_input(std::string_view(t.data(), t.size()), nullptr);
  }
  return out;
}

}  // namespace

std::string_view format_name(DocumentFormat format) {
  switch (format) {
    case DocumentFormat::kPlainText:
      return "text";
    case DocumentFormat::kMarkdown:
      return "markdown";
    case DocumentFormat::kHtml:
      return "html";
    case DocumentFormat::kPdf:
      return "pdf";
  }
  return "text";
}

std::string Section::heading() const {
  std::string out;
  for (const auto& part : heading_path) {
    if (!out.empty()) out += " > ";
    out += part;
  }
  return out;
}

Result<DocumentFormat> detect_format(std::string_view bytes, std::string_view hint) {
  std::string unsupported;
  const int from_hint = format_from_hint(hint, &unsupported);
  if (from_hint == 5) {
    return Status::Unsupported(unsupported +
                               " are not supported; upload plain text, Markdown, HTML or PDF");
  }
  // Magic bytes that say what a file is win over a text hint: uploads are often labelled
  // by a name alone, and a renamed PDF, image or Office file read as text would index
  // replacement characters.
  if (bytes.substr(0, 1024).find("%PDF-") < 16) return DocumentFormat::kPdf;
  if (from_hint == static_cast<int>(DocumentFormat::kPdf)) return DocumentFormat::kPdf;
  if (bytes.substr(0, 4) == "PK\x03\x04") {
    return Status::Unsupported(
        "document is a ZIP container (Office or EPUB?), which is not supported; upload plain "
        "text, Markdown, HTML or PDF");
  }
  if (const std::string_view image = image_kind(bytes); !image.empty()) {
    return Status::Unsupported("document is a " + std::string(image) +
                               " image, which is not supported (no OCR); upload plain text, "
                               "Markdown, HTML or PDF");
  }
  if (looks_binary(bytes)) {
    return Status::Unsupported(
        "document is binary data, not text; upload plain text, Markdown, HTML or PDF");
  }
  if (from_hint < 4) return static_cast<DocumentFormat>(from_hint);
  if (has_pdf_magic(bytes)) return DocumentFormat::kPdf;
  if (looks_like_html(bytes)) return DocumentFormat::kHtml;
  return DocumentFormat::kPlainText;
}

Result<ExtractedText> extract_as(DocumentFormat format, std::string_view bytes) {
  if (format == DocumentFormat::kPdf) return extract_pdf(bytes);
  bool repaired = false;
  const std::string clean = detail::clean_input(bytes, &repaired);
  detail::TextBuilder builder;
  std::string title;
  switch (format) {
    case DocumentFormat::kPlainText:
      detail::read_plain_text(clean, builder);
      break;
    case DocumentFormat::kMarkdown:
      detail::read_markdown(clean, builder);
      break;
    case DocumentFormat::kHtml:
      title = detail::read_html(clean, builder);
      break;
    case DocumentFormat::kPdf:
      break;
  }
  if (title.empty()) title = builder.first_heading();
  ExtractedText out = builder.finish(format);
  if (out.text.empty()) {
    return Status::InvalidArgument(std::string("document (") + std::string(format_name(format)) +
                                   ") contains no text");
  }
  out.title = std::move(title);
  out.repaired_utf8 = repaired;
  return out;
}

Result<ExtractedText> extract(std::string_view bytes, std::string_view mime_or_filename_hint) {
  Result<DocumentFormat> format = detect_format(bytes, mime_or_filename_hint);
  if (!format.ok()) return format.status();
  return extract_as(*format, bytes);
}

}  // namespace infera::knowledge
