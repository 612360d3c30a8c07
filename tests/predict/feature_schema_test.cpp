// Tabular schemas: parsing, every request's features checked against them, and the
// split-conformal quantile.
#include "predict/feature_schema.h"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

namespace infera::predict {
namespace {

using nlohmann::json;

TabularSchema materials() {
  json doc = json::parse(R"({
    "features": [
      {"name": "density", "type": "float", "min": 0.5, "max": 25, "unit": "g/cm3"},
      {"name": "n_elements", "type": "int", "min": 1, "max": 6},
      {"name": "is_alloy", "type": "bool"},
      {"name": "porosity", "optional": true}
    ],
    "target": {"name": "hardness", "unit": "GPa"},
    "uncertainty": {"method": "conformal", "coverage": 0.8, "q": 0.5}
  })");
  auto s = parse_schema(doc, "m.schema.json", {}, 4);
  EXPECT_TRUE(s.ok()) << s.status().message();
  return *s;
}

std::string row_error(const TabularSchema& schema, const char* features) {
  float row[8];
  Status st = features_to_row(schema, json::parse(features), row);
  return st.ok() ? "" : st.message();
}

TEST(FeatureSchema, FillsTheRowInSchemaOrder) {
  TabularSchema s = materials();
  float row[4];
  ASSERT_TRUE(features_to_row(s, json::parse(R"({"is_alloy": true, "n_elements": 3,
      "density": 7.8, "porosity": 0.1})"), row).ok());
  EXPECT_FLOAT_EQ(row[0], 7.8f);
  EXPECT_FLOAT_EQ(row[1], 3.0f);
  EXPECT_FLOAT_EQ(row[2], 1.0f);
  EXPECT_FLOAT_EQ(row[3], 0.1f);
  // An optional feature absent or null is missing (NaN) for the model.
  ASSERT_TRUE(features_to_row(s, json::parse(R"({"is_alloy": 0, "n_elements": 1,
      "density": 1, "porosity": null})"), row).ok());
  EXPECT_TRUE(std::isnan(row[3]));
  ASSERT_TRUE(features_to_row(s, json::parse(R"({"is_alloy": 0, "n_elements": 1,
      "density": 1})"), row).ok());
  EXPECT_TRUE(std::isnan(row[3]));
}

TEST(FeatureSchema, NamesTheMissingExtraMistypedOrOutOfRangeFeature) {
  TabularSchema s = materials();
  EXPECT_EQ(row_error(s, R"({"n_elements": 3, "is_alloy": true})"), "feature 'density' is missing");
  EXPECT_EQ(row_error(s, R"({"density": 2, "n_elements": 3, "is_alloy": true, "colour": 1})"),
            "feature 'colour' is not one of the model's 4 features");
  EXPECT_EQ(row_error(s, R"({"density": 30, "n_elements": 3, "is_alloy": true})"),
            "feature 'density' = 30 g/cm3 is out of range [0.5, 25]");
  EXPECT_EQ(row_error(s, R"({"density": 2, "n_elements": 2.5, "is_alloy": true})"),
            "feature 'n_elements' must be an integer, not 2.5");
  EXPECT_EQ(row_error(s, R"({"density": 2, "n_elements": 0, "is_alloy": true})"),
            "feature 'n_elements' = 0 is out of range [1, 6]");
  EXPECT_EQ(row_error(s, R"({"density": "heavy", "n_elements": 2, "is_alloy": true})"),
            "feature 'density' must be a float, not string");
  EXPECT_EQ(row_error(s, R"({"density": true, "n_elements": 2, "is_alloy": true})"),
            "feature 'density' must be a number (float), not a boolean");
  EXPECT_EQ(row_error(s, R"({"density": 2, "n_elements": 2, "is_alloy": 2})"),
            "feature 'is_alloy' must be true or false (or 1 / 0), not 2");
  EXPECT_EQ(row_error(s, R"([1, 2, 3])"), "'features' must be an object of {name: value}");
}

TEST(FeatureSchema, RefusesSchemasThatDisagreeWithTheModel) {
  auto wrong_count = parse_schema(json::parse(R"({"features": ["a", "b"]})"), "x.json", {}, 3);
  ASSERT_FALSE(wrong_count.ok());
  EXPECT_EQ(wrong_count.status().message(), "x.json: lists 2 features but the model takes 3");
  auto wrong_order =
      parse_schema(json::parse(R"({"features": ["b", "a"]})"), "x.json", {"a", "b"}, 2);
  ASSERT_FALSE(wrong_order.ok());
  EXPECT_NE(wrong_order.status().message().find("feature 0 is 'b' here but 'a' in the model"),
            std::string::npos);
  auto unknown = parse_schema(json::parse(R"({"feature": []})"), "x.json", {}, 0);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("unknown key 'feature'"), std::string::npos);
  auto bad_range = parse_schema(
      json::parse(R"({"features": [{"name": "a", "min": 3, "max": 1}]})"), "x.json", {}, 1);
  EXPECT_FALSE(bad_range.ok());
  auto bad_method =
      parse_schema(json::parse(R"({"uncertainty": {"method": "bayes"}})"), "x.json", {"a"}, 1);
  ASSERT_FALSE(bad_method.ok());
  EXPECT_NE(bad_method.status().message().find("\"bayes\" is not one of"), std::string::npos);
}

TEST(FeatureSchema, WithoutAFileUsesTheModelsNamesOrPositions) {
  TabularSchema named = schema_from_model({"x", "y"}, 2);
  EXPECT_EQ(named.features[1].name, "y");
  TabularSchema anonymous = schema_from_model({}, 3);
  EXPECT_EQ(anonymous.features[2].name, "f2");
  float row[3];
  EXPECT_TRUE(features_to_row(anonymous, json::parse(R"({"f0": -1e6, "f1": 0, "f2": 1e6})"), row).ok());
}

TEST(ConformalQuantile, TakesTheRankCeilNPlusOneTimesCoverage) {
  std::vector<double> r;
  for (int i = 1; i <= 9; ++i) r.push_back(i % 2 ? -i : i);  // |r| = 1..9
  // n = 9, coverage 0.8: rank ceil(10 * 0.8) = 8.
  EXPECT_DOUBLE_EQ(*conformal_quantile(r, 0.8), 8.0);
  EXPECT_DOUBLE_EQ(*conformal_quantile(r, 0.5), 5.0);
  // coverage 0.95 needs rank ceil(9.5) = 10 > 9: too few rows.
  auto too_few = conformal_quantile(r, 0.95);
  ASSERT_FALSE(too_few.ok());
  EXPECT_NE(too_few.status().message().find("too few"), std::string::npos);
}

// Exchangeable calibration and test residuals: the interval covers about its nominal rate.
TEST(ConformalQuantile, CoversItsNominalRateOnFreshResiduals) {
  std::mt19937 rng(7);
  std::student_t_distribution<double> noise(3.0);
  std::vector<double> calibration(2000);
  for (double& r : calibration) r = noise(rng);
  for (double coverage : {0.8, 0.9, 0.95}) {
    const double q = *conformal_quantile(calibration, coverage);
    int covered = 0;
    const int n = 20000;
    for (int i = 0; i < n; ++i) covered += std::fabs(noise(rng)) <= q;
    EXPECT_NEAR(static_cast<double>(covered) / n, coverage, 0.02) << "coverage " << coverage;
  }
}

}  // namespace
}  // namespace infera::predict
