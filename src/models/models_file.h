// Model declarations from text: the models file (--models-file, TOML), the
// `--model name=path` flag and Ollama-style keep_alive durations.
//
// Models file:
//   [[models]]
//   name = "tutor"                 # required, the API's model id
//   path = "models/tutor.gguf"     # required; relative to the models file
//   kind = "gguf"                  # default "gguf" ("embedding" for a BERT-family file,
//                                  # detected; say it for a decoder used as an embedder)
//   pin = false                    # never unload
//   keep_alive = "10m"             # "30s", "5m", "1h", seconds as a number, -1 never, 0 at once
//   ctx_size = 4096                # KV positions (default --ctx-size)
//   max_seqs = 8                   # sequences decoded together (default --max-seqs)
//   chat_template = "auto"         # or llama2, llama3, chatml, ... (as --chat-template)
//   role_prompts = { student = "...", teacher = "..." }
//   dimensions = [256, 128]        # embedding: shorter lengths /v1/embeddings may cut to
//   pooling = "last"               # embedding: "mean", "last" or "cls" (default: the file's)
//   schema = "m.schema.json"       # predictors: features / tensors (default beside the file)
//   max_batch_size = 32            # predictors: rows in one batch
//   preferred_batch_size = [16, 32]  # predictors: a batch this size goes at once
//   max_queue_delay_us = 2000      # predictors: longest wait for a batch to fill
//   max_queue_size = 1024          # predictors: waiting requests before 429
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "core/status.h"
#include "models/model.h"

namespace infera::models {

// Parses the models file; errors name the file, the entry and the key.
Result<std::vector<ModelSpec>> parse_models_file(const std::string& path);

// "name=path" or "path" (name: the file name without .gguf).
Result<ModelSpec> parse_model_flag(const std::string& text);

// "5m", "30s", "1h", "250ms", "-1", "0", or plain seconds ("300", "1.5"); a
// negative value means forever (-1 ms); more than a year is refused.
Result<std::chrono::milliseconds> parse_keep_alive(const std::string& text);

}  // namespace infera::models
