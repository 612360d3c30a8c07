// Predictor models over real HTTP: XGBoost files written by XGBoost's Python library
// (tests/predict/make_xgboost_models.py) served by a real `infera serve`, through the
// seeds' /api/v1/predict routes and the KServe v2 protocol (JSON and binary tensors).
// Predictions must equal the Python library's exactly.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "integration/server_support.h"
#include "predict/xgboost_test_models.h"

namespace infera::testing {
namespace {

using nlohmann::json;

class PredictServer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string error;
    dir_ = new std::string(xgboost_test_models(&error));
    ASSERT_FALSE(dir_->empty()) << error;
    reference_ = new json(read_json_file(*dir_ + "/reference.json"));
    const std::string models_file = *dir_ + "/models.toml";
    std::ofstream(models_file) << R"(
[[models]]
name = "hardness"
path = "regressor.json"
kind = "xgboost"

[[models]]
name = "grade"
path = "classifier.json"

[[models]]
name = "ensemble"
path = "ens0.json"

[[models]]
name = "slow"
path = "regressor.ubj"
kind = "xgboost"
max_queue_delay_us = 3000000
max_queue_size = 1
)";
    server_ = new ServerProcess({"--models-file", models_file, "--model", "stories=" INFERA_SOURCE_DIR
                                 "/models/stories260K-tok512.gguf"});
  }
  static void TearDownTestSuite() {
    delete server_;
    delete reference_;
    delete dir_;
  }
  void SetUp() override {
    if (server_ == nullptr || server_->port() == 0) GTEST_FAIL() << "server did not start";
  }

  static json features(size_t i) {
    json f = json::object();
    for (size_t k = 0; k < 6; ++k) f[(*reference_)["features"][k].get<std::string>()] = (*reference_)["rows"][i][k];
    return f;
  }
  static HttpResponse post(const std::string& path, const json& body,
                           std::map<std::string, std::string> headers = {}) {
    headers["Content-Type"] = "application/json";
    auto r = http_request(server_->port(), "POST", path, body.dump(), headers, std::chrono::seconds(30));
    EXPECT_TRUE(r.has_value());
    return r.value_or(HttpResponse{});
  }
  static HttpResponse get(const std::string& path) {
    auto r = http_request(server_->port(), "GET", path, {}, {}, std::chrono::seconds(30));
    EXPECT_TRUE(r.has_value());
    return r.value_or(HttpResponse{});
  }
  static float ref_prediction(size_t i) { return (*reference_)["regressor"]["predict"][i].get<float>(); }

  static inline std::string* dir_ = nullptr;
  static inline json* reference_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
};

TEST_F(PredictServer, PredictsWithUncertaintyAndFeatureImportanceThenFromTheCache) {
  auto r = post("/api/v1/predict/hardness", {{"features", features(3)}});
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["prediction"].get<float>(), ref_prediction(3));
  EXPECT_EQ(j["model"], "hardness");
  EXPECT_EQ(j["cached"], false);
  EXPECT_EQ(j["uncertainty"]["method"], "conformal");
  EXPECT_DOUBLE_EQ(j["uncertainty"]["coverage"].get<double>(), 0.9);
  EXPECT_LT(j["uncertainty"]["lower"].get<double>(), j["prediction"].get<double>());
  EXPECT_GT(j["uncertainty"]["upper"].get<double>(), j["prediction"].get<double>());
  double sum = j["feature_importance_bias"].get<double>();
  ASSERT_EQ(j["feature_importance"].size(), 6u);
  for (const auto& [name, v] : j["feature_importance"].items()) sum += v.get<double>();
  EXPECT_NEAR(sum, j["prediction"].get<double>(), 1e-4);
  EXPECT_EQ(r.header("x-cache"), "MISS");

  auto again = post("/api/v1/predict/hardness", {{"features", features(3)}});
  ASSERT_EQ(again.status, 200);
  json k = json::parse(again.body);
  EXPECT_EQ(k["cached"], true);
  EXPECT_EQ(again.header("x-cache"), "HIT-L1");
  EXPECT_EQ(k["prediction"], j["prediction"]);
  EXPECT_EQ(k["feature_importance"], j["feature_importance"]);

  auto plain = post("/api/v1/predict/hardness", {{"features", features(3)}, {"explain", false}});
  json p = json::parse(plain.body);
  EXPECT_FALSE(p.contains("feature_importance"));
  EXPECT_EQ(p["prediction"], j["prediction"]);
}

TEST_F(PredictServer, RefusesBadFeaturesWithTheirNames) {
  json f = features(0);
  f.erase("density");
  auto missing = post("/api/v1/predict/hardness", {{"features", f}});
  EXPECT_EQ(missing.status, 400);
  EXPECT_EQ(json::parse(missing.body)["error"]["message"], "feature 'density' is missing");
  f = features(0);
  f["colour"] = 3;
  auto extra = post("/api/v1/predict/hardness", {{"features", f}});
  EXPECT_EQ(extra.status, 400);
  EXPECT_NE(extra.body.find("feature 'colour' is not one of the model's 6 features"), std::string::npos);
  f = features(0);
  f["melting_point"] = 9000;
  auto range = post("/api/v1/predict/hardness", {{"features", f}});
  EXPECT_EQ(range.status, 400);
  EXPECT_NE(range.body.find("feature 'melting_point' = 9000 K is out of range [300, 4000]"), std::string::npos);
  EXPECT_EQ(post("/api/v1/predict/hardness", json{{"feature", features(0)}}).status, 400);
  auto unknown = post("/api/v1/predict/nosuch", {{"features", features(0)}});
  EXPECT_EQ(unknown.status, 404);
  auto llm = post("/api/v1/predict/stories", {{"features", features(0)}});
  EXPECT_EQ(llm.status, 400);
  EXPECT_NE(llm.body.find("does not take features or tensors"), std::string::npos);
  auto broken = http_request(server_->port(), "POST", "/api/v1/predict/hardness", "{\"features\":");
  ASSERT_TRUE(broken);
  EXPECT_EQ(broken->status, 400);
}

TEST_F(PredictServer, BatchesLargerThanOneBatchComeBackInOrder) {
  json instances = json::array();
  for (size_t i = 0; i < 50; ++i) instances.push_back(features(i % 20));
  auto r = post("/api/v1/predict/hardness/batch", {{"instances", instances}, {"explain", false}},
                {{"Cache-Control", "no-cache"}});
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  ASSERT_EQ(j["predictions"].size(), 50u);
  for (size_t i = 0; i < 50; ++i) {
    EXPECT_EQ(j["predictions"][i]["prediction"].get<float>(), ref_prediction(i % 20)) << i;
  }
  json bad = instances;
  bad[7]["density"] = "x";
  auto refused = post("/api/v1/predict/hardness/batch", {{"instances", bad}});
  EXPECT_EQ(refused.status, 400);
  EXPECT_NE(refused.body.find("instances[7]: feature 'density' must be a float"), std::string::npos);
}

TEST_F(PredictServer, ClassifiersAnswerWithALabelAndProbabilities) {
  auto r = post("/api/v1/predict/grade", {{"features", features(5)}});
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  const json& ref = (*reference_)["classifier"]["predict"][5];
  size_t best = 0;
  for (size_t c = 1; c < 3; ++c) {
    if (ref[c].get<float>() > ref[best].get<float>()) best = c;
  }
  const std::vector<std::string> labels = {"soft", "medium", "hard"};
  EXPECT_EQ(j["prediction"], labels[best]);
  for (size_t c = 0; c < 3; ++c) EXPECT_EQ(j["probabilities"][labels[c]].get<float>(), ref[c].get<float>());
  EXPECT_EQ(j["uncertainty"]["method"], "none");
  EXPECT_EQ(j["feature_importance_space"], "margin");
}

TEST_F(PredictServer, ShowsTheSchema) {
  auto r = get("/api/v1/models/hardness");
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["features"][1]["name"], "melting_point");
  EXPECT_EQ(j["features"][1]["unit"], "K");
  EXPECT_EQ(j["features"][4]["type"], "int");
  EXPECT_EQ(j["target"]["unit"], "GPa");
  EXPECT_EQ(j["uncertainty"]["method"], "conformal");
  EXPECT_EQ(j["uncertainty"]["calibration_rows"], 1000);
  EXPECT_EQ(j["task"], "regression");
  auto ens = json::parse(get("/api/v1/models/ensemble").body);
  EXPECT_EQ(ens["uncertainty"]["members"], 5);
}

TEST_F(PredictServer, KserveV2JsonInferenceRoundTrips) {
  auto server = json::parse(get("/v2").body);
  EXPECT_EQ(server["name"], "infera");
  EXPECT_EQ(get("/v2/health/live").status, 200);
  EXPECT_EQ(get("/v2/health/ready").status, 200);
  auto meta = get("/v2/models/hardness");
  ASSERT_EQ(meta.status, 200) << meta.body;
  json m = json::parse(meta.body);
  EXPECT_EQ(m["inputs"][0], json({{"name", "input"}, {"datatype", "FP32"}, {"shape", {-1, 6}}}));
  EXPECT_EQ(m["platform"], "xgboost");
  EXPECT_EQ(get("/v2/models/hardness/ready").status, 200);
  EXPECT_EQ(get("/v2/models/nosuch/ready").status, 404);

  json data = json::array();
  for (size_t i = 0; i < 20; ++i) data.push_back((*reference_)["rows"][i]);  // nested [20][6]
  auto r = post("/v2/models/hardness/infer",
                {{"id", "req-1"},
                 {"inputs", {{{"name", "input"}, {"shape", {20, 6}}, {"datatype", "FP32"}, {"data", data}}}},
                 {"outputs", {{{"name", "prediction"}}, {{"name", "prediction_upper"}}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["id"], "req-1");
  EXPECT_EQ(j["model_name"], "hardness");
  ASSERT_EQ(j["outputs"].size(), 2u);
  EXPECT_EQ(j["outputs"][0]["name"], "prediction");
  EXPECT_EQ(j["outputs"][0]["shape"], json({20, 1}));
  for (size_t i = 0; i < 20; ++i) EXPECT_EQ(j["outputs"][0]["data"][i].get<float>(), ref_prediction(i));

  auto bad_shape = post("/v2/models/hardness/infer",
                        {{"inputs", {{{"name", "input"}, {"shape", {2, 5}}, {"datatype", "FP32"},
                                      {"data", std::vector<float>(10)}}}}});
  EXPECT_EQ(bad_shape.status, 400);
  EXPECT_TRUE(json::parse(bad_shape.body).contains("error"));
  auto bad_type = post("/v2/models/hardness/infer",
                       {{"inputs", {{{"name", "input"}, {"shape", {1, 6}}, {"datatype", "BYTES"},
                                     {"data", std::vector<float>(6)}}}}});
  EXPECT_EQ(bad_type.status, 400);
}

TEST_F(PredictServer, KserveV2BinaryTensorsRoundTrip) {
  // FP64 input in binary, FP32 outputs asked for in binary.
  std::vector<double> values;
  for (size_t i = 0; i < 4; ++i) {
    for (size_t k = 0; k < 6; ++k) values.push_back((*reference_)["rows"][i][k].get<double>());
  }
  json header = {{"inputs", {{{"name", "input"}, {"shape", {4, 6}}, {"datatype", "FP64"},
                              {"parameters", {{"binary_data_size", values.size() * 8}}}}}},
                 {"outputs", {{{"name", "prediction"}, {"parameters", {{"binary_data", true}}}}}}};
  std::string body = header.dump();
  const size_t header_len = body.size();
  body.append(reinterpret_cast<const char*>(values.data()), values.size() * 8);
  auto r = http_request(server_->port(), "POST", "/v2/models/hardness/infer", body,
                        {{"Content-Type", "application/octet-stream"},
                         {"Inference-Header-Content-Length", std::to_string(header_len)}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const size_t out_header = std::stoul(r->header("inference-header-content-length"));
  json j = json::parse(r->body.substr(0, out_header));
  ASSERT_EQ(j["outputs"][0]["parameters"]["binary_data_size"], 16);
  ASSERT_EQ(r->body.size(), out_header + 16);
  float out[4];
  std::memcpy(out, r->body.data() + out_header, 16);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(out[i], ref_prediction(i));
}

TEST_F(PredictServer, AFullQueueGets429AndARequestPastItsDeadlineGets504) {
  // "slow" waits 3 s for a batch to fill and queues one request: the first waits, a
  // second finds the queue full, and the first's own 0.3 s timeout ends it in the queue.
  ASSERT_EQ(post("/api/models/slow/load", json::object()).status, 200);
  std::thread first([&] {
    auto r = post("/api/v1/predict/slow", {{"features", features(1)}, {"timeout", 0.3}},
                  {{"Cache-Control", "no-cache"}});
    EXPECT_EQ(r.status, 504) << r.body;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto second = post("/api/v1/predict/slow", {{"features", features(2)}}, {{"Cache-Control", "no-cache"}});
  EXPECT_EQ(second.status, 429) << second.body;
  EXPECT_EQ(second.header("retry-after"), "1");
  first.join();
}

TEST_F(PredictServer, ConcurrentClientsGetTheirOwnPredictions) {
  std::atomic<int> wrong{0}, failed{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 64; ++t) {
    clients.emplace_back([&, t] {
      for (int k = 0; k < 4; ++k) {
        const size_t i = static_cast<size_t>(t + k) % 20;
        auto r = http_request(server_->port(), "POST", "/api/v1/predict/hardness",
                              json{{"features", features(i)}, {"explain", false}}.dump(),
                              {{"Cache-Control", "no-cache"}}, std::chrono::seconds(60));
        if (!r || r->status != 200) {
          ++failed;
        } else if (json::parse(r->body)["prediction"].get<float>() != ref_prediction(i)) {
          ++wrong;
        }
      }
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(PredictServer, KserveRepositoryLoadsAndUnloads) {
  ASSERT_EQ(post("/v2/repository/models/ensemble/load", json::object()).status, 200);
  EXPECT_EQ(get("/v2/models/ensemble/ready").status, 200);
  auto index = json::parse(post("/v2/repository/index", json::object()).body);
  bool listed = false;
  for (const auto& m : index) listed |= m["name"] == "ensemble" && m["state"] == "READY";
  EXPECT_TRUE(listed) << index.dump();
  ASSERT_EQ(post("/v2/repository/models/ensemble/unload", json::object()).status, 200);
  EXPECT_EQ(get("/v2/models/ensemble/ready").status, 400);
  EXPECT_EQ(post("/v2/repository/models/nosuch/load", json::object()).status, 404);
}

}  // namespace
}  // namespace infera::testing
