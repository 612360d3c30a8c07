// The XGBoost test models (tests/predict/make_xgboost_models.py, run with Debian's
// python3-xgboost), written once per test process.
#pragma once

#include <string>

#include "predict/generated_models.h"

namespace infera::testing {

// The directory holding the models, or "" when they could not be made (why in `error`).
inline const std::string& xgboost_test_models(std::string* error = nullptr) {
  static std::string failure;
  static const std::string dir =
      run_model_script("make_xgboost_models.py", "infera-xgb-", "python3-xgboost", failure);
  if (error != nullptr) *error = failure;
  return dir;
}

}  // namespace infera::testing
