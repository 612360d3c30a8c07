// infera: one binary that serves AI models. main only wires subcommands.
#include <CLI/CLI.hpp>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"infera: an AI inference server for assistant-style products"};
  app.require_subcommand(1);
  infera::cli::add_serve_command(app);
  infera::cli::add_config_command(app);
  infera::cli::add_bench_command(app);
  infera::cli::add_generate_command(app);
  infera::cli::add_synth_command(app);
  infera::cli::add_bench_engine_command(app);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
