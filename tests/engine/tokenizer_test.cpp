// Tokenizer tests: llama.cpp's test vectors for every vocab in ../shared/models,
// decode round trips, special tokens and streaming UTF-8.
#include "engine/tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/gguf.h"
#include "engine/gguf_writer.h"

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
  if (!std::filesystem::exists(base)) GTEST_SKIP() << base << " not found (../shared/models absent)";
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
                                           "ggml-vocab-gpt-2.gguf", "ggml-vocab-deepseek-coder.gguf",
                                           "ggml-vocab-falcon.gguf"),
                         [](const auto& info) {
                           std::string n = info.param.substr(11, info.param.size() - 16);
                           for (char& c : n) {
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return n;
                         });

}  // namespace
}  // namespace infera::engine
