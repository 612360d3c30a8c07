// Persisted packed-weight images (packed_image.h, ModelOptions::packed_cache_dir): the
// first load writes one, later loads map it instead of repacking and promote it, with
// logits bit-identical to repacking; a damaged, stale or oversized image is never used.
#include "engine/packed_image.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/synth.h"
#include "logits_testing.h"

namespace infera::engine {
namespace {

namespace fs = std::filesystem;

const std::string kVocab = std::string(INFERA_SHARED_MODELS) + "/ggml-vocab-llama-spm.gguf";
const std::vector<int32_t> kPrompt{1, 450, 4996, 17354, 1701, 29916, 975, 278};

class PackedImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kVocab)) GTEST_SKIP() << "shared models absent: " << kVocab;
    dir_ = fs::temp_directory_path() / ("infera_packed_image_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "models");
  }
  // REQUIRES: every image a test's loads write has been waited for.
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string cache_dir() const { return (dir_ / "packed").string(); }

  // A small model whose matrices the kernel table repacks (where it repacks at all).
  std::string write_model(const std::string& name, uint64_t seed, GgmlType type = GgmlType::kQ4_0) {
    SynthShape shape{.name = "test",
                     .dim = 256,
                     .n_layers = 2,
                     .n_heads = 4,
                     .n_kv_heads = 2,
                     .ffn_dim = 512,
                     .n_vocab = 4000};
    const std::string path = (dir_ / "models" / (name + ".gguf")).string();
    Status s = write_synthetic_model(
        {.shape = shape, .type = type, .vocab_path = kVocab, .seed = seed}, path);
    EXPECT_TRUE(s.ok()) << s.message();
    return path;
  }

  ModelOptions options(ModelOptions::Promotion promote = ModelOptions::Promotion::kAlways) {
    ModelOptions o{.threads = 2, .ctx_tokens = 256};
    o.packed_cache_dir = cache_dir();
    o.promote_packed_image = promote;
    o.packed_cache_warning = [this](const std::string& message) {
      std::lock_guard lock(mu_);
      warnings_.push_back(message);
    };
    return o;
  }

  std::unique_ptr<Model> load(const std::string& path, const ModelOptions& o) {
    auto model = Model::load(path, o);
    EXPECT_TRUE(model.ok()) << model.status().message();
    return model.ok() ? std::move(model).value() : nullptr;
  }

  // Loads `path` once so that its image is written; skips when nothing is repacked.
  std::string write_image(const std::string& path) {
    auto model = load(path, options());
    if (!model) return {};
    model->wait_for_background_work();
    const LoadReport r = model->load_report();
    if (r.weights == PackedWeights::kNone) return {};
    EXPECT_EQ(r.weights, PackedWeights::kRepacked);
    EXPECT_TRUE(r.image_written);
    EXPECT_TRUE(fs::exists(r.image_path)) << r.image_path;
    return r.image_path;
  }

  std::vector<std::string> images() const {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(cache_dir(), ec)) out.push_back(e.path().string());
    return out;
  }

  size_t warning_count() {
    std::lock_guard lock(mu_);
    return warnings_.size();
  }

  fs::path dir_;
  std::mutex mu_;
  std::vector<std::string> warnings_;
};

#define SKIP_WITHOUT_REPACKING(image) \
  if ((image).empty()) GTEST_SKIP() << "this CPU's kernel table repacks nothing"

TEST_F(PackedImageTest, LaterLoadsMapTheImageWithIdenticalLogits) {
  for (GgmlType type : {GgmlType::kQ4_0, GgmlType::kQ8_0}) {
    SCOPED_TRACE(ggml_type_info(type).name);
    const std::string path = write_model(std::string(ggml_type_info(type).name), 5, type);
    ModelOptions no_cache{.threads = 2, .ctx_tokens = 256};
    auto repacked = load(path, no_cache);
    ASSERT_NE(repacked, nullptr);
    const std::vector<float> expected = test_util::last_logits(*repacked, kPrompt);
    const std::string image = write_image(path);
    SKIP_WITHOUT_REPACKING(image);

    auto mapped = load(path, options(ModelOptions::Promotion::kNever));
    ASSERT_NE(mapped, nullptr);
    EXPECT_EQ(mapped->load_report().weights, PackedWeights::kImage);
    EXPECT_EQ(mapped->load_report().image_path, image);
    EXPECT_EQ(test_util::last_logits(*mapped, kPrompt), expected);
    EXPECT_EQ(mapped->load_report().weights, PackedWeights::kImage);

    auto promoted = load(path, options());
    ASSERT_NE(promoted, nullptr);
    EXPECT_EQ(promoted->load_report().weights, PackedWeights::kImage);
    promoted->wait_for_background_work();
    EXPECT_EQ(test_util::last_logits(*promoted, kPrompt), expected);  // adopts the copy first
    EXPECT_EQ(promoted->load_report().weights, PackedWeights::kPromoted);
    EXPECT_EQ(test_util::last_logits(*promoted, kPrompt), expected);

    // By default the copy is made only if the kernel maps the image with small pages.
    auto by_default = load(path, options(ModelOptions::Promotion::kUnlessHugeMapped));
    ASSERT_NE(by_default, nullptr);
    by_default->wait_for_background_work();
    EXPECT_EQ(test_util::last_logits(*by_default, kPrompt), expected);
  }
  EXPECT_EQ(warning_count(), 0u);
}

TEST_F(PackedImageTest, DamagedImagesAreDeletedAndTheWeightsRepacked) {
  const std::string path = write_model("m", 7);
  auto reference = load(path, {.threads = 2, .ctx_tokens = 256});
  ASSERT_NE(reference, nullptr);
  const std::vector<float> expected = test_util::last_logits(*reference, kPrompt);
  const std::string image = write_image(path);
  SKIP_WITHOUT_REPACKING(image);
  const auto size = fs::file_size(image);
  // A short file, a changed header byte, a changed first tile (the region starts after
  // one header unit).
  const std::vector<std::pair<const char*, std::function<void()>>> damages = {
      {"truncated", [&] { fs::resize_file(image, size - 1); }},
      {"header",
       [&] {
         std::fstream f(image, std::ios::in | std::ios::out | std::ios::binary);
         f.seekp(20);
         f.put('\x5a');
       }},
      {"first tile",
       [&] {
         std::fstream f(image, std::ios::in | std::ios::out | std::ios::binary);
         f.seekg(kPackedImageHeaderAlign + 3);
         const char c = static_cast<char>(f.get());
         f.seekp(kPackedImageHeaderAlign + 3);
         f.put(static_cast<char>(c ^ 0x10));
       }},
  };
  for (const auto& [what, damage] : damages) {
    SCOPED_TRACE(what);
    ASSERT_TRUE(fs::exists(image));
    damage();
    const size_t warnings = warning_count();
    auto model = load(path, options());
    ASSERT_NE(model, nullptr);
    EXPECT_EQ(model->load_report().weights, PackedWeights::kRepacked);
    EXPECT_EQ(warning_count(), warnings + 1);
    EXPECT_EQ(test_util::last_logits(*model, kPrompt), expected);
    model->wait_for_background_work();  // writes a good image again
    EXPECT_TRUE(model->load_report().image_written);
    EXPECT_EQ(fs::file_size(image), size);
  }
  auto model = load(path, options());
  EXPECT_EQ(model->load_report().weights, PackedWeights::kImage);
}

TEST_F(PackedImageTest, AChangedSourceFileIsRepackedAndItsStaleImageDeleted) {
  const std::string path = write_model("m", 7);
  const std::string image = write_image(path);
  SKIP_WITHOUT_REPACKING(image);
  // Same size, other weights: the identity (mtime, ctime) changes.
  write_model("m", 8);
  auto model = load(path, options());
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->load_report().weights, PackedWeights::kRepacked);
  EXPECT_NE(model->load_report().image_path, image);
  model->wait_for_background_work();
  EXPECT_FALSE(fs::exists(image));
  EXPECT_EQ(images(), std::vector<std::string>{model->load_report().image_path});
  auto reference = load(path, {.threads = 2, .ctx_tokens = 256});
  ASSERT_NE(reference, nullptr);
  EXPECT_EQ(test_util::last_logits(*model, kPrompt), test_util::last_logits(*reference, kPrompt));
  // Only the times change: still not this image's file.
  fs::last_write_time(path, fs::last_write_time(path) + std::chrono::seconds(1));
  auto touched = load(path, options());
  ASSERT_NE(touched, nullptr);
  EXPECT_EQ(touched->load_report().weights, PackedWeights::kRepacked);
  touched->wait_for_background_work();  // its image is written before the directory goes
}

TEST_F(PackedImageTest, TheByteCapEvictsTheLeastRecentlyUsedImage) {
  const std::string a = write_model("a", 1), b = write_model("b", 2), c = write_model("c", 3);
  const std::string image_a = write_image(a);
  SKIP_WITHOUT_REPACKING(image_a);
  const uint64_t one = fs::file_size(image_a);
  ModelOptions o = options();
  o.packed_cache_max_bytes = 2 * one + one / 2;  // room for two images
  for (const std::string& path : {b, a, c}) {    // a is used again: b is the oldest
    auto model = load(path, o);
    ASSERT_NE(model, nullptr);
    model->wait_for_background_work();
  }
  const auto kept = images();
  EXPECT_EQ(kept.size(), 2u);
  EXPECT_TRUE(fs::exists(image_a));
  for (const auto& image : kept) EXPECT_EQ(image.find("/b-"), std::string::npos) << image;
  // An image larger than the cap is not written, and that is said.
  o.packed_cache_max_bytes = one / 2;
  const size_t warnings = warning_count();
  auto model = load(write_model("d", 4), o);
  ASSERT_NE(model, nullptr);
  model->wait_for_background_work();
  EXPECT_FALSE(model->load_report().image_written);
  EXPECT_EQ(warning_count(), warnings + 1);
  EXPECT_EQ(images().size(), 2u);
}

// Under a budget a model may be evicted before its image is on disk: the writer keeps
// the region alive and finishes.
TEST_F(PackedImageTest, AnImageIsWrittenEvenWhenItsModelIsUnloadedAtOnce) {
  const std::string path = write_model("m", 7);
  auto model = load(path, options());
  ASSERT_NE(model, nullptr);
  const LoadReport report = model->load_report();
  if (report.weights == PackedWeights::kNone)
    GTEST_SKIP() << "this CPU's kernel table repacks nothing";
  model.reset();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!fs::exists(report.image_path) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(fs::exists(report.image_path));
  auto again = load(path, options());
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->load_report().weights, PackedWeights::kImage);
}

TEST_F(PackedImageTest, WithoutACacheDirectoryNothingIsWritten) {
  auto model = load(write_model("m", 7), {.threads = 2, .ctx_tokens = 256});
  ASSERT_NE(model, nullptr);
  model->wait_for_background_work();
  EXPECT_TRUE(model->load_report().image_path.empty());
  EXPECT_FALSE(fs::exists(cache_dir()));
}

}  // namespace
}  // namespace infera::engine
