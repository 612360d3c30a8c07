// Predictors as registry model kinds: tabular models (kind "xgboost") today; tensor
// models (ONNX, TorchScript) and image matching share the same models::Predictor
// capability, so the API, cache, limits and metrics serve them alike.
//
// Kind "xgboost": an XGBoost model file (JSON, UBJ or legacy binary, read by Debian's
// libxgboost 1.7), with its schema beside it (predict/feature_schema.h:
// <model>.schema.json, or the models file's `schema`). Each loaded model runs its
// requests through a dynamic batcher (sched/batcher.h); one prediction gives
//   prediction          [rows, 1] the value (regression), P(class 1) (binary), or
//                       [rows, classes] class probabilities (multi:softprob)
//   feature_importance  [rows, groups * (features + 1)] SHAP contributions per feature,
//                       then the bias; each group sums to its margin (= the prediction
//                       for identity-link regression, log-odds for logistic objectives)
//   prediction_lower / prediction_upper  [rows, 1] the uncertainty interval (conformal,
//                       ensemble spread or quantile models, as the schema declares)
//   prediction_std      [rows, 1] ensembles only: the members' standard deviation
// The KServe v2 input is one FP32 tensor "input" of shape [rows, features], features in
// the schema's order.
#pragma once

#include <memory>

#include "models/model.h"

namespace infera::obs {
class Registry;
}

namespace infera::predict {

struct PredictKindConfig {
  int threads = 1;                  // --threads: OpenMP threads per XGBoost call
  int max_batch_size = 32;            // rows per batch, unless the model sets its own
  int64_t max_queue_delay_us = 2000;  // BATCH_TIMEOUT (ms there), unless the model sets it
  int max_queue_size = 4096;        // waiting requests per model before 429
};

// REQUIRES (all three): `metrics` outlives the kind and every model it loads.
std::unique_ptr<models::ModelKind> make_xgboost_kind(PredictKindConfig config,
                                                     obs::Registry& metrics);
// Kind "onnx" (OpenCV 4.6's DNN module) and kind "torchscript" (LibTorch 1.13; only in
// builds with INFERA_WITH_TORCH): the model file and its config
// (<model>.config.json: one input, outputs, optional image preprocessing; see
// src/predict/tensor_model.cpp), run through a dynamic batcher.
std::unique_ptr<models::ModelKind> make_onnx_kind(PredictKindConfig config, obs::Registry& metrics);
#ifdef INFERA_WITH_TORCH
std::unique_ptr<models::ModelKind> make_torchscript_kind(PredictKindConfig config,
                                                         obs::Registry& metrics);
#endif

}  // namespace infera::predict
