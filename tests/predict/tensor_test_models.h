// The tensor test models (tests/predict/make_tensor_models.py, run with Debian's
// python3-torch, python3-onnx and python3-opencv) written once per test process into a
// temporary directory.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

namespace infera::testing {

inline const std::string& tensor_test_models(std::string* error = nullptr) {
  static std::string failure;
  static const std::string dir = [] {
    std::string d = (std::filesystem::temp_directory_path() / ("infera-tensor-" + std::to_string(::getpid()))).string();
    const std::string cmd =
        "/usr/bin/python3 " INFERA_SOURCE_DIR "/tests/predict/make_tensor_models.py " + d + " 2>&1";
    if (std::system(cmd.c_str()) != 0) {
      failure = "tests/predict/make_tensor_models.py failed (are python3-torch, python3-onnx and "
                "python3-opencv installed? scripts/setup installs them)";
      return std::string();
    }
    static char removal_path[4096];
    std::strncpy(removal_path, d.c_str(), sizeof(removal_path) - 1);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(removal_path, ec);
    });
    return d;
  }();
  if (error != nullptr) *error = failure;
  return dir;
}

}  // namespace infera::testing
