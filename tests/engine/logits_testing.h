// Helpers for the engine tests that compare logits (model_test, kquant_model_test).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "engine/engine.h"

namespace infera::engine::test_util {

// The logits at the last position after evaluating `ids` as sequence 0 in one batch
// from an empty cache; the sequence is ended again.
inline std::vector<float> last_logits(Model& model, const std::vector<int32_t>& ids) {
  EXPECT_GE(model.kv().begin_sequence(0, ids), 0);
  std::vector<BatchEntry> batch;
  for (size_t i = 0; i < ids.size(); ++i) {
    batch.push_back({0, ids[i], static_cast<int32_t>(i), i + 1 == ids.size()});
  }
  std::vector<const float*> logits;
  Status s = model.eval(batch, logits);
  EXPECT_TRUE(s.ok()) << s.message();
  std::vector<float> out;
  if (s.ok()) out.assign(logits[0], logits[0] + model.info().n_vocab);
  model.kv().end_sequence(0);
  return out;
}

// Error of `got` relative to the spread of `ref`: RMS(got - ref) / RMS(ref).
inline double relative_rms_error(const std::vector<float>& ref, const std::vector<float>& got) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    diff += (got[i] - ref[i]) * static_cast<double>(got[i] - ref[i]);
    norm += ref[i] * static_cast<double>(ref[i]);
  }
  return std::sqrt(diff / norm);
}

}  // namespace infera::engine::test_util
