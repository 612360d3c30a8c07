// One XGBoost booster through Debian's libxgboost C API (1.7): load from a JSON, UBJ or
// legacy binary model file, predict from dense rows in place (no DMatrix), and SHAP
// contributions (through a DMatrix: the C API computes them from one only).
//
// Threads: predictions may run from several threads at once (XGBoost's predictors
// are thread-safe since 1.4); each call uses up to `threads` OpenMP threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace infera::predict {

class TreeShap;

class Booster {
 public:
  // Errors name the file and the library's version, with XGBoost's own message.
  static Result<std::unique_ptr<Booster>> load(const std::string& path, int threads);
  ~Booster();  // out of line: TreeShap is incomplete here
  Booster(const Booster&) = delete;
  Booster& operator=(const Booster&) = delete;

  const std::string& path() const { return path_; }
  int num_features() const { return num_features_; }
  // The file's feature names (empty when it has none).
  const std::vector<std::string>& feature_names() const { return feature_names_; }
  const std::string& objective() const { return objective_; }  // e.g. "reg:squarederror"
  int num_class() const { return num_class_; }                  // 0 for regression/binary
  int rounds() const { return rounds_; }
  // Values per row a prediction gives: num_class for multi:softprob, else 1.
  int groups() const { return groups_; }
  // Groups of contributions per row: num_class for any multi-class objective, else 1.
  int contribution_groups() const { return num_class_ > 1 ? num_class_ : 1; }

  // Predictions of `rows` rows of num_features() floats (NaN = missing), transformed by
  // the objective (probabilities for classifiers): rows x groups() floats into `out`.
  Status predict(const float* data, int rows, std::vector<float>& out) const;
  // SHAP contributions in margin space (log-odds for logistic objectives): rows x
  // contribution_groups() x (num_features() + 1) floats, the last of each group the bias; each group's
  // values sum to its margin.
  Status contributions(const float* data, int rows, std::vector<float>& out) const;

  // How contributions are computed: "tables" (predict/tree_shap.h, checked against
  // XGBoost's own at load) or "xgboost" (its TreeShap, through a DMatrix), and why not
  // tables when not.
  const std::string& shap_method() const { return shap_method_; }

  // "major.minor.patch" of the library in use.
  static std::string library_version();

 private:
  Booster();
  Status xgboost_contributions(const float* data, int rows, std::vector<float>& out) const;
  void build_shap_tables();
  void* handle_ = nullptr;
  std::string path_;
  int num_features_ = 0;
  std::vector<std::string> feature_names_;
  std::string objective_;
  int num_class_ = 0;
  int rounds_ = 0;
  int groups_ = 1;
  std::unique_ptr<TreeShap> shap_;
  std::string shap_method_ = "xgboost";
};

}  // namespace infera::predict
