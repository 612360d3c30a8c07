// The one interface every kind of model implements (GGUF decoder today; embedding
// encoders, XGBoost, ONNX, TorchScript and upstream servers later), so that the
// registry, cache, limits, priorities, metrics and console are written once,
// against it, never with a switch on the kind. A new kind is a ModelKind
// implementation and one Registry::register_kind call.
//
// Threads: ModelKind::load and LoadedModel::warm_up run on the registry's loader
// thread and may block; every other method may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace infera::sched {
class Scheduler;
}

namespace infera::models {

// A model as declared (models file, --model, --models-dir or the built-in default).
struct ModelSpec {
  std::string name;  // the API's model id; unique
  std::string kind = "gguf";
  std::string path;
  bool pin = false;  // never unloaded (idle, budget or memory pressure)
  // Idle time before unload: -1 never, 0 as soon as idle; unset = the registry's
  // default (--keep-alive).
  std::optional<std::chrono::milliseconds> keep_alive;
  int ctx_size = 0;                    // KV positions; 0 = --ctx-size
  int max_seqs = 0;                    // sequences decoded together; 0 = --max-seqs
  std::string chat_template = "auto";  // a chat format name, "auto" = from the file
  // System prompt per /api/chat role ("student", "teacher", custom roles); roles not
  // listed use the server-wide prompts.
  std::map<std::string, std::string> role_prompts;
  // Embedding models: the shorter lengths the model was trained to be cut to
  // (Matryoshka), which /v1/embeddings' `dimensions` may ask for; empty = full only.
  std::vector<int> dimensions;
  // Embedding models: how token states become one vector, overriding the file's
  // {arch}.pooling_type (decoder files rarely have one).
  std::string pooling;      // "mean" | "last" | "cls"; empty = the file's
  // Predictors (xgboost, onnx, torchscript): the file beside the model that declares
  // its schema or tensors (empty = the kind's default place, e.g. <model>.schema.json).
  std::string schema;
  // Predictors: the dynamic batcher (sched/batcher.h). 0 / -1 = the kind's defaults.
  int max_batch_size = 0;                 // rows in one batch
  std::vector<int> preferred_batch_size;  // rows; a batch this size goes at once
  int64_t max_queue_delay_us = -1;        // from the first waiting request's arrival
  int max_queue_size = 0;                 // waiting requests; more get 429
  std::string declared_by;  // "models-file <path>", "--model", "--models-dir <dir>", "default"
};

// The capability of models that generate text from a prompt (LLMs).
class TextGenerator {
 public:
  virtual ~TextGenerator() = default;
  virtual sched::Scheduler& scheduler() = 0;
  // Text → token ids with BOS, special tokens parsed.
  virtual std::vector<int32_t> tokenize(const std::string& text) const = 0;
  // The file's own chat template text (tokenizer.chat_template), may be empty.
  virtual const std::string& chat_template_text() const = 0;
  // Token positions a sequence may use (prompt and answer); 0 when unknown.
  virtual int context_length() const { return 0; }
};

// The capability of models that turn texts into vectors (embedding models).
class TextEmbedder {
 public:
  virtual ~TextEmbedder() = default;
  virtual int dimensions() const = 0;  // a vector's length
  virtual int max_tokens() const = 0;  // longest input, special tokens included
  // The pooling the file declares ("mean", "cls", "last"); empty when it declares
  // none, and then embed() refuses (FailedPrecondition naming the file).
  virtual std::string pooling() const = 0;
  // Token ids of `text` as the model reads it (special tokens included). Longer than
  // max_tokens(): InvalidArgument saying by how much, or with `truncate` cut to fit
  // (the closing special token kept).
  virtual Result<std::vector<int32_t>> tokenize(std::string_view text, bool truncate) const = 0;
  // How many tokens tokenize() gives for `text` without truncation.
  virtual size_t count_tokens(std::string_view text) const = 0;
  // Embeds inputs (as tokenize() gives them, or token ids from the client: checked
  // against the vocabulary and max_tokens()) into unit-length vectors, row after row.
  // Inputs of concurrent calls share forward passes. `done` runs on the model's own
  // thread, or on the calling thread when the call fails at once.
  using EmbedCallback = std::function<void(Result<std::vector<float>>)>;
  virtual void embed(std::vector<std::vector<int32_t>> inputs, EmbedCallback done) = 0;
};

// A tensor of FP32 values, row-major; shape[0] is the batch's rows.
struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// An input or output a predictor declares (KServe v2 metadata): shape with -1 for a
// variable dimension (the first is the batch), datatype as KServe names it.
struct TensorSpec {
  std::string name;
  std::string datatype = "FP32";
  std::vector<int64_t> shape;
  // Values per row: the product of the dimensions after the batch's (all fixed).
  int64_t row_width() const {
    int64_t w = 1;
    for (size_t i = 1; i < shape.size(); ++i) w *= shape[i];
    return w;
  }
};

// The capability of models that predict from tensors (tabular and tensor models:
// xgboost, onnx, torchscript). Requests go through the model's dynamic batcher.
class Predictor {
 public:
  virtual ~Predictor() = default;
  virtual const std::vector<TensorSpec>& inputs() const = 0;
  virtual const std::vector<TensorSpec>& outputs() const = 0;
  // Most rows one predict() call may carry (the batcher's max_batch_size).
  virtual int max_batch_rows() const = 0;
  struct Request {
    std::vector<Tensor> inputs;         // as inputs() declares them, same rows each
    std::vector<std::string> outputs;   // names wanted; empty = the model's default set
    int priority = 1;                   // 0 = highest
    std::optional<std::chrono::steady_clock::time_point> deadline;  // expired in queue: 504
  };
  // `done` runs on the model's batcher thread, or on the calling thread when the request
  // is refused at once (InvalidArgument: bad shapes or names; ResourceExhausted: queue
  // full; DeadlineExceeded: expired while queued).
  using Done = std::function<void(Result<std::vector<Tensor>>)>;
  virtual void predict(Request request, Done done) = 0;

  // Tabular models: named features. feature_names() is empty for tensor models.
  virtual const std::vector<std::string>& feature_names() const {
    static const std::vector<std::string> kNone;
    return kNone;
  }
  // One row from {name: value}: InvalidArgument naming a missing, extra, mistyped or
  // out-of-range feature. Unsupported for tensor models.
  virtual Status features_to_row(const nlohmann::json& features, float* row) const;
  // Image models: an encoded image (JPEG, PNG, ...) as one row of the model's input,
  // preprocessed as its config says (size, mean/std, channel order). InvalidArgument for
  // an undecodable image; Unsupported for models that take no images.
  virtual Result<std::vector<float>> image_to_row(std::string_view encoded) const;
  // The model's schema for GET /api/v1/models/{m}: features with types, ranges and units,
  // the task, the classes, the uncertainty method; tensors for tensor models.
  virtual nlohmann::json schema() const = 0;
};

// A loaded, servable model. Destroying it frees everything it holds; the registry
// does so only when no request holds a lease on it.
class LoadedModel {
 public:
  virtual ~LoadedModel() = default;
  // Memory the model holds now (weights, KV cache, scratch), bytes.
  virtual uint64_t bytes() const = 0;
  // One small request through the whole path before the model takes traffic
  // (pages weights in, sizes buffers). Blocks; loader thread.
  virtual Status warm_up() = 0;
  // Requests queued or running on it, and work steps finished so far (watchdog).
  struct Progress {
    int64_t pending = 0;
    int64_t steps_completed = 0;
  };
  virtual Progress progress() const = 0;
  // Frees caches it can rebuild (e.g. unused prefix KV blocks); returns bytes freed.
  virtual uint64_t drop_caches() = 0;
  // Capabilities; null when the kind has none of it.
  virtual TextGenerator* text_generator() { return nullptr; }
  virtual TextEmbedder* text_embedder() { return nullptr; }
  virtual Predictor* predictor() { return nullptr; }
  // Kind-specific facts for /api/models (architecture, quantization, context, ...).
  virtual nlohmann::json describe() const = 0;
};

// For kinds whose model is one file: its size (0 when unreadable), and its identity
// (absolute path, size and modification time) for ModelKind::identity.
uint64_t model_file_bytes(const std::string& path);
std::string model_file_identity(const std::string& path);

// Loads models of one kind.
class ModelKind {
 public:
  virtual ~ModelKind() = default;
  virtual std::string name() const = 0;  // the models file's `kind`
  // Whether its models generate text (TextGenerator): requests without a model go to
  // the first declared model of such a kind.
  virtual bool generates_text() const { return false; }
  // Checks a declaration before anything loads (file exists and looks right);
  // InvalidArgument naming the file and the problem.
  virtual Status validate(const ModelSpec& spec) const = 0;
  // What loading `spec` will take, bytes (for the memory budget, before loading).
  virtual uint64_t estimate_bytes(const ModelSpec& spec) const = 0;
  // Identifies the file's current content (path, size, mtime): cache keys follow it,
  // and a change reloads the model when idle.
  virtual std::string identity(const ModelSpec& spec) const = 0;
  // Loads; errors name the file and the problem. Loader thread.
  virtual Result<std::unique_ptr<LoadedModel>> load(const ModelSpec& spec) = 0;
  // Memory the kind keeps from unloaded models to make the next load faster (gguf:
  // the last model's repacked weights); the registry frees it whenever no load is
  // about to take it. Returns the bytes freed.
  virtual uint64_t release_spare_memory() { return 0; }
};

}  // namespace infera::models
