// knowledge/extract.h: format detection, the Markdown, HTML and plain-text readers, UTF-8
// repair, and PDF text through poppler on a PDF written by hand in the test.
#include "knowledge/extract.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace infera::knowledge {
namespace {

std::string section_text(const ExtractedText& doc, const Section& s) {
  return doc.text.substr(s.begin, s.end - s.begin);
}

// Sections tile the text: in order, without gaps, from 0 to the end.
void expect_tiled(const ExtractedText& doc) {
  ASSERT_FALSE(doc.sections.empty());
  EXPECT_EQ(doc.sections.front().begin, 0u);
  EXPECT_EQ(doc.sections.back().end, doc.text.size());
  for (size_t i = 0; i < doc.sections.size(); ++i) {
    EXPECT_LT(doc.sections[i].begin, doc.sections[i].end) << "section " << i << " is empty";
    if (i > 0) {
      EXPECT_EQ(doc.sections[i].begin, doc.sections[i - 1].end) << "gap before " << i;
    }
  }
}

// A minimal PDF 1.4 file written object by object, with a cross-reference table whose
// offsets are the real ones (PDF 32000-1:2008, 7.5: file structure). Each page shows
// its lines in Helvetica, one text object per page.
std::string make_pdf(const std::vector<std::vector<std::string>>& pages, std::string_view title) {
  std::string pdf = "%PDF-1.4\n%\xE2\xE3\xCF\xD3\n";
  std::vector<size_t> offsets;  // offsets[k] is object k+1's
  auto object = [&](const std::string& body) {
    offsets.push_back(pdf.size());
    pdf += std::to_string(offsets.size()) + " 0 obj\n" + body + "\nendobj\n";
  };
  const size_t n = pages.size();
  // Objects: 1 catalog, 2 page tree, 3 font, 4 info, then (page, contents) per page.
  std::string kids;
  for (size_t p = 0; p < n; ++p) kids += std::to_string(5 + 2 * p) + " 0 R ";
  object("<< /Type /Catalog /Pages 2 0 R >>");
  object("<< /Type /Pages /Kids [" + kids + "] /Count " + std::to_string(n) + " >>");
  object("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>");
  object("<< /Title (" + std::string(title) + ") /Producer (infera test) >>");
  for (size_t p = 0; p < n; ++p) {
    object(
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 "
        "0 R >> >> /Contents " +
        std::to_string(6 + 2 * p) + " 0 R >>");
    std::string stream = "BT\n/F1 12 Tf\n14 TL\n72 720 Td\n";
    for (const auto& line : pages[p]) stream += "(" + line + ") Tj T*\n";
    stream += "ET";
    object("<< /Length " + std::to_string(stream.size()) + " >>\nstream\n" + stream +
           "\nendstream");
  }
  const size_t xref = pdf.size();
  pdf += "xref\n0 " + std::to_string(offsets.size() + 1) + "\n0000000000 65535 f \n";
  for (size_t off : offsets) {
    std::string digits = std::to_string(off);
    pdf += std::string(10 - digits.size(), '0') + digits + " 00000 n \n";  // 20 bytes each
  }
  pdf += "trailer\n<< /Size " + std::to_string(offsets.size() + 1) +
         " /Root 1 0 R /Info 4 0 R >>\nstartxref\n" + std::to_string(xref) + "\n%%EOF\n";
  return pdf;
}

// --- format detection ------------------------------------------------------------------

TEST(DetectFormat, HintsByMimeTypeAndFileName) {
  EXPECT_EQ(*detect_format("hello", "text/plain"), DocumentFormat::kPlainText);
  EXPECT_EQ(*detect_format("hello", "text/markdown; charset=utf-8"), DocumentFormat::kMarkdown);
  EXPECT_EQ(*detect_format("hello", "TEXT/HTML;charset=UTF-8"), DocumentFormat::kHtml);
  EXPECT_EQ(*detect_format("hello", "notes.md"), DocumentFormat::kMarkdown);
  EXPECT_EQ(*detect_format("hello", "Chapter 1.MARKDOWN"), DocumentFormat::kMarkdown);
  EXPECT_EQ(*detect_format("hello", "index.htm"), DocumentFormat::kHtml);
  EXPECT_EQ(*detect_format("hello", "data.csv"), DocumentFormat::kPlainText);
  EXPECT_EQ(*detect_format("hello", "README"), DocumentFormat::kPlainText);
  EXPECT_EQ(*detect_format("hello", ""), DocumentFormat::kPlainText);
}

TEST(DetectFormat, MagicBytesDecideWithoutAHint) {
  EXPECT_EQ(*detect_format("%PDF-1.7\n...", ""), DocumentFormat::kPdf);
  EXPECT_EQ(*detect_format("  <!DOCTYPE html><p>x", "application/octet-stream"),
            DocumentFormat::kHtml);
  EXPECT_EQ(*detect_format("\xEF\xBB\xBF<html><body>x", ""), DocumentFormat::kHtml);
  EXPECT_EQ(*detect_format("# Title\n\ntext", ""), DocumentFormat::kPlainText);
}

TEST(DetectFormat, PdfHeaderWinsOverATextHint) {
  EXPECT_EQ(*detect_format("%PDF-1.4\n%...", "notes.txt"), DocumentFormat::kPdf);
  EXPECT_EQ(*detect_format("%PDF-1.4\n%...", "text/html"), DocumentFormat::kPdf);
}

TEST(DetectFormat, RefusesOfficeImagesArchivesAndBinary) {
  for (std::string_view hint : {"report.docx", "slides.pptx", "sheet.xlsx", "book.epub",
                                "photo.JPG", "application/msword", "image/png",
                                "application/vnd.openxmlformats-officedocument.wordprocessingml"
                                ".document"}) {
    const auto r = detect_format("some bytes", hint);
    ASSERT_FALSE(r.ok()) << hint;
    EXPECT_EQ(r.status().code(), StatusCode::kUnsupported) << hint;
    EXPECT_NE(r.status().message().find("not supported"), std::string::npos) << hint;
  }
  const auto zip = detect_format(std::string("PK\x03\x04\x14\x00", 6), "");
  ASSERT_FALSE(zip.ok());
  EXPECT_NE(zip.status().message().find("ZIP"), std::string::npos) << zip.status().message();
  const auto binary = detect_format(std::string("\x7F"
                                                "ELF\x02\x01\x01\x00\x00",
                                                9),
                                    "");
  ASSERT_FALSE(binary.ok());
  EXPECT_EQ(binary.status().code(), StatusCode::kUnsupported);
}

TEST(DetectFormat, BinaryMagicWinsOverATextHint) {
  // Uploads are often labelled by their name alone: a renamed image or Office file is
  // still refused instead of being indexed as replacement characters.
  const std::string png("\x89PNG\r\n\x1A\n\x00\x00\x00\x0DIHDR", 16);
  for (std::string_view hint : {"notes.txt", "text/plain", "page.html", "notes.md"}) {
    const auto r = detect_format(png, hint);
    ASSERT_FALSE(r.ok()) << hint;
    EXPECT_EQ(r.status().code(), StatusCode::kUnsupported) << hint;
  }
  const auto zip = detect_format(std::string("PK\x03\x04\x14\x00\x06\x00", 8), "notes.txt");
  ASSERT_FALSE(zip.ok());
  EXPECT_EQ(zip.status().code(), StatusCode::kUnsupported);
}

TEST(DetectFormat, Utf16WithByteOrderMarkIsText) {
  const std::string utf16le("\xFF\xFEh\0i\0", 6);
  EXPECT_EQ(*detect_format(utf16le, ""), DocumentFormat::kPlainText);
  const auto doc = extract(utf16le, "a.txt");
  ASSERT_TRUE(doc.ok()) << doc.status().message();
  EXPECT_EQ(doc->text, "hi");
}

TEST(DetectFormat, NamesFormats) {
  EXPECT_EQ(format_name(DocumentFormat::kPlainText), "text");
  EXPECT_EQ(format_name(DocumentFormat::kMarkdown), "markdown");
  EXPECT_EQ(format_name(DocumentFormat::kHtml), "html");
  EXPECT_EQ(format_name(DocumentFormat::kPdf), "pdf");
}

// --- plain text --------------------------------------------------------------------------

TEST(ExtractText, NormalisesLineEndsAndBlankLines) {
  const auto doc =
      extract("  line one  \r\nline two\r\n\r\n\r\n\r\nsecond paragraph\t\n\n", "a.txt");
  ASSERT_TRUE(doc.ok()) << doc.status().message();
  EXPECT_EQ(doc->format, DocumentFormat::kPlainText);
  EXPECT_EQ(doc->text, "  line one\nline two\n\nsecond paragraph");
  ASSERT_EQ(doc->sections.size(), 1u);
  EXPECT_TRUE(doc->sections[0].heading_path.empty());
  EXPECT_EQ(doc->sections[0].page, 0);
  expect_tiled(*doc);
}

TEST(ExtractText, EmptyDocumentIsRefused) {
  for (std::string_view body : {"", "   \n\n\t  \r\n", "\xEF\xBB\xBF"}) {
    const auto doc = extract(body, "empty.txt");
    ASSERT_FALSE(doc.ok());
    EXPECT_EQ(doc.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(doc.status().message().find("no text"), std::string::npos) << doc.status().message();
  }
  EXPECT_FALSE(extract("# \n\n<!-- only a comment -->", "a.md").ok());
  EXPECT_FALSE(extract("<html><head><title>T</title></head><body> </body></html>", "a.html").ok());
}

TEST(ExtractText, InvalidUtf8IsRepaired) {
  const auto doc = extract("caf\xE9 ok \xF0\x9F\x98\x80 \xC0\xAF end \xED\xA0\x80", "a.txt");
  ASSERT_TRUE(doc.ok());
  EXPECT_TRUE(doc->repaired_utf8);
  EXPECT_EQ(doc->text,
            "caf\xEF\xBF\xBD ok \xF0\x9F\x98\x80 \xEF\xBF\xBD\xEF\xBF\xBD end "
            "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  const auto clean = extract("plain \xC3\xA9t\xC3\xA9", "a.txt");
  ASSERT_TRUE(clean.ok());
  EXPECT_FALSE(clean->repaired_utf8);
}

TEST(RepairUtf8, ReplacesMaximalSubparts) {
  bool repaired = false;
  EXPECT_EQ(repair_utf8("abc", &repaired), "abc");
  EXPECT_FALSE(repaired);
  // A truncated 3-byte sequence is one replacement; a lone continuation byte is one each.
  EXPECT_EQ(repair_utf8("a\xE2\x82z", &repaired), "a\xEF\xBF\xBDz");
  EXPECT_TRUE(repaired);
  EXPECT_EQ(repair_utf8("\x80\x80", nullptr), "\xEF\xBF\xBD\xEF\xBF\xBD");
  // Above U+10FFFF and a truncated sequence at the very end.
  EXPECT_EQ(repair_utf8("\xF4\x90\x80\x80", nullptr),
            "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(repair_utf8("x\xF0\x9F\x98", nullptr), "x\xEF\xBF\xBD");
  EXPECT_EQ(repair_utf8("\xE4\xB8\xAD\xE6\x96\x87", nullptr), "\xE4\xB8\xAD\xE6\x96\x87");
}

TEST(ExtractText, ControlCharactersAreDropped) {
  const auto doc = extract(
      "a\x01"
      "b\x1B"
      "c\x7F"
      "d\fe\vf",
      "a.txt");
  ASSERT_TRUE(doc.ok()) << doc.status().message();
  EXPECT_EQ(doc->text, "abcd\ne\nf");
  // NULs make an upload binary; with the format already known they are dropped.
  EXPECT_FALSE(extract(std::string("a\0b", 3), "a.txt").ok());
  const auto known = extract_as(DocumentFormat::kPlainText, std::string("a\0b", 3));
  ASSERT_TRUE(known.ok());
  EXPECT_EQ(known->text, "ab");
}

// --- Markdown ----------------------------------------------------------------------------

TEST(ExtractMarkdown, HeadingsBecomeSectionsWithPaths) {
  const auto doc = extract(
      "Preamble text.\n\n# Intro\n\nWelcome.\n\n## Setup\n\nInstall it.\n\n### Linux\n\napt "
      "install\n\n## Usage ##\n\nRun it.\n\n# Reference\n\nAll flags.\n",
      "guide.md");
  ASSERT_TRUE(doc.ok()) << doc.status().message();
  EXPECT_EQ(doc->format, DocumentFormat::kMarkdown);
  EXPECT_EQ(doc->title, "Intro");
  expect_tiled(*doc);
  std::vector<std::string> headings;
  std::vector<int> levels;
  for (const auto& s : doc->sections) {
    headings.push_back(s.heading());
    levels.push_back(s.level);
  }
  EXPECT_EQ(headings,
            (std::vector<std::string>{"", "Intro", "Intro > Setup", "Intro > Setup > Linux",
                                      "Intro > Usage", "Reference"}));
  EXPECT_EQ(levels, (std::vector<int>{0, 1, 2, 3, 2, 1}));
  // A heading is a line of its section's text; a blank line after it stays one.
  EXPECT_EQ(section_text(*doc, doc->sections[0]), "Preamble text.\n\n");
  EXPECT_EQ(section_text(*doc, doc->sections[2]), "Setup\n\nInstall it.\n\n");
  EXPECT_EQ(section_text(*doc, doc->sections[4]), "Usage\n\nRun it.\n\n");
  EXPECT_EQ(section_text(*doc, doc->sections[5]), "Reference\n\nAll flags.");
}

TEST(ExtractMarkdown, SetextHeadingsAndRules) {
  const auto doc = extract("Title\n=====\n\nBody.\n\nPart\n----\n\nMore.\n\n---\n\nEnd.", "a.md");
  ASSERT_TRUE(doc.ok());
  ASSERT_EQ(doc->sections.size(), 2u);
  EXPECT_EQ(doc->sections[0].heading(), "Title");
  EXPECT_EQ(doc->sections[1].heading(), "Title > Part");
  EXPECT_EQ(doc->text, "Title\n\nBody.\n\nPart\n\nMore.\n\nEnd.");
}

TEST(ExtractMarkdown, InlineSyntaxIsStripped) {
  const auto doc = extract(
      "Some **bold**, *italic*, ~~gone~~ and `code_span` with [a link](https://x.org/a_b) "
      "and ![an image](img.png) and <https://example.org> and snake_case and 2 * 3.\n"
      "Escaped \\*stars\\* and &amp; &copy;.\n\n[ref]: https://example.org\n",
      "a.md");
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ(doc->text,
            "Some bold, italic, gone and code_span with a link and an image and "
            "https://example.org and snake_case and 2 * 3. Escaped *stars* and & \xC2\xA9.");
}

TEST(ExtractMarkdown, CodeBlocksListsTablesAndFrontMatter) {
  const auto doc = extract(
      "---\ntitle: hidden\n---\n# Code\n\n```cpp\nint main() {\n  return 0;\n}\n```\n\n"
      "- one\n- [x] two\n\n| a | b |\n|---|:-:|\n| 1 | 2 |\n\n> quoted *text*\n",
      "a.md");
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ(doc->text,
            "Code\n\nint main() {\n  return 0;\n}\n\n- one\n- two\n\na | b\n1 | 2\n\nquoted "
            "text");
  EXPECT_EQ(doc->text.find("hidden"), std::string::npos);
}

TEST(ExtractMarkdown, HeadingInsideCodeFenceIsText) {
  const auto doc = extract("# Real\n\n```\n# not a heading\n```\n", "a.md");
  ASSERT_TRUE(doc.ok());
  ASSERT_EQ(doc->sections.size(), 1u);
  EXPECT_EQ(doc->text, "Real\n\n# not a heading");
}

TEST(ExtractMarkdown, WrappedLinesJoinIntoOneParagraphLine) {
  const auto doc = extract(
      "A paragraph wrapped\nat seventy-two columns\n  goes on.\n\nHard  \nbreak and\\\nanother.\n",
      "a.md");
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ(doc->text,
            "A paragraph wrapped at seventy-two columns goes on.\n\nHard\nbreak and\nanother.");
}

TEST(ExtractMarkdown, ListItemsAndTableRowsKeepTheirLines) {
  const auto doc = extract(
      "Steps:\n1. first\n2) second\n   wrapped\n\n- a\n  continued\n- b\n\nx | y\n--|--\n1 | 2\n3 "
      "| 4\n",
      "a.md");
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ(doc->text,
            "Steps:\n1. first\n2) second wrapped\n\n- a continued\n- b\n\nx | y\n1 | 2\n3 | 4");
}

TEST(ExtractMarkdown, HtmlCommentsAreDropped) {
  const auto doc = extract("before <!-- hidden\nstill hidden --> after\n\nnext", "a.md");
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ(doc->text.find("hidden"), std::string::npos) << doc->text;
  EXPECT_NE(doc->text.find("before"), std::string::npos);
  EXPECT_NE(doc->text.find("after"), std::string::npos);
  EXPECT_NE(doc->text.find("next"), std::string::npos);
}

// --- HTML --------------------------------------------------------------------------------

TEST(ExtractHtml, DropsScriptsStylesAndHeadKeepsTitle) {
  const auto doc = extract(
      "<!DOCTYPE html><html><head><title> Course &amp; Notes </title>"
      "<style>p { color: red; }</style><script>var x = '<p>no</p>';</script>"
      "<meta charset=utf-8></head><body><noscript>enable js</noscript>"
      "<h1>Cells</h1><p>The <b>cell</b> is the&nbsp;unit of life &mdash; &#x1F9EC; &#233;.</p>"
      "<script type=\"text/javascript\">alert('x < y');</script>"
      "<h2>Mitosis</h2><p>Division<br>in four phases.</p></body></html>",
      "text/html");
  ASSERT_TRUE(doc.ok()) << doc.status().message();
  EXPECT_EQ(doc->format, DocumentFormat::kHtml);
  EXPECT_EQ(doc->title, "Course & Notes");
  EXPECT_EQ(doc->text,
            "Cells\n\nThe cell is the unit of life \xE2\x80\x94 \xF0\x9F\xA7\xAC \xC3\xA9.\n\n"
            "Mitosis\n\nDivision\nin four phases.");
  for (std::string_view gone : {"color", "var x", "alert", "enable js", "<"}) {
    EXPECT_EQ(doc->text.find(gone), std::string::npos) << gone;
  }
  expect_tiled(*doc);
  ASSERT_EQ(doc->sections.size(), 2u);
  EXPECT_EQ(doc->sections[0].heading(), "Cells");
  EXPECT_EQ(doc->sections[1].heading(), "Cells > Mitosis");
}

TEST(ExtractHtml, ListsTablesPreAndMalformedMarkup) {
  const auto doc = extract(
      "<body><ul><li>one<li>two</ul><table><tr><th>a<th>b<tr><td>1<td>2</table>"
      "<pre>  keep\n    indent</pre><p>a < b && c > d, 5 &lt; 6 &unknown; x</p>"
      "<p title=\"it's > 1\">quoted attr</p><p>unclosed <b",
      "page.html");
  ASSERT_TRUE(doc.ok()) << doc.status().message();
  EXPECT_EQ(doc->text,
            "- one\n- two\n\na | b\n1 | 2\n\n  keep\n    indent\n\n"
            "a < b && c > d, 5 < 6 &unknown; x\n\nquoted attr\n\nunclosed <b");
}

TEST(ExtractHtml, MissingEndOfHeadStillReadsTheBody) {
  const auto doc = extract("<html><head><title>T</title><p>Body text</p>", "a.html");
  ASSERT_TRUE(doc.ok()) << doc.status().message();
  EXPECT_EQ(doc->text, "Body text");
  EXPECT_EQ(doc->title, "T");
  const auto stray = extract("<head>\n<meta charset=utf-8>\nstray text<p>more</p>", "a.html");
  ASSERT_TRUE(stray.ok()) << stray.status().message();
  EXPECT_EQ(stray->text, "stray text\n\nmore");
}

TEST(ExtractHtml, LineBreakInsideAHeadingIsASpace) {
  const auto doc = extract("<H1 class=x>Title<br>more <span>words</span></H1><P>Para", "a.html");
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ(doc->title, "Title more words");
  ASSERT_EQ(doc->sections.size(), 1u);
  EXPECT_EQ(doc->sections[0].heading(), "Title more words");
  EXPECT_EQ(doc->text, "Title more words\n\nPara");
}

TEST(ExtractHtml, UnclosedScriptDropsTheRest) {
  const auto doc = extract("<p>kept</p><script>never closed <p>text", "a.html");
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ(doc->text, "kept");
}

TEST(ExtractHtml, TitleFallsBackToFirstHeading) {
  const auto doc = extract("<h2>Sub</h2><p>x</p><h1>Top</h1><p>y</p>", "a.html");
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ(doc->title, "Top");
}

// --- PDF ---------------------------------------------------------------------------------

TEST(ExtractPdf, ReadsTextAndPagesOfAHandWrittenPdf) {
  const std::string pdf =
      make_pdf({{"Photosynthesis turns light into sugar.", "Chlorophyll is green."},
                {"The Calvin cycle fixes carbon."}},
               "Biology notes");
  const auto doc = extract(pdf, "upload.bin");
  ASSERT_TRUE(doc.ok()) << doc.status().message();
  EXPECT_EQ(doc->format, DocumentFormat::kPdf);
  EXPECT_EQ(doc->page_count, 2);
  EXPECT_EQ(doc->title, "Biology notes");
  expect_tiled(*doc);
  ASSERT_EQ(doc->sections.size(), 2u);
  EXPECT_EQ(doc->sections[0].page, 1);
  EXPECT_EQ(doc->sections[1].page, 2);
  const std::string page1 = section_text(*doc, doc->sections[0]);
  const std::string page2 = section_text(*doc, doc->sections[1]);
  EXPECT_NE(page1.find("Photosynthesis turns light into sugar."), std::string::npos) << page1;
  EXPECT_NE(page1.find("Chlorophyll is green."), std::string::npos) << page1;
  EXPECT_EQ(page1.find("Calvin"), std::string::npos) << page1;
  EXPECT_NE(page2.find("The Calvin cycle fixes carbon."), std::string::npos) << page2;
  for (const auto& s : doc->sections) EXPECT_TRUE(s.heading_path.empty());
}

TEST(ExtractPdf, PdfHintWithPdfBytes) {
  const auto doc = extract(make_pdf({{"One page only."}}, ""), "application/pdf");
  ASSERT_TRUE(doc.ok()) << doc.status().message();
  EXPECT_EQ(doc->page_count, 1);
  EXPECT_EQ(doc->text, "One page only.");
  EXPECT_EQ(doc->title, "");
}

TEST(ExtractPdf, EmptyPagesAreSkippedButCounted) {
  const auto doc = extract(make_pdf({{}, {"Text on page two."}, {}}, "t"), "a.pdf");
  ASSERT_TRUE(doc.ok()) << doc.status().message();
  EXPECT_EQ(doc->page_count, 3);
  ASSERT_EQ(doc->sections.size(), 1u);
  EXPECT_EQ(doc->sections[0].page, 2);
  EXPECT_EQ(doc->text, "Text on page two.");
}

TEST(ExtractPdf, PdfWithoutTextIsRefused) {
  const auto doc = extract(make_pdf({{}}, "scan"), "a.pdf");
  ASSERT_FALSE(doc.ok());
  EXPECT_EQ(doc.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(doc.status().message().find("no text layer"), std::string::npos)
      << doc.status().message();
}

TEST(ExtractPdf, DamagedPdfIsAClearInvalidArgument) {
  for (const std::string& bytes :
       {std::string("%PDF-1.4\nthis is not a pdf at all\n%%EOF\n"), std::string("%PDF-"),
        std::string("%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R >>\nendobj\n")}) {
    const auto doc = extract(bytes, "a.pdf");
    ASSERT_FALSE(doc.ok()) << bytes;
    EXPECT_EQ(doc.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(doc.status().message().find("PDF"), std::string::npos) << doc.status().message();
  }
  // A text hint that says PDF, with no PDF inside: the PDF reader refuses it.
  const auto fake = extract("just text", "a.pdf");
  ASSERT_FALSE(fake.ok());
  EXPECT_EQ(fake.status().code(), StatusCode::kInvalidArgument);
}

TEST(ExtractPdf, TruncatedPdfNeverCrashes) {
  const std::string pdf = make_pdf({{"Alpha beta gamma."}, {"Delta epsilon."}}, "t");
  for (size_t cut : {pdf.size() / 4, pdf.size() / 2, pdf.size() - 30}) {
    const auto doc = extract(pdf.substr(0, cut), "a.pdf");
    if (!doc.ok()) {
      EXPECT_EQ(doc.status().code(), StatusCode::kInvalidArgument);
    }
  }
}

}  // namespace
}  // namespace infera::knowledge
