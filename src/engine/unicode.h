// Unicode facts the tokenizers need: UTF-8 decoding as llama.cpp does it, general
// category classes for the pre-tokenizer splits (\p{L}, \p{N}, \p{P}, \s, ...), and
// GPT-2's byte <-> printable-character mapping. Internal to the engine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace infera::engine::unicode {

// Category classes of a code point (one of kUndefined..kControl) plus kWhitespace.
inline constexpr uint16_t kUndefined = 0x0001;    // unassigned (Cn)
inline constexpr uint16_t kNumber = 0x0002;       // \p{N}
inline constexpr uint16_t kLetter = 0x0004;       // \p{L}
inline constexpr uint16_t kSeparator = 0x0008;    // \p{Z}
inline constexpr uint16_t kMark = 0x0010;         // \p{M}
inline constexpr uint16_t kPunctuation = 0x0020;  // \p{P}
inline constexpr uint16_t kSymbol = 0x0040;       // \p{S}
inline constexpr uint16_t kControl = 0x0080;      // \p{C} other than Cn
inline constexpr uint16_t kWhitespace = 0x0100;   // \s: Unicode White_Space

struct CategoryRange {
  uint32_t first;  // the range runs to the next entry's first
  uint16_t flags;
};
extern const CategoryRange kCategoryRanges[];
extern const size_t kCategoryRangeCount;

struct CodepointPair {
  uint32_t from;  // sorted
  uint32_t to;
};
extern const CodepointPair kLowercase[];  // simple lowercase mapping
extern const size_t kLowercaseCount;
extern const CodepointPair kNfdBase[];  // first code point of the canonical decomposition
extern const size_t kNfdBaseCount;

inline constexpr uint32_t kReplacementCharacter = 0xFFFD;

// Flags of `cpt` (kUndefined for values past U+10FFFF, which malformed UTF-8 can yield).
uint16_t flags(uint32_t cpt);

// Bytes in the UTF-8 sequence that `lead` starts, judged by its high bits alone
// (1 for continuation and invalid bytes), as llama.cpp's tokenizers split text.
inline size_t sequence_length(uint8_t lead) {
  static constexpr uint8_t kByHighNibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kByHighNibble[lead >> 4];
}

// Simple lowercase of `cpt` (itself when it has none).
uint32_t to_lower(uint32_t cpt);
// The base character of `cpt`'s canonical decomposition without its combining marks
// ("Ä" -> "A", "ử" -> "u"), itself when it has none: how the WordPiece tokenizer
// strips accents.
uint32_t nfd_base(uint32_t cpt);
// BERT's "Chinese character" blocks (CJK ideographs), each its own word.
bool is_cjk_ideograph(uint32_t cpt);

// Decodes the code point at `pos` and advances past it. A malformed sequence
// yields U+FFFD and advances one byte (the structure is checked, not overlong
// forms), matching llama.cpp so token ids agree on odd input.
uint32_t decode(std::string_view text, size_t& pos);

void append_utf8(std::string& out, uint32_t cpt);

// GPT-2 byte-level BPE: each byte maps to one printable code point.
uint32_t byte_to_codepoint(uint8_t byte);
// The byte for a mapped code point, or -1 when `cpt` is not in the mapping.
int codepoint_to_byte(uint32_t cpt);

// Length of the longest prefix of `bytes` that ends on a character boundary,
// treating a trailing incomplete-but-valid-so-far sequence as not yet complete.
size_t complete_prefix_length(std::string_view bytes);

}  // namespace infera::engine::unicode
