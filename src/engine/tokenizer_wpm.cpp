// WordPiece tokenizer, as llama.cpp runs it for tokenizer.ggml.model = "bert" (BERT,
// bge, MiniLM, e5, nomic): the text is split into words at whitespace, every
// punctuation character (and ASCII symbol) and every CJK ideograph is a word of its
// own, control characters are dropped, letters are lowercased and stripped of their
// accents; each word is then matched greedily, longest vocabulary entry first, from
// its start. The converter stores word-initial pieces with a "▁" prefix and
// continuation pieces ("##ing" in the original vocabulary) bare, so the match runs
// over "▁" + word. A word with any position no piece matches becomes [UNK] whole.
#include <algorithm>

#include "engine/unicode.h"
#include "engine/vocab.h"

namespace infera::engine {

namespace {

constexpr std::string_view kWordStart = "\xE2\x96\x81";  // U+2581 "▁"

class WpmTokenizer final : public Tokenizer {
 public:
  explicit WpmTokenizer(std::unique_ptr<Vocab> vocab) : Tokenizer(std::move(vocab)) {
    for (const VocabToken& t : vocab_->tokens) max_token_bytes_ = std::max(max_token_bytes_, t.text.size());
  }

 protected:
  void encode_run(std::string_view text, bool at_text_start,
                  std::vector<int32_t>& out) const override;

 private:
  void encode_word(const std::string& word, std::vector<int32_t>& out) const;

  size_t max_token_bytes_ = 0;
};

void WpmTokenizer::encode_run(std::string_view text, bool /*at_text_start*/,
                              std::vector<int32_t>& out) const {
  std::string word(kWordStart);  // the word being collected, after its "▁"
  auto finish = [&] {
    if (word.size() > kWordStart.size()) encode_word(word, out);
    word.resize(kWordStart.size());
  };
  for (size_t pos = 0; pos < text.size();) {
    const uint32_t raw = unicode::decode(text, pos);
    const uint32_t cpt = unicode::nfd_base(raw);
    const uint16_t f = unicode::flags(cpt);
    if (f & unicode::kWhitespace) {
      finish();
      continue;
    }
    if (cpt == 0 || cpt == unicode::kReplacementCharacter || (f & unicode::kControl)) continue;
    const uint32_t lower = unicode::to_lower(cpt);
    if ((f & unicode::kPunctuation) || (cpt < 0x7F && (f & unicode::kSymbol)) ||
        unicode::is_cjk_ideograph(cpt)) {
      finish();
      unicode::append_utf8(word, lower);
      finish();
    } else {
      unicode::append_utf8(word, lower);
    }
  }
  finish();
}

void WpmTokenizer::encode_word(const std::string& word, std::vector<int32_t>& out) const {
  const size_t first = out.size();
  const std::string_view w(word);
  for (size_t i = 0; i < w.size();) {
    int32_t id = -1;
    size_t len = std::min(w.size() - i, max_token_bytes_);
    for (; len > 0; --len) {
      id = vocab_->find(w.substr(i, len));
      if (id >= 0) break;
    }
    if (id < 0) {  // no piece starts here: the whole word is unknown
      out.resize(first);
      break;
    }
    out.push_back(id);
    i += len;
  }
  if (out.size() == first && vocab_->unk >= 0) out.push_back(vocab_->unk);
}

}  // namespace

std::unique_ptr<Tokenizer> make_wpm_tokenizer(std::unique_ptr<Vocab> vocab) {
  return std::make_unique<WpmTokenizer>(std::move(vocab));
}

}  // namespace infera::engine
