// One encoder's forward pass timed in-process, without HTTP or batching: the quick
// loop for encoder work (bench/embeddings measures the server end to end).
//
//   build/bench/bench_encoder MODEL.gguf [--threads 2] [--inputs 32] [--tokens 40]
//       [--passes 20] [--kernels NAME] [--ggml-rounding]
//
// Each pass embeds --inputs inputs of --tokens token ids each ([CLS], random ids,
// [SEP]; the same ids every pass) with mean pooling. Prints the median and best pass
// in ms and the inputs per second at the median, after one untimed warm-up pass, and
// the process's CPU time per pass (all threads; steadier than wall time on a shared
// machine, though it counts the pool's spinning between loops too).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "engine/encoder.h"
#include "engine/kernels/kernels.h"

int main(int argc, char** argv) {
  using namespace infera::engine;
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: %s MODEL.gguf [--threads N] [--inputs N] [--tokens N] [--passes N] "
                 "[--kernels NAME] [--ggml-rounding]\n",
                 argv[0]);
    return 2;
  }
  const std::string path = argv[1];
  int threads = 2, n_inputs = 32, n_tokens = 40, passes = 20;
  bool ggml_rounding = false;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads") {
      threads = std::atoi(next());
    } else if (a == "--inputs") {
      n_inputs = std::atoi(next());
    } else if (a == "--tokens") {
      n_tokens = std::atoi(next());
    } else if (a == "--passes") {
      passes = std::atoi(next());
    } else if (a == "--kernels") {
      const char* name = next();
      if (!kernels::force(name)) {
        std::fprintf(stderr, "kernel table %s is unknown or unsupported here\n", name);
        return 2;
      }
    } else if (a == "--ggml-rounding") {
      ggml_rounding = true;
    } else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (threads < 1 || n_inputs < 1 || n_tokens < 2 || passes < 1) {
    std::fprintf(stderr, "threads, inputs, passes must be positive and tokens at least 2\n");
    return 2;
  }
  EncoderOptions options;
  options.threads = threads;
  options.max_batch_tokens = std::max(2048, n_inputs * n_tokens);
  options.ggml_attention_rounding = ggml_rounding;
  auto enc = Encoder::load(path, options);
  if (!enc.ok()) {
    std::fprintf(stderr, "%s\n", std::string(enc.status().message()).c_str());
    return 1;
  }
  Encoder& e = **enc;
  const int dim = e.info().dim;
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> id(1000, e.info().n_vocab - 1);
  std::vector<std::vector<int32_t>> inputs(static_cast<size_t>(n_inputs));
  for (auto& in : inputs) {
    in.push_back(101);
    for (int t = 0; t < n_tokens - 2; ++t) in.push_back(id(rng));
    in.push_back(102);
  }
  std::vector<float> out(static_cast<size_t>(n_inputs) * static_cast<size_t>(dim));
  std::vector<double> ms;
  auto cpu_ms = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
  };
  double cpu0 = 0;
  for (int p = 0; p <= passes; ++p) {
    if (p == 1) cpu0 = cpu_ms();
    const auto t0 = std::chrono::steady_clock::now();
    const auto st = e.embed(inputs, Pooling::kMean, out.data());
    const auto t1 = std::chrono::steady_clock::now();
    if (!st.ok()) {
      std::fprintf(stderr, "%s\n", std::string(st.message()).c_str());
      return 1;
    }
    if (p > 0) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  const double cpu_per_pass = (cpu_ms() - cpu0) / passes;
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2];
  std::printf("%s: kernels %s, %d threads, %d inputs x %d tokens: median %.2f ms, best %.2f ms, "
              "%.1f inputs/s, CPU %.1f ms per pass (out[0] %.6f)\n",
              path.c_str(), kernels::active().name, threads, n_inputs, n_tokens, median, ms.front(),
              n_inputs * 1000.0 / median, cpu_per_pass, static_cast<double>(out[0]));
  return 0;
}
