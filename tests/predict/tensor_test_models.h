// The tensor test models (tests/predict/make_tensor_models.py, run with Debian's
// python3-torch, python3-onnx and python3-opencv), written once per test process.
#pragma once

#include <string>

#include "predict/generated_models.h"

namespace infera::testing {

inline const std::string& tensor_test_models(std::string* error = nullptr) {
  static std::string failure;
  static const std::string dir = run_model_script(
      "make_tensor_models.py", "infera-tensor-", "python3-torch, python3-onnx or python3-opencv", failure);
  if (error != nullptr) *error = failure;
  return dir;
}

}  // namespace infera::testing
