// Byte-level BPE tokenizer (tokenizer.ggml.model = "gpt2"): the pre-tokenizer
// splits text into words, each word's bytes are mapped to GPT-2's printable
// characters, then the lowest-ranked merge is applied repeatedly
// (Sennrich et al. 2016, "Neural Machine Translation of Rare Words with Subword Units").
#include <queue>

#include "engine/unicode.h"
#include "engine/vocab.h"

namespace infera::engine {

namespace {

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(std::unique_ptr<Vocab> vocab) : Tokenizer(std::move(vocab)) {}

 protected:
  void encode_run(std::string_view text, bool at_text_start,
                  std::vector<int32_t>& out) const override;

 private:
  struct Symbol {
    size_t begin;
    size_t size;  // 0 once merged into its left neighbour
    int prev;
    int next;
  };
  struct Bigram {
    int left;
    int right;
    int32_t rank;
    size_t size;
  };
  // Lowest rank first; on ties the leftmost pair.
  struct Later {
    bool operator()(const Bigram& a, const Bigram& b) const {
      return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
    }
  };
  using Queue = std::priority_queue<Bigram, std::vector<Bigram>, Later>;

  void encode_word(const std::string& word, std::vector<int32_t>& out) const;
  void try_add_bigram(const std::string& word, const std::vector<Symbol>& symbols, int left,
                      int right, std::string& scratch, Queue& queue) const;
};

void BpeTokenizer::try_add_bigram(const std::string& word, const std::vector<Symbol>& symbols,
                                  int left, int right, std::string& scratch, Queue& queue) const {
  if (left < 0 || right < 0) return;
  const Symbol& l = symbols[left];
  const Symbol& r = symbols[right];
  scratch.assign(word, l.begin, l.size);
  scratch += ' ';
  scratch.append(word, r.begin, r.size);
  auto it = vocab_->merge_rank.find(std::string_view(scratch));
  if (it == vocab_->merge_rank.end()) return;
  queue.push({left, right, it->second, l.size + r.size});
}

void BpeTokenizer::encode_word(const std::string& word, std::vector<int32_t>& out) const {
  if (vocab_->ignore_merges) {
    if (const int32_t id = vocab_->find(word); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  for (size_t pos = 0; pos < word.size();) {
    const size_t len =
        std::min(unicode::sequence_length(static_cast<uint8_t>(word[pos])), word.size() - pos);
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({pos, len, index - 1, pos + len == word.size() ? -1 : index + 1});
    pos += len;
  }
  Queue queue;
  std::string scratch;
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) {
    try_add_bigram(word, symbols, i - 1, i, scratch, queue);
  }
  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& left = symbols[b.left];
    Symbol& right = symbols[b.right];
    // Stale: a side was merged away or changed since the pair was queued. Symbols
    // only grow to the right, so an unchanged pair has the same total size.
    if (left.size == 0 || right.size == 0 || left.size + right.size != b.size ||
        left.next != b.right) {
      continue;
    }
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = b.left;
    try_add_bigram(word, symbols, left.prev, b.left, scratch, queue);
    try_add_bigram(word, symbols, b.left, left.next, scratch, queue);
  }
  for (int i = 0; i >= 0; i = symbols[i].next) {
    const std::string_view piece = std::string_view(word).substr(symbols[i].begin, symbols[i].size);
    if (const int32_t id = vocab_->find(piece); id >= 0) {
      out.push_back(id);
      continue;
    }
    // Not in the vocabulary (a merge produced a non-token, or an unusual vocab):
    // single-byte tokens where they exist, as the reference does.
    for (char c : piece) {
      if (const int32_t id = vocab_->find(std::string_view(&c, 1)); id >= 0) out.push_back(id);
    }
  }
}

void BpeTokenizer::encode_run(std::string_view text, bool /*at_text_start*/,
                              std::vector<int32_t>& out) const {
  std::vector<std::string> words;
  pre_tokenize(text, vocab_->pre, words);
  std::string encoded;
  for (const std::string& word : words) {
    encoded.clear();
    for (char c : word)
      unicode::append_utf8(encoded, unicode::byte_to_codepoint(static_cast<uint8_t>(c)));
    encode_word(encoded, out);
  }
}

}  // namespace

std::unique_ptr<Tokenizer> make_bpe_tokenizer(std::unique_ptr<Vocab> vocab) {
  return std::make_unique<BpeTokenizer>(std::move(vocab));
}

}  // namespace infera::engine
