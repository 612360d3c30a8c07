// `infera bench-engine`: llama-bench's prompt (pp) and generation (tg) tests on the
// embedded engine, over lists of models, prompt lengths, generation lengths and
// thread counts, so users can compare their own hardware with published numbers.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "engine/engine.h"
#include "engine/generate.h"
#include "engine/kernels/kernels.h"

namespace infera::cli {
namespace {

struct BenchEngineArgs {
  std::vector<std::string> models;
  std::vector<int> prompt_lengths = {128};
  std::vector<int> gen_lengths = {64};
  std::vector<int> threads = {2};
  int reps = 3;
  std::string kernels;
  std::string output = "md";
  bool no_mmap = false;
  bool no_repack = false;
};

[[noreturn]] void fail(const std::string& message) {
  std::cerr << "infera bench-engine: " << message << "\n";
  throw CLI::RuntimeError(2);
}

std::string human_size(uint64_t bytes) {
  char text[32];
  if (bytes >= (1ull << 30)) {
    std::snprintf(text, sizeof(text), "%.2f GiB", static_cast<double>(bytes) / (1ull << 30));
  } else {
    std::snprintf(text, sizeof(text), "%.1f MiB", static_cast<double>(bytes) / (1ull << 20));
  }
  return text;
}

struct Row {
  std::string model, type, size, test;
  int threads = 0;
  int n_prompt = 0, n_gen = 0;
  double tps = 0, stddev = 0;
};

void run(const BenchEngineArgs& a) {
  if (!a.kernels.empty() && !engine::kernels::force(a.kernels)) {
    fail("kernels '" + a.kernels + "' are unknown or not supported by this CPU");
  }
  int longest = 0;
  for (int p : a.prompt_lengths) longest = std::max(longest, p);
  for (int g : a.gen_lengths) longest = std::max(longest, g);
  const bool text = a.output == "md";
  if (text) {
    std::printf("| model | type | size | kernels | threads | test | t/s |\n");
    std::printf("|---|---|---:|---|---:|---|---:|\n");
  }
  nlohmann::json records = nlohmann::json::array();
  for (const std::string& path : a.models) {
    std::error_code ec;
    const uint64_t file_bytes = std::filesystem::file_size(path, ec);
    for (int threads : a.threads) {
      engine::ModelOptions options;
      options.threads = threads;
      options.read_into_memory = a.no_mmap;
      options.repack_weights = !a.no_repack;
      options.ctx_tokens = std::max(longest, 16);
      auto loaded = engine::Model::load(path, options);
      if (!loaded.ok()) fail(loaded.status().message());
      engine::Model& model = **loaded;
      const std::string type(engine::ggml_type_info(model.info().weight_type).name);
      auto emit = [&](const std::string& test, int n_prompt, int n_gen, double tps, double sd) {
        const std::string name = std::filesystem::path(path).filename().string();
        if (text) {
          std::printf("| %s | %s | %s | %s | %d | %s | %.2f ± %.2f |\n", name.c_str(), type.c_str(),
                      human_size(ec ? 0 : file_bytes).c_str(), engine::kernels::active().name, threads,
                      test.c_str(), tps, sd);
          std::fflush(stdout);
        }
        records.push_back({{"model", path},
                           {"type", type},
                           {"model_bytes", ec ? 0 : file_bytes},
                           {"weight_bytes_per_token", model.info().weight_bytes},
                           {"kernels", engine::kernels::active().name},
                           {"threads", threads},
                           {"n_prompt", n_prompt},
                           {"n_gen", n_gen},
                           {"repetitions", a.reps},
                           {"tokens_per_second", tps},
                           {"stddev", sd}});
      };
      for (int p : a.prompt_lengths) {
        if (p <= 0) continue;
        auto speed = engine::measure_speed(model, p, 0, a.reps);
        if (!speed.ok()) fail(speed.status().message());
        emit("pp" + std::to_string(p), p, 0, speed->prompt_tokens_per_second, speed->prompt_stddev);
      }
      for (int g : a.gen_lengths) {
        if (g <= 0) continue;
        auto speed = engine::measure_speed(model, 0, g, a.reps);
        if (!speed.ok()) fail(speed.status().message());
        emit("tg" + std::to_string(g), 0, g, speed->generation_tokens_per_second,
             speed->generation_stddev);
      }
    }
  }
  if (!text) std::cout << records.dump(2) << "\n";
}

}  // namespace

void add_bench_engine_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "bench-engine",
      "Measure prompt (pp) and generation (tg) tokens/s of models, as llama-bench does");
  auto a = std::make_shared<BenchEngineArgs>();
  cmd->add_option("-m,--model", a->models, "GGUF model file (repeatable)")->required();
  cmd->add_option("-p,--n-prompt", a->prompt_lengths,
                  "prompt lengths, evaluated in one batch (comma-separated; 0 skips)")
      ->delimiter(',')
      ->check(CLI::Range(0, 1 << 16))
      ->capture_default_str();
  cmd->add_option("-n,--n-gen", a->gen_lengths,
                  "generation lengths, one token at a time (comma-separated; 0 skips)")
      ->delimiter(',')
      ->check(CLI::Range(0, 1 << 16))
      ->capture_default_str();
  cmd->add_option("-t,--threads", a->threads, "thread counts (comma-separated)")
      ->delimiter(',')
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("-r,--repetitions", a->reps, "measured runs per test, after one warm-up")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--kernels", a->kernels, "force a kernel table (scalar, avx2, avx512, ...)");
  cmd->add_flag("--no-mmap", a->no_mmap,
                "read each model into huge-page memory instead of mapping the file");
  cmd->add_flag("--no-repack", a->no_repack,
                "read every matrix from the file's layout (no load-time repacking)");
  cmd->add_option("-o,--output", a->output, "md (a table, one row per test) or json")
      ->check(CLI::IsMember({"md", "json"}))
      ->capture_default_str();
  cmd->callback([a] { run(*a); });
}

}  // namespace infera::cli
