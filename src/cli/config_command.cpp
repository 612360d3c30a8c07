// `infera config`: prints the effective configuration and where each value came from.
#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/commands.h"
#include "core/config.h"

namespace infera::cli {

void add_config_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("config", "Print the effective configuration and its sources");
  auto flags = std::make_shared<core::FlagValues>();
  core::add_config_flags(*cmd, *flags);
  cmd->callback([flags] {
    auto config = core::Config::load(*flags, core::process_env());
    if (!config.ok()) {
      std::cerr << "infera: " << config.status().message() << "\n";
      throw CLI::RuntimeError(2);
    }
    std::cout << config->describe();
  });
}

}  // namespace infera::cli
