// `infera generate`: one prompt through the embedded engine, streamed to stdout,
// with prompt and generation speed; `--bench` measures like llama-bench instead.
#include "core/cpu_topology.h"
#include "engine/generate.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "engine/engine.h"
#include "engine/kernels/kernels.h"
#include "sched/stop_matcher.h"

namespace infera::cli {
namespace {

struct GenerateArgs {
  std::string model;
  std::string prompt;
  int n_predict = 64;
  float temperature = 0.0f;
  int top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repeat_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  uint64_t seed = 0;
  int threads = 0;  // 0: the placement's default (big cores, or every CPU)
  std::string cpu_affinity = "auto";
  int ctx_size = 4096;
  bool json = false;
  bool no_bos = false;
  bool bench = false;
  int bench_prompt = 128;
  int bench_gen = 64;
  int bench_reps = 3;
  std::string kernels;
  std::vector<std::string> stops;
  bool no_mmap = false;
  std::string packed_cache_dir;
  std::string packed_promotion = "auto";
  bool ggml_attention = false;
  bool ggml_compat = false;
};

[[noreturn]] void fail(const std::string& message) {
  std::cerr << "infera generate: " << message << "\n";
  throw CLI::RuntimeError(2);
}

void run(const GenerateArgs& a) {
  if (!a.kernels.empty() && !engine::kernels::force(a.kernels)) {
    fail("kernels '" + a.kernels + "' are unknown or not supported by this CPU");
  }
  auto placement = core::plan_cpu_placement(core::read_cpus(), a.cpu_affinity, a.threads);
  if (!placement.ok()) fail(placement.status().message());
  engine::ModelOptions options;
  options.threads = placement->threads;
  options.cpus = placement->cpus;
  options.read_into_memory = a.no_mmap;
  options.ggml_attention_rounding = a.ggml_attention || a.ggml_compat;
  options.ggml_kernel_order = a.ggml_compat;
  options.ctx_tokens = a.bench ? std::max(a.ctx_size, a.bench_prompt + a.bench_gen) : a.ctx_size;
  options.packed_cache_dir = a.packed_cache_dir;
  using Promotion = engine::ModelOptions::Promotion;
  options.promote_packed_image = a.packed_promotion == "always"  ? Promotion::kAlways
                                 : a.packed_promotion == "never" ? Promotion::kNever
                                                                 : Promotion::kUnlessHugeMapped;
  options.packed_cache_warning = [](const std::string& message) {
    std::cerr << "infera generate: " << message << "\n";
  };
  auto loaded = engine::Model::load(a.model, options);
  if (!loaded.ok()) fail(loaded.status().message());
  engine::Model& model = **loaded;
  if (!a.packed_cache_dir.empty()) {
    const engine::LoadReport r = model.load_report();
    const bool mapped = r.weights == engine::PackedWeights::kImage;
    std::fprintf(stderr, "infera generate: loaded in %.1f ms; packed weights %s in %.1f ms (%s)\n",
                 r.load_ms, mapped ? "mapped from the image" : "repacked", r.pack_ms,
                 r.image_path.c_str());
    // A bench measures steady state: the promoted copy (or the image is written first).
    if (a.bench) {
      model.wait_for_background_work();
      if (mapped) {
        std::vector<const float*> none;
        (void)model.eval({}, none);  // adopts a promoted copy
        std::fprintf(stderr, "infera generate: measuring %s\n",
                     model.load_report().weights == engine::PackedWeights::kPromoted
                         ? "the promoted copy of the image"
                         : "the mapped image (huge pages: not copied)");
      }
    }
  }
  // The image being written is finished before the process exits (it would be dropped).
  struct WaitAtExit {
    engine::Model& model;
    bool wait;
    ~WaitAtExit() {
      if (wait) model.wait_for_background_work();
    }
  } wait_at_exit{model, !a.packed_cache_dir.empty()};

  if (a.bench) {
    auto speed = engine::measure_speed(model, a.bench_prompt, a.bench_gen, a.bench_reps);
    if (!speed.ok()) fail(speed.status().message());
    const engine::ModelInfo& info = model.info();
    if (a.json) {
      nlohmann::json out = {{"model", a.model},
                            {"type", std::string(engine::ggml_type_info(info.weight_type).name)},
                            {"threads", placement->threads},
                            {"cores", placement->cpus},
                            {"placement", placement->describe},
                            {"kernels", engine::kernels::active().name},
                            {"weight_bytes_per_token", info.weight_bytes},
                            {"n_prompt", a.bench_prompt},
                            {"n_gen", a.bench_gen},
                            {"prompt_tokens_per_second", speed->prompt_tokens_per_second},
                            {"generation_tokens_per_second", speed->generation_tokens_per_second}};
      std::cout << out.dump() << "\n";
    } else {
      std::printf(
          "%s (%s, %s kernels, %s): pp%d %.1f tok/s, tg%d %.1f tok/s\n", a.model.c_str(),
          std::string(engine::ggml_type_info(info.weight_type).name).c_str(),
          engine::kernels::active().name, placement->describe.c_str(), a.bench_prompt,
          speed->prompt_tokens_per_second, a.bench_gen, speed->generation_tokens_per_second);
    }
    return;
  }

  const bool add_bos = !a.no_bos;
  std::vector<int32_t> prompt_ids =
      model.tokenizer().encode(a.prompt, add_bos, /*parse_special=*/true);
  if (prompt_ids.empty()) fail("the prompt has no tokens (empty prompt and --no-bos?)");
  engine::GenerateOptions g;
  g.max_tokens = a.n_predict;
  g.sampler = {.temperature = a.temperature,
               .top_k = a.top_k,
               .top_p = a.top_p,
               .min_p = a.min_p,
               .repetition_penalty = a.repeat_penalty,
               .presence_penalty = a.presence_penalty,
               .frequency_penalty = a.frequency_penalty,
               .seed = a.seed};
  // Text passes through the stop matcher, which holds back a possible stop string.
  sched::StopMatcher stops(a.stops);
  std::string text;
  auto emit = [&](const std::string& piece) {
    text += piece;
    if (!a.json) std::cout << piece << std::flush;
  };
  if (!a.json) std::cout << a.prompt << std::flush;
  auto result = engine::generate(model, prompt_ids, g, [&](int32_t, std::string_view piece) {
    emit(stops.push(piece));
    return !stops.stopped();
  });
  if (!result.ok()) fail(result.status().message());
  if (!stops.stopped()) emit(stops.flush());
  const engine::GenerateTimings& t = result->timings;
  if (a.json) {
    nlohmann::json out = {{"prompt_ids", prompt_ids},
                          {"generated_ids", result->generated_ids},
                          {"text", text},
                          {"timings",
                           {{"prompt_tokens", t.prompt_tokens},
                            {"generated_tokens", t.generated_tokens},
                            {"prompt_ms", t.prompt_ms},
                            {"generation_ms", t.generation_ms},
                            {"prompt_tokens_per_second", t.prompt_tokens_per_second()},
                            {"generation_tokens_per_second", t.generation_tokens_per_second()}}}};
    // The text is valid UTF-8 (the detokenizer guarantees it); replace just in case.
    std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::cout << "\n";
    std::fprintf(stderr, "prompt: %d tokens, %.1f tok/s; generation: %d tokens, %.1f tok/s\n",
                 t.prompt_tokens, t.prompt_tokens_per_second(), t.generated_tokens,
                 t.generation_tokens_per_second());
  }
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("generate", "Generate text from a prompt with the embedded engine");
  auto a = std::make_shared<GenerateArgs>();
  cmd->add_option("-m,--model", a->model, "GGUF model file")->required();
  cmd->add_option("-p,--prompt", a->prompt, "prompt text (special tokens such as <s> are parsed)");
  cmd->add_option("-n,--n-predict", a->n_predict, "tokens to generate")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--temp,--temperature", a->temperature, "sampling temperature; 0 is greedy")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  cmd->add_option("--top-k", a->top_k, "keep the k most likely tokens; 0 is off")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", a->top_p, "nucleus sampling; 1 is off")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--min-p", a->min_p, "drop tokens below min-p times the top probability")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--repeat-penalty", a->repeat_penalty, "repetition penalty; 1 is off")
      ->check(CLI::Range(0.0, 10.0));
  cmd->add_option("--presence-penalty", a->presence_penalty, "presence penalty")
      ->check(CLI::Range(-2.0, 2.0));
  cmd->add_option("--frequency-penalty", a->frequency_penalty, "frequency penalty")
      ->check(CLI::Range(-2.0, 2.0));
  cmd->add_option("-s,--seed", a->seed, "sampling seed (same seed, same output)")
      ->capture_default_str();
  cmd->add_option("-t,--threads", a->threads,
                  "compute threads (default: one per big core on a big.LITTLE CPU, else per CPU)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--cpu-affinity", a->cpu_affinity,
                  "auto (big cores, pinned, on a big.LITTLE CPU), none, or a CPU list such as 0-3,6")
      ->capture_default_str();
  cmd->add_option("-c,--ctx-size", a->ctx_size, "KV cache positions")
      ->check(CLI::Range(16, 1 << 24))
      ->capture_default_str();
  cmd->add_flag("--no-bos", a->no_bos, "do not add the model's BOS token");
  cmd->add_flag("--json", a->json,
                "print one JSON object (ids, text, timings) instead of streaming");
  cmd->add_flag("--bench", a->bench,
                "measure like llama-bench: a prompt of --bench-prompt tokens in one batch, then "
                "--bench-gen tokens one at a time (random ids), --bench-reps times");
  cmd->add_option("--bench-prompt", a->bench_prompt, "prompt tokens for --bench")
      ->check(CLI::Range(0, 1 << 16))
      ->capture_default_str();
  cmd->add_option("--bench-gen", a->bench_gen, "generated tokens for --bench")
      ->check(CLI::Range(0, 1 << 16))
      ->capture_default_str();
  cmd->add_option("--bench-reps", a->bench_reps, "repetitions for --bench")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--stop", a->stops, "stop when the generated text contains this (repeatable)");
  cmd->add_option("--kernels", a->kernels,
                  "force a kernel table: scalar, avx2, avx512, neon or neondot");
  cmd->add_flag("--no-mmap", a->no_mmap,
                "read the model into huge-page memory instead of mapping the file");
  cmd->add_option("--packed-cache-dir", a->packed_cache_dir,
                  "write / map repacked-weight images here (as infera serve; an image being "
                  "written is finished before exit); --bench waits for the image to be "
                  "written or promoted before measuring");
  cmd->add_option("--packed-promotion", a->packed_promotion,
                  "copy a mapped image into private huge-page memory: auto (only when the "
                  "kernel maps it with small pages), always or never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  cmd->add_flag("--ggml-attention", a->ggml_attention,
                "round attention as llama.cpp's CPU flash attention does (F16 sums of V), to "
                "compare logits and greedy ids with llama.cpp's");
  cmd->add_flag("--ggml-compat", a->ggml_compat,
                "compute as llama.cpp's CPU backend does (its attention rounding and its "
                "summation order in the products; slower): its logits bit for bit and its "
                "greedy ids, also on deep models");
  cmd->callback([a] {
    if (!a->bench && a->prompt.empty() && a->no_bos) fail("--prompt is empty and --no-bos is set");
    run(*a);
  });
}

}  // namespace infera::cli
