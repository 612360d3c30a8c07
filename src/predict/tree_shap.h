// Exact path-dependent TreeSHAP for shallow gradient-boosted trees, with tables built at
// load so that explaining a row costs a few comparisons and additions per leaf instead of
// the O(leaves x depth^2) path walk of XGBoost's TreeShap.
//
// Why it is exact: for one leaf whose root path tests the distinct features P (|P| = d),
// each with zero fraction z_k (the cover share of the branch taken) and one fraction
// o_k = 1 when the row takes that branch at every test of k (else 0), the path-dependent
// value function is v(S) = leaf x prod_{k in P} (k in S ? o_k : z_k), and its Shapley value
// for j in P is leaf x (o_j - z_j) x sum_{S in P\{j}} |S|!(d-|S|-1)!/d! x prod_{k in S} o_k
// x prod_{k in P\S\{j}} z_k (Lundberg et al., "Consistent individualized feature
// attribution for tree ensembles", 2018). The o_k are 0 or 1, so for each of the 2^d
// "hot" sets of a leaf the d values are fixed: they are tabulated (Yang, "Fast TreeSHAP",
// 2021, algorithm v2). Trees deeper than kMaxDepth, categorical splits and DART
// boosters are not tabulated (from_model_json refuses them; the caller uses XGBoost's).
//
// Threads: explain() is const and may run from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "core/status.h"

namespace infera::predict {

class TreeShap {
 public:
  static constexpr int kMaxDepth = 10;  // distinct features per path; tables grow as 2^d

  // Builds the tables from an XGBoost model's JSON (XGBoosterSaveModelToBuffer,
  // format json). `bias` holds each output group's expected value (the contributions'
  // last column, e.g. from one call of XGBoost's own TreeShap). Unsupported for models
  // it cannot tabulate (the message says why).
  static Result<std::unique_ptr<TreeShap>> from_model_json(const nlohmann::json& model,
                                                           std::vector<float> bias);

  int num_features() const { return num_features_; }
  int groups() const { return groups_; }
  size_t table_bytes() const;

  // Contributions of `rows` rows of num_features() floats (NaN = missing) into `out`:
  // rows x groups() x (num_features() + 1), the last of each group the bias.
  void explain(const float* data, int rows, std::vector<float>& out) const;

 private:
  struct Step {              // one test on a leaf's root path
    int32_t node;            // the internal node tested
    uint8_t slot;            // the leaf's distinct feature it tests
    bool goes_left;          // the branch towards the leaf
  };
  struct Leaf {
    uint32_t first_step, n_steps;
    uint32_t table;          // offset of 2^d x d values in values_
    uint8_t d;               // distinct features
    int32_t features[kMaxDepth];
  };
  struct Tree {
    int group = 0;
    std::vector<int32_t> split_index;   // per node
    std::vector<float> split_value;
    std::vector<uint8_t> default_left;
    std::vector<Leaf> leaves;
    std::vector<Step> steps;
  };
  TreeShap() = default;

  int num_features_ = 0;
  int groups_ = 1;
  std::vector<float> bias_;
  std::vector<Tree> trees_;
  std::vector<float> values_;
};

}  // namespace infera::predict
