// Document chunking: an ExtractedText becomes the passages that are embedded and
// searched, each at most `max_tokens` tokens of the embedding model's tokenizer.
//
//   knowledge::ChunkOptions options;                      // 512 tokens, 64 overlap
//   auto chunks = knowledge::chunk_text(doc, [&](std::string_view s) {
//     return tokenizer.count(s);                          // the embedder's own count
//   }, options);
//   if (!chunks.ok()) return chunks.status();
//
// Where a chunk ends, by preference: a heading (never across a top-level section: the
// headings of the document's highest level, e.g. every "# ..." of a Markdown file), a
// PDF page, a paragraph, a line, a sentence, a clause, a word; a word longer than a
// chunk is cut between UTF-8 code points. Boundaries weaker than a heading are only
// taken when the chunk is at least half full. The next chunk repeats whole sentences
// (else whole words) from the end of the previous one, up to `overlap_tokens`, unless a
// heading lies between them.
//
// Cost: the counter is called once per sentence (once per word of a sentence longer than
// a chunk), once per chunk to check its final size, and once per word of each overlap, so
// time is linear in the text for a counter linear in its input. Thread-safe (no shared
// state); the counter is only called from the calling thread.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "knowledge/extract.h"

namespace infera::knowledge {

// Counts the tokens the embedding model sees for `text`, including any tokens it adds
// to every input ([CLS] and [SEP] for BERT): those are measured once as count("") and
// charged once per chunk. Must be deterministic; roughly additive over words (true of
// WordPiece, BPE and SentencePiece), since pieces are counted apart and summed before
// each chunk's total is checked with one call.
using TokenCounter = std::function<size_t(std::string_view text)>;

struct ChunkOptions {
  // Upper bound of a chunk's token_count, the tokenizer's fixed tokens included. The
  // embedding model's context (512 for BERT-family models) is the natural value.
  // At least 16, at most 1,000,000.
  size_t max_tokens = 512;
  // Tokens repeated from the end of the previous chunk so that a passage cut in two can
  // still be found whole. At most max_tokens / 2; 0 disables.
  size_t overlap_tokens = 64;
};

// InvalidArgument naming the bad field and its allowed range.
Status validate(const ChunkOptions& options);

struct Chunk {
  std::string text;        // doc.text[begin, end): no leading or trailing whitespace
  std::string heading;     // "Intro > Setup": the heading path its own text lies under (the
                           // common part when it spans sub-sections, passing over a
                           // section that is only its heading line); empty without one
  int page = 0;            // 1-based PDF page where its own text starts; 0 without pages
  size_t token_count = 0;  // counter(text), fixed tokens included; <= max_tokens
  size_t begin = 0;        // byte range in ExtractedText::text
  size_t end = 0;
  size_t overlap_bytes = 0;  // text[0, overlap_bytes) repeats the previous chunk's end
};

// Splits `doc` into chunks in text order. Chunks never split a UTF-8 sequence and cover
// every non-whitespace byte of doc.text. InvalidArgument for invalid options, a null
// counter, or a counter whose fixed tokens (count of "") leave fewer than 8 for text, or
// which counts more than max_tokens for a single character. An empty text gives no
// chunks.
Result<std::vector<Chunk>> chunk_text(const ExtractedText& doc, const TokenCounter& count_tokens,
                                      const ChunkOptions& options = {});

}  // namespace infera::knowledge
