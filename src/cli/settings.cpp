#include "cli/settings.h"

#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "models/models_file.h"

namespace infera::cli {

http::ServerConfig server_config_from(const core::Config& c) {
  http::ServerConfig s;
  s.host = c.get_string("host");
  s.port = static_cast<uint16_t>(c.get_int("port"));
  s.io_threads = static_cast<int>(c.get_int("io_threads"));
  s.max_content_length = static_cast<uint64_t>(c.get_int("max_content_length"));
  s.header_timeout_ms = c.get_int("header_timeout_ms");
  s.idle_timeout_ms = c.get_int("idle_timeout_ms");
  s.drain_timeout_ms = c.get_int("drain_timeout_ms");
  s.gzip_min_bytes = static_cast<uint64_t>(c.get_int("gzip_min_bytes"));
  const std::string origins = c.get_string("cors_origins");
  for (size_t pos = 0; pos < origins.size();) {
    size_t end = origins.find(',', pos);
    if (end == std::string::npos) end = origins.size();
    std::string o = origins.substr(pos, end - pos);
    while (!o.empty() && o.front() == ' ') o.erase(o.begin());
    while (!o.empty() && (o.back() == ' ' || o.back() == '/')) o.pop_back();
    if (!o.empty()) s.cors_origins.push_back(o);
    pos = end + 1;
  }
  s.tls_cert = c.get_string("tls_cert");
  s.tls_key = c.get_string("tls_key");
  return s;
}

auth::AccessOptions access_options_from(const core::Config& c) {
  auth::AccessOptions a;
  a.keys_file = c.get_string("api_keys_file");
  a.allow_anonymous = c.get_bool("allow_anonymous");
  a.host = c.get_string("host");
  a.per_client.requests_per_minute = c.get_int("client_requests_per_minute");
  a.per_client.request_burst = c.get_int("client_request_burst");
  a.per_client.tokens_per_minute = c.get_int("client_tokens_per_minute");
  a.per_client.concurrent = c.get_int("client_concurrent");
  a.redis_url = c.get_string("redis_url");
  a.data_dir = data_dir_from(c).string();
  const std::string proxies = c.get_string("trusted_proxies");
  for (size_t pos = 0; pos < proxies.size();) {
    size_t end = proxies.find(',', pos);
    if (end == std::string::npos) end = proxies.size();
    std::string p = proxies.substr(pos, end - pos);
    while (!p.empty() && p.front() == ' ') p.erase(p.begin());
    while (!p.empty() && p.back() == ' ') p.pop_back();
    if (!p.empty()) a.trusted_proxies.push_back(p);
    pos = end + 1;
  }
  return a;
}

log::LogConfig log_config_from(const core::Config& c) {
  log::LogConfig l;
  l.level = c.get_string("log_level");
  l.file = c.get_string("log_file");
  l.burst_limit = c.get_int("log_burst_limit");
  return l;
}

Result<core::CpuPlacement> cpu_placement_from(const core::Config& c) {
  const int threads =
      c.source("max_workers") == core::ConfigSource::kDefault ? 0 : static_cast<int>(c.get_int("max_workers"));
  return core::plan_cpu_placement(core::read_cpus(), c.get_string("cpu_affinity"), threads);
}

namespace {
// The placement serve checked at start; unpinned at --max-workers if it cannot be made.
core::CpuPlacement placement_or_unpinned(const core::Config& c) {
  auto p = cpu_placement_from(c);
  if (p.ok()) return *p;
  core::CpuPlacement fallback;
  fallback.threads = static_cast<int>(c.get_int("max_workers"));
  return fallback;
}
}  // namespace

engine::ModelOptions model_options_from(const core::Config& c) {
  engine::ModelOptions m;
  const core::CpuPlacement placement = placement_or_unpinned(c);
  m.threads = placement.threads;
  m.cpus = placement.cpus;
  m.ctx_tokens = static_cast<int>(c.get_int("ctx_size"));
  m.max_batch = static_cast<int>(c.get_int("max_batch_tokens"));
  m.read_into_memory = !c.get_bool("mmap");
  m.packed_cache_dir = packed_cache_dir_from(c);
  m.packed_cache_max_bytes = static_cast<uint64_t>(c.get_int("packed_cache_max_bytes"));
  return m;
}

std::string packed_cache_dir_from(const core::Config& c) {
  if (c.get_bool("no_packed_cache")) return {};
  if (const std::string& dir = c.get_string("packed_cache_dir"); !dir.empty()) return dir;
  // An operator who chose where infera keeps its files gets the images there too.
  if (!c.get_string("data_dir").empty() || !c.get_string("cache_dir").empty()) {
    return (data_dir_from(c) / "packed").string();
  }
  if (const char* cache = std::getenv("XDG_CACHE_HOME"); cache != nullptr && *cache != '\0') {
    return (std::filesystem::path(cache) / "infera" / "packed").string();
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return (std::filesystem::path(home) / ".cache" / "infera" / "packed").string();
  }
  return {};
}

sched::SchedulerConfig scheduler_config_from(const core::Config& c) {
  sched::SchedulerConfig s;
  s.max_seqs = static_cast<int>(c.get_int("batch_size"));
  s.max_queue = static_cast<int>(c.get_int("max_queue"));
  s.tenant_max_queue = static_cast<int>(c.get_int("tenant_max_queue"));
  s.max_batch_tokens = static_cast<int>(c.get_int("max_batch_tokens"));
  s.batch_timeout_ms = static_cast<int>(c.get_int("batch_timeout"));
  return s;
}

api::GenerationConfig generation_config_from(const core::Config& c) {
  api::GenerationConfig g;
  if (const std::string& name = c.get_string("chat_template"); name != "auto") {
    g.detect_chat_format = !api::chat_format_from_name(name, g.chat_format);
  }
  g.default_max_tokens = static_cast<int>(c.get_int("default_max_tokens"));
  g.request_timeout_s = c.get_double("request_timeout");
  g.student_system_prompt = c.get_string("student_prompt");
  g.teacher_system_prompt = c.get_string("teacher_prompt");
  g.session_turns = static_cast<int>(c.get_int("session_turns"));
  g.history_tokens = static_cast<int>(c.get_int("history_tokens"));
  g.session_ttl_s = c.get_int("session_ttl");
  g.semantic_cache = c.get_bool("semantic_cache");
  g.semantic_threshold = c.get_double("semantic_threshold");
  g.semantic_model = c.get_string("semantic_model");
  g.semantic_entries = static_cast<int>(c.get_int("semantic_cache_size"));
  return g;
}

models::GgufKindConfig gguf_kind_config_from(const core::Config& c) {
  models::GgufKindConfig k;
  k.engine = model_options_from(c);
  k.scheduler = scheduler_config_from(c);
  k.prefix_cache = c.get_bool("prefix_cache");
  return k;
}

std::filesystem::path data_dir_from(const core::Config& c) {
  if (const std::string& dir = c.get_string("data_dir"); !dir.empty()) return dir;
  if (const std::string& cache = c.get_string("cache_dir"); !cache.empty()) {
    return std::filesystem::path(cache).lexically_normal().parent_path() / "infera-data";
  }
  if (const char* state = std::getenv("XDG_STATE_HOME"); state != nullptr && *state != '\0') {
    return std::filesystem::path(state) / "infera";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return std::filesystem::path(home) / ".local" / "state" / "infera";
  }
  return std::filesystem::path("infera-data");
}

models::EmbeddingKindConfig embedding_kind_config_from(const core::Config& c) {
  models::EmbeddingKindConfig k;
  const core::CpuPlacement placement = placement_or_unpinned(c);
  k.threads = placement.threads;
  k.cpus = placement.cpus;
  k.max_batch_tokens = static_cast<int>(c.get_int("max_batch_tokens"));
  return k;
}

predict::PredictKindConfig predict_kind_config_from(const core::Config& c) {
  predict::PredictKindConfig k;
  k.threads = placement_or_unpinned(c).threads;
  k.max_queue_delay_us = c.get_int("batch_timeout") * 1000;
  k.max_queue_size = static_cast<int>(std::max<int64_t>(1, c.get_int("max_queue")));
  return k;
}

Result<models::RegistryConfig> registry_config_from(const core::Config& c) {
  models::RegistryConfig r;
  r.max_loaded = static_cast<int>(c.get_int("model_cache_size"));
  r.memory_budget_bytes = static_cast<uint64_t>(c.get_int("models_memory_budget"));
  r.warm_up = c.get_bool("model_warmup_enabled");
  auto keep = models::parse_keep_alive(c.get_string("keep_alive"));
  if (!keep.ok()) return Status::InvalidArgument("INFERA_KEEP_ALIVE / --keep-alive: " + keep.status().message());
  r.default_keep_alive = *keep;
  r.acquire_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(c.get_double("request_timeout") * 1000));
  return r;
}

Result<OperationsConfig> operations_config_from(const core::Config& c) {
  OperationsConfig o;
  auto placement = cpu_placement_from(c);
  if (!placement.ok()) return placement.status();
  o.cpu = std::move(placement).value();
  o.degradation.shorten_queue_s = c.get_double("degrade_shorten_after");
  o.degradation.refuse_queue_s = c.get_double("degrade_refuse_after");
  o.degradation.shortened_max_tokens = static_cast<int>(c.get_int("degraded_max_tokens"));
  o.cleanup_threshold = c.get_double("memory_cleanup_threshold");
  o.critical_threshold = c.get_double("critical_memory_threshold");
  if (o.critical_threshold < o.cleanup_threshold) {
    return Status::InvalidArgument(fmt::format(
        "CRITICAL_MEMORY_THRESHOLD ({}) must not be below MEMORY_CLEANUP_THRESHOLD ({})",
        o.critical_threshold, o.cleanup_threshold));
  }
  o.stall_timeout = std::chrono::milliseconds(static_cast<int64_t>(c.get_double("stall_timeout") * 1000));
  o.ttft_objective_ms = c.get_double("ttft_objective_ms");
  auto objectives = obs::SlaTracker::parse_objectives(c.get_string("sla_objectives"));
  if (!objectives.ok()) {
    return Status::InvalidArgument("INFERA_SLA_OBJECTIVES / --sla-objectives: " + objectives.status().message());
  }
  o.objectives = std::move(objectives).value();
  o.anomaly_window = std::chrono::milliseconds(c.get_int("anomaly_window_ms"));
  o.alert_webhook = c.get_string("alert_webhook");
  o.test_hooks = c.get_bool("test_hooks");
  o.base_max_seqs = static_cast<int>(c.get_int("batch_size"));
  o.base_max_batch_tokens = static_cast<int>(c.get_int("max_batch_tokens"));
  return o;
}

cache::Config cache_config_from(const core::Config& c) {
  cache::Config k;
  k.max_entries = static_cast<size_t>(c.get_int("cache_max_size"));
  k.max_bytes = static_cast<size_t>(c.get_int("cache_max_bytes"));
  // CACHE_TIMEOUT 0 means "never expire": ten years is that, for every tier.
  const int64_t ttl = c.get_int("cache_timeout");
  k.ttl_seconds = static_cast<uint32_t>(ttl == 0 ? int64_t{10} * 365 * 24 * 3600 : ttl);
  k.dir = c.get_string("cache_dir");
  k.disk_max_bytes = static_cast<uint64_t>(c.get_int("cache_disk_max_bytes"));
  k.redis_url = c.get_string("redis_url");
  if (auto policy = cache::parse_cache_policy(c.get_string("cache_policy")); policy.ok()) {
    k.policy = *policy;
  }
  return k;
}

}  // namespace infera::cli
