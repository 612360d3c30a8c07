// Inside predict/: what the predictor kinds share, and what a tensor model kind needs from its runtime (OpenCV DNN for
// ONNX, LibTorch for TorchScript). Not a public interface (predict/predict.h is).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "models/model.h"
#include "predict/predict.h"
#include "sched/batcher.h"

namespace infera::predict {

// A model's batcher settings: its own (models file), else the kind's defaults.
sched::BatcherConfig batcher_config(const models::ModelSpec& spec, const PredictKindConfig& config);

// One run's output: its name (the graph's, may be empty), shape and values.
struct BackendOutput {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// Runs one model file. Called from the model's batcher thread only.
class TensorBackend {
 public:
  virtual ~TensorBackend() = default;
  // `input` holds shape[0] rows of the model's input, row-major.
  virtual Result<std::vector<BackendOutput>> run(const std::string& input_name, const float* input,
                                                 const std::vector<int64_t>& shape) = 0;
  virtual std::string library() const = 0;
};

// `outputs` are the config's output names. The ONNX backend returns the graph's tensors of
// those names, in that order (OpenCV lists a graph's outputs by name, not in the graph's
// order), and refuses at load a name the graph lacks; the TorchScript backend returns what
// forward() returns (a tensor, or a tuple or list of them) in its order.
Result<std::unique_ptr<TensorBackend>> load_onnx(const std::string& path, int threads,
                                                 const std::vector<std::string>& outputs);
#ifdef INFERA_WITH_TORCH
Result<std::unique_ptr<TensorBackend>> load_torchscript(const std::string& path, int threads,
                                                        const std::vector<std::string>& outputs);
#endif

}  // namespace infera::predict
