// `infera synth`: writes a random-weight llama GGUF of a benchmark shape, with the
// vocabulary copied from another GGUF file. --dim, --layers, --heads, --kv-heads
// and --ffn override the named shape's dimensions (small custom shapes for tests).
#include "engine/synth.h"

#include <CLI/CLI.hpp>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "engine/ggml_types.h"

namespace infera::cli {
namespace {

struct SynthArgs {
  std::string out;
  std::string shape = "stories15M";
  std::string type = "f16";
  std::string vocab;
  engine::SynthShapeOverrides overrides;
  uint64_t seed = 1;
  int threads = 2;
};

}  // namespace

void add_synth_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("synth", "Write a random-weight GGUF model of a benchmark shape");
  auto a = std::make_shared<SynthArgs>();
  cmd->add_option("-o,--out", a->out, "output GGUF path")->required();
  cmd->add_option("--shape", a->shape, "stories15M or tinyllama")
      ->check(CLI::IsMember({"stories15M", "tinyllama"}))
      ->capture_default_str();
  cmd->add_option("--type", a->type, "f32, f16, bf16, q8_0 or q4_0")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0"}, CLI::ignore_case))
      ->capture_default_str();
  cmd->add_option("--vocab", a->vocab,
                  "GGUF whose tokenizer is copied (e.g. ggml-vocab-llama-spm.gguf)")
      ->required();
  const auto dimension = CLI::Range(1, engine::kMaxSynthDimension);
  cmd->add_option("--dim", a->overrides.dim, "embedding size (overrides the shape's)")
      ->check(dimension);
  cmd->add_option("--layers", a->overrides.n_layers, "layer count (overrides the shape's)")
      ->check(dimension);
  cmd->add_option("--heads", a->overrides.n_heads, "attention heads (overrides the shape's)")
      ->check(dimension);
  cmd->add_option("--kv-heads", a->overrides.n_kv_heads,
                  "KV heads, dividing --heads (overrides the shape's)")
      ->check(dimension);
  cmd->add_option("--ffn", a->overrides.ffn_dim, "FFN hidden size (overrides the shape's)")
      ->check(dimension);
  cmd->add_option("--seed", a->seed, "weights seed")->capture_default_str();
  cmd->add_option("-t,--threads", a->threads, "threads generating weights")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->callback([a] {
    engine::SynthOptions options;
    auto shape =
        engine::apply_synth_overrides(*engine::synth_shape_by_name(a->shape), a->overrides);
    if (!shape.ok()) {
      std::cerr << "infera synth: " << shape.status().message() << "\n";
      throw CLI::RuntimeError(2);
    }
    options.shape = *shape;
    std::string upper;
    for (char c : a->type) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    for (engine::GgmlType t :
         {engine::GgmlType::kF32, engine::GgmlType::kF16, engine::GgmlType::kBF16,
          engine::GgmlType::kQ8_0, engine::GgmlType::kQ4_0}) {
      if (engine::ggml_type_info(t).name == upper) options.type = t;
    }
    options.vocab_path = a->vocab;
    options.seed = a->seed;
    options.threads = a->threads;
    const auto start = std::chrono::steady_clock::now();
    Status s = engine::write_synthetic_model(options, a->out);
    if (!s.ok()) {
      std::cerr << "infera synth: " << s.message() << "\n";
      throw CLI::RuntimeError(2);
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::error_code ec;
    const auto bytes = std::filesystem::file_size(a->out, ec);
    std::fprintf(stderr, "wrote %s: %s, %s, %.1f MiB in %.1f s\n", a->out.c_str(),
                 options.shape.name.c_str(), upper.c_str(),
                 ec ? 0.0 : static_cast<double>(bytes) / (1 << 20), seconds);
  });
}

}  // namespace infera::cli
