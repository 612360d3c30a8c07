// The schema of a tabular model: its features (names, types, allowed ranges, units),
// its task and classes, and how it states its uncertainty. Read from a JSON file beside
// the model (<model>.schema.json, or the models file's `schema`), completed from the
// model's own feature names; every request's features are checked against it.
//
//   {
//     "features": [
//       {"name": "density", "type": "float", "min": 0.5, "max": 25, "unit": "g/cm3"},
//       {"name": "n_elements", "type": "int", "min": 1, "max": 8},
//       {"name": "is_alloy", "type": "bool"},
//       {"name": "porosity", "type": "float", "optional": true}   // absent/null = missing
//     ],
//     "target": {"name": "hardness", "unit": "GPa"},
//     "classes": ["brittle", "ductile"],           // classifiers: labels by class index
//     "uncertainty": {"method": "conformal", "coverage": 0.9, "residuals": [0.1, ...]}
//                    {"method": "conformal", "coverage": 0.9, "q": 0.42}
//                    {"method": "ensemble", "members": ["b1.json", "b2.json"], "coverage": 0.9}
//                    {"method": "quantile", "lower": {"quantile": 0.05, "path": "lo.json"},
//                                           "upper": {"quantile": 0.95, "path": "hi.json"}}
//   }
//
// Paths in the schema are relative to the schema file.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace infera::predict {

struct Feature {
  enum class Type { kFloat, kInt, kBool };
  std::string name;
  Type type = Type::kFloat;
  std::optional<double> min, max;  // inclusive
  std::string unit;
  std::string description;
  bool optional = false;  // may be absent or null: the model sees it as missing (NaN)
};

struct Uncertainty {
  enum class Method { kNone, kConformal, kEnsemble, kQuantile };
  Method method = Method::kNone;
  double coverage = 0.9;  // nominal coverage of the interval
  // Conformal: half-width of the interval, the ceil((n+1) * coverage)-th smallest absolute
  // calibration residual (split conformal prediction, Lei et al. 2018).
  double conformal_q = 0;
  int calibration_rows = 0;
  std::vector<std::string> members;  // ensemble: the other boosters' files (absolute)
  double lower_quantile = 0, upper_quantile = 0;
  std::string lower_path, upper_path;  // quantile models (absolute)
};

const char* to_string(Uncertainty::Method method);

struct TabularSchema {
  std::vector<Feature> features;
  std::string target = "prediction";
  std::string target_unit;
  std::vector<std::string> classes;
  Uncertainty uncertainty;
  std::string source;  // the schema file, or "model" when built from the model alone
};

// Parses a schema file. `model_features` (the model's own feature names, may be empty)
// and `n_features` (what the model takes) are checked against it. Errors name the file.
Result<TabularSchema> read_schema_file(const std::string& path,
                                       const std::vector<std::string>& model_features,
                                       int n_features);
Result<TabularSchema> parse_schema(const nlohmann::json& doc, const std::string& path,
                                   const std::vector<std::string>& model_features, int n_features);

// A schema from the model alone: its feature names (f0, f1, ... when it has none), any
// float value allowed.
TabularSchema schema_from_model(const std::vector<std::string>& model_features, int n_features);

// The split-conformal half-width for `coverage` from calibration residuals (absolute or
// not); InvalidArgument when too few rows for that coverage (n < 1/(1-coverage) - 1).
Result<double> conformal_quantile(std::vector<double> residuals, double coverage);

// Fills `row` (features.size() floats, schema order) from a JSON object {name: value}.
// InvalidArgument naming the first missing, unknown, mistyped or out-of-range feature.
Status features_to_row(const TabularSchema& schema, const nlohmann::json& features, float* row);

// The schema as GET /api/v1/models/{model} shows it.
nlohmann::json schema_json(const TabularSchema& schema);

}  // namespace infera::predict
