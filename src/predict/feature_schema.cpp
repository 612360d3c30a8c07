#include "predict/feature_schema.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace infera::predict {
namespace {

using nlohmann::json;

Result<Feature::Type> parse_type(const std::string& t) {
  // XGBoost's own feature types too: "q" quantitative, "i" indicator, "int", "float".
  if (t == "float" || t == "q" || t == "number" || t == "double") return Feature::Type::kFloat;
  if (t == "int" || t == "integer") return Feature::Type::kInt;
  if (t == "bool" || t == "boolean" || t == "i") return Feature::Type::kBool;
  return Status::InvalidArgument(
      fmt::format("type '{}' is not one of float, int, bool", t));
}

const char* type_name(Feature::Type t) {
  switch (t) {
    case Feature::Type::kInt: return "int";
    case Feature::Type::kBool: return "bool";
    default: return "float";
  }
}

Result<double> number(const json& v, const std::string& what) {
  if (!v.is_number() || !std::isfinite(v.get<double>())) {
    return Status::InvalidArgument(fmt::format("{} must be a finite number", what));
  }
  return v.get<double>();
}

std::string resolve(const std::string& schema_path, const std::string& p) {
  std::filesystem::path path(p);
  if (path.is_relative()) path = std::filesystem::path(schema_path).parent_path() / path;
  return path.lexically_normal().string();
}

Status parse_uncertainty(const json& u, const std::string& path, Uncertainty& out) {
  if (!u.is_object()) return Status::InvalidArgument("'uncertainty' must be an object");
  if (!u.contains("method") || !u["method"].is_string()) {
    return Status::InvalidArgument(
        "'uncertainty.method' must be \"conformal\", \"ensemble\", \"quantile\" or \"none\"");
  }
  const std::string method = u["method"].get<std::string>();
  if (u.contains("coverage")) {
    auto c = number(u["coverage"], "'uncertainty.coverage'");
    if (!c.ok()) return c.status();
    if (*c <= 0 || *c >= 1) {
      return Status::InvalidArgument("'uncertainty.coverage' must be between 0 and 1 (e.g. 0.9)");
    }
    out.coverage = *c;
  }
  if (method == "none") {
    out.method = Uncertainty::Method::kNone;
  } else if (method == "conformal") {
    out.method = Uncertainty::Method::kConformal;
    if (u.contains("residuals")) {
      if (!u["residuals"].is_array()) {
        return Status::InvalidArgument("'uncertainty.residuals' must be an array of numbers");
      }
      std::vector<double> residuals;
      for (const json& r : u["residuals"]) {
        auto v = number(r, "'uncertainty.residuals' entries");
        if (!v.ok()) return v.status();
        residuals.push_back(*v);
      }
      out.calibration_rows = static_cast<int>(residuals.size());
      auto q = conformal_quantile(std::move(residuals), out.coverage);
      if (!q.ok()) return q.status();
      out.conformal_q = *q;
    } else if (u.contains("q")) {
      auto q = number(u["q"], "'uncertainty.q'");
      if (!q.ok()) return q.status();
      if (*q < 0) return Status::InvalidArgument("'uncertainty.q' must not be negative");
      out.conformal_q = *q;
      if (u.contains("calibration_rows") && u["calibration_rows"].is_number_integer()) {
        out.calibration_rows = u["calibration_rows"].get<int>();
      }
    } else {
      return Status::InvalidArgument(
          "conformal uncertainty needs 'residuals' (calibration residuals) or 'q' (their quantile)");
    }
  } else if (method == "ensemble") {
    out.method = Uncertainty::Method::kEnsemble;
    if (!u.contains("members") || !u["members"].is_array() || u["members"].empty()) {
      return Status::InvalidArgument(
          "ensemble uncertainty needs 'members': the other boosters' files (the model itself is "
          "the first member)");
    }
    for (const json& m : u["members"]) {
      if (!m.is_string() || m.get<std::string>().empty()) {
        return Status::InvalidArgument("'uncertainty.members' entries must be file paths");
      }
      out.members.push_back(resolve(path, m.get<std::string>()));
    }
  } else if (method == "quantile") {
    out.method = Uncertainty::Method::kQuantile;
    for (const char* side : {"lower", "upper"}) {
      if (!u.contains(side) || !u[side].is_object() || !u[side].contains("path") ||
          !u[side]["path"].is_string() || !u[side].contains("quantile")) {
        return Status::InvalidArgument(fmt::format(
            "quantile uncertainty needs '{}': {{\"quantile\": q, \"path\": \"file.json\"}}", side));
      }
      auto q = number(u[side]["quantile"], fmt::format("'uncertainty.{}.quantile'", side));
      if (!q.ok()) return q.status();
      if (*q <= 0 || *q >= 1) {
        return Status::InvalidArgument(
            fmt::format("'uncertainty.{}.quantile' must be between 0 and 1", side));
      }
      std::string file = resolve(path, u[side]["path"].get<std::string>());
      if (std::string(side) == "lower") {
        out.lower_quantile = *q;
        out.lower_path = std::move(file);
      } else {
        out.upper_quantile = *q;
        out.upper_path = std::move(file);
      }
    }
    if (out.lower_quantile >= out.upper_quantile) {
      return Status::InvalidArgument("'uncertainty.lower.quantile' must be below 'upper.quantile'");
    }
    out.coverage = out.upper_quantile - out.lower_quantile;
  } else {
    return Status::InvalidArgument(fmt::format(
        "'uncertainty.method' \"{}\" is not one of conformal, ensemble, quantile, none", method));
  }
  return Status::Ok();
}

}  // namespace

const char* to_string(Uncertainty::Method method) {
  switch (method) {
    case Uncertainty::Method::kConformal: return "conformal";
    case Uncertainty::Method::kEnsemble: return "ensemble";
    case Uncertainty::Method::kQuantile: return "quantile";
    default: return "none";
  }
}

Result<double> conformal_quantile(std::vector<double> residuals, double coverage) {
  const size_t n = residuals.size();
  // The rank ceil((n + 1) * coverage) must exist among n residuals.
  const auto rank = static_cast<size_t>(std::ceil((static_cast<double>(n) + 1) * coverage - 1e-9));
  if (n == 0 || rank > n) {
    return Status::InvalidArgument(fmt::format(
        "{} calibration residuals are too few for coverage {} (at least {} are needed)", n, coverage,
        static_cast<size_t>(std::ceil(coverage / (1 - coverage)))));
  }
  for (double& r : residuals) r = std::fabs(r);
  std::nth_element(residuals.begin(), residuals.begin() + static_cast<std::ptrdiff_t>(rank - 1),
                   residuals.end());
  return residuals[rank - 1];
}

TabularSchema schema_from_model(const std::vector<std::string>& model_features, int n_features) {
  TabularSchema schema;
  schema.source = "model";
  for (int i = 0; i < n_features; ++i) {
    Feature f;
    f.name = i < static_cast<int>(model_features.size()) ? model_features[static_cast<size_t>(i)]
                                                          : fmt::format("f{}", i);
    schema.features.push_back(std::move(f));
  }
  return schema;
}

Result<TabularSchema> parse_schema(const json& doc, const std::string& path,
                                   const std::vector<std::string>& model_features, int n_features) {
  auto fail = [&](const std::string& what) {
    return Status::InvalidArgument(fmt::format("{}: {}", path, what));
  };
  if (!doc.is_object()) return fail("the schema must be a JSON object");
  static const std::set<std::string> kKeys = {"features", "target", "classes", "uncertainty",
                                              "description"};
  for (const auto& [key, value] : doc.items()) {
    if (!kKeys.contains(key)) {
      return fail(fmt::format("unknown key '{}' (features, target, classes, uncertainty)", key));
    }
  }
  TabularSchema schema;
  schema.source = path;
  if (doc.contains("features")) {
    if (!doc["features"].is_array()) return fail("'features' must be an array");
    std::set<std::string> seen;
    for (size_t i = 0; i < doc["features"].size(); ++i) {
      const json& f = doc["features"][i];
      Feature feature;
      if (f.is_string()) {
        feature.name = f.get<std::string>();
      } else if (f.is_object() && f.contains("name") && f["name"].is_string()) {
        feature.name = f["name"].get<std::string>();
        for (const auto& [key, value] : f.items()) {
          if (key == "name") continue;
          std::string where = fmt::format("feature '{}': '{}'", feature.name, key);
          if (key == "type") {
            if (!value.is_string()) return fail(where + " must be a string");
            auto t = parse_type(value.get<std::string>());
            if (!t.ok()) return fail(fmt::format("feature '{}': {}", feature.name, t.status().message()));
            feature.type = *t;
          } else if (key == "min" || key == "max") {
            auto v = number(value, where);
            if (!v.ok()) return fail(v.status().message());
            (key == "min" ? feature.min : feature.max) = *v;
          } else if (key == "unit" || key == "description") {
            if (!value.is_string()) return fail(where + " must be a string");
            (key == "unit" ? feature.unit : feature.description) = value.get<std::string>();
          } else if (key == "optional") {
            if (!value.is_boolean()) return fail(where + " must be true or false");
            feature.optional = value.get<bool>();
          } else {
            return fail(fmt::format("feature '{}': unknown key '{}' (type, min, max, unit, "
                                    "description, optional)",
                                    feature.name, key));
          }
        }
      } else {
        return fail(fmt::format("features[{}] must be a name or an object with a 'name'", i));
      }
      if (feature.name.empty()) return fail(fmt::format("features[{}] has an empty name", i));
      if (!seen.insert(feature.name).second) {
        return fail(fmt::format("feature '{}' is listed twice", feature.name));
      }
      if (feature.min && feature.max && *feature.min > *feature.max) {
        return fail(fmt::format("feature '{}': min {} is above max {}", feature.name, *feature.min,
                                *feature.max));
      }
      schema.features.push_back(std::move(feature));
    }
    if (static_cast<int>(schema.features.size()) != n_features) {
      return fail(fmt::format("lists {} features but the model takes {}", schema.features.size(),
                              n_features));
    }
    for (size_t i = 0; i < model_features.size() && i < schema.features.size(); ++i) {
      if (model_features[i] != schema.features[i].name) {
        return fail(fmt::format(
            "feature {} is '{}' here but '{}' in the model (the order must be the model's)", i,
            schema.features[i].name, model_features[i]));
      }
    }
  } else {
    schema.features = schema_from_model(model_features, n_features).features;
  }
  if (doc.contains("target")) {
    const json& t = doc["target"];
    if (t.is_string()) {
      schema.target = t.get<std::string>();
    } else if (t.is_object()) {
      if (t.contains("name") && t["name"].is_string()) schema.target = t["name"].get<std::string>();
      if (t.contains("unit") && t["unit"].is_string()) schema.target_unit = t["unit"].get<std::string>();
    } else {
      return fail("'target' must be a name or {\"name\": ..., \"unit\": ...}");
    }
  }
  if (doc.contains("classes")) {
    if (!doc["classes"].is_array()) return fail("'classes' must be an array of labels");
    for (const json& c : doc["classes"]) {
      if (c.is_string()) {
        schema.classes.push_back(c.get<std::string>());
      } else if (c.is_number()) {
        schema.classes.push_back(c.dump());
      } else {
        return fail("'classes' entries must be strings or numbers");
      }
    }
  }
  if (doc.contains("uncertainty")) {
    Status st = parse_uncertainty(doc["uncertainty"], path, schema.uncertainty);
    if (!st.ok()) return fail(st.message());
  }
  return schema;
}

Result<TabularSchema> read_schema_file(const std::string& path,
                                       const std::vector<std::string>& model_features,
                                       int n_features) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(fmt::format("{}: cannot open the schema file", path));
  std::stringstream text;
  text << in.rdbuf();
  json doc = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Status::InvalidArgument(fmt::format("{}: not valid JSON", path));
  return parse_schema(doc, path, model_features, n_features);
}

Status features_to_row(const TabularSchema& schema, const json& features, float* row) {
  if (!features.is_object()) {
    return Status::InvalidArgument("'features' must be an object of {name: value}");
  }
  size_t matched = 0;
  for (size_t i = 0; i < schema.features.size(); ++i) {
    const Feature& f = schema.features[i];
    auto it = features.find(f.name);
    if (it == features.end() || it->is_null()) {
      if (!f.optional) {
        return Status::InvalidArgument(fmt::format("feature '{}' is missing", f.name));
      }
      row[i] = std::nanf("");
      if (it != features.end()) ++matched;
      continue;
    }
    ++matched;
    double v = 0;
    if (it->is_boolean()) {
      if (f.type != Feature::Type::kBool) {
        return Status::InvalidArgument(
            fmt::format("feature '{}' must be a number ({}), not a boolean", f.name, type_name(f.type)));
      }
      v = it->get<bool>() ? 1 : 0;
    } else if (it->is_number()) {
      v = it->get<double>();
      if (!std::isfinite(v)) {
        return Status::InvalidArgument(fmt::format("feature '{}' must be finite", f.name));
      }
      if (f.type == Feature::Type::kInt && v != std::floor(v)) {
        return Status::InvalidArgument(fmt::format("feature '{}' must be an integer, not {}", f.name, v));
      }
      if (f.type == Feature::Type::kBool && v != 0 && v != 1) {
        return Status::InvalidArgument(
            fmt::format("feature '{}' must be true or false (or 1 / 0), not {}", f.name, v));
      }
    } else {
      return Status::InvalidArgument(fmt::format("feature '{}' must be a {}, not {}", f.name,
                                                 type_name(f.type), it->type_name()));
    }
    if ((f.min && v < *f.min) || (f.max && v > *f.max)) {
      std::string unit = f.unit.empty() ? "" : " " + f.unit;
      return Status::InvalidArgument(fmt::format(
          "feature '{}' = {}{} is out of range [{}, {}]", f.name, v, unit,
          f.min ? fmt::format("{}", *f.min) : "-inf", f.max ? fmt::format("{}", *f.max) : "inf"));
    }
    row[i] = static_cast<float>(v);
  }
  if (matched != features.size()) {
    for (const auto& [name, value] : features.items()) {
      bool known = std::any_of(schema.features.begin(), schema.features.end(),
                               [&](const Feature& f) { return f.name == name; });
      if (!known) {
        return Status::InvalidArgument(
            fmt::format("feature '{}' is not one of the model's {} features", name,
                        schema.features.size()));
      }
    }
  }
  return Status::Ok();
}

json schema_json(const TabularSchema& schema) {
  json features = json::array();
  for (const Feature& f : schema.features) {
    json j = {{"name", f.name}, {"type", type_name(f.type)}};
    if (f.min) j["min"] = *f.min;
    if (f.max) j["max"] = *f.max;
    if (!f.unit.empty()) j["unit"] = f.unit;
    if (!f.description.empty()) j["description"] = f.description;
    if (f.optional) j["optional"] = true;
    features.push_back(std::move(j));
  }
  json u = {{"method", to_string(schema.uncertainty.method)}};
  if (schema.uncertainty.method != Uncertainty::Method::kNone) {
    u["coverage"] = schema.uncertainty.coverage;
  }
  if (schema.uncertainty.method == Uncertainty::Method::kConformal) {
    u["half_width"] = schema.uncertainty.conformal_q;
    u["calibration_rows"] = schema.uncertainty.calibration_rows;
  } else if (schema.uncertainty.method == Uncertainty::Method::kEnsemble) {
    u["members"] = schema.uncertainty.members.size() + 1;
  } else if (schema.uncertainty.method == Uncertainty::Method::kQuantile) {
    u["quantiles"] = {schema.uncertainty.lower_quantile, schema.uncertainty.upper_quantile};
  }
  json target = {{"name", schema.target}};
  if (!schema.target_unit.empty()) target["unit"] = schema.target_unit;
  json out = {{"features", features}, {"target", target}, {"uncertainty", u},
              {"schema_source", schema.source}};
  if (!schema.classes.empty()) out["classes"] = schema.classes;
  return out;
}

}  // namespace infera::predict
