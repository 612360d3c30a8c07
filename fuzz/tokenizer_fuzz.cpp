// libFuzzer target for the tokenizers: arbitrary bytes encoded and decoded by
// SentencePiece and byte-level BPE vocabularies. The first input byte picks the
// vocabulary and the flags (add_bos, parse_special), the rest is the text.
//
// Vocabularies, built once in LLVMFuzzerInitialize: the bundled default model's
// SentencePiece vocab (models/stories260K-tok512.gguf), a small byte-level BPE vocab
// written here with GgufWriter for each pre-tokenizer (so the target needs no
// outside files), and, when ../shared/models is present, its real vocab-only files.
//
// What tokenizer.h and tests/engine/tokenizer_test.cpp promise, checked per input:
// ids are in range; append_piece equals token_to_piece; StreamingDetokenizer emits
// valid UTF-8 only; byte-level BPE is lossless for valid UTF-8 (the pieces spell
// the text); SentencePiece pieces spell the text with the encoder's space prefix
// and decode() removes it again, for valid UTF-8 without a literal U+2581 (which
// the encoder cannot tell from its own space marker). Malformed UTF-8 is spelled as
// byte tokens, as in llama.cpp, but not always losslessly: like llama.cpp, the
// encoder takes a character's length from its lead byte alone, so in "\xC3 " the
// lead byte swallows the first byte of the space marker, and the pieces read
// "\xC3\xE2\x96\x81". Build and run: docs/FUZZING.md.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "engine/gguf.h"
#include "engine/gguf_writer.h"
#include "engine/tokenizer.h"
#include "require.h"

namespace {

using infera::engine::GgufFile;
using infera::engine::GgufWriter;
using infera::engine::Tokenizer;
using infera::engine::TokenizerKind;

struct Entry {
  std::unique_ptr<Tokenizer> tokenizer;
  // Whether the vocab spells every byte (BPE: its byte character; SentencePiece:
  // <0xNN>). Without, text needing a missing byte cannot round-trip: as in
  // llama.cpp, BPE drops it and SentencePiece writes the unknown token.
  bool spells_every_byte = false;
};

std::vector<Entry>* g_tokenizers = nullptr;


// Valid UTF-8 per RFC 3629 (no overlongs, surrogates or values past U+10FFFF).
bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<uint8_t>(s[i]);
    const size_t n = b < 0x80                   ? 1
                     : (b >= 0xC2 && b <= 0xDF) ? 2
                     : (b >= 0xE0 && b <= 0xEF) ? 3
                     : (b >= 0xF0 && b <= 0xF4) ? 4
                                                : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cpt = n == 1 ? b : (b & (0x7F >> n));
    for (size_t k = 1; k < n; ++k) {
      const auto c = static_cast<uint8_t>(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cpt = (cpt << 6) | (c & 0x3F);
    }
    if ((n == 3 && (cpt < 0x800 || (cpt >= 0xD800 && cpt <= 0xDFFF))) ||
        (n == 4 && (cpt < 0x10000 || cpt > 0x10FFFF))) {
      return false;
    }
    i += n;
  }
  return true;
}

void append_utf8(std::string& out, uint32_t cpt) {
  if (cpt < 0x80) {
    out += static_cast<char>(cpt);
  } else if (cpt < 0x800) {
    out += static_cast<char>(0xC0 | (cpt >> 6));
    out += static_cast<char>(0x80 | (cpt & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (cpt >> 12));
    out += static_cast<char>(0x80 | ((cpt >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cpt & 0x3F));
  }
}

// Byte-level BPE spells each byte as one printable character: printable Latin-1
// bytes as themselves, the others as U+0100 onwards in byte order (GPT-2's scheme).
std::string byte_char(int byte) {
  auto printable = [](int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  };
  if (printable(byte)) {
    std::string s;
    append_utf8(s, static_cast<uint32_t>(byte));
    return s;
  }
  int n = 0;
  for (int b = 0; b < byte; ++b) n += printable(b) ? 0 : 1;
  std::string s;
  append_utf8(s, 0x100 + static_cast<uint32_t>(n));
  return s;
}

// Every byte, a few merges, an end-of-text control token and a user-defined token.
std::unique_ptr<Tokenizer> tiny_bpe(std::string_view pre) {
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.push_back(byte_char(b));
  const std::string space = byte_char(' ');
  const std::vector<std::string> merges = {space + " t", "h e", space + "t he", "i n",
                                           "e r",        "1 2", "1 23"};
  const std::vector<std::string> merged = {space + "t", "he", space + "the", "in",
                                           "er",        "12", "123"};
  tokens.insert(tokens.end(), merged.begin(), merged.end());
  tokens.push_back("<|endoftext|>");
  tokens.push_back("<tool>");
  std::vector<int32_t> types(tokens.size(), 1);
  types[types.size() - 2] = 3;
  types[types.size() - 1] = 4;

  GgufWriter w;
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", pre);
  w.set_string_array("tokenizer.ggml.tokens", std::span<const std::string>(tokens));
  w.set_string_array("tokenizer.ggml.merges", std::span<const std::string>(merges));
  w.set_array<int32_t>("tokenizer.ggml.token_type", std::span<const int32_t>(types));
  w.set<uint32_t>("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(tokens.size() - 2));
  w.set<uint32_t>("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(tokens.size() - 2));
  const std::vector<uint8_t> image = w.to_bytes();
  auto file = GgufFile::from_memory(image, "tiny-bpe.gguf");
  require(file.ok());
  auto t = Tokenizer::from_gguf(**file);
  require(t.ok());
  return std::move(t).value();
}

void add(std::unique_ptr<Tokenizer> t) {
  std::unordered_set<std::string_view> texts;
  for (int32_t id = 0; id < t->n_vocab(); ++id) texts.insert(t->token_text(id));
  bool every = true;
  for (int b = 0; b < 256; ++b) {
    char spm[8];
    std::snprintf(spm, sizeof spm, "<0x%02X>", b);
    every = every && texts.count(t->kind() == TokenizerKind::kBytePairEncoding ? byte_char(b)
                                                                               : std::string(spm));
  }
  g_tokenizers->push_back(Entry{std::move(t), every});
}

void add_file(const std::string& path) {
  if (!std::filesystem::exists(path)) return;
  auto file = GgufFile::open(path);
  require(file.ok());
  auto t = Tokenizer::from_gguf(**file);
  require(t.ok());
  add(std::move(t).value());
}

// Prints the ids and their pieces (hex) before a failed round-trip check aborts.
void explain(const Tokenizer& t, const std::vector<int32_t>& ids) {
  for (int32_t id : ids) {
    std::fprintf(stderr, "%d[", id);
    for (unsigned char c : t.token_to_piece(id, true)) std::fprintf(stderr, "%02x", c);
    std::fprintf(stderr, "] ");
  }
  std::fprintf(stderr, "\n");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_tokenizers = new std::vector<Entry>();
  add_file(std::string(INFERA_SOURCE_DIR) + "/models/stories260K-tok512.gguf");
  require(!g_tokenizers->empty());
  for (const char* pre : {"gpt-2", "llama-bpe", "qwen2", "deepseek-coder", "falcon", "default"}) {
    add(tiny_bpe(pre));
    require(g_tokenizers->back().spells_every_byte);
  }
  const std::string shared = std::string(INFERA_SOURCE_DIR) + "/../shared/models/";
  for (const char* name :
       {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf", "ggml-vocab-phi-3.gguf",
        "ggml-vocab-deepseek-coder.gguf", "ggml-vocab-falcon.gguf"}) {
    add_file(shared + name);
  }
  std::fprintf(stderr,
               "tokenizer_fuzz: %zu vocabularies; spelling every byte:", g_tokenizers->size());
  for (const Entry& e : *g_tokenizers) std::fprintf(stderr, " %d", e.spells_every_byte ? 1 : 0);
  std::fprintf(stderr, "\n");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t selector = data[0];
  const Entry& entry = (*g_tokenizers)[(selector >> 2) % g_tokenizers->size()];
  const Tokenizer& t = *entry.tokenizer;
  const bool add_bos = (selector & 1) != 0;
  const bool parse_special = (selector & 2) != 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  const std::vector<int32_t> ids = t.encode(text, add_bos, parse_special);
  std::string pieces;
  std::string special_pieces;
  infera::engine::StreamingDetokenizer stream(t);
  std::string streamed;
  for (int32_t id : ids) {
    require(id >= 0 && id < t.n_vocab());
    const std::string piece = t.token_to_piece(id);
    std::string appended;
    t.append_piece(id, appended);
    require(appended == piece);
    pieces += piece;
    special_pieces += t.token_to_piece(id, /*render_special=*/true);
    const std::string out = stream.push(id);
    require(is_valid_utf8(out));
    streamed += out;
  }
  const std::string rest = stream.flush();
  require(is_valid_utf8(rest));
  const std::string decoded = t.decode(ids);
  const std::string decoded_special = t.decode(ids, /*skip_special=*/false);
  (void)decoded_special;

  if (add_bos || !entry.spells_every_byte) return 0;
  if (t.kind() == TokenizerKind::kBytePairEncoding) {
    if (is_valid_utf8(text)) {
      if (special_pieces != text) explain(t, ids);
      require(special_pieces == text);
    }
  } else if (!parse_special && is_valid_utf8(text) &&
             text.find("\xE2\x96\x81") == std::string_view::npos) {
    if (decoded != text) explain(t, ids);
    require(pieces ==
            (text.empty() || !t.add_space_prefix() ? std::string(text) : " " + std::string(text)));
    require(decoded == text);
  }
  return 0;
}
