// Durations of keep_alive (models file, Ollama's per-request field), and the models
// file's `pooling` key.
#include "models/models_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace infera::models {
namespace {

using namespace std::chrono_literals;

TEST(ParseKeepAlive, ReadsUnitsSecondsAndForever) {
  EXPECT_EQ(*parse_keep_alive("5m"), 300000ms);
  EXPECT_EQ(*parse_keep_alive("30s"), 30000ms);
  EXPECT_EQ(*parse_keep_alive("250ms"), 250ms);
  EXPECT_EQ(*parse_keep_alive("1.5"), 1500ms);
  EXPECT_EQ(*parse_keep_alive("1h "), 3600000ms);
  EXPECT_EQ(*parse_keep_alive("-1"), -1ms);
  EXPECT_EQ(*parse_keep_alive("0"), 0ms);
  EXPECT_FALSE(parse_keep_alive("").ok());
  EXPECT_FALSE(parse_keep_alive("5 days").ok());
  EXPECT_FALSE(parse_keep_alive("400d").ok());
  EXPECT_FALSE(parse_keep_alive("1e300").ok());
  EXPECT_FALSE(parse_keep_alive("nan").ok());
}

// A JSON keep_alive may hold NULs ("5m\u0000x"); the unit was read as a C string, so
// whatever followed a NUL was ignored and "5m\0x" or "5\0" passed as valid durations
// (found while writing fuzz/api_request_fuzz).
TEST(ParseKeepAlive, RefusesTextAfterAnEmbeddedNul) {
  EXPECT_FALSE(parse_keep_alive(std::string("5m\0x", 4)).ok());
  EXPECT_FALSE(parse_keep_alive(std::string("5\0", 2)).ok());
  EXPECT_FALSE(parse_keep_alive(std::string("5s\0", 3)).ok());
}

// A models file with `text` in a fresh temporary directory; removed with the object.
class TempModelsFile {
 public:
  explicit TempModelsFile(const std::string& text)
      : dir_(std::filesystem::temp_directory_path() /
             ("infera-models-file-" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(dir_);
    std::ofstream(path()) << text;
  }
  ~TempModelsFile() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string path() const { return (dir_ / "models.toml").string(); }

 private:
  std::filesystem::path dir_;
};

TEST(ParseModelsFile, ReadsPoolingForEmbeddingModels) {
  TempModelsFile file(
      "[[models]]\nname = \"a\"\npath = \"a.gguf\"\nkind = \"embedding\"\npooling = \"last\"\n\n"
      "[[models]]\nname = \"b\"\npath = \"b.gguf\"\nkind = \"embedding\"\npooling = \"mean\"\n\n"
      "[[models]]\nname = \"c\"\npath = \"c.gguf\"\npooling = \"cls\"\n\n"
      "[[models]]\nname = \"d\"\npath = \"d.gguf\"\n");
  auto specs = parse_models_file(file.path());
  ASSERT_TRUE(specs.ok()) << specs.status().message();
  ASSERT_EQ(specs->size(), 4u);
  EXPECT_EQ((*specs)[0].pooling, "last");
  EXPECT_EQ((*specs)[0].kind, "embedding");
  EXPECT_EQ((*specs)[1].pooling, "mean");
  EXPECT_EQ((*specs)[2].pooling, "cls");
  EXPECT_EQ((*specs)[3].pooling, "");  // the file's own pooling_type
}

TEST(ParseModelsFile, RefusesAnUnknownPoolingNamingTheFileAndModel) {
  for (const std::string value : {"\"max\"", "\"Mean\"", "\"\"", "1", "true"}) {
    SCOPED_TRACE(value);
    TempModelsFile file(
        "[[models]]\nname = \"emb\"\npath = \"e.gguf\"\nkind = "
        "\"embedding\"\npooling = " +
        value + "\n");
    auto specs = parse_models_file(file.path());
    ASSERT_FALSE(specs.ok());
    EXPECT_EQ(specs.status().code(), StatusCode::kInvalidArgument);
    const std::string& message = specs.status().message();
    EXPECT_NE(message.find(file.path()), std::string::npos) << message;
    EXPECT_NE(message.find("model 'emb'"), std::string::npos) << message;
    EXPECT_NE(message.find("'pooling'"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace infera::models
