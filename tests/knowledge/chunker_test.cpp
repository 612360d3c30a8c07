// knowledge/chunker.h: limits, overlap, headings and pages, boundary preferences, UTF-8
// safety, huge paragraphs and words, a 10 MB document, option checks.
#include "knowledge/chunker.h"

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace infera::knowledge {
namespace {

bool is_word_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// A tokenizer stand-in that is exactly additive over whitespace: each ASCII word is one
// token, each ASCII punctuation mark one, each non-ASCII code point one.
size_t count_words(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (is_word_byte(c)) {
      while (i < s.size() && is_word_byte(static_cast<unsigned char>(s[i]))) ++i;
      ++n;
    } else if (c == ' ' || c == '\n' || c == '\t') {
      ++i;
    } else {
      ++n;
      ++i;
      while (c >= 0x80 && i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) ++i;
    }
  }
  return n;
}

// The same with [CLS] and [SEP] added to every input, as BERT's tokenizer does.
size_t count_with_specials(std::string_view s) { return count_words(s) + 2; }

ExtractedText plain(std::string text) {
  ExtractedText doc;
  doc.text = std::move(text);
  doc.sections.push_back(Section{{}, 0, 0, 0, doc.text.size()});
  return doc;
}

// "Sentence k of paragraph p has some words." with `words` words in all.
std::string sentence(int p, int k, int words) {
  std::string s = "Sentence" + std::to_string(k) + " of paragraph" + std::to_string(p);
  for (int w = 4; w < words; ++w) s += " w" + std::to_string(w);
  return s + ".";
}

std::string paragraphs(int count, int sentences, int words) {
  std::string text;
  for (int p = 0; p < count; ++p) {
    if (p > 0) text += "\n\n";
    for (int k = 0; k < sentences; ++k) text += (k > 0 ? " " : "") + sentence(p, k, words);
  }
  return text;
}

std::vector<Chunk> chunk(const ExtractedText& doc, ChunkOptions options = {},
                         const TokenCounter& counter = count_words) {
  auto chunks = chunk_text(doc, counter, options);
  EXPECT_TRUE(chunks.ok()) << chunks.status().message();
  return chunks.ok() ? std::move(*chunks) : std::vector<Chunk>{};
}

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t'; }

// The invariants every chunking keeps: texts are the byte ranges, trimmed, within the
// limit as counted; own parts (after the overlap) are in order, disjoint, and cover
// every non-whitespace byte; the overlap repeats the previous chunk's end.
void expect_well_formed(const ExtractedText& doc, const std::vector<Chunk>& chunks,
                        const ChunkOptions& options, const TokenCounter& counter = count_words) {
  ASSERT_FALSE(chunks.empty());
  size_t covered = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const Chunk& c = chunks[i];
    ASSERT_LE(c.begin, c.end);
    ASSERT_LE(c.end, doc.text.size());
    EXPECT_EQ(c.text, doc.text.substr(c.begin, c.end - c.begin)) << i;
    ASSERT_FALSE(c.text.empty()) << i;
    EXPECT_FALSE(is_space(c.text.front()) || is_space(c.text.back())) << i;
    EXPECT_EQ(c.token_count, counter(c.text)) << i;
    EXPECT_LE(c.token_count, options.max_tokens) << i;
    const size_t own = c.begin + c.overlap_bytes;
    ASSERT_LE(own, c.end);
    for (size_t k = covered; k < own; ++k) {
      ASSERT_TRUE(is_space(doc.text[k])) << "byte " << k << " in no chunk, before chunk " << i;
    }
    if (c.overlap_bytes > 0) {
      ASSERT_GT(i, 0u);
      const Chunk& prev = chunks[i - 1];
      EXPECT_GE(c.begin, prev.begin) << i;
      const std::string overlap = doc.text.substr(c.begin, prev.end - c.begin);
      EXPECT_EQ(prev.text.substr(prev.text.size() - overlap.size()), overlap) << i;
      EXPECT_LE(counter(overlap) - counter(""), options.overlap_tokens) << i;
    }
    covered = c.end;
  }
  for (size_t k = covered; k < doc.text.size(); ++k) ASSERT_TRUE(is_space(doc.text[k]));
}

// --- options -----------------------------------------------------------------------------

TEST(Chunker, InvalidOptionsAreRefused) {
  const ExtractedText doc = plain("Some text.");
  for (ChunkOptions o : {ChunkOptions{8, 0}, ChunkOptions{15, 0}, ChunkOptions{2'000'000, 64},
                         ChunkOptions{512, 257}, ChunkOptions{16, 9}}) {
    EXPECT_FALSE(validate(o).ok()) << o.max_tokens << "/" << o.overlap_tokens;
    const auto r = chunk_text(doc, count_words, o);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  }
  EXPECT_NE(validate({512, 300}).message().find("overlap_tokens (300)"), std::string::npos);
  EXPECT_NE(validate({4, 0}).message().find("max_tokens"), std::string::npos);
  EXPECT_TRUE(validate({}).ok());
  EXPECT_TRUE(validate({16, 8}).ok());
  EXPECT_TRUE(validate({512, 0}).ok());
  EXPECT_EQ(ChunkOptions{}.max_tokens, 512u);
  EXPECT_EQ(ChunkOptions{}.overlap_tokens, 64u);

  EXPECT_FALSE(chunk_text(doc, TokenCounter{}, {}).ok());
  const auto greedy = chunk_text(doc, [](std::string_view s) { return count_words(s) + 510; }, {});
  ASSERT_FALSE(greedy.ok());
  EXPECT_NE(greedy.status().message().find("adds 510 tokens"), std::string::npos)
      << greedy.status().message();
}

TEST(Chunker, CounterThatCannotFitOneCharacterIsRefused) {
  const ExtractedText doc = plain(std::string(100, 'x'));
  const auto r = chunk_text(
      doc, [](std::string_view s) { return s.size() * 40; }, ChunkOptions{32, 0});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("more than a chunk"), std::string::npos)
      << r.status().message();
}

// --- sizes and overlap -------------------------------------------------------------------

TEST(Chunker, EmptyTextGivesNoChunks) {
  ExtractedText doc;
  const auto r = chunk_text(doc, count_words, {});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
}

TEST(Chunker, ShortDocumentIsOneChunk) {
  const ExtractedText doc = plain("  Water boils at 100 degrees.\n\nIce melts at zero.\n");
  const auto chunks = chunk(doc);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].text, "Water boils at 100 degrees.\n\nIce melts at zero.");
  EXPECT_EQ(chunks[0].begin, 2u);
  EXPECT_EQ(chunks[0].token_count, 11u);
  EXPECT_EQ(chunks[0].overlap_bytes, 0u);
  EXPECT_EQ(chunks[0].heading, "");
  EXPECT_EQ(chunks[0].page, 0);
}

TEST(Chunker, ChunksStayWithinTheLimitAndCoverTheText) {
  const ExtractedText doc = plain(paragraphs(40, 6, 15));
  for (ChunkOptions o : {ChunkOptions{}, ChunkOptions{64, 16}, ChunkOptions{16, 0},
                         ChunkOptions{100, 50}, ChunkOptions{1000, 0}}) {
    SCOPED_TRACE(std::to_string(o.max_tokens) + "/" + std::to_string(o.overlap_tokens));
    const auto chunks = chunk(doc, o);
    expect_well_formed(doc, chunks, o);
    // Nearly full: only the last chunk may be small (boundaries keep chunks half full).
    for (size_t i = 0; i + 1 < chunks.size(); ++i) {
      EXPECT_GE(chunks[i].token_count * 2 + 16, o.max_tokens) << i;
    }
  }
}

TEST(Chunker, BreaksAtParagraphsThenSentences) {
  // Paragraphs of about 100 tokens: chunks of 512 end where paragraphs end.
  const ExtractedText doc = plain(paragraphs(30, 5, 20));
  const ChunkOptions o{512, 0};
  const auto chunks = chunk(doc, o);
  expect_well_formed(doc, chunks, o);
  ASSERT_GT(chunks.size(), 3u);
  for (const Chunk& c : chunks) {
    EXPECT_TRUE(c.end == doc.text.size() || doc.text.compare(c.end, 2, "\n\n") == 0)
        << "ends inside a paragraph: ..." << c.text.substr(c.text.size() - 30);
  }
  // One paragraph larger than a chunk: cut after a sentence.
  const ExtractedText big = plain(paragraphs(1, 60, 20));
  for (const Chunk& c : chunk(big, o)) EXPECT_EQ(c.text.back(), '.');
}

TEST(Chunker, OverlapRepeatsWholeSentencesFromThePreviousEnd) {
  const ExtractedText doc = plain(paragraphs(1, 100, 12));
  const ChunkOptions o{128, 32};
  const auto chunks = chunk(doc, o);
  expect_well_formed(doc, chunks, o);
  ASSERT_GT(chunks.size(), 5u);
  for (size_t i = 1; i < chunks.size(); ++i) {
    const Chunk& c = chunks[i];
    ASSERT_GT(c.overlap_bytes, 0u) << i;
    EXPECT_EQ(c.text.rfind("Sentence", 0), 0u) << "overlap is not whole sentences: " << c.text;
    EXPECT_EQ(c.text[c.overlap_bytes - 1], ' ');
    // Two 12-token sentences fit in 32 tokens, three do not.
    EXPECT_EQ(count_words(c.text.substr(0, c.overlap_bytes)), 24u) << i;
  }
}

TEST(Chunker, OverlapFallsBackToWholeWords) {
  // Sentences of 80 tokens: none fits in a 20-token overlap, so words do.
  const ExtractedText doc = plain(paragraphs(1, 30, 79));
  const ChunkOptions o{256, 20};
  const auto chunks = chunk(doc, o);
  expect_well_formed(doc, chunks, o);
  ASSERT_GT(chunks.size(), 3u);
  for (size_t i = 1; i < chunks.size(); ++i) {
    const Chunk& c = chunks[i];
    ASSERT_GT(c.overlap_bytes, 0u) << i;
    EXPECT_TRUE(is_space(doc.text[c.begin - 1])) << "overlap starts inside a word";
    const size_t tokens = count_words(c.text.substr(0, c.overlap_bytes));
    EXPECT_LE(tokens, 20u);
    EXPECT_GE(tokens, 18u);
  }
}

TEST(Chunker, NoOverlapWhenDisabled) {
  const ExtractedText doc = plain(paragraphs(20, 5, 15));
  for (const Chunk& c : chunk(doc, ChunkOptions{64, 0})) EXPECT_EQ(c.overlap_bytes, 0u);
}

TEST(Chunker, FixedTokensAreChargedOncePerChunk) {
  const ExtractedText doc = plain(paragraphs(30, 5, 15));
  const ChunkOptions o{128, 16};
  const auto chunks = chunk(doc, o, count_with_specials);
  expect_well_formed(doc, chunks, o, count_with_specials);
  for (size_t i = 0; i + 1 < chunks.size(); ++i) EXPECT_GE(chunks[i].token_count, 64u);
}

TEST(Chunker, NonAdditiveCounterStillKeepsTheLimit) {
  // Counts more for text together than for its parts (one extra token per 8 spaces):
  // the final check per chunk trims what the per-sentence sums missed.
  auto superadditive = [](std::string_view s) {
    size_t spaces = 0;
    for (char c : s) spaces += c == ' ';
    return count_words(s) + spaces / 8;
  };
  const ExtractedText doc = plain(paragraphs(10, 20, 10));
  const ChunkOptions o{100, 20};
  const auto chunks = chunk(doc, o, superadditive);
  ASSERT_FALSE(chunks.empty());
  for (const Chunk& c : chunks) {
    EXPECT_LE(c.token_count, 100u);
    EXPECT_EQ(c.token_count, superadditive(c.text));
  }
}

// --- huge pieces -------------------------------------------------------------------------

TEST(Chunker, HugeParagraphIsSplitAtWords) {
  std::string text = "Start";
  for (int w = 0; w < 5000; ++w) text += (w % 37 == 36 ? ", w" : " w") + std::to_string(w);
  const ExtractedText doc = plain(text);
  const ChunkOptions o{512, 64};
  const auto chunks = chunk(doc, o);
  expect_well_formed(doc, chunks, o);
  EXPECT_GE(chunks.size(), 11u);
  EXPECT_LE(chunks.size(), 13u);
  for (size_t i = 0; i + 1 < chunks.size(); ++i) {
    const Chunk& c = chunks[i];
    EXPECT_TRUE(c.end == doc.text.size() || is_space(doc.text[c.end])) << "cut inside a word";
    EXPECT_GE(c.token_count, 256u);
  }
}

TEST(Chunker, HugeWordIsCutBetweenCodePoints) {
  std::string blob;
  for (int i = 0; i < 30000; ++i) blob += i % 3 == 0 ? "\xC3\xA9" : "a-";  // é a-
  const ExtractedText doc = plain("Before. " + blob + " After.");
  const ChunkOptions o{512, 64};
  const auto chunks = chunk(doc, o);
  expect_well_formed(doc, chunks, o);
  for (const Chunk& c : chunks) {
    bool repaired = true;
    repair_utf8(c.text, &repaired);
    EXPECT_FALSE(repaired) << "a chunk splits a UTF-8 sequence";
    EXPECT_GE(c.token_count * 2, 512u);  // slices are sized from the counts, not tiny
  }
}

TEST(Chunker, Utf8IsNeverSplitInCjkAndEmojiText) {
  // Chinese sentences end at "。" without spaces; a run without punctuation is cut
  // between code points; emoji ZWJ sequences and skin tones stay whole.
  std::string text;
  for (int i = 0; i < 300; ++i)
    text += "\xE8\xBF\x99\xE6\x98\xAF\xE4\xB8\x80\xE4\xB8\xAA\xE6\xB5\x8B\xE8\xAF\x95\xE3\x80\x82";
  text += "\n\n";
  for (int i = 0; i < 2000; ++i) text += "\xE6\xB0\xB4";  // 水 x 2000, no punctuation
  text += "\n\n";
  const std::string family =
      "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7";
  const std::string wave = "\xF0\x9F\x91\x8B\xF0\x9F\x8F\xBD";
  for (int i = 0; i < 1500; ++i) text += i % 2 ? family : wave;
  const ExtractedText doc = plain(text);
  for (ChunkOptions o : {ChunkOptions{64, 16}, ChunkOptions{17, 8}, ChunkOptions{512, 64}}) {
    SCOPED_TRACE(o.max_tokens);
    const auto chunks = chunk(doc, o);
    expect_well_formed(doc, chunks, o);
    for (const Chunk& c : chunks) {
      bool repaired = true;
      repair_utf8(c.text, &repaired);
      ASSERT_FALSE(repaired) << "a chunk splits a UTF-8 sequence";
      EXPECT_NE(c.text.rfind("\xE2\x80\x8D", 0), 0u) << "starts with a joiner";
      EXPECT_NE(c.text.rfind("\xF0\x9F\x8F\xBD", 0), 0u) << "starts with a skin tone";
      EXPECT_FALSE(c.text.size() >= 3 && c.text.substr(c.text.size() - 3) == "\xE2\x80\x8D");
    }
  }
  // The sentences: every chunk of the first paragraph ends at a full stop.
  const auto chunks = chunk(doc, ChunkOptions{64, 16});
  EXPECT_EQ(chunks[0].text.substr(chunks[0].text.size() - 3), "\xE3\x80\x82");
  EXPECT_EQ(count_words(chunks[1].text.substr(0, chunks[1].overlap_bytes)), 14u);
}

// --- structure ---------------------------------------------------------------------------

// A small Markdown document through the real extractor.
ExtractedText markdown(std::string_view source) {
  auto doc = extract(source, "notes.md");
  EXPECT_TRUE(doc.ok()) << doc.status().message();
  return doc.ok() ? std::move(*doc) : ExtractedText{};
}

TEST(Chunker, TopLevelSectionsAreNeverMerged) {
  const ExtractedText doc = markdown(
      "# Cells\n\nCells are small.\n\n## Parts\n\nA nucleus.\n\n## Division\n\nMitosis.\n\n"
      "# Plants\n\nPlants are green.\n\n# Animals\n\nAnimals move.\n");
  const auto chunks = chunk(doc);
  ASSERT_EQ(chunks.size(), 3u);
  // Sub-sections of one top-level section merge while they fit.
  EXPECT_EQ(chunks[0].text,
            "Cells\n\nCells are small.\n\nParts\n\nA nucleus.\n\nDivision\n\nMitosis.");
  EXPECT_EQ(chunks[0].heading, "Cells");
  EXPECT_EQ(chunks[1].text, "Plants\n\nPlants are green.");
  EXPECT_EQ(chunks[1].heading, "Plants");
  EXPECT_EQ(chunks[2].heading, "Animals");
  for (const Chunk& c : chunks) EXPECT_EQ(c.overlap_bytes, 0u);
}

TEST(Chunker, DocumentsWhoseTopHeadingsAreLevelTwo) {
  const ExtractedText doc =
      markdown("Intro line.\n\n## One\n\nFirst.\n\n### Deep\n\nDeeper.\n\n## Two\n\nSecond.\n");
  const auto chunks = chunk(doc);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].heading, "");
  EXPECT_EQ(chunks[1].heading, "One");
  EXPECT_NE(chunks[1].text.find("Deeper."), std::string::npos);
  EXPECT_EQ(chunks[2].heading, "Two");
}

TEST(Chunker, SubSectionBoundaryIsPreferredAndHeadingPathsCarried) {
  std::string source = "# Intro\n\n## Setup\n\n" + paragraphs(2, 5, 20) + "\n\n## Usage\n\n" +
                       paragraphs(8, 5, 20) + "\n";
  const ExtractedText doc = markdown(source);
  const ChunkOptions o{512, 64};
  const auto chunks = chunk(doc, o);
  expect_well_formed(doc, chunks, o);
  ASSERT_GE(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].heading, "Intro > Setup");
  EXPECT_EQ(chunks[0].text.rfind("Intro\n\nSetup", 0), 0u);
  EXPECT_EQ(chunks[1].heading, "Intro > Usage");
  EXPECT_EQ(chunks[1].text.rfind("Usage\n\n", 0), 0u) << "no overlap across a heading";
  EXPECT_EQ(chunks[1].overlap_bytes, 0u);
  for (size_t i = 2; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i].heading, "Intro > Usage");
    EXPECT_GT(chunks[i].overlap_bytes, 0u);
  }
}

TEST(Chunker, PdfPagesAreCarriedAndLinesJoinSentences) {
  // Three pages whose visual lines break sentences: a sentence runs across lines.
  ExtractedText doc;
  doc.format = DocumentFormat::kPdf;
  for (int page = 1; page <= 3; ++page) {
    const size_t begin = doc.text.size();
    for (int line = 0; line < 40; ++line) {
      doc.text += "Page" + std::to_string(page) + " line" + std::to_string(line) +
                  (line % 3 == 2 ? " ends here.\n" : " goes on\n");
    }
    doc.text += "\n";
    doc.sections.push_back(Section{{}, 0, page, begin, doc.text.size()});
  }
  doc.page_count = 3;
  const ChunkOptions o{64, 16};
  const auto chunks = chunk(doc, o);
  expect_well_formed(doc, chunks, o);
  for (const Chunk& c : chunks) {
    const std::string own = c.text.substr(c.overlap_bytes);
    EXPECT_EQ(own.rfind("Page" + std::to_string(c.page), 0), 0u) << c.page << ": " << own;
    EXPECT_TRUE(c.text.back() == '.' || c.text.back() == 'n') << c.text;
  }
  EXPECT_EQ(chunks.front().page, 1);
  EXPECT_EQ(chunks.back().page, 3);
}

TEST(Chunker, RandomDocumentsKeepEveryInvariant) {
  // Words, punctuation, line and paragraph breaks, CJK, emoji with joiners, long runs
  // without spaces, headings at random levels; random limits and counters.
  const std::vector<std::string> pieces = {
      "word",         "Longer",       "a",
      "3.14",         "e.g.",         "Dr.",
      "end.",         "Why?",         "yes!",
      "x,",           "y;",           "\n",
      "\n\n",         "  ",           "\t",
      "\xE6\xB0\xB4", "\xE3\x80\x82", "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9",
      "\xCC\x81",     "\"quoted.\"",  "(paren)"};
  std::mt19937 rng(1234);
  for (int round = 0; round < 300; ++round) {
    ExtractedText doc;
    doc.format = round % 5 == 0 ? DocumentFormat::kPdf : DocumentFormat::kMarkdown;
    const int sections = 1 + static_cast<int>(rng() % 6);
    for (int sec = 0; sec < sections; ++sec) {
      const size_t begin = doc.text.size();
      Section section;
      if (doc.format == DocumentFormat::kPdf) {
        section.page = sec + 1;
      } else if (sec > 0 || rng() % 2) {
        section.level = 1 + static_cast<int>(rng() % 3);
        section.heading_path.assign(static_cast<size_t>(section.level), "H" + std::to_string(sec));
        doc.text += "H" + std::to_string(sec) + "\n\n";
      }
      const size_t n = rng() % 400;
      for (size_t k = 0; k < n; ++k) {
        if (rng() % 50 == 0) {
          doc.text += std::string(1 + rng() % 3000, 'z');  // a word longer than a chunk
        } else {
          doc.text += pieces[rng() % pieces.size()];
        }
        if (rng() % 3) doc.text += ' ';
      }
      doc.text += "\n\n";
      section.begin = begin;
      section.end = doc.text.size();
      doc.sections.push_back(section);
    }
    const size_t max_tokens = 16 + rng() % 300;
    const ChunkOptions o{max_tokens, rng() % (max_tokens / 2 + 1)};
    const bool specials = rng() % 2;
    const TokenCounter counter =
        specials ? TokenCounter(count_with_specials) : TokenCounter(count_words);
    SCOPED_TRACE("round " + std::to_string(round) + ", " + std::to_string(o.max_tokens) + "/" +
                 std::to_string(o.overlap_tokens));
    const auto chunks = chunk_text(doc, counter, o);
    ASSERT_TRUE(chunks.ok()) << chunks.status().message();
    bool has_text = false;
    for (char c : doc.text) has_text = has_text || !is_space(c);
    if (!has_text) {
      EXPECT_TRUE(chunks->empty());
      continue;
    }
    expect_well_formed(doc, *chunks, o, counter);
    for (const Chunk& c : *chunks) {
      bool repaired = true;
      repair_utf8(c.text, &repaired);
      ASSERT_FALSE(repaired);
    }
    if (HasFatalFailure()) return;
  }
}

// --- scale -------------------------------------------------------------------------------

TEST(Chunker, TenMegabytesChunkQuicklyWithFewCounterCalls) {
  std::string source;
  int section = 0;
  while (source.size() < 10u << 20) {
    source +=
        "# Chapter " + std::to_string(section) + "\n\n## Part\n\n" + paragraphs(12, 6, 14) + "\n\n";
    ++section;
  }
  const ExtractedText doc = markdown(source);
  size_t calls = 0, bytes = 0;
  auto counter = [&](std::string_view s) {
    ++calls;
    bytes += s.size();
    return count_words(s);
  };
  const auto start = std::chrono::steady_clock::now();
  const auto chunks = chunk_text(doc, counter, {});
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(chunks.ok());
  EXPECT_LT(seconds, 5.0);
  // One call per sentence, one per chunk, one per overlap word; the counter reads each
  // byte about twice (sentences, then chunks with their overlap).
  size_t sentences = 0;
  for (char c : source) sentences += c == '.';
  EXPECT_LE(calls, sentences + chunks->size() * 70);
  EXPECT_LE(bytes, source.size() * 3);
  std::printf("10 MiB: %zu chunks in %.3f s, %zu counter calls over %zu bytes\n", chunks->size(),
              seconds, calls, bytes);
}

}  // namespace
}  // namespace infera::knowledge
