// chunker.h: the text is cut into units (sentences; the words of a sentence longer than a
// chunk; code-point slices of a word longer than a chunk), each counted once and marked
// with the strength of the boundary before it; units are then packed greedily into
// chunks, each ending at the strongest boundary that keeps it at least half full.
#include "knowledge/chunker.h"

#include <algorithm>
#include <cstdint>
#include <limits>

namespace infera::knowledge {

namespace {

// Strength of the boundary before a unit; a chunk prefers to end at the strongest.
// Top-level headings are stronger still: the text is split there before packing.
enum Boundary : uint8_t {
  kWord = 0,
  kClause,  // after ',', ';', ':' inside a sentence longer than a chunk
  kSentence,
  kLine,  // a line break (list items, table rows, verbatim text); not in PDFs
  kParagraph,
  kPage,     // a PDF page
  kHeading,  // a sub-section: a chunk may end here however empty it is
};

constexpr size_t kMaxTokensLimit = 1'000'000;
constexpr size_t kMinTextTokens = 8;  // what the counter's fixed tokens must leave

struct Unit {
  size_t begin;  // trimmed: no whitespace at either end
  size_t end;
  uint32_t tokens;  // count(text) less the counter's fixed tokens
  Boundary before;
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool is_continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Abbreviations whose '.' does not end a sentence even before a capital ("Dr. Smith").
constexpr std::string_view kAbbreviations[] = {"mr",  "mrs", "ms", "dr",     "prof", "st", "vs",
                                               "fig", "no",  "cf", "approx", "jr",   "sr", "eq"};

// Closing marks that stay with the sentence they end: quotes, brackets, ’ ” ».
size_t closer_length(std::string_view text, size_t i) {
  const char c = text[i];
  if (c == '"' || c == '\'' || c == ')' || c == ']') return 1;
  const std::string_view rest = text.substr(i, 3);
  if (rest == "\xE2\x80\x99" || rest == "\xE2\x80\x9D") return 3;
  if (text.substr(i, 2) == "\xC2\xBB") return 2;
  return 0;
}

// Whether the '.' at `dot` ends a sentence, given that whitespace follows it.
bool period_ends_sentence(std::string_view text, size_t line_begin, size_t dot, size_t after) {
  // "e.g. the", "approx. five": a lower-case continuation is the same sentence.
  size_t next = after;
  while (next < text.size() && is_space(text[next])) ++next;
  if (next < text.size() && text[next] >= 'a' && text[next] <= 'z') return false;
  size_t word = dot;
  while (word > line_begin && !is_space(text[word - 1])) --word;
  const std::string_view before = text.substr(word, dot - word);
  if (before.size() == 1 && is_alpha(before[0])) return false;   // an initial: "J. Smith"
  if (before.find('.') != std::string_view::npos) return false;  // "U.S.", "e.g."
  for (std::string_view a : kAbbreviations) {
    if (a.size() != before.size()) continue;
    size_t k = 0;
    while (k < a.size() && lower(before[k]) == a[k]) ++k;
    if (k == a.size()) return false;
  }
  return true;
}

// The end of the sentence that starts at `begin` within [begin, limit): just past its
// terminal punctuation and closing marks, or `limit`.
size_t sentence_end(std::string_view text, size_t line_begin, size_t begin, size_t limit) {
  for (size_t i = begin; i < limit; ++i) {
    const char c = text[i];
    size_t after = 0;
    bool needs_space = true;
    if (c == '.' || c == '!' || c == '?') {
      after = i + 1;
    } else if (c == '\xE3' && text.substr(i, 3) == "\xE3\x80\x82") {  // 。
      after = i + 3;
      needs_space = false;
    } else if (c == '\xEF' &&
               (text.substr(i, 3) == "\xEF\xBC\x81" || text.substr(i, 3) == "\xEF\xBC\x9F")) {
      after = i + 3;  // ！ ？
      needs_space = false;
    } else if (c == '\xE2' && text.substr(i, 3) == "\xE2\x80\xA6") {  // …
      after = i + 3;
    } else {
      continue;
    }
    while (after < limit && (text[after] == '.' || text[after] == '!' || text[after] == '?')) {
      ++after;  // "?!", "..."
    }
    while (after < limit) {
      const size_t n = closer_length(text, after);
      if (n == 0 || after + n > limit) break;
      after += n;
    }
    if (after >= limit) return limit;
    if (needs_space && !is_space(text[after])) {
      i = after - 1;
      continue;
    }
    if (c == '.' && after == i + 1 && !period_ends_sentence(text, line_begin, i, after)) continue;
    return after;
  }
  return limit;
}

class Chunker {
 public:
  Chunker(const ExtractedText& doc, const TokenCounter& count, const ChunkOptions& options,
          size_t fixed_tokens)
      : doc_(doc),
        text_(doc.text),
        count_(count),
        max_tokens_(options.max_tokens),
        overlap_tokens_(options.overlap_tokens),
        fixed_(fixed_tokens),
        budget_(options.max_tokens - fixed_tokens) {}

  Status run(std::vector<Chunk>* out) {
    out_ = out;
    const auto& sections = doc_.sections;
    int top_level = 0;
    for (const auto& s : sections) {
      if (s.level > 0 && (top_level == 0 || s.level < top_level)) top_level = s.level;
    }
    size_t run_begin = 0;
    for (size_t k = 1; k <= sections.size(); ++k) {
      if (k < sections.size() && !(top_level > 0 && sections[k].level == top_level)) continue;
      // Sections [run_begin, k) share one top-level section: packed on their own.
      units_.clear();
      for (size_t j = run_begin; j < k; ++j) {
        const Section& s = sections[j];
        Boundary b = kParagraph;
        if (j > run_begin) {
          b = s.level > 0 ? kHeading : s.page != sections[j - 1].page ? kPage : kParagraph;
        }
        const size_t end = std::min(s.end, text_.size());
        if (Status st = add_section(std::min(s.begin, end), end, b); !st.ok()) return st;
      }
      pack();
      run_begin = k;
    }
    if (sections.empty() && !text_.empty()) {
      if (Status st = add_section(0, text_.size(), kParagraph); !st.ok()) return st;
      pack();
    }
    return Status::Ok();
  }

 private:
  // count(text) less the fixed tokens; *raw gets count(text) itself.
  size_t estimate(std::string_view text, size_t* raw = nullptr) {
    const size_t n = count_(text);
    if (raw != nullptr) *raw = n;
    return n > fixed_ ? n - fixed_ : 0;
  }

  void push_unit(size_t begin, size_t end, size_t tokens) {
    units_.push_back(Unit{begin, end, static_cast<uint32_t>(tokens), next_boundary_});
    next_boundary_ = kWord;
  }

  void raise_boundary(Boundary b) { next_boundary_ = std::max(next_boundary_, b); }

  // --- Segmentation ---------------------------------------------------------------

  Status add_section(size_t begin, size_t end, Boundary boundary) {
    raise_boundary(boundary);
    const bool pdf = doc_.format == DocumentFormat::kPdf;
    const std::string_view section = std::string_view(text_).substr(0, end);
    size_t pos = begin;
    while (pos < end) {
      size_t paragraph_end = section.find("\n\n", pos);
      if (paragraph_end == std::string_view::npos) paragraph_end = end;
      if (pdf) {
        // A PDF's line breaks are its layout's, not the author's: sentences run across.
        if (Status s = add_sentences(pos, pos, paragraph_end); !s.ok()) return s;
      } else {
        size_t line = pos;
        while (line < paragraph_end) {
          size_t line_end = section.substr(0, paragraph_end).find('\n', line);
          if (line_end == std::string_view::npos) line_end = paragraph_end;
          if (Status s = add_sentences(line, line, line_end); !s.ok()) return s;
          raise_boundary(kLine);
          line = line_end + 1;
        }
      }
      raise_boundary(kParagraph);
      pos = paragraph_end + 2;
    }
    return Status::Ok();
  }

  Status add_sentences(size_t line_begin, size_t begin, size_t end) {
    size_t pos = begin;
    while (pos < end) {
      while (pos < end && is_space(text_[pos])) ++pos;
      if (pos >= end) break;
      size_t stop = sentence_end(text_, line_begin, pos, end);
      size_t trimmed = stop;
      while (trimmed > pos && is_space(text_[trimmed - 1])) --trimmed;
      if (Status s = add_sentence(pos, trimmed); !s.ok()) return s;
      raise_boundary(kSentence);
      pos = stop;
    }
    return Status::Ok();
  }

  Status add_sentence(size_t begin, size_t end) {
    size_t raw = 0;
    const size_t tokens = estimate(std::string_view(text_).substr(begin, end - begin), &raw);
    if (raw <= max_tokens_) {
      push_unit(begin, end, tokens);
      return Status::Ok();
    }
    // Longer than a chunk: word by word, noting clause ends for better cuts.
    size_t pos = begin;
    while (pos < end) {
      while (pos < end && is_space(text_[pos])) ++pos;
      size_t word_end = pos;
      while (word_end < end && !is_space(text_[word_end])) ++word_end;
      if (pos == word_end) break;
      if (Status s = add_word(pos, word_end); !s.ok()) return s;
      const char last = text_[word_end - 1];
      raise_boundary(last == ',' || last == ';' || last == ':' ? kClause : kWord);
      pos = word_end;
    }
    return Status::Ok();
  }

  Status add_word(size_t begin, size_t end) {
    size_t raw = 0;
    size_t tokens = estimate(std::string_view(text_).substr(begin, end - begin), &raw);
    if (raw <= max_tokens_) {
      push_unit(begin, end, tokens);
      return Status::Ok();
    }
    // Longer than a chunk (a URL, base64, text without spaces): slices between code
    // points, sized from the bytes per token seen so far and checked with the counter.
    size_t pos = begin;
    size_t sample_bytes = end - begin;
    size_t sample_tokens = std::max<size_t>(tokens, 1);
    while (pos < end) {
      size_t want = std::max<size_t>(1, sample_bytes * budget_ * 9 / (10 * sample_tokens));
      size_t cut = code_point_cut(pos, end, std::min(end - pos, want));
      for (;;) {
        tokens = estimate(std::string_view(text_).substr(pos, cut - pos), &raw);
        if (raw <= max_tokens_) break;
        const size_t next_cut =
            code_point_cut(pos, end, (cut - pos) * max_tokens_ * 9 / (10 * raw));
        if (next_cut >= cut) {
          return Status::InvalidArgument("the token counter counts " + std::to_string(raw) +
                                         " tokens for \"" + text_.substr(pos, cut - pos) +
                                         "\", more than a chunk's " + std::to_string(max_tokens_) +
                                         "; is max_tokens too small for this tokenizer?");
        }
        cut = next_cut;
      }
      push_unit(pos, cut, tokens);
      sample_bytes = cut - pos;
      sample_tokens = std::max<size_t>(tokens, 1);
      pos = cut;
    }
    return Status::Ok();
  }

  // A cut at most `length` bytes after `pos` that splits no UTF-8 sequence and does not
  // separate a character from a following joiner, variation selector or combining mark;
  // at least one code point.
  size_t code_point_cut(size_t pos, size_t end, size_t length) {
    size_t cut = pos + length;
    const std::string_view text(text_);
    auto attached = [&](size_t at) {
      const std::string_view s = text.substr(at, 4);
      return s.substr(0, 3) == "\xE2\x80\x8D" || s.substr(0, 3) == "\xEF\xB8\x8F" ||  // ZWJ, VS16
             (s.size() >= 2 && s[0] == '\xCC') ||  // combining marks U+0300..U+033F
             (s.size() >= 2 && s[0] == '\xCD' && static_cast<unsigned char>(s[1]) < 0xB0) ||
             (s.size() == 4 && s.substr(0, 3) == "\xF0\x9F\x8F" &&  // skin tones
              static_cast<unsigned char>(s[3]) >= 0xBB) ||
             (at >= pos + 3 && text.substr(at - 3, 3) == "\xE2\x80\x8D");  // after a ZWJ
    };
    while (cut > pos && cut < end && (is_continuation(text_[cut]) || attached(cut))) --cut;
    if (cut > pos) return cut;
    // No clean cut within `length`: the first code point alone.
    cut = pos + 1;
    while (cut < end && is_continuation(text_[cut])) ++cut;
    return cut;
  }

  // --- Packing --------------------------------------------------------------------

  struct Overlap {
    size_t begin = 0;
    size_t tokens = 0;
  };

  // Text from the end of the previous chunk (which began at `prev_begin`) to repeat
  // before unit `i`: whole sentences if one fits in `budget`, else whole words.
  Overlap find_overlap(size_t prev_begin, size_t i, size_t budget) {
    Overlap none{units_[i].begin, 0};
    if (budget == 0) return none;
    size_t sum = 0, sentence_sum = 0;
    size_t sentence_start = SIZE_MAX, first_included = i;
    size_t k = i;
    while (k > 0) {
      const Unit& u = units_[k - 1];
      if (units_[k].before >= kHeading || u.begin < prev_begin) break;
      if (sum + u.tokens > budget) break;
      sum += u.tokens;
      first_included = k - 1;
      if (u.before >= kSentence) {
        sentence_start = k - 1;
        sentence_sum = sum;
      }
      --k;
    }
    if (sentence_start != SIZE_MAX) return Overlap{units_[sentence_start].begin, sentence_sum};
    Overlap words{first_included < i ? units_[first_included].begin : units_[i].begin, sum};
    if (k == 0 || units_[k].before >= kHeading || units_[k - 1].begin < prev_begin) {
      return words.tokens > 0 ? words : none;
    }
    // Unit k-1 does not fit whole: its last words, counted one by one.
    const Unit& u = units_[k - 1];
    size_t pos = u.end;
    while (pos > u.begin) {
      size_t word_begin = pos;
      while (word_begin > u.begin && !is_space(text_[word_begin - 1])) --word_begin;
      const size_t t = std::max<size_t>(
          1, estimate(std::string_view(text_).substr(word_begin, pos - word_begin)));
      if (words.tokens + t > budget) break;
      words.tokens += t;
      words.begin = word_begin;
      pos = word_begin;
      while (pos > u.begin && is_space(text_[pos - 1])) --pos;
    }
    return words.tokens > 0 ? words : none;
  }

  // Where the chunk of units [i, e) should end, e being the first unit that did not
  // fit: the strongest boundary, the latest among equals, that keeps the chunk at least
  // half full (a heading qualifies at any fill).
  size_t best_break(size_t i, size_t e, size_t overlap_tokens) const {
    size_t best = e;
    Boundary best_strength = units_[e].before;
    size_t filled = overlap_tokens;
    const size_t half = budget_ / 2;
    for (size_t k = i + 1; k < e; ++k) {
      filled += units_[k - 1].tokens;
      const Boundary b = units_[k].before;
      if (b < kHeading && filled < half) continue;
      if (b > best_strength) {
        best = k;
        best_strength = b;
      } else if (b == best_strength && best != e) {
        best = k;
      }
    }
    return best;
  }

  void pack() {
    size_t i = 0;
    size_t prev_begin = SIZE_MAX;
    while (i < units_.size()) {
      Overlap overlap{units_[i].begin, 0};
      if (prev_begin != SIZE_MAX && overlap_tokens_ > 0 && units_[i].before < kHeading &&
          units_[i].tokens < budget_) {
        overlap =
            find_overlap(prev_begin, i, std::min(overlap_tokens_, budget_ - units_[i].tokens));
      }
      const size_t room = budget_ - overlap.tokens;
      size_t sum = units_[i].tokens;
      size_t e = i + 1;
      while (e < units_.size() && sum + units_[e].tokens <= room) {
        sum += units_[e].tokens;
        ++e;
      }
      const size_t b = e < units_.size() ? best_break(i, e, overlap.tokens) : e;
      prev_begin = emit(i, b, overlap);
      i = next_;
    }
  }

  // Emits units [i, b) after `overlap`, checking the size with one count; a chunk
  // over the limit (the counter is not exactly additive) loses its overlap, then units
  // from its end. Sets next_ to the first unit not emitted; returns the chunk's begin.
  size_t emit(size_t i, size_t b, Overlap overlap) {
    size_t begin = overlap.tokens > 0 ? overlap.begin : units_[i].begin;
    size_t raw = count_(std::string_view(text_).substr(begin, units_[b - 1].end - begin));
    if (raw > max_tokens_ && overlap.tokens > 0) {
      begin = units_[i].begin;
      raw = count_(std::string_view(text_).substr(begin, units_[b - 1].end - begin));
    }
    while (raw > max_tokens_ && b - i > 1) {
      // Aim below the limit by the measured excess; one unit fewer at least.
      size_t estimated = 0;
      for (size_t k = i; k < b; ++k) estimated += units_[k].tokens;
      const size_t target = estimated * max_tokens_ / raw * 9 / 10;
      size_t nb = i + 1, sum = units_[i].tokens;
      while (nb < b - 1 && sum + units_[nb].tokens <= target) sum += units_[nb++].tokens;
      b = nb;
      raw = count_(std::string_view(text_).substr(begin, units_[b - 1].end - begin));
    }
    // A single unit was counted alone when it was made, so it fits.
    Chunk c;
    c.begin = begin;
    c.end = units_[b - 1].end;
    c.text = text_.substr(c.begin, c.end - c.begin);
    c.token_count = raw;
    c.overlap_bytes = units_[i].begin - begin;
    locate(units_[i].begin, c.end, &c);
    out_->push_back(std::move(c));
    next_ = b;
    return begin;
  }

  // Whether a section holds nothing but its heading line (a chapter heading directly
  // followed by its first sub-heading): it then names no text of its own.
  bool heading_only(const Section& s) const {
    if (s.heading_path.empty()) return false;
    const std::string& title = s.heading_path.back();
    std::string_view body = std::string_view(text_).substr(s.begin, s.end - s.begin);
    while (!body.empty() && is_space(body.back())) body.remove_suffix(1);
    return body == title;
  }

  // Page and heading of a chunk whose own text is [begin, end): the page where it
  // starts; the heading path its sections share, sections with only a heading line
  // aside. Chunks come in text order.
  void locate(size_t begin, size_t end, Chunk* c) {
    const auto& sections = doc_.sections;
    if (sections.empty()) return;
    while (section_ + 1 < sections.size() && sections[section_].end <= begin) ++section_;
    c->page = sections[section_].page;
    const std::vector<std::string>* path = nullptr;
    size_t common = 0;
    size_t last = section_;
    while (last + 1 < sections.size() && sections[last + 1].begin < end) ++last;
    for (size_t k = section_; k <= last; ++k) {
      if (k < last && heading_only(sections[k])) continue;
      const auto& p = sections[k].heading_path;
      if (path == nullptr) {
        path = &p;
        common = p.size();
        continue;
      }
      size_t n = 0;
      while (n < common && n < p.size() && p[n] == (*path)[n]) ++n;
      common = n;
    }
    for (size_t n = 0; n < common; ++n) {
      if (n > 0) c->heading += " > ";
      c->heading += (*path)[n];
    }
  }

  const ExtractedText& doc_;
  const std::string& text_;
  const TokenCounter& count_;
  const size_t max_tokens_;
  const size_t overlap_tokens_;
  const size_t fixed_;
  const size_t budget_;  // tokens for text in a chunk: max_tokens_ - fixed_

  std::vector<Unit> units_;  // of the top-level section being packed
  Boundary next_boundary_ = kParagraph;
  size_t next_ = 0;
  size_t section_ = 0;
  std::vector<Chunk>* out_ = nullptr;
};

}  // namespace

Status validate(const ChunkOptions& options) {
  if (options.max_tokens < 16 || options.max_tokens > kMaxTokensLimit) {
    return Status::InvalidArgument("chunk max_tokens must be between 16 and " +
                                   std::to_string(kMaxTokensLimit) + ", not " +
                                   std::to_string(options.max_tokens));
  }
  if (options.overlap_tokens > options.max_tokens / 2) {
    return Status::InvalidArgument(
        "chunk overlap_tokens (" + std::to_string(options.overlap_tokens) +
        ") must be at most half of max_tokens (" + std::to_string(options.max_tokens) + ")");
  }
  return Status::Ok();
}

Result<std::vector<Chunk>> chunk_text(const ExtractedText& doc, const TokenCounter& count_tokens,
                                      const ChunkOptions& options) {
  if (Status s = validate(options); !s.ok()) return s;
  if (!count_tokens) return Status::InvalidArgument("chunking needs a token counter");
  const size_t fixed = count_tokens(std::string_view());
  if (fixed + kMinTextTokens > options.max_tokens) {
    return Status::InvalidArgument("the token counter adds " + std::to_string(fixed) +
                                   " tokens to every input, leaving " + "fewer than " +
                                   std::to_string(kMinTextTokens) + " of max_tokens (" +
                                   std::to_string(options.max_tokens) + ") for text");
  }
  std::vector<Chunk> chunks;
  Chunker chunker(doc, count_tokens, options, fixed);
  if (Status s = chunker.run(&chunks); !s.ok()) return s;
  return chunks;
}

}  // namespace infera::knowledge
