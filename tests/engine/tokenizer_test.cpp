// Tokenizer tests: llama.cpp's test vectors for every vocab in ../shared/models,
// decode round trips, special tokens and streaming UTF-8.
#include "engine/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/gguf.h"
#include "engine/gguf_writer.h"
#include "engine/pretokenizer.h"

namespace infera::engine {
namespace {

const std::string kModels = INFERA_SHARED_MODELS;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// .inp: texts each followed by "\n__ggml_vocab_test__\n"; .out: one line of ids per text.
struct Vectors {
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> ids;
};

Vectors read_vectors(const std::string& base) {
  Vectors v;
  const std::string inp = read_file(base + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  for (size_t pos = 0; pos < inp.size();) {
    const size_t end = inp.find(sep, pos);
    if (end == std::string::npos) break;
    v.texts.push_back(inp.substr(pos, end - pos));
    pos = end + sep.size();
  }
  std::istringstream out(read_file(base + ".out"));
  for (std::string line; std::getline(out, line);) {
    std::istringstream ls(line);
    std::vector<int32_t> ids;
    for (int32_t id; ls >> id;) ids.push_back(id);
    v.ids.push_back(std::move(ids));
  }
  return v;
}

struct Loaded {
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Tokenizer> tokenizer;
};

Loaded load(const std::string& name) {
  Loaded l;
  auto f = GgufFile::open(kModels + "/" + name);
  if (!f.ok()) return l;
  l.file = std::move(f).value();
  auto t = Tokenizer::from_gguf(*l.file);
  EXPECT_TRUE(t.ok()) << t.status().message();
  if (t.ok()) l.tokenizer = std::move(t).value();
  return l;
}

std::string show(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += std::to_string(id) + " ";
  return s;
}

class VocabVectors : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabVectors, MatchesLlamaCppTokenIds) {
  const std::string base = kModels + "/" + GetParam();
  if (!std::filesystem::exists(base))
    GTEST_SKIP() << base << " not found (../shared/models absent)";
  Loaded l = load(GetParam());
  ASSERT_NE(l.tokenizer, nullptr);
  const Vectors v = read_vectors(base);
  ASSERT_EQ(v.texts.size(), v.ids.size());
  ASSERT_GT(v.texts.size(), 20u);
  int failures = 0;
  for (size_t i = 0; i < v.texts.size(); ++i) {
    const std::vector<int32_t> got = l.tokenizer->encode(v.texts[i], false, false);
    if (got != v.ids[i]) ++failures;
    EXPECT_EQ(got, v.ids[i]) << "text " << i << ": '" << v.texts[i] << "'\n  got      " << show(got)
                             << "\n  expected " << show(v.ids[i]);
  }
  RecordProperty("failures", failures);
}

INSTANTIATE_TEST_SUITE_P(SharedModels, VocabVectors,
                         ::testing::Values("ggml-vocab-llama-spm.gguf", "ggml-vocab-phi-3.gguf",
                                           "ggml-vocab-gpt-2.gguf",
                                           "ggml-vocab-deepseek-coder.gguf",
                                           "ggml-vocab-falcon.gguf", "ggml-vocab-bert-bge.gguf"),
                         [](const auto& info) {
                           std::string n = info.param.substr(11, info.param.size() - 16);
                           for (char& c : n) {
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return n;
                         });

// Valid UTF-8 per RFC 3629 (no overlongs, surrogates or values past U+10FFFF).
bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<uint8_t>(s[i]);
    size_t n = b < 0x80                   ? 1
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

TEST_P(VocabVectors, DecodingReproducesEveryTestText) {
  const std::string base = kModels + "/" + GetParam();
  if (!std::filesystem::exists(base))
    GTEST_SKIP() << base << " not found (../shared/models absent)";
  Loaded l = load(GetParam());
  ASSERT_NE(l.tokenizer, nullptr);
  if (l.tokenizer->kind() == TokenizerKind::kWordPiece) {
    // WordPiece lowercases, strips accents and spacing: decoding is lossy by design.
    EXPECT_EQ(l.tokenizer->decode(l.tokenizer->encode("Hello, World! Äpfel", true, false)),
              "hello, world! apfel");
    return;
  }
  for (const std::string& text : read_vectors(base).texts) {
    const std::vector<int32_t> ids = l.tokenizer->encode(text, false, false);
    std::string pieces;
    for (int32_t id : ids) pieces += l.tokenizer->token_to_piece(id);
    if (l.tokenizer->kind() == TokenizerKind::kSentencePiece) {
      // The encoder's space prefix is the only difference, and decode removes it.
      EXPECT_EQ(pieces, text.empty() ? "" : " " + text);  // empty text has no fragment to prefix
      EXPECT_EQ(l.tokenizer->decode(ids), text);
    } else {
      EXPECT_EQ(pieces, text);  // byte-level BPE is lossless
    }
  }
}

TEST(SpmTokenizer, AddsBosAndMatchesKnownLlamaIds) {
  Loaded l = load("ggml-vocab-llama-spm.gguf");
  if (!l.tokenizer) GTEST_SKIP() << "../shared/models absent";
  const Tokenizer& t = *l.tokenizer;
  EXPECT_EQ(t.kind(), TokenizerKind::kSentencePiece);
  EXPECT_EQ(t.n_vocab(), 32000);
  EXPECT_EQ(t.bos(), 1);
  EXPECT_EQ(t.eos(), 2);
  EXPECT_EQ(t.unk(), 0);
  EXPECT_TRUE(t.add_bos_default());
  EXPECT_TRUE(t.is_eog(2));
  EXPECT_FALSE(t.is_eog(1));
  EXPECT_TRUE(t.is_control(1));
  EXPECT_EQ(t.encode("Hello world", true, false), (std::vector<int32_t>{1, 15043, 3186}));
  EXPECT_EQ(t.token_text(15043), "\xE2\x96\x81Hello");
  EXPECT_EQ(t.token_to_piece(15043), " Hello");
  EXPECT_EQ(t.token_to_piece(1), "");
  EXPECT_EQ(t.token_to_piece(1, true), "<s>");
  EXPECT_EQ(t.token_to_piece(-5), "");
  EXPECT_EQ(t.token_to_piece(t.n_vocab()), "");
  // After BOS the space stays, as llama.cpp prints a prompt.
  EXPECT_EQ(t.decode(std::vector<int32_t>{1, 15043, 3186}), " Hello world");
  EXPECT_EQ(t.decode(std::vector<int32_t>{1, 15043, 3186}, false), "<s> Hello world");
}

TEST(SpmTokenizer, MatchesControlTokensOnlyWhenParsingSpecial) {
  Loaded l = load("ggml-vocab-llama-spm.gguf");
  if (!l.tokenizer) GTEST_SKIP() << "../shared/models absent";
  const std::vector<int32_t> parsed = l.tokenizer->encode("<s>Hi</s>", false, true);
  ASSERT_GE(parsed.size(), 3u);
  EXPECT_EQ(parsed.front(), 1);
  EXPECT_EQ(parsed.back(), 2);
  const std::vector<int32_t> literal = l.tokenizer->encode("<s>Hi</s>", false, false);
  EXPECT_EQ(std::count(literal.begin(), literal.end(), 1), 0);
  EXPECT_EQ(std::count(literal.begin(), literal.end(), 2), 0);
  EXPECT_GT(literal.size(), parsed.size());
}

TEST(SpmTokenizer, SpellsUnknownCharactersAsByteTokens) {
  Loaded l = load("ggml-vocab-llama-spm.gguf");
  if (!l.tokenizer) GTEST_SKIP() << "../shared/models absent";
  // U+1F999 (a llama emoji) is not in the Llama-2 vocab: four byte tokens <0xF0>... = ids 3 + byte.
  const std::vector<int32_t> ids = l.tokenizer->encode("\xF0\x9F\xA6\x99", false, false);
  ASSERT_EQ(ids.size(), 5u);  // "▁" then the four bytes
  EXPECT_EQ(l.tokenizer->token_text(ids[0]), "\xE2\x96\x81");
  EXPECT_EQ(ids[1], 3 + 0xF0);
  EXPECT_EQ(ids[4], 3 + 0x99);
}

TEST(StreamingDetokenizer, EmitsOnlyCompleteUtf8) {
  Loaded l = load("ggml-vocab-llama-spm.gguf");
  if (!l.tokenizer) GTEST_SKIP() << "../shared/models absent";
  const std::string text = "h\xC3\xA9llo \xF0\x9F\xA6\x99 w\xC3\xB6rld \xE6\x97\xA5\xE6\x9C\xAC";
  const std::vector<int32_t> ids = l.tokenizer->encode(text, true, false);
  StreamingDetokenizer stream(*l.tokenizer);
  std::string streamed;
  int held_back = 0;
  for (int32_t id : ids) {
    const std::string chunk = stream.push(id);
    EXPECT_TRUE(is_valid_utf8(chunk)) << "token " << id;
    if (chunk.empty() && !l.tokenizer->token_to_piece(id).empty()) ++held_back;
    streamed += chunk;
  }
  streamed += stream.flush();
  EXPECT_EQ(streamed, " " + text);
  EXPECT_GE(held_back, 3) << "the emoji's first three byte tokens must be held back";
}

TEST(StreamingDetokenizer, ReplacesBytesThatCanNeverBeValid) {
  Loaded l = load("ggml-vocab-llama-spm.gguf");
  if (!l.tokenizer) GTEST_SKIP() << "../shared/models absent";
  const auto byte = [](int b) { return 3 + b; };
  StreamingDetokenizer stream(*l.tokenizer);
  EXPECT_EQ(stream.push(byte(0xFF)), "\xEF\xBF\xBD");
  EXPECT_EQ(stream.push(byte(0xE2)), "");
  EXPECT_EQ(stream.push(byte(0x82)), "");
  EXPECT_EQ(stream.push(byte(0xAC)), "\xE2\x82\xAC");  // the euro sign, once complete
  EXPECT_EQ(stream.push(byte(0xE2)), "");
  EXPECT_EQ(stream.push(byte('A')),
            "\xEF\xBF\xBD"
            "A");  // an interrupted sequence
  EXPECT_EQ(stream.push(byte(0xF0)), "");
  EXPECT_EQ(stream.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(stream.flush(), "");
}

TEST(BpeTokenizer, Gpt2SpecialIdsAndPieces) {
  Loaded l = load("ggml-vocab-gpt-2.gguf");
  if (!l.tokenizer) GTEST_SKIP() << "../shared/models absent";
  const Tokenizer& t = *l.tokenizer;
  EXPECT_EQ(t.kind(), TokenizerKind::kBytePairEncoding);
  EXPECT_EQ(t.eos(), 50256);
  EXPECT_TRUE(t.is_eog(50256));
  EXPECT_FALSE(t.add_bos_default());
  const std::vector<int32_t> ids = t.encode("Hello world", true, false);
  EXPECT_EQ(ids, (std::vector<int32_t>{15496, 995}));  // GPT-2 adds no BOS
  EXPECT_EQ(t.token_text(995), "\xC4\xA0world");
  EXPECT_EQ(t.token_to_piece(995), " world");
  EXPECT_EQ(t.decode(t.encode("Hello , world .", false, false)),
            "Hello, world.");  // clean-up spaces
  const std::vector<int32_t> special = t.encode("a<|endoftext|>b", false, true);
  EXPECT_EQ(std::count(special.begin(), special.end(), 50256), 1);
  const std::vector<int32_t> plain = t.encode("a<|endoftext|>b", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 50256), 0);
}

std::vector<std::string> split(std::string_view text, PreTokenizer pre) {
  std::vector<std::string> words;
  pre_tokenize(text, pre, words);
  return words;
}

using Words = std::vector<std::string>;

TEST(PreTokenizer, Llama3GroupsDigitsByThreeAndKeepsNewlinesWithPunctuation) {
  EXPECT_EQ(split("Hello world's 12345 !!\n\n  x", PreTokenizer::kLlama3),
            (Words{"Hello", " world", "'s", " ", "123", "45", " !!\n\n", " ", " x"}));
  EXPECT_EQ(split("I'LL go\r\n\nnow", PreTokenizer::kLlama3),
            (Words{"I", "'LL", " go", "\r\n\n", "now"}));
}

TEST(PreTokenizer, Qwen2SplitsEveryDigit) {
  EXPECT_EQ(split("x 2024", PreTokenizer::kQwen2), (Words{"x", " ", "2", "0", "2", "4"}));
}

TEST(PreTokenizer, Gpt2ContractionsAreCaseSensitive) {
  EXPECT_EQ(split("it's IT'S", PreTokenizer::kGpt2), (Words{"it", "'s", " IT", "'", "S"}));
  EXPECT_EQ(split("a   b", PreTokenizer::kGpt2), (Words{"a", "  ", " b"}));
}

TEST(PreTokenizer, MalformedUtf8BecomesReplacementCharacters) {
  EXPECT_EQ(split("a\xFF\xC3", PreTokenizer::kGpt2), (Words{"a", "\xEF\xBF\xBD\xEF\xBF\xBD"}));
}

TEST(PreTokenizer, KnowsTheRequiredNames) {
  EXPECT_EQ(pre_tokenizer_from_name("default"), PreTokenizer::kDefault);
  EXPECT_EQ(pre_tokenizer_from_name("gpt-2"), PreTokenizer::kGpt2);
  EXPECT_EQ(pre_tokenizer_from_name("llama3"), PreTokenizer::kLlama3);
  EXPECT_EQ(pre_tokenizer_from_name("llama-bpe"), PreTokenizer::kLlama3);
  EXPECT_EQ(pre_tokenizer_from_name("qwen2"), PreTokenizer::kQwen2);
  EXPECT_EQ(pre_tokenizer_from_name("deepseek-coder"), PreTokenizer::kDeepseekCoder);
  EXPECT_EQ(pre_tokenizer_from_name("falcon"), PreTokenizer::kFalcon);
  EXPECT_FALSE(pre_tokenizer_from_name("no-such-pre").has_value());
}

// A tiny byte-level BPE vocab where merges reach "Hell" but not "Hello", which is
// itself a token: llama3 reads whole-word tokens first, gpt-2 only merges.
std::unique_ptr<GgufFile> tiny_bpe(std::string_view pre, std::vector<uint8_t>& image) {
  GgufWriter w;
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", pre);
  const std::vector<std::string> tokens = {"H",  "e",    "l",     "o",         "He",
                                           "ll", "Hell", "Hello", "<|eot_id|>"};
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  const std::vector<std::string> merges = {"H e", "l l", "He ll"};
  w.set_string_array("tokenizer.ggml.merges", merges);
  image = w.to_bytes();
  auto f = GgufFile::from_memory(image, "tiny.gguf");
  EXPECT_TRUE(f.ok()) << f.status().message();
  return f.ok() ? std::move(f).value() : nullptr;
}

TEST(BpeTokenizer, Llama3ReadsWholeWordTokensBeforeMerging) {
  std::vector<uint8_t> a;
  std::vector<uint8_t> b;
  auto llama3 = Tokenizer::from_gguf(*tiny_bpe("llama-bpe", a));
  auto gpt2 = Tokenizer::from_gguf(*tiny_bpe("gpt-2", b));
  ASSERT_TRUE(llama3.ok()) << llama3.status().message();
  ASSERT_TRUE(gpt2.ok()) << gpt2.status().message();
  EXPECT_EQ((*llama3)->encode("Hello", false, false), (std::vector<int32_t>{7}));
  EXPECT_EQ((*gpt2)->encode("Hello", false, false), (std::vector<int32_t>{6, 3}));
  EXPECT_TRUE((*llama3)->is_eog(8));  // <|eot_id|> by its text
  EXPECT_TRUE((*llama3)->is_control(8));
}

TEST(TokenizerFromGguf, ReportsMissingOrUnsupportedMetadata) {
  GgufWriter w;
  w.set<uint32_t>("x", 1);
  std::vector<uint8_t> image = w.to_bytes();
  auto no_model = Tokenizer::from_gguf(**GgufFile::from_memory(image, "m.gguf"));
  ASSERT_FALSE(no_model.ok());
  EXPECT_EQ(no_model.status().message(), "m.gguf: metadata key 'tokenizer.ggml.model' not found");

  w.set_string("tokenizer.ggml.model", "t5");
  image = w.to_bytes();
  auto t5 = Tokenizer::from_gguf(**GgufFile::from_memory(image, "m.gguf"));
  EXPECT_EQ(t5.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(t5.status().message().find("'t5'"), std::string::npos);

  std::vector<uint8_t> tiny;
  GgufWriter bad_pre;
  bad_pre.copy_metadata(*tiny_bpe("gpt-2", tiny));
  bad_pre.set_string("tokenizer.ggml.pre", "mystery");
  image = bad_pre.to_bytes();
  auto pre = Tokenizer::from_gguf(**GgufFile::from_memory(image, "m.gguf"));
  EXPECT_EQ(pre.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(pre.status().message().find("tokenizer.ggml.pre 'mystery'"), std::string::npos);

  GgufWriter bad_tokens;
  bad_tokens.set_string("tokenizer.ggml.model", "llama");
  bad_tokens.set<uint32_t>("tokenizer.ggml.tokens", 5);
  image = bad_tokens.to_bytes();
  auto tokens = Tokenizer::from_gguf(**GgufFile::from_memory(image, "m.gguf"));
  EXPECT_EQ(tokens.status().message(),
            "m.gguf: metadata key 'tokenizer.ggml.tokens' is u32, expected array of string");
}

TEST(TokenizerFromGguf, LoadsTheTinyModelsVocabs) {
  for (const char* name : {"llama-2-tiny-random.gguf", "stories260K.gguf"}) {
    const std::string path = kModels + "/" + name;
    if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not found";
    Loaded l = load(name);
    ASSERT_NE(l.tokenizer, nullptr) << name;
    EXPECT_EQ(l.tokenizer->encode("", true, false), (std::vector<int32_t>{1})) << name;
    EXPECT_EQ(l.tokenizer->pad(), -1) << name << ": out-of-range pad id is dropped";
  }
}

}  // namespace
}  // namespace infera::engine
