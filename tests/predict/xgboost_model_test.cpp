// Kind "xgboost": real models written by XGBoost's Python library
// (make_xgboost_models.py), loaded through Debian's libxgboost C API and run through the
// model's dynamic batcher. Predictions must equal the Python library's exactly.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "models/model.h"
#include "obs/metrics.h"
#include "predict/predict.h"
#include "predict/xgboost_test_models.h"

namespace infera::predict {
namespace {

using nlohmann::json;
using models::Tensor;

class XgboostModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    dir_ = testing::xgboost_test_models(&error);
    ASSERT_FALSE(dir_.empty()) << error;
    reference_ = testing::read_json_file(dir_ + "/reference.json");
    kind_ = make_xgboost_kind(PredictKindConfig{}, metrics_);
  }

  std::unique_ptr<models::LoadedModel> load(const std::string& file, models::ModelSpec spec = {}) {
    spec.name = std::filesystem::path(file).stem().string();
    spec.kind = "xgboost";
    spec.path = dir_ + "/" + file;
    EXPECT_TRUE(kind_->validate(spec).ok());
    auto m = kind_->load(spec);
    EXPECT_TRUE(m.ok()) << m.status().message();
    return m.ok() ? std::move(m).value() : nullptr;
  }

  // Runs `rows` through the model; outputs by name.
  std::map<std::string, Tensor> predict(models::LoadedModel& m, const json& rows,
                                        std::vector<std::string> outputs = {}) {
    models::Predictor::Request r;
    Tensor in{"input", {static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())}, {}};
    for (const auto& row : rows) {
      for (const auto& v : row) in.data.push_back(v.get<float>());
    }
    r.inputs.push_back(std::move(in));
    r.outputs = std::move(outputs);
    std::promise<Result<std::vector<Tensor>>> p;
    m.predictor()->predict(std::move(r), [&](Result<std::vector<Tensor>> out) { p.set_value(std::move(out)); });
    auto out = p.get_future().get();
    EXPECT_TRUE(out.ok()) << out.status().message();
    std::map<std::string, Tensor> byname;
    if (out.ok()) {
      for (auto& t : *out) byname[t.name] = std::move(t);
    }
    return byname;
  }

  obs::Registry metrics_;
  std::string dir_;
  json reference_;
  std::unique_ptr<models::ModelKind> kind_;
};

TEST_F(XgboostModelTest, RegressorPredictsExactlyAsPythonWithShapSummingToThePrediction) {
  for (const char* file : {"regressor.json", "regressor.ubj"}) {
    SCOPED_TRACE(file);
    auto m = load(file);
    ASSERT_NE(m, nullptr);
    ASSERT_TRUE(m->warm_up().ok());
    const json& rows = reference_["rows"];
    auto out = predict(*m, rows);
    ASSERT_TRUE(out.count("prediction"));
    const Tensor& pred = out["prediction"];
    ASSERT_EQ(pred.shape, (std::vector<int64_t>{20, 1}));
    const Tensor& shap = out["feature_importance"];
    ASSERT_EQ(shap.shape, (std::vector<int64_t>{20, 7}));
    for (size_t i = 0; i < 20; ++i) {
      EXPECT_EQ(pred.data[i], reference_["regressor"]["predict"][i].get<float>()) << "row " << i;
      double sum = 0;
      for (size_t k = 0; k < 7; ++k) {
        const float c = shap.data[i * 7 + k];
        const float want = reference_["regressor"]["contribs"][i][k].get<float>();
        EXPECT_NEAR(c, want, 2e-5 * (1 + std::fabs(want))) << "row " << i << " feature " << k;
        sum += c;
      }
      EXPECT_NEAR(sum, pred.data[i], 1e-4) << "SHAP contributions + bias = the prediction";
      // Conformal interval: symmetric, the same half-width for every row.
      const float lo = out["prediction_lower"].data[i], hi = out["prediction_upper"].data[i];
      EXPECT_LT(lo, pred.data[i]);
      EXPECT_NEAR(pred.data[i] - lo, hi - pred.data[i], 1e-4);
    }
    EXPECT_EQ(m->predictor()->feature_names()[0], "density");
    // Contributions come from the tables (checked against XGBoost's at load), not a DMatrix.
    EXPECT_EQ(m->describe()["shap"], "tables");
  }
}

TEST_F(XgboostModelTest, ConformalIntervalsCoverAboutTheirNominalRateOnHeldOutRows) {
  auto m = load("regressor.json");
  ASSERT_NE(m, nullptr);
  const json& holdout = reference_["holdout"];
  int covered = 0;
  const size_t n = holdout["y"].size();
  for (size_t start = 0; start < n; start += 25) {  // max_batch_size is 32 rows
    json rows = json::array();
    for (size_t i = start; i < start + 25 && i < n; ++i) rows.push_back(holdout["rows"][i]);
    auto out = predict(*m, rows, {"prediction", "prediction_lower", "prediction_upper"});
    EXPECT_EQ(out.count("feature_importance"), 0u) << "only the outputs asked for";
    for (size_t j = 0; j < rows.size(); ++j) {
      const double y = holdout["y"][start + j].get<double>();
      covered += out["prediction_lower"].data[j] <= y && y <= out["prediction_upper"].data[j];
    }
  }
  const double rate = static_cast<double>(covered) / static_cast<double>(n);
  EXPECT_NEAR(rate, 0.9, 0.035) << covered << " of " << n;
}

TEST_F(XgboostModelTest, EnsembleAveragesItsMembersAndReportsTheirSpread) {
  auto m = load("ens0.json");
  ASSERT_NE(m, nullptr);
  auto out = predict(*m, reference_["rows"]);
  for (size_t i = 0; i < 20; ++i) {
    double mean = 0, sq = 0;
    for (const auto& member : reference_["ensemble"]) {
      const double v = member["predict"][i].get<double>();
      mean += v;
      sq += v * v;
    }
    mean /= 5;
    const double sd = std::sqrt(std::max(0.0, sq / 5 - mean * mean) * 5 / 4);
    EXPECT_NEAR(out["prediction"].data[i], mean, 1e-5);
    EXPECT_NEAR(out["prediction_std"].data[i], sd, 1e-4);
    EXPECT_NEAR(out["prediction_upper"].data[i] - out["prediction"].data[i], 1.6448536 * sd, 1e-3);
    double sum = 0;
    for (size_t k = 0; k < 7; ++k) sum += out["feature_importance"].data[i * 7 + k];
    EXPECT_NEAR(sum, mean, 1e-4);
  }
  EXPECT_EQ(m->predictor()->schema()["uncertainty"]["method"], "ensemble");
}

TEST_F(XgboostModelTest, QuantileModelsGiveTheInterval) {
  auto m = load("qmain.json");
  ASSERT_NE(m, nullptr);
  auto out = predict(*m, reference_["rows"]);
  for (size_t i = 0; i < 20; ++i) {
    float lo = reference_["qlo"]["predict"][i].get<float>();
    float hi = reference_["qhi"]["predict"][i].get<float>();
    if (lo > hi) std::swap(lo, hi);
    EXPECT_EQ(out["prediction"].data[i], reference_["qmain"]["predict"][i].get<float>());
    EXPECT_EQ(out["prediction_lower"].data[i], lo);
    EXPECT_EQ(out["prediction_upper"].data[i], hi);
  }
  EXPECT_EQ(m->predictor()->schema()["uncertainty"]["method"], "quantile");
}

TEST_F(XgboostModelTest, ClassifiersGiveProbabilitiesAndPerClassContributions) {
  auto cls = load("classifier.json");
  ASSERT_NE(cls, nullptr);
  auto out = predict(*cls, reference_["rows"]);
  ASSERT_EQ(out["prediction"].shape, (std::vector<int64_t>{20, 3}));
  ASSERT_EQ(out["feature_importance"].shape, (std::vector<int64_t>{20, 21}));
  EXPECT_EQ(out.count("prediction_lower"), 0u);
  for (size_t i = 0; i < 20; ++i) {
    double total = 0;
    for (size_t c = 0; c < 3; ++c) {
      const float p = out["prediction"].data[i * 3 + c];
      EXPECT_EQ(p, reference_["classifier"]["predict"][i][c].get<float>());
      total += p;
      for (size_t k = 0; k < 7; ++k) {
        const float want = reference_["classifier"]["contribs"][i][c][k].get<float>();
        EXPECT_NEAR(out["feature_importance"].data[i * 21 + c * 7 + k], want, 2e-5 * (1 + std::fabs(want)));
      }
    }
    EXPECT_NEAR(total, 1.0, 1e-5);
  }
  EXPECT_EQ(cls->predictor()->schema()["classes"], json({"soft", "medium", "hard"}));
  auto bin = load("binary.json");
  ASSERT_NE(bin, nullptr);
  auto b = predict(*bin, reference_["rows"]);
  for (size_t i = 0; i < 20; ++i) {
    const float p = b["prediction"].data[i];
    EXPECT_EQ(p, reference_["binary"]["predict"][i].get<float>());
    double margin = 0;
    for (size_t k = 0; k < 7; ++k) margin += b["feature_importance"].data[i * 7 + k];
    EXPECT_NEAR(1.0 / (1.0 + std::exp(-margin)), p, 1e-5) << "contributions sum to the log-odds";
  }
  EXPECT_EQ(bin->predictor()->schema()["importance_space"], "margin");
}

TEST_F(XgboostModelTest, AModelWithoutNamesOrSchemaTakesPositionalFeatures) {
  auto m = load("nonames.json");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->predictor()->feature_names(), (std::vector<std::string>{"f0", "f1", "f2", "f3", "f4", "f5"}));
  auto out = predict(*m, reference_["rows"]);
  for (size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(out["prediction"].data[i], reference_["nonames"]["predict"][i].get<float>());
  }
  EXPECT_EQ(out.count("prediction_lower"), 0u) << "no uncertainty declared";
}

TEST_F(XgboostModelTest, UnreadableFilesNameTheFileAndTheLibraryVersion) {
  const std::string bad = dir_ + "/broken.json";
  std::ofstream(bad) << R"({"learner": {"gradient_booster": 42}})";
  models::ModelSpec spec;
  spec.name = "broken";
  spec.kind = "xgboost";
  spec.path = bad;
  auto m = kind_->load(spec);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find(bad + ": XGBoost 1."), std::string::npos) << m.status().message();
  EXPECT_NE(m.status().message().find("cannot read this model"), std::string::npos);

  const std::string bad_schema_model = dir_ + "/regressor.json";
  const std::string schema = dir_ + "/wrong.schema.json";
  std::ofstream(schema) << R"({"features": ["a", "b"]})";
  spec.path = bad_schema_model;
  spec.schema = schema;
  auto s = kind_->load(spec);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().message(), schema + ": lists 2 features but the model takes 6");
}

TEST_F(XgboostModelTest, RefusesBadShapesUnknownOutputsAndOversizedRequests) {
  auto m = load("regressor.json");
  ASSERT_NE(m, nullptr);
  auto run = [&](Tensor in, std::vector<std::string> outputs = {}) {
    models::Predictor::Request r;
    r.inputs.push_back(std::move(in));
    r.outputs = std::move(outputs);
    std::promise<Status> p;
    m->predictor()->predict(std::move(r), [&](Result<std::vector<Tensor>> out) { p.set_value(out.status()); });
    return p.get_future().get();
  };
  EXPECT_EQ(run({"input", {1, 5}, std::vector<float>(5)}).message(),
            "input 'input' has shape [1,5]; the model takes [rows, 6]");
  EXPECT_EQ(run({"x", {1, 6}, std::vector<float>(6)}).message(),
            "the model takes one input named 'input' of shape [rows, 6]");
  EXPECT_EQ(run({"input", {2, 6}, std::vector<float>(6)}).message(),
            "input 'input' has 6 values, not rows x 6 = 12");
  EXPECT_NE(run({"input", {1, 6}, std::vector<float>(6)}, {"probability"}).message().find(
                "output 'probability' is not one of the model's outputs"),
            std::string::npos);
  EXPECT_EQ(run({"input", {40, 6}, std::vector<float>(240)}).message(),
            "40 rows in one request; the model takes at most 32 (its max_batch_size)");
  EXPECT_TRUE(run({"input", {6}, std::vector<float>(6)}).ok()) << "a flat row is one row";
}

// 64 callers at once, each with its own row: every caller gets its own prediction.
TEST_F(XgboostModelTest, ConcurrentCallersGetTheirOwnPredictions) {
  auto m = load("regressor.json");
  ASSERT_NE(m, nullptr);
  const json& rows = reference_["rows"];
  std::atomic<int> wrong{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 64; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 10; ++k) {
        const size_t i = static_cast<size_t>(t * 7 + k) % 20;
        models::Predictor::Request r;
        Tensor in{"input", {1, 6}, {}};
        for (const auto& v : rows[i]) in.data.push_back(v.get<float>());
        r.inputs.push_back(std::move(in));
        r.outputs = {"prediction"};
        std::promise<Result<std::vector<Tensor>>> p;
        m->predictor()->predict(std::move(r), [&](Result<std::vector<Tensor>> out) { p.set_value(std::move(out)); });
        auto out = p.get_future().get();
        if (!out.ok()) {
          ++failed;
        } else if ((*out)[0].data[0] != reference_["regressor"]["predict"][i].get<float>()) {
          ++wrong;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(m->describe()["batches"].get<int>(), 0);
  EXPECT_LT(m->describe()["batches"].get<int>(), 640) << "some requests shared a batch";
}

}  // namespace
}  // namespace infera::predict
