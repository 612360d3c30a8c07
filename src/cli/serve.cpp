// `infera serve`: builds the configuration, the subsystems and the HTTP server, then
// runs until a signal drains it.
#include <CLI/CLI.hpp>

#include <chrono>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <thread>

#include "api/api.h"
#include "cli/commands.h"
#include "cli/settings.h"
#include "core/config.h"
#include "core/log.h"
#include "http/server.h"
#include "obs/metrics.h"

namespace infera::cli {
namespace {

// Periodic upkeep on its own thread: writes collapsed log-burst counts.
class Maintenance {
 public:
  Maintenance() : thread_([this] { loop(); }) {}
  ~Maintenance() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void loop() {
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; })) {
      log::flush();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

int run_serve(const core::FlagValues& flags) {
  auto config = core::Config::load(flags, core::process_env());
  if (!config.ok()) {
    std::cerr << "infera: " << config.status().message() << "\n";
    return 2;
  }
  log::init_logging(log_config_from(*config));
  obs::Registry& metrics = obs::Registry::global();
  http::Server server(server_config_from(*config), metrics);
  api::register_system_routes(server, metrics);
  if (Status st = server.start(); !st.ok()) {
    log::error("server.start_failed", "{}", st.message());
    log::shutdown();
    return 1;
  }
  log::write(log::Level::kInfo, "http.listening",
             fmt::format("listening on {}:{}", config->get_string("host"), server.port()),
             fmt::format("\"port\":{}", server.port()));
  Maintenance maintenance;
  server.set_ready(true);
  server.run();
  log::info("server.stopped", "server stopped");
  log::shutdown();
  return 0;
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "Serve the HTTP API");
  auto flags = std::make_shared<core::FlagValues>();
  core::add_config_flags(*cmd, *flags);
  cmd->callback([flags] {
    if (int rc = run_serve(*flags); rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace infera::cli
