// Tokenizers built from GGUF metadata: SentencePiece ("llama"), byte-level BPE
// ("gpt2", with the pre-tokenizer named by tokenizer.ggml.pre) and WordPiece
// ("bert": BERT-family embedding models), and a streaming
// detokenizer that only ever emits complete UTF-8.
//
// Token ids match llama.cpp's for the same GGUF file (checked against its test
// vectors in ../shared/models/*.gguf.inp/.out).
//
// Thread safety: a Tokenizer is immutable after from_gguf(); any thread may call
// its const methods concurrently. A StreamingDetokenizer belongs to one sequence
// and one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace infera::engine {

class GgufFile;
struct Vocab;

enum class TokenizerKind { kSentencePiece, kBytePairEncoding, kWordPiece };

class Tokenizer {
 public:
  // Reads tokenizer.ggml.* from `file` (tokens, scores, token_type, merges,
  // special ids, add_bos/add_eos, pre). Everything needed is copied, so the
  // tokenizer may outlive `file`. Errors name the file and the bad key, e.g. an
  // unknown tokenizer.ggml.model or .pre, a wrongly typed array, a malformed merge.
  static Result<std::unique_ptr<Tokenizer>> from_gguf(const GgufFile& file);

  virtual ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Token ids for `text`, which may be any bytes: as in llama.cpp, SentencePiece
  // spells malformed UTF-8 as byte tokens and byte-level BPE reads it as U+FFFD.
  // add_bos adds the model's own special tokens as llama.cpp's add_special does:
  // BOS when add_bos_default() (tokenizer.ggml.add_bos_token; true by default for
  // SentencePiece), EOS when add_eos_default(). WordPiece's BOS and EOS are [CLS]
  // and [SEP] (tokenizer.ggml.cls_token_id / seperator_token_id), both added by default.
  // User-defined tokens in `text` always become single tokens; parse_special also
  // matches control tokens (e.g. "<|im_start|>", "<s>"), else they are plain text.
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const;

  // The bytes a token stands for: SentencePiece "▁" becomes a space and byte
  // tokens <0xNN> one byte; byte-level BPE pieces are mapped back to bytes.
  // Control tokens render as "" unless render_special. A piece may be part of a
  // multi-byte UTF-8 character; use StreamingDetokenizer to stream text.
  // Out-of-range ids render as "".
  std::string token_to_piece(int32_t id, bool render_special = false) const;

  // token_to_piece appended to `out`, without allocating when `out` has room
  // (pieces are rendered once at load). For per-token loops.
  void append_piece(int32_t id, std::string& out, bool render_special = false) const;

  // Text of a whole sequence, as llama.cpp's llama_detokenize with
  // remove_special = skip_special and unparse_special = !skip_special: drops a leading
  // BOS, a trailing EOS (when the model adds them) and control tokens; with
  // SentencePiece the space the encoder put before the first word is removed
  // unless the sequence starts with BOS; BPE models that ask for it get
  // clean_up_tokenization_spaces (" ." -> ".").
  std::string decode(std::span<const int32_t> ids, bool skip_special = true) const;

  // The vocabulary entry as stored in the file (e.g. "▁Hello", "Ġworld", "<s>").
  std::string_view token_text(int32_t id) const;

  TokenizerKind kind() const;
  int32_t n_vocab() const;
  int32_t bos() const;  // -1 when the model has none
  int32_t eos() const;
  int32_t unk() const;
  int32_t pad() const;
  bool add_bos_default() const;   // tokenizer.ggml.add_bos_token
  bool add_eos_default() const;   // tokenizer.ggml.add_eos_token
  bool add_space_prefix() const;  // SentencePiece: encoder prepends "▁" to the text
  bool is_eog(int32_t id) const;  // end of generation: EOS, EOT, EOM and the like
  bool is_control(int32_t id) const;

 protected:
  explicit Tokenizer(std::unique_ptr<Vocab> vocab);

  // Tokenizes one run of plain text (no special tokens inside) and appends the ids.
  // `at_text_start` is true for the first run of the input and for a run that
  // follows a special token, which is where SentencePiece adds its space prefix.
  virtual void encode_run(std::string_view text, bool at_text_start,
                          std::vector<int32_t>& out) const = 0;

  std::unique_ptr<Vocab> vocab_;
};

// Turns a stream of token ids into text one token at a time, holding back the
// bytes of an incomplete UTF-8 character until it is complete, so every string
// returned is valid UTF-8. Bytes that can never form a valid character are
// replaced with U+FFFD. Pieces are emitted as they are (a generation continues a
// prompt, so the space before its first word is kept, as llama.cpp prints it).
class StreamingDetokenizer {
 public:
  // REQUIRES: `tokenizer` outlives this object.
  explicit StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special = true);

  // Text completed by `id` (possibly empty).
  std::string push(int32_t id);

  // Whatever is still held back, with incomplete characters as U+FFFD; resets.
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace infera::engine
