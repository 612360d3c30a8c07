// Kinds "onnx" (OpenCV DNN) and "torchscript" (LibTorch): a small CNN written by PyTorch
// (make_tensor_models.py) gives PyTorch's outputs through both, in batches and from
// concurrent callers; images are preprocessed as OpenCV in Python does; bad files and
// configs are refused naming them.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "models/model.h"
#include "obs/metrics.h"
#include "predict/image_preprocess.h"
#include "predict/predict.h"
#include "predict/tensor_test_models.h"
#include "predict/generated_models.h"

namespace infera::predict {
namespace {

using testing::read_file;

using models::Tensor;
using nlohmann::json;

class TensorModelTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string error;
    dir_ = testing::tensor_test_models(&error);
    ASSERT_FALSE(dir_.empty()) << error;
    reference_ = testing::read_json_file(dir_ + "/reference.json");
#ifndef INFERA_WITH_TORCH
    if (GetParam() == "torchscript") GTEST_SKIP() << "built without LibTorch (INFERA_WITH_TORCH=OFF)";
#endif
    kind_ = GetParam() == "onnx" ? make_onnx_kind({}, metrics_)
#ifdef INFERA_WITH_TORCH
                                 : make_torchscript_kind({}, metrics_);
#else
                                 : nullptr;
#endif
  }
  std::string file(const std::string& stem) const {
    return dir_ + "/" + stem + (GetParam() == "onnx" ? ".onnx" : ".pt");
  }
  Result<std::unique_ptr<models::LoadedModel>> load(const std::string& path, const std::string& schema = {}) {
    models::ModelSpec spec;
    spec.name = "cnn";
    spec.kind = GetParam();
    spec.path = path;
    spec.schema = schema;
    return kind_->load(spec);
  }
  static Result<std::vector<Tensor>> run(models::LoadedModel& m, Tensor in) {
    models::Predictor::Request r;
    r.inputs.push_back(std::move(in));
    std::promise<Result<std::vector<Tensor>>> p;
    m.predictor()->predict(std::move(r), [&](Result<std::vector<Tensor>> out) { p.set_value(std::move(out)); });
    return p.get_future().get();
  }
  Tensor rows(size_t first, size_t n) const {
    Tensor t{"input", {static_cast<int64_t>(n), 3, 32, 32}, {}};
    for (size_t i = first; i < first + n; ++i) {
      for (const auto& v : reference_["rows"][i]) t.data.push_back(v.get<float>());
    }
    return t;
  }
  void expect_embedding(const float* got, const json& want) {
    for (size_t k = 0; k < 32; ++k) {
      const float w = want[k].get<float>();
      EXPECT_NEAR(got[k], w, 1e-5 * (1 + std::fabs(w))) << "value " << k;  // relative above 1
    }
  }

  obs::Registry metrics_;
  std::string dir_;
  json reference_;
  std::unique_ptr<models::ModelKind> kind_;
};

TEST_P(TensorModelTest, GivesPyTorchsOutputsForOneRowAndForBatches) {
  auto m = load(file("cnn"));
  ASSERT_TRUE(m.ok()) << m.status().message();
  ASSERT_TRUE((*m)->warm_up().ok());
  EXPECT_EQ((*m)->predictor()->inputs()[0].shape, (std::vector<int64_t>{-1, 3, 32, 32}));
  for (size_t n : {1u, 3u}) {
    auto out = run(**m, rows(1, n));
    ASSERT_TRUE(out.ok()) << out.status().message();
    ASSERT_EQ(out->size(), 1u);
    EXPECT_EQ((*out)[0].name, "embedding");
    EXPECT_EQ((*out)[0].shape, (std::vector<int64_t>{static_cast<int64_t>(n), 32}));
    for (size_t i = 0; i < n; ++i) expect_embedding((*out)[0].data.data() + i * 32, reference_["embedding"][1 + i]);
  }
}

TEST_P(TensorModelTest, PreprocessesImagesAsOpenCvInPythonDoes) {
  auto m = load(file("cnn"));
  ASSERT_TRUE(m.ok()) << m.status().message();
  auto row = (*m)->predictor()->image_to_row(read_file(dir_ + "/shapes.png"));
  ASSERT_TRUE(row.ok()) << row.status().message();
  ASSERT_EQ(row->size(), 3u * 32 * 32);
  const json& want = reference_["shapes_row"];
  for (size_t i = 0; i < row->size(); ++i) ASSERT_NEAR((*row)[i], want[i].get<float>(), 1e-5) << i;
  auto out = run(**m, Tensor{"input", {1, 3, 32, 32}, std::move(row).value()});
  ASSERT_TRUE(out.ok());
  expect_embedding((*out)[0].data.data(), reference_["shapes_embedding"]);
  auto bad = (*m)->predictor()->image_to_row("GIF89a not really");
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

TEST_P(TensorModelTest, RefusesBrokenFilesAndConfigsNamingThem) {
  const std::string config = dir_ + "/cnn.config.json";
  auto broken = load(file("broken"), config);
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find(file("broken") + ": "), std::string::npos) << broken.status().message();
  EXPECT_NE(broken.status().message().find(GetParam() == "onnx" ? "OpenCV 4.6" : "LibTorch 1.13"),
            std::string::npos)
      << broken.status().message();
  const std::string bad_config = dir_ + "/bad-" + GetParam() + ".config.json";
  std::ofstream(bad_config) << R"({"inputs": [{"name": "input", "shape": [1, 3, 32, 32]}], "outputs": [{"name": "e", "shape": [-1, 32]}]})";
  auto c = load(file("cnn"), bad_config);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), bad_config + ": input 'input': the first dimension is the batch: -1");
  std::ofstream(bad_config) << R"({"inputs": [{"name": "input", "shape": [-1, 3, 32, 32]}], "outputs": [{"name": "embedding", "shape": [-1, 31]}]})";
  // The config is checked against the model at load (one row of zeros), warm-up or not.
  auto wrong_width = load(file("cnn"), bad_config);
  ASSERT_FALSE(wrong_width.ok());
  EXPECT_EQ(wrong_width.status().message(),
            bad_config + ": output 'embedding' declares 31 values per row (shape [-1, 31]); " + file("cnn") +
                " gives 32 (shape [1, 32])");
  std::ofstream(bad_config) << R"({"inputs": [{"name": "input", "shape": [-1, 3, 32, 32]}], "outputs": [{"name": "embedding", "shape": [-1, 32]}, {"name": "logits", "shape": [-1, 10]}]})";
  auto extra = load(file("cnn"), bad_config);
  ASSERT_FALSE(extra.ok());
  EXPECT_NE(extra.status().message().find(GetParam() == "onnx" ? "the graph has no output 'logits', which the config's 'outputs' names"
                                                               : "'outputs' declares 2 tensors"),
            std::string::npos)
      << extra.status().message();
  std::ofstream(bad_config) << R"({"inputs": [{"name": "input", "shape": [-1, 3, 16, 16]}], "outputs": [{"name": "embedding", "shape": [-1, 32]}]})";
  auto small = load(file("cnn"), bad_config);
  // The CNN pools globally, so a smaller image runs through it; a wrong channel count does not.
  EXPECT_TRUE(small.ok()) << small.status().message();
  std::ofstream(bad_config) << R"({"inputs": [{"name": "input", "shape": [-1, 4, 32, 32]}], "outputs": [{"name": "embedding", "shape": [-1, 32]}]})";
  auto channels = load(file("cnn"), bad_config);
  ASSERT_FALSE(channels.ok());
  EXPECT_EQ(channels.status().message().rfind(
                bad_config + ": input 'input' of shape [1, 4, 32, 32] does not run through " + file("cnn") + ": ",
                0),
            0u)
      << channels.status().message();
}

TEST_P(TensorModelTest, ConcurrentCallersGetTheirOwnRows) {
  auto m = load(file("cnn"));
  ASSERT_TRUE(m.ok()) << m.status().message();
  std::atomic<int> wrong{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 32; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 5; ++k) {
        const size_t i = static_cast<size_t>(t + k) % 4;
        auto out = run(**m, rows(i, 1));
        if (!out.ok()) {
          ++failed;
          continue;
        }
        for (size_t v = 0; v < 32; ++v) {
          const float w = reference_["embedding"][i][v].get<float>();
          if (std::fabs((*out)[0].data[v] - w) > 1e-5 * (1 + std::fabs(w))) {
            ++wrong;
            break;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
}

TEST_P(TensorModelTest, ReturnsEachOutputUnderItsNameInTheConfigsOrder) {
  // pair's graph returns zeta [4] then alpha [3]; OpenCV lists them by name (alpha first).
  auto m = load(file("pair"));
  ASSERT_TRUE(m.ok()) << m.status().message();
  const json& ref = reference_["pair"];
  Tensor in{"input", {3, 8}, {}};
  for (const auto& row : ref["rows"]) {
    for (const auto& v : row) in.data.push_back(v.get<float>());
  }
  auto out = run(**m, in);
  ASSERT_TRUE(out.ok()) << out.status().message();
  ASSERT_EQ(out->size(), 2u);
  const std::pair<const char*, int64_t> want[] = {{"zeta", 4}, {"alpha", 3}};
  for (size_t k = 0; k < 2; ++k) {
    const auto& [name, width] = want[k];
    const Tensor& t = (*out)[k];
    EXPECT_EQ(t.name, name);
    ASSERT_EQ(t.shape, (std::vector<int64_t>{3, width}));
    for (size_t i = 0; i < t.data.size(); ++i) {
      const float w = ref[name][i / width][i % width].get<float>();
      EXPECT_NEAR(t.data[i], w, 1e-5 * (1 + std::fabs(w))) << name << " value " << i;
    }
  }
  models::Predictor::Request only_alpha;
  only_alpha.inputs.push_back(in);
  only_alpha.outputs = {"alpha"};
  std::promise<Result<std::vector<Tensor>>> p;
  (*m)->predictor()->predict(std::move(only_alpha), [&](Result<std::vector<Tensor>> r) { p.set_value(std::move(r)); });
  auto alpha = p.get_future().get();
  ASSERT_TRUE(alpha.ok()) << alpha.status().message();
  ASSERT_EQ(alpha->size(), 1u);
  EXPECT_EQ((*alpha)[0].name, "alpha");
  EXPECT_EQ((*alpha)[0].data, (*out)[1].data);
}

TEST_P(TensorModelTest, DescribesItsTensorsPreprocessingAndBatching) {
  auto m = load(file("cnn"));
  ASSERT_TRUE(m.ok()) << m.status().message();
  const json d = (*m)->describe();
  EXPECT_EQ(d["kind"], GetParam());
  EXPECT_TRUE(d["library"].get<std::string>().starts_with(GetParam() == "onnx" ? "opencv 4.6" : "libtorch 1.13"))
      << d.dump();
  EXPECT_EQ(d["inputs"][0]["shape"], json({-1, 3, 32, 32}));
  EXPECT_EQ(d["outputs"][0]["name"], "embedding");
  EXPECT_EQ(d["image"]["size"], json({32, 32}));
  EXPECT_EQ(d["image"]["channel_order"], "RGB");
  EXPECT_EQ(d["max_batch_size"], PredictKindConfig{}.max_batch_size);
  EXPECT_EQ(d["threads"], PredictKindConfig{}.threads);
  EXPECT_EQ((*m)->predictor()->schema()["inputs"][0]["image"], d["image"]);
}

TEST(OnnxKind, RefusesAGraphOpenCvCannotReadNamingTheFileAndTheDocs) {
  std::string error;
  const std::string& dir = testing::tensor_test_models(&error);
  ASSERT_FALSE(dir.empty()) << error;
  std::ofstream(dir + "/unsupported.config.json")
      << R"({"inputs": [{"name": "input", "shape": [-1, 8]}], "outputs": [{"name": "count", "shape": [-1, 2]}]})";
  obs::Registry metrics;
  auto kind = make_onnx_kind({}, metrics);
  models::ModelSpec spec;
  spec.name = "unsupported";
  spec.kind = "onnx";
  spec.path = dir + "/unsupported.onnx";
  auto m = kind->load(spec);
  ASSERT_FALSE(m.ok());
  const std::string& msg = m.status().message();
  EXPECT_EQ(msg.rfind(spec.path + ": OpenCV 4.6.0 cannot read this ONNX graph", 0), 0u) << msg;
  EXPECT_NE(msg.find("NonZero"), std::string::npos) << "names the operator: " << msg;
  EXPECT_NE(msg.find("docs/PREDICTORS.md"), std::string::npos) << msg;
}

INSTANTIATE_TEST_SUITE_P(Kinds, TensorModelTest, ::testing::Values("onnx", "torchscript"),
                         [](const auto& info) { return info.param; });

TEST(PerceptualHash, SurvivesReencodingAndResizingButNotAnotherImage) {
  std::string error;
  const std::string& dir = testing::tensor_test_models(&error);
  ASSERT_FALSE(dir.empty()) << error;
  auto original = perceptual_hash(read_file(dir + "/shapes.png"));
  auto jpeg = perceptual_hash(read_file(dir + "/shapes.jpg"));
  auto small = perceptual_hash(read_file(dir + "/shapes-small.jpg"));
  auto other = perceptual_hash(read_file(dir + "/other.png"));
  ASSERT_TRUE(original.ok() && jpeg.ok() && small.ok() && other.ok());
  EXPECT_LE(__builtin_popcountll(*original ^ *jpeg), 6);
  EXPECT_LE(__builtin_popcountll(*original ^ *small), 8);
  EXPECT_GE(__builtin_popcountll(*original ^ *other), 16);
  EXPECT_EQ(perceptual_hash("").status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace infera::predict
