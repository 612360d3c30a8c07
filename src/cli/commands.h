// Subcommands of the infera binary. Each add_*_command registers one CLI11
// subcommand (its options and its callback) on the root app; main.cpp only wires.
#pragma once

namespace CLI {
class App;
}

namespace infera::cli {

void add_serve_command(CLI::App& app);     // cli/serve.cpp
void add_config_command(CLI::App& app);    // cli/config_command.cpp
void add_bench_command(CLI::App& app);     // cli/bench.cpp
void add_generate_command(CLI::App& app);  // cli/generate.cpp
void add_synth_command(CLI::App& app);     // cli/synth.cpp
void add_bench_engine_command(CLI::App& app);  // cli/bench_engine.cpp

}  // namespace infera::cli
