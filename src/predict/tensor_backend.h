// Inside predict/: what a tensor model kind needs from its runtime (OpenCV DNN for
// ONNX, LibTorch for TorchScript). Not a public interface (predict/predict.h is).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace infera::predict {

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

Result<std::unique_ptr<TensorBackend>> load_onnx(const std::string& path, int threads);
#ifdef INFERA_WITH_TORCH
Result<std::unique_ptr<TensorBackend>> load_torchscript(const std::string& path, int threads);
#endif

}  // namespace infera::predict
