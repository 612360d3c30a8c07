// `infera serve`: builds the configuration, the subsystems and the HTTP server, then
// runs until a signal drains it.
#include <CLI/CLI.hpp>

#include <chrono>
#include <filesystem>
#include <future>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <thread>

#include "api/api.h"
#include "api/generation.h"
#include "cache/cache.h"
#include "engine/engine.h"
#include "sched/engine_runner.h"
#include "sched/scheduler.h"
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

// Identifies a model file for cache keys: a rebuilt or replaced file changes it.
std::string model_identity(const std::string& path) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  auto mtime = std::filesystem::last_write_time(path, ec).time_since_epoch().count();
  return fmt::format("{}:{}:{}", std::filesystem::absolute(path, ec).string(), size, mtime);
}

// One short generation before /ready turns 200: pages the weights in and sizes
// every buffer, so the first user does not pay for it.
void warm_up(sched::Scheduler& scheduler, engine::Model& model) {
  const auto start = std::chrono::steady_clock::now();
  auto job = std::make_unique<sched::Job>();
  job->prompt = model.tokenizer().encode("Hello", /*add_bos=*/true, /*parse_special=*/false);
  job->max_tokens = 2;
  job->sampling.temperature = 0;
  std::promise<void> done;
  job->on_done = [&done](const sched::Completion&) { done.set_value(); };
  if (scheduler.submit(std::move(job)).ok()) done.get_future().wait();
  log::info("model.warmed_up", "warm-up generation took {:.1f} ms",
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
}

// Copies the cache's counters into gauges whenever metrics are exported.
void export_cache_metrics(cache::Cache& cache, obs::Registry& metrics) {
  metrics.add_collector([&cache, &metrics] {
    cache::Stats s = cache.stats();
    const std::pair<const char*, const cache::TierStats*> tiers[] = {{"l1", &s.l1}, {"l2", &s.l2}, {"l3", &s.l3}};
    for (const auto& [name, t] : tiers) {
      obs::Labels l{{"tier", name}};
      metrics.gauge("infera_cache_hits", "Cache hits by tier", l).set(static_cast<double>(t->hits));
      metrics.gauge("infera_cache_misses", "Cache misses by tier", l).set(static_cast<double>(t->misses));
      metrics.gauge("infera_cache_hit_ratio", "Cache hit rate by tier", l).set(t->hit_rate());
      metrics.gauge("infera_cache_entries", "Cache entries by tier", l).set(static_cast<double>(t->entries));
      metrics.gauge("infera_cache_bytes", "Cache bytes by tier", l).set(static_cast<double>(t->bytes));
      metrics.gauge("infera_cache_evictions", "Cache evictions by tier", l).set(static_cast<double>(t->evictions));
    }
    metrics.gauge("infera_cache_compression_ratio", "L1 raw bytes over stored bytes").set(s.compression_ratio());
    metrics.gauge("infera_cache_single_flight_merges", "Requests that joined an identical generation")
        .set(static_cast<double>(s.single_flight_merges));
    metrics.gauge("infera_cache_redis_breaker_open", "1 while the Redis circuit breaker is open")
        .set(s.breaker == cache::BreakerState::kOpen ? 1 : 0);
  });
}

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

  // The model, its scheduler and the generation endpoints (when a model is given).
  std::unique_ptr<engine::Model> model;
  std::unique_ptr<sched::ModelRunner> runner;
  std::unique_ptr<sched::Scheduler> scheduler;
  std::unique_ptr<cache::Cache> response_cache;
  if (const std::string& path = config->get_string("model"); !path.empty()) {
    auto loaded = engine::Model::load(path, model_options_from(*config));
    if (!loaded.ok()) {
      log::error("model.load_failed", "{}", loaded.status().message());
      log::shutdown();
      std::cerr << "infera: " << loaded.status().message() << "\n";
      return 1;
    }
    model = std::move(loaded).value();
    const engine::ModelInfo& info = model->info();
    api::GenerationConfig gen = generation_config_from(*config);
    if (gen.model_id.empty()) gen.model_id = std::filesystem::path(path).stem().string();
    if (config->get_string("chat_template") == "auto") {
      gen.chat_format = api::detect_chat_format(info.chat_template);
      if (gen.chat_format == api::ChatFormat::kPlain) {
        log::warn("model.chat_template", "{}: no known chat template{}; using a plain format",
                  path, info.chat_template.empty() ? "" : " (unrecognized)");
      }
    }
    log::info("model.loaded", "{}: {} {} layers, dim {}, {} ({} MiB of weights), chat format {}",
              path, info.arch, info.n_layers, info.dim, engine::ggml_type_info(info.weight_type).name,
              info.weight_bytes >> 20, api::chat_format_name(gen.chat_format));
    runner = sched::make_engine_runner(*model, static_cast<int32_t>(config->get_int("ctx_size")),
                                       config->get_bool("prefix_cache"));
    scheduler = std::make_unique<sched::Scheduler>(scheduler_config_from(*config), *runner, metrics);
    const engine::Tokenizer& tokenizer = model->tokenizer();
    api::Tokenize tokenize = [&tokenizer](const std::string& text) {
      return tokenizer.encode(text, /*add_bos=*/true, /*parse_special=*/true);
    };
    gen.model_identity = model_identity(path);
    cache::Config cache_config = cache_config_from(*config);
    if (cache_config.policy != cache::CachePolicy::kOff) {
      auto opened = cache::Cache::open(cache_config);
      if (!opened.ok()) {
        std::cerr << "infera: " << opened.status().message() << "\n";
        log::error("cache.open_failed", "{}", opened.status().message());
        log::shutdown();
        return 1;
      }
      response_cache = std::move(opened).value();
      export_cache_metrics(*response_cache, metrics);
    }
    api::register_generation_routes(server, gen, *scheduler, tokenize, response_cache.get(),
                                    cache_config.policy);
    if (const std::string& warm = config->get_string("cache_warm"); !warm.empty() && response_cache) {
      std::string error;
      int cached = api::warm_cache_from_file(warm, gen, *scheduler, tokenize, *response_cache,
                                             cache_config.policy, &error);
      if (!error.empty()) {
        std::cerr << "infera: " << error << "\n";
        log::shutdown();
        return 1;
      }
      log::info("cache.warmed", "{}: {} answers cached", warm, cached);
    }
  }
  if (Status st = server.start(); !st.ok()) {
    log::error("server.start_failed", "{}", st.message());
    log::shutdown();
    return 1;
  }
  log::write(log::Level::kInfo, "http.listening",
             fmt::format("listening on {}:{}", config->get_string("host"), server.port()),
             fmt::format("\"port\":{}", server.port()));
  Maintenance maintenance;
  if (scheduler && config->get_bool("model_warmup_enabled")) warm_up(*scheduler, *model);
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
