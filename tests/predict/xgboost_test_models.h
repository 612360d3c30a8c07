// The XGBoost test models (tests/predict/make_xgboost_models.py, run with Debian's
// python3-xgboost) written once per test process into a temporary directory.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace infera::testing {

// The directory holding the models, or "" when they could not be made (the message
// in `error`).
inline const std::string& xgboost_test_models(std::string* error = nullptr) {
  static std::string failure;
  static const std::string dir = [] {
    std::string d = (std::filesystem::temp_directory_path() /
                     ("infera-xgb-" + std::to_string(::getpid())))
                        .string();
    const std::string cmd = "/usr/bin/python3 " INFERA_SOURCE_DIR
                            "/tests/predict/make_xgboost_models.py " + d + " 2>&1";
    if (std::system(cmd.c_str()) != 0) {
      failure = "tests/predict/make_xgboost_models.py failed (is python3-xgboost installed? "
                "scripts/setup installs it)";
      return std::string();
    }
    // Removed at exit; the path is kept in a buffer that outlives every destructor.
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

inline nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return nlohmann::json::parse(s.str());
}

}  // namespace infera::testing
