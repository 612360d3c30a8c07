// SentencePiece (BPE-by-score) tokenizer, as llama.cpp runs it for
// tokenizer.ggml.model = "llama": spaces become "▁", then adjacent symbols are
// merged greedily, highest vocabulary score first, while the merge is a token;
// whatever is left that is not a token falls back to <0xNN> byte tokens.
#include <queue>

#include "engine/unicode.h"
#include "engine/vocab.h"

namespace infera::engine {

namespace {

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581 "▁"

class SpmTokenizer final : public Tokenizer {
 public:
  explicit SpmTokenizer(std::unique_ptr<Vocab> vocab) : Tokenizer(std::move(vocab)) {}

 protected:
  void encode_run(std::string_view text, bool at_text_start,
                  std::vector<int32_t>& out) const override;

 private:
  // One symbol of the text being merged: a byte range, linked to its live neighbours.
  struct Symbol {
    size_t begin;
    size_t size;  // 0 once merged into its left neighbour
    int prev;
    int next;
  };
  struct Bigram {
    int left;
    int right;
    float score;
    size_t size;
  };
  // Highest score first; on ties the leftmost pair, so results are deterministic.
  struct Lower {
    bool operator()(const Bigram& a, const Bigram& b) const {
      return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
  };
  using Queue = std::priority_queue<Bigram, std::vector<Bigram>, Lower>;

  void try_add_bigram(std::string_view text, const std::vector<Symbol>& symbols, int left,
                      int right, Queue& queue) const;
};

void SpmTokenizer::try_add_bigram(std::string_view text, const std::vector<Symbol>& symbols,
                                  int left, int right, Queue& queue) const {
  if (left < 0 || right < 0) return;
  const Symbol& l = symbols[left];
  const Symbol& r = symbols[right];
  const int32_t id = vocab_->find(text.substr(l.begin, l.size + r.size));
  if (id < 0) return;
  queue.push({left, right, vocab_->tokens[id].score, l.size + r.size});
}

void SpmTokenizer::encode_run(std::string_view raw, bool at_text_start,
                              std::vector<int32_t>& out) const {
  std::string text;
  text.reserve(raw.size() * 2 + kSpmSpace.size());
  if (vocab_->add_space_prefix && at_text_start) text += kSpmSpace;
  for (char c : raw) {
    if (c == ' ') {
      text += kSpmSpace;
    } else {
      text += c;
    }
  }
  if (text.empty()) return;

  // Symbols start as UTF-8 characters (by lead byte, clamped to the text).
  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t len =
        std::min(unicode::sequence_length(static_cast<uint8_t>(text[pos])), text.size() - pos);
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({pos, len, index - 1, pos + len == text.size() ? -1 : index + 1});
    pos += len;
  }

  Queue queue;
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i)
    try_add_bigram(text, symbols, i - 1, i, queue);
  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& left = symbols[b.left];
    Symbol& right = symbols[b.right];
    // Stale entry: one side was merged away or grew since the pair was queued.
    if (left.size == 0 || right.size == 0 || left.size + right.size != b.size) continue;
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = b.left;
    try_add_bigram(text, symbols, left.prev, b.left, queue);
    try_add_bigram(text, symbols, b.left, left.next, queue);
  }

  // Every merged symbol is a token by construction; an unmerged character may not
  // be, and is then spelled out as byte tokens.
  for (int i = 0; i >= 0; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    const std::string_view piece = std::string_view(text).substr(s.begin, s.size);
    const int32_t id = vocab_->find(piece);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    for (char c : piece) {
      const int32_t byte_id = vocab_->byte_token[static_cast<uint8_t>(c)];
      if (byte_id >= 0) {
        out.push_back(byte_id);
      } else if (vocab_->unk >= 0) {
        out.push_back(vocab_->unk);
      }
    }
  }
}

}  // namespace

std::unique_ptr<Tokenizer> make_spm_tokenizer(std::unique_ptr<Vocab> vocab) {
  return std::make_unique<SpmTokenizer>(std::move(vocab));
}

}  // namespace infera::engine
