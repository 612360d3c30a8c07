// `infera bench`: load generator for any OpenAI-compatible server.
#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/commands.h"
#include "loadgen/loadgen.h"

namespace infera::cli {

void add_bench_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Load-test an OpenAI-compatible server");
  auto opt = std::make_shared<loadgen::Options>();
  auto prompt_file = std::make_shared<std::string>();
  auto prompt_texts = std::make_shared<std::vector<std::string>>();
  auto as_json = std::make_shared<bool>(false);
  auto no_stream = std::make_shared<bool>(false);
  auto no_progress = std::make_shared<bool>(false);
  cmd->add_option("--url", opt->url, "base URL of the server")->capture_default_str();
  cmd->add_option("--endpoint", opt->endpoint, "/v1/chat/completions or /v1/completions")
      ->capture_default_str();
  cmd->add_option("--model", opt->model, "model name sent in requests")->capture_default_str();
  cmd->add_option("-c,--concurrency", opt->concurrency, "closed loop: concurrent users")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--rate", opt->rate_per_s, "open loop: requests per second (overrides -c)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("-d,--duration", opt->duration_s, "stop issuing after this many seconds")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("-n,--requests", opt->max_requests, "stop issuing after this many requests")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--no-stream", *no_stream, "ask for whole responses instead of SSE");
  cmd->add_option("--max-tokens", opt->max_tokens, "max_tokens per request")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--temperature", opt->temperature, "sampling temperature")
      ->check(CLI::Range(0.0, 2.0))
      ->capture_default_str();
  cmd->add_option("--prompts", *prompt_file, "file with one prompt per line (or JSON lines with \"prompt\")");
  cmd->add_option("--prompt", *prompt_texts, "a prompt (repeatable)");
  cmd->add_option("--system", opt->system_prompt, "system prompt sent with every request");
  cmd->add_option("--timeout", opt->request_timeout_s, "per-request timeout, seconds")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--json", *as_json, "print the summary as JSON");
  cmd->add_flag("--no-progress", *no_progress, "no live progress line");
  cmd->callback([=] {
    opt->stream = !*no_stream;
    opt->progress = !*no_progress;
    opt->prompts = *prompt_texts;
    if (!prompt_file->empty()) {
      auto prompts = loadgen::load_prompts(*prompt_file);
      if (!prompts.ok()) {
        std::cerr << "infera bench: " << prompts.status().message() << "\n";
        throw CLI::RuntimeError(2);
      }
      opt->prompts.insert(opt->prompts.end(), prompts->begin(), prompts->end());
    }
    if (opt->prompts.empty()) opt->prompts.push_back("Explain photosynthesis in one paragraph.");
    auto summary = loadgen::run(*opt);
    if (!summary.ok()) {
      std::cerr << "infera bench: " << summary.status().message() << "\n";
      throw CLI::RuntimeError(2);
    }
    std::cout << (*as_json ? loadgen::to_json(*summary) + "\n" : loadgen::to_text(*summary));
    if (summary->ok == 0) throw CLI::RuntimeError(1);
  });
}

}  // namespace infera::cli
