// Test models written by a script of tests/predict/ (Debian's Python libraries) once per
// test process into a temporary directory, removed at exit.
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

// Runs `/usr/bin/python3 tests/predict/<script> DIR`; returns DIR, or "" with `failure`
// set (naming `packages`) when the script fails.
inline std::string run_model_script(const std::string& script, const std::string& prefix,
                                    const std::string& packages, std::string& failure) {
  const std::string d =
      (std::filesystem::temp_directory_path() / (prefix + std::to_string(::getpid()))).string();
  const std::string cmd =
      "/usr/bin/python3 " INFERA_SOURCE_DIR "/tests/predict/" + script + " " + d + " 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    failure = "tests/predict/" + script + " failed (is " + packages +
              " installed? scripts/setup installs it)";
    return std::string();
  }
  // Removed at exit; the paths are kept where they outlive every destructor.
  static char paths[4][1024];
  static int used = 0;
  if (used < 4) {
    std::strncpy(paths[used], d.c_str(), sizeof(paths[used]) - 1);
    if (used++ == 0) {
      std::atexit([] {
        std::error_code ec;
        for (int i = 0; i < used; ++i) std::filesystem::remove_all(paths[i], ec);
      });
    }
  }
  return d;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return nlohmann::json::parse(s.str());
}

}  // namespace infera::testing
