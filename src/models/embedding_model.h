// Kind "embedding": a BERT-family GGUF encoder (bert, nomic-bert), or a decoder file
// (llama, mistral, qwen2) declared with this kind and pooled by its last or mean hidden
// state, served by the embedded engine. One thread per loaded model runs it; requests queue for
// it, and every request waiting when a forward pass starts joins that pass (up to
// max_batch_tokens), so concurrent clients share passes instead of taking turns.
//
// A `--model name=file.gguf` or `--models-dir` entry whose file is an encoder is
// declared with this kind automatically (is_encoder_file), so users need not say so;
// a decoder file stays a text generator unless the models file says kind = "embedding".
#pragma once

#include <memory>
#include <string>

#include "models/model.h"

namespace infera::obs {
class Registry;
}

namespace infera::models {

struct EmbeddingKindConfig {
  int threads = 1;               // --threads: the encoder's compute threads
  std::vector<int> cpus;         // where they run (--cpu-affinity); empty: not pinned
  int max_batch_tokens = 2048;   // most tokens in one forward pass
};

// REQUIRES: `metrics` outlives the kind and every model it loads.
std::unique_ptr<ModelKind> make_embedding_kind(EmbeddingKindConfig config,
                                               obs::Registry& metrics);

// True when `path` is a GGUF file whose architecture is an encoder the engine runs
// (read from its metadata only; false for anything unreadable).
bool is_encoder_file(const std::string& path);

}  // namespace infera::models
