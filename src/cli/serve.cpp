// `infera serve`: builds the configuration, the subsystems and the HTTP server, then
// runs until a signal drains it.
#include <CLI/CLI.hpp>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <iostream>
#include <mutex>
#include <thread>

#include "api/api.h"
#include "api/chat_template.h"
#include "api/embeddings.h"
#include "api/knowledge_routes.h"
#include "api/popularity.h"
#include "api/predictions.h"
#include "api/generation.h"
#include "auth/auth.h"
#include "cache/cache.h"
#include "cli/commands.h"
#include "cli/operations.h"
#include "cli/settings.h"
#include "core/config.h"
#include "core/log.h"
#include "http/server.h"
#include "knowledge/knowledge.h"
#include "models/gguf_model.h"
#include "models/models_file.h"
#include "models/registry.h"
#include "obs/metrics.h"
#include "predict/image_index.h"
#include "predict/predict.h"
#include "store/store.h"

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

// The questions asked most, learned across restarts (--cache-rewarm): first re-asks
// the previous run's most asked (api::rewarm_popular, lowest priority, while idle),
// then saves the counts every 10 s and at shutdown.
class Rewarmer {
 public:
  Rewarmer(api::PopularityLog& log, std::function<int(const std::function<bool()>&)> rewarm)
      : log_(log), thread_([this, rewarm = std::move(rewarm)] { loop(rewarm); }) {}
  ~Rewarmer() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    if (Status st = log_.save(); !st.ok()) log::warn("cache.popularity_save_failed", "{}", st.message());
  }

 private:
  void loop(const std::function<int(const std::function<bool()>&)>& rewarm) {
    const int cached = rewarm([this] {
      std::lock_guard lock(mu_);
      return stop_;
    });
    if (cached > 0) log::info("cache.rewarmed", "{} of the questions asked most before the restart answered", cached);
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::seconds(10), [this] { return stop_; })) {
      lock.unlock();
      if (Status st = log_.save(); !st.ok()) log::warn("cache.popularity_save_failed", "{}", st.message());
      lock.lock();
    }
  }
  api::PopularityLog& log_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// Where the bundled default model may be: beside the working directory (a
// checkout), beside the binary (build/infera -> models/), or installed.
std::string find_default_model() {
  constexpr const char* kFile = "stories260K-tok512.gguf";
  std::vector<std::filesystem::path> candidates = {std::filesystem::path("models") / kFile};
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back(exe.parent_path() / "models" / kFile);
    candidates.push_back(exe.parent_path().parent_path() / "models" / kFile);
  }
  candidates.push_back(std::filesystem::path("/usr/share/infera/models") / kFile);
  for (const auto& c : candidates) {
    if (std::filesystem::is_regular_file(c, ec)) return c.lexically_normal().string();
  }
  return {};
}

// Declares the models of --models-file, --model and --models-dir, or the bundled
// default model when none is given.
Status declare_models(const core::Config& config, models::Registry& registry) {
  bool any = false;
  if (const std::string& file = config.get_string("models_file"); !file.empty()) {
    auto specs = models::parse_models_file(file);
    if (!specs.ok()) return specs.status();
    for (auto& spec : *specs) {
      api::ChatFormat format;
      if (spec.chat_template != "auto" && !api::chat_format_from_name(spec.chat_template, format)) {
        return Status::InvalidArgument(fmt::format(
            "{}: model '{}': unknown chat_template '{}' (auto, llama2, llama3, chatml, qwen, "
            "mistral, zephyr, phi3, gemma or plain)",
            file, spec.name, spec.chat_template));
      }
      if (Status st = registry.add(std::move(spec)); !st.ok()) return st;
    }
    any = true;
  }
  if (const std::string& list = config.get_string("model"); !list.empty()) {
    size_t pos = 0;
    while (pos <= list.size()) {
      size_t end = list.find(',', pos);
      if (end == std::string::npos) end = list.size();
      auto spec = models::parse_model_flag(list.substr(pos, end - pos));
      if (!spec.ok()) return spec.status();
      if (Status st = registry.add(std::move(spec).value()); !st.ok()) return st;
      pos = end + 1;
    }
    any = true;
  }
  if (const std::string& dir = config.get_string("models_dir"); !dir.empty()) {
    if (Status st = registry.add_directory(dir, models::ModelSpec{}); !st.ok()) return st;
    any = true;
  }
  if (any) return Status::Ok();
  models::ModelSpec spec;
  spec.path = find_default_model();
  if (spec.path.empty()) {
    return Status::NotFound(
        "no model given (--model, --models-file, --models-dir) and the bundled "
        "models/stories260K-tok512.gguf was not found beside the working directory or the binary");
  }
  spec.name = "stories260K";
  spec.declared_by = "default";
  log::info("model.default", "no model given; serving the bundled {} as '{}'", spec.path,
            spec.name);
  return registry.add(std::move(spec));
}

// Loads the pinned models before the server reports ready.
void preload_pinned(models::Registry& registry) {
  std::vector<std::future<Status>> loads;
  for (const auto& s : registry.list()) {
    if (!s.spec.pin) continue;
    auto done = std::make_shared<std::promise<Status>>();
    loads.push_back(done->get_future());
    registry.load(s.spec.name, [done](Status st) { done->set_value(st); });
  }
  for (auto& l : loads) {
    if (Status st = l.get(); !st.ok()) log::error("model.preload_failed", "{}", st.message());
  }
}

// Copies the cache's counters into gauges whenever metrics are exported.
void export_cache_metrics(cache::Cache& cache, obs::Registry& metrics) {
  metrics.add_collector([&cache, &metrics] {
    cache::Stats s = cache.stats();
    const std::pair<const char*, const cache::TierStats*> tiers[] = {
        {"l1", &s.l1}, {"l2", &s.l2}, {"l3", &s.l3}};
    for (const auto& [name, t] : tiers) {
      obs::Labels l{{"tier", name}};
      metrics.gauge("infera_cache_hits", "Cache hits by tier", l).set(static_cast<double>(t->hits));
      metrics.gauge("infera_cache_misses", "Cache misses by tier", l)
          .set(static_cast<double>(t->misses));
      metrics.gauge("infera_cache_hit_ratio", "Cache hit rate by tier", l).set(t->hit_rate());
      metrics.gauge("infera_cache_entries", "Cache entries by tier", l)
          .set(static_cast<double>(t->entries));
      metrics.gauge("infera_cache_bytes", "Cache bytes by tier", l)
          .set(static_cast<double>(t->bytes));
      metrics.gauge("infera_cache_evictions", "Cache evictions by tier", l)
          .set(static_cast<double>(t->evictions));
    }
    metrics.gauge("infera_cache_compression_ratio", "L1 raw bytes over stored bytes")
        .set(s.compression_ratio());
    metrics
        .gauge("infera_cache_single_flight_merges", "Requests that joined an identical generation")
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
  auto ops_config = operations_config_from(*config);
  if (!ops_config.ok()) {
    std::cerr << "infera: " << ops_config.status().message() << "\n";
    return 2;
  }
  log::info("engine.cpus", "compute: {}", ops_config->cpu.describe);
  auto ops_made = Operations::create(std::move(ops_config).value(), metrics);
  if (!ops_made.ok()) {
    std::cerr << "infera: " << ops_made.status().message() << "\n";
    return 2;
  }
  std::unique_ptr<Operations> ops = std::move(ops_made).value();
  auto access_made = auth::Access::create(access_options_from(*config), metrics);
  if (!access_made.ok()) {
    log::error("auth.start_failed", "{}", access_made.status().message());
    log::shutdown();
    std::cerr << "infera: " << access_made.status().message() << "\n";
    return 2;
  }
  std::unique_ptr<auth::Access> access = std::move(access_made).value();
  access->attach(server);
  api::register_system_routes(server, metrics, [&ops] { return ops->degraded_reason(); });

  auto registry_config = registry_config_from(*config);
  if (!registry_config.ok()) {
    std::cerr << "infera: " << registry_config.status().message() << "\n";
    return 2;
  }
  registry_config->load_veto = ops->load_veto();
  auto registry_owner = std::make_unique<models::Registry>(*registry_config, metrics);
  models::Registry& registry = *registry_owner;
  registry.register_kind(models::make_gguf_kind(gguf_kind_config_from(*config), metrics));
  registry.register_kind(
      models::make_embedding_kind(embedding_kind_config_from(*config), metrics));
  registry.register_kind(predict::make_xgboost_kind(predict_kind_config_from(*config), metrics));
  registry.register_kind(predict::make_onnx_kind(predict_kind_config_from(*config), metrics));
#ifdef INFERA_WITH_TORCH
  registry.register_kind(predict::make_torchscript_kind(predict_kind_config_from(*config), metrics));
#endif
  if (Status st = declare_models(*config, registry); !st.ok()) {
    log::error("model.declare_failed", "{}", st.message());
    log::shutdown();
    std::cerr << "infera: " << st.message() << "\n";
    return 1;
  }
  api::register_model_routes(server, registry);

  std::unique_ptr<cache::Cache> response_cache;
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

  api::register_predict_routes(server, registry, response_cache.get(),
                               {.request_timeout_s = config->get_double("request_timeout")});
  auto image_index = predict::ImageIndex::open(data_dir_from(*config) / "images");
  if (!image_index.ok()) {
    std::cerr << "infera: " << image_index.status().message() << " (choose another --data-dir)\n";
    log::shutdown();
    return 1;
  }
  api::register_image_routes(server, registry, **image_index, response_cache.get(),
                             {.model = config->get_string("image_match_model"),
                              .threshold = config->get_double("image_match_threshold"),
                              .max_hash_distance = static_cast<int>(config->get_int("image_hash_distance"))});
  api::Embedder embedder(registry, response_cache.get());
  api::register_embedding_routes(server, embedder);
  const std::filesystem::path data_dir = data_dir_from(*config);
  auto knowledge_store = store::open_sqlite(data_dir);
  if (!knowledge_store.ok()) {
    std::cerr << "infera: data directory " << data_dir.string() << ": " << knowledge_store.status().message()
              << " (choose another with --data-dir)\n";
    log::error("store.open_failed", "{}: {}", data_dir.string(), knowledge_store.status().message());
    log::shutdown();
    return 1;
  }
  auto knowledge_embedding = api::make_knowledge_embedding(embedder, registry);
  knowledge::KnowledgeOptions knowledge_options;
  knowledge_options.dir = data_dir / "vectors";
  knowledge_options.chunks.max_tokens = static_cast<size_t>(config->get_int("chunk_tokens"));
  knowledge_options.chunks.overlap_tokens = static_cast<size_t>(config->get_int("chunk_overlap"));
  knowledge_options.max_document_bytes = static_cast<size_t>(config->get_int("max_document_bytes"));
  knowledge_options.index.build_threads = std::max<int>(1, static_cast<int>(config->get_int("max_workers")));
  if (Status st = knowledge::validate(knowledge_options.chunks); !st.ok()) {
    std::cerr << "infera: --chunk-tokens / --chunk-overlap: " << st.message() << "\n";
    log::shutdown();
    return 2;
  }
  auto knowledge = std::make_unique<knowledge::Knowledge>(**knowledge_store, *knowledge_embedding,
                                                          knowledge_options, metrics);
  api::register_knowledge_routes(server, *knowledge, knowledge_options.max_document_bytes);
  api::register_session_routes(server, **knowledge_store);
  const api::GenerationConfig gen = generation_config_from(*config);
  api::GenerationHooks generation_hooks = ops->generation_hooks();
  generation_hooks.knowledge = knowledge.get();
  generation_hooks.conversations = knowledge_store->get();
  generation_hooks.embedder = &embedder;
  const int rewarm_count = static_cast<int>(config->get_int("cache_rewarm"));
  std::unique_ptr<api::PopularityLog> popularity;
  if (response_cache && rewarm_count > 0) {
    popularity = std::make_unique<api::PopularityLog>((data_dir / "popular.jsonl").string());
    generation_hooks.popularity = popularity.get();
  }
  if (gen.semantic_cache) {
    std::string why;
    if (!response_cache) why = "it needs the response cache (--cache-policy is off)";
    if (gen.semantic_model.empty() && embedder.default_model().empty())
      why = "no embedding model is declared (--model name=file.gguf with a BERT-family file)";
    if (!gen.semantic_model.empty() && registry.first_of_kind("embedding").empty())
      why = "no embedding model is declared";
    if (!why.empty()) {
      std::cerr << "infera: --semantic-cache: " << why << "\n";
      log::shutdown();
      return 2;
    }
  }
  api::register_generation_routes(server, gen, registry, response_cache.get(), cache_config.policy,
                                  std::move(generation_hooks));
  ops->attach(registry, response_cache.get());
  ops->register_routes(server);
  server.set_observer(ops->observer());
  if (const std::string& warm = config->get_string("cache_warm"); !warm.empty() && response_cache) {
    std::string error;
    int cached = api::warm_cache_from_file(warm, gen, registry, *response_cache,
                                           cache_config.policy, &error);
    if (!error.empty()) {
      std::cerr << "infera: " << error << "\n";
      log::shutdown();
      return 1;
    }
    log::info("cache.warmed", "{}: {} answers cached", warm, cached);
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
  preload_pinned(registry);
  std::optional<Rewarmer> rewarmer;
  if (popularity) {
    rewarmer.emplace(*popularity, [&, bodies = popularity->top(static_cast<size_t>(rewarm_count))](
                                      const std::function<bool()>& stop) {
      return bodies.empty() ? 0
                            : api::rewarm_popular(bodies, gen, registry, *response_cache, cache_config.policy, stop);
    });
  }
  ops->start();
  access->start();
  server.set_ready(true);
  server.run();
  rewarmer.reset();  // before the registry ends the jobs a re-warm may wait for
  access->stop();
  // Shutdown order: the operations threads read the registry; the registry's models
  // end their remaining jobs, whose callbacks reach the cache and the operations hooks.
  ops->stop();
  knowledge.reset();  // its worker embeds through the registry
  registry_owner.reset();
  ops.reset();
  response_cache.reset();
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
