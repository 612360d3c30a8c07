#include "engine/unicode.h"

#include <algorithm>
#include <array>

namespace infera::engine::unicode {

namespace {

bool is_white_space(uint32_t cpt) {
  // Unicode PropList.txt White_Space.
  return (cpt >= 0x09 && cpt <= 0x0D) || cpt == 0x20 || cpt == 0x85 || cpt == 0xA0 ||
         cpt == 0x1680 || (cpt >= 0x2000 && cpt <= 0x200A) || cpt == 0x2028 || cpt == 0x2029 ||
         cpt == 0x202F || cpt == 0x205F || cpt == 0x3000;
}

uint16_t lookup(uint32_t cpt) {
  const CategoryRange* end = kCategoryRanges + kCategoryRangeCount;
  const CategoryRange* it = std::upper_bound(
      kCategoryRanges, end, cpt, [](uint32_t c, const CategoryRange& r) { return c < r.first; });
  const uint16_t category = (it == kCategoryRanges) ? kUndefined : (it - 1)->flags;
  return static_cast<uint16_t>(category | (is_white_space(cpt) ? kWhitespace : 0));
}

// Text is mostly ASCII; a table avoids the binary search for it.
const std::array<uint16_t, 128>& ascii_flags() {
  static const std::array<uint16_t, 128> table = [] {
    std::array<uint16_t, 128> t{};
    for (uint32_t c = 0; c < 128; ++c) t[c] = lookup(c);
    return t;
  }();
  return table;
}

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the
// other 68 bytes to U+0100 onwards in byte order.
struct ByteMap {
  std::array<uint32_t, 256> to_cpt{};
  std::array<int16_t, 324> to_byte{};  // indexed by code point (all < 0x144)
};

const ByteMap& byte_map() {
  static const ByteMap map = [] {
    ByteMap m;
    m.to_byte.fill(-1);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      m.to_cpt[b] = printable ? b : next++;
      m.to_byte[m.to_cpt[b]] = static_cast<int16_t>(b);
    }
    return m;
  }();
  return map;
}

}  // namespace

uint16_t flags(uint32_t cpt) {
  if (cpt < 128) return ascii_flags()[cpt];
  if (cpt > 0x10FFFF) return kUndefined;  // as the reference: unassigned, not "nothing"
  return lookup(cpt);
}

namespace {
uint32_t map_pair(const CodepointPair* table, size_t count, uint32_t cpt) {
  const CodepointPair* end = table + count;
  const CodepointPair* it = std::lower_bound(
      table, end, cpt, [](const CodepointPair& p, uint32_t c) { return p.from < c; });
  return it != end && it->from == cpt ? it->to : cpt;
}
}  // namespace

uint32_t to_lower(uint32_t cpt) {
  if (cpt < 128) return cpt >= 'A' && cpt <= 'Z' ? cpt + 32 : cpt;
  return map_pair(kLowercase, kLowercaseCount, cpt);
}

uint32_t nfd_base(uint32_t cpt) {
  if (cpt < 0xC0) return cpt;
  return map_pair(kNfdBase, kNfdBaseCount, cpt);
}

bool is_cjk_ideograph(uint32_t cpt) {
  return (cpt >= 0x4E00 && cpt <= 0x9FFF) || (cpt >= 0x3400 && cpt <= 0x4DBF) ||
         (cpt >= 0x20000 && cpt <= 0x2A6DF) || (cpt >= 0x2A700 && cpt <= 0x2B73F) ||
         (cpt >= 0x2B740 && cpt <= 0x2B81F) || (cpt >= 0x2B920 && cpt <= 0x2CEAF) ||
         (cpt >= 0xF900 && cpt <= 0xFAFF) || (cpt >= 0x2F800 && cpt <= 0x2FA1F);
}

uint32_t decode(std::string_view text, size_t& pos) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t lead = byte(pos);
  const size_t n = lead < 0x80          ? 1
                   : (lead & 0x40) == 0 ? 0
                   : (lead & 0x20) == 0 ? 2
                   : (lead & 0x10) == 0 ? 3
                   : (lead & 0x08) == 0 ? 4
                                        : 0;
  if (n == 0 || pos + n > text.size()) {
    ++pos;
    return kReplacementCharacter;
  }
  if (n == 1) {
    ++pos;
    return lead;
  }
  uint32_t cpt = lead & (0x7F >> n);
  for (size_t i = 1; i < n; ++i) {
    const uint8_t c = byte(pos + i);
    if ((c & 0xC0) != 0x80) {
      ++pos;
      return kReplacementCharacter;
    }
    cpt = (cpt << 6) | (c & 0x3F);
  }
  pos += n;
  return cpt;
}

void append_utf8(std::string& out, uint32_t cpt) {
  if (cpt < 0x80) {
    out += static_cast<char>(cpt);
  } else if (cpt < 0x800) {
    out += static_cast<char>(0xC0 | (cpt >> 6));
    out += static_cast<char>(0x80 | (cpt & 0x3F));
  } else if (cpt < 0x10000) {
    out += static_cast<char>(0xE0 | (cpt >> 12));
    out += static_cast<char>(0x80 | ((cpt >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cpt & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | ((cpt >> 18) & 0x07));
    out += static_cast<char>(0x80 | ((cpt >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cpt >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cpt & 0x3F));
  }
}

uint32_t byte_to_codepoint(uint8_t byte) { return byte_map().to_cpt[byte]; }

int codepoint_to_byte(uint32_t cpt) {
  const ByteMap& m = byte_map();
  return cpt < m.to_byte.size() ? m.to_byte[cpt] : -1;
}

size_t complete_prefix_length(std::string_view bytes) {
  // Only the last three bytes can belong to an unfinished character.
  const size_t n = bytes.size();
  for (size_t back = 1; back <= std::min<size_t>(3, n); ++back) {
    const auto c = static_cast<uint8_t>(bytes[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    size_t need = 0;
    if ((c & 0xE0) == 0xC0)
      need = 2;
    else if ((c & 0xF0) == 0xE0)
      need = 3;
    else if ((c & 0xF8) == 0xF0)
      need = 4;
    // A lead whose sequence is still short is held back; anything else is final.
    return (need > back) ? n - back : n;
  }
  return n;
}

}  // namespace infera::engine::unicode
