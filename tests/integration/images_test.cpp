// Tensor models and image matching over real HTTP: a CNN written by PyTorch
// (tests/predict/make_tensor_models.py) served as ONNX and TorchScript through KServe v2,
// and /api/v1/images/* finding a registered image after re-encoding and resizing, not an
// unrelated one, from the cache the second time, and again after a restart.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "integration/server_support.h"
#include "predict/tensor_test_models.h"
#include "predict/generated_models.h"

namespace infera::testing {
namespace {

using nlohmann::json;

std::string base64(const std::string& in) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (i < in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    if (i + 1 < in.size()) v |= uint8_t(in[i + 1]) << 8;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

class ImagesServer : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    dir_ = tensor_test_models(&error);
    ASSERT_FALSE(dir_.empty()) << error;
    reference_ = read_json_file(dir_ + "/reference.json");
    data_ = dir_ + "/data-" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    start();
  }
  void start() {
    std::vector<std::string> args = {"--model", "cnn=" + dir_ + "/cnn.onnx", "--image-match-model", "cnn",
                                     "--data-dir", data_};
#ifdef INFERA_WITH_TORCH
    args.insert(args.end(), {"--model", "cnnt=" + dir_ + "/cnn.pt"});
#endif
    server_ = std::make_unique<ServerProcess>(args);
    ASSERT_NE(server_->port(), 0);
  }
  HttpResponse post(const std::string& path, const std::string& body,
                    std::map<std::string, std::string> headers = {{"Content-Type", "application/json"}}) {
    auto r = http_request(server_->port(), "POST", path, body, headers, std::chrono::seconds(60));
    EXPECT_TRUE(r.has_value());
    return r.value_or(HttpResponse{});
  }
  json image_body(const std::string& file, json extra = json::object()) {
    extra["image"] = base64(read_file(dir_ + "/" + file));
    return extra;
  }

  std::string dir_, data_;
  json reference_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(ImagesServer, TensorModelsAnswerKserveAsPyTorchDoes) {
  std::vector<std::string> models = {"cnn"};
#ifdef INFERA_WITH_TORCH
  models.push_back("cnnt");
#endif
  for (const std::string& m : models) {
    SCOPED_TRACE(m);
    json data = reference_["rows"][0];
    auto r = post("/v2/models/" + m + "/infer",
                  json{{"inputs", {{{"name", "input"}, {"shape", {1, 3, 32, 32}}, {"datatype", "FP32"}, {"data", data}}}}}.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    json out = json::parse(r.body)["outputs"][0];
    EXPECT_EQ(out["name"], "embedding");
    EXPECT_EQ(out["shape"], json({1, 32}));
    for (size_t k = 0; k < 32; ++k) {
      const double want = reference_["embedding"][0][k].get<double>();
      EXPECT_NEAR(out["data"][k].get<double>(), want, 1e-5 * (1 + std::fabs(want)));
    }
    auto meta = json::parse(http_request(server_->port(), "GET", "/v2/models/" + m)->body);
    EXPECT_EQ(meta["inputs"][0]["shape"], json({-1, 3, 32, 32}));
  }
}

TEST_F(ImagesServer, FindsARegisteredImageAfterReencodingButNotAnUnrelatedOne) {
  auto added = post("/api/v1/images/references",
                    image_body("shapes.png", {{"set", "protected"}, {"id", "logo"}, {"tags", {"brand"}}}).dump());
  ASSERT_EQ(added.status, 201) << added.body;
  EXPECT_EQ(json::parse(added.body)["embedded"], true);

  auto match = post("/api/v1/images/match", image_body("shapes-small.jpg", {{"set", "protected"}}).dump());
  ASSERT_EQ(match.status, 200) << match.body;
  json j = json::parse(match.body);
  ASSERT_FALSE(j["matches"].empty()) << j.dump();
  EXPECT_EQ(j["matches"][0]["id"], "logo");
  EXPECT_EQ(j["matches"][0]["is_match"], true);
  EXPECT_GT(j["matches"][0]["score"].get<double>(), 0.9);
  EXPECT_EQ(j["matches"][0]["tags"], json({"brand"}));
  EXPECT_EQ(j["algorithm"], "phash+cnn:cnn");
  EXPECT_EQ(j["cached"], false);

  auto other = post("/api/v1/images/match", image_body("other.png", {{"set", "protected"}}).dump());
  ASSERT_EQ(other.status, 200);
  const json other_body = json::parse(other.body);  // named: a range-for over a temporary's member dangles
  for (const auto& m : other_body["matches"]) EXPECT_EQ(m["is_match"], false) << m.dump();

  // The raw image as the body, then the same question from the cache.
  auto raw = post("/api/v1/images/match?set=protected", read_file(dir_ + "/shapes.jpg"),
                  {{"Content-Type", "image/jpeg"}});
  ASSERT_EQ(raw.status, 200) << raw.body;
  EXPECT_EQ(json::parse(raw.body)["matches"][0]["id"], "logo");
  auto again = post("/api/v1/images/match?set=protected", read_file(dir_ + "/shapes.jpg"),
                    {{"Content-Type", "image/jpeg"}});
  EXPECT_EQ(json::parse(again.body)["cached"], true);
  EXPECT_EQ(again.header("x-cache"), "HIT-L1");

  // The reference survives a restart.
  server_.reset();
  start();
  auto after = post("/api/v1/images/match", image_body("shapes-small.jpg", {{"set", "protected"}}).dump());
  ASSERT_EQ(after.status, 200) << after.body;
  EXPECT_EQ(json::parse(after.body)["matches"][0]["id"], "logo");
  auto listed = json::parse(http_request(server_->port(), "GET", "/api/v1/images/references?set=protected")->body);
  EXPECT_EQ(listed["references"].size(), 1u);
  auto deleted = http_request(server_->port(), "DELETE", "/api/v1/images/references/logo?set=protected");
  ASSERT_TRUE(deleted);
  EXPECT_EQ(deleted->status, 200);
  auto gone = post("/api/v1/images/match", image_body("shapes-small.jpg", {{"set", "protected"}}).dump());
  EXPECT_TRUE(json::parse(gone.body)["matches"].empty()) << "a deleted reference is not matched (nor cached)";
}

TEST_F(ImagesServer, RefusesWhatIsNotAnImage) {
  auto bad = post("/api/v1/images/match", json{{"image", base64("definitely not an image")}}.dump());
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("not a decodable image"), std::string::npos);
  EXPECT_EQ(post("/api/v1/images/match", json{{"image", "@@@"}}.dump()).status, 400);
  EXPECT_EQ(post("/api/v1/images/references", image_body("shapes.png", {{"set", "../x"}, {"id", "a"}}).dump()).status, 400);
  EXPECT_EQ(post("/api/v1/images/references", image_body("shapes.png").dump()).status, 400) << "no id";
}

}  // namespace
}  // namespace infera::testing
