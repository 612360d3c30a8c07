#include "cli/operations.h"

#include <fmt/format.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "api/json_body.h"
#include "cache/cache.h"
#include "core/log.h"
#include "guard/guard.h"
#include "models/registry.h"
#include "obs/alerts.h"
#include "obs/anomaly.h"
#include "obs/metrics.h"
#include "obs/webhook.h"
#include "sched/scheduler.h"

#ifndef INFERA_VERSION
#define INFERA_VERSION "dev"
#endif

namespace infera::cli {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
constexpr auto kTick = std::chrono::milliseconds(250);

// The machine's memory, or a fraction forced by the test hook /admin/test/memory.
class OverridableSource final : public guard::MemorySource {
 public:
  OverridableSource() : system_(guard::make_system_memory_source()) {}
  guard::MemoryReading read() override {
    guard::MemoryReading r = system_->read();
    std::lock_guard lock(mu_);
    if (forced_) {
      if (r.system_total_bytes == 0) r.system_total_bytes = uint64_t{1} << 30;
      r.system_available_bytes =
          static_cast<uint64_t>(static_cast<double>(r.system_total_bytes) * (1.0 - *forced_));
      r.cgroup_current_bytes.reset();
      r.cgroup_max_bytes.reset();
    }
    return r;
  }
  void force(std::optional<double> fraction) {
    std::lock_guard lock(mu_);
    forced_ = fraction;
  }

 private:
  std::unique_ptr<guard::MemorySource> system_;
  std::mutex mu_;
  std::optional<double> forced_;
};

// Routes whose requests are work (generation and later kinds) count for the SLA;
// dashboards polling GET routes, administration and model loads do not.
bool counts_for_sla(const http::Request& req) {
  return req.method == "POST" && req.path.rfind("/admin/", 0) != 0 &&
         req.path.rfind("/api/models/", 0) != 0;
}

}  // namespace

struct Operations::Impl {
  Impl(OperationsConfig c, obs::Registry& m, std::unique_ptr<obs::WebhookSender> w)
      : config(std::move(c)),
        metrics(m),
        webhook(std::move(w)),
        alerts(m, webhook.get()),
        sla(config.objectives),
        anomalies(obs::AnomalyConfig{config.anomaly_window, 30, 5, 2.0}, alerts),
        healing(m),
        watchdog(config.stall_timeout, healing, m),
        ladder(config.degradation, healing, m),
        started(Clock::now()) {}

  OperationsConfig config;
  obs::Registry& metrics;
  std::unique_ptr<obs::WebhookSender> webhook;
  obs::AlertManager alerts;
  obs::SlaTracker sla;
  obs::AnomalyDetector anomalies;
  guard::SelfHealingLog healing;
  guard::Watchdog watchdog;
  guard::DegradationLadder ladder;
  OverridableSource memory_source;
  std::unique_ptr<guard::MemoryGuard> memory;
  models::Registry* models = nullptr;
  cache::Cache* cache = nullptr;
  Clock::time_point started;

  // One governor per declared model, with the TTFT histogram snapshot of its last window.
  struct Governed {
    std::unique_ptr<guard::TtftGovernor> governor;
    obs::Histogram* ttft = nullptr;
    obs::Histogram::Snapshot last;
  };
  std::map<std::string, Governed> governed;
  Clock::time_point next_window;

  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::thread thread;

  void set_limits(const std::string& name, guard::Limits limits) {
    models->for_each_loaded([&](const std::string& n, models::LoadedModel& m) {
      if (n != name) return;
      if (auto* g = m.text_generator())
        g->scheduler().set_limits(limits.max_seqs, limits.max_batch_tokens);
    });
  }

  // The P95 of the histogram's observations since `last` (which it advances), ms.
  static std::pair<double, int64_t> window_p95_ms(Governed& g) {
    obs::Histogram::Snapshot now = g.ttft->snapshot();
    obs::Histogram::Snapshot delta;
    delta.count = now.count - g.last.count;
    delta.sum = now.sum - g.last.sum;
    for (size_t i = 0; i < now.buckets.size(); ++i)
      delta.buckets[i] = now.buckets[i] - g.last.buckets[i];
    g.last = now;
    return {delta.quantile(0.95) * 1000.0, static_cast<int64_t>(delta.count)};
  }

  void maintenance_loop() {
    std::unique_lock lock(mu);
    next_window = Clock::now() + config.anomaly_window;
    while (!cv.wait_for(lock, kTick, [this] { return stopping; })) {
      lock.unlock();
      const auto now = Clock::now();
      watchdog.tick(now);
      anomalies.tick(now);
      double queue_delay = 0;
      models->for_each_loaded([&](const std::string&, models::LoadedModel& m) {
        if (auto* g = m.text_generator()) queue_delay = std::max(queue_delay, g->scheduler().stats().queue_delay_s);
      });
      ladder.observe(queue_delay, now);
      if (now >= next_window) {
        next_window = now + config.anomaly_window;
        for (auto& [name, g] : governed) {
          auto [p95, count] = window_p95_ms(g);
          g.governor->observe_window(p95, count);
          // Again every window: a model reloaded meanwhile starts at its base limits.
          set_limits(name, g.governor->current());
        }
      }
      lock.lock();
    }
  }

  json memory_json() const {
    json j = memory ? memory->stats() : json::object();
    json per_model = json::object();
    uint64_t model_bytes = 0;
    models->for_each_loaded([&](const std::string& name, models::LoadedModel& m) {
      json row = {{"bytes", m.bytes()}};
      if (auto* g = m.text_generator()) {
        sched::SchedulerStats s = g->scheduler().stats();
        row["kv"] = {{"blocks_total", s.kv.blocks_total},
                     {"blocks_used", s.kv.blocks_used},
                     {"block_tokens", s.kv.block_tokens},
                     {"bytes_total", s.kv.blocks_total * s.kv.block_bytes},
                     {"bytes_used", s.kv.blocks_used * s.kv.block_bytes}};
      }
      model_bytes += m.bytes();
      per_model[name] = std::move(row);
    });
    j["models"] = std::move(per_model);
    j["models_bytes"] = model_bytes;
    if (cache != nullptr) {
      cache::Stats s = cache->stats();
      j["cache"] = {{"l1_bytes", s.l1.bytes}, {"l1_entries", s.l1.entries}};
    }
    return j;
  }

  json status_json() const {
    const auto now = Clock::now();
    json models_json = json::array();
    for (const auto& s : models->list()) {
      models_json.push_back({{"name", s.spec.name},
                             {"kind", s.spec.kind},
                             {"state", models::to_string(s.state)},
                             {"bytes", s.bytes},
                             {"requests", s.requests}});
    }
    json sla_report = sla.report(now);
    json overall = sla_report["scopes"].empty() ? json(nullptr) : sla_report["scopes"][0];
    json cache_json = nullptr;
    if (cache != nullptr) {
      cache::Stats s = cache->stats();
      cache_json = {
          {"l1", {{"hit_rate", s.l1.hit_rate()}, {"entries", s.l1.entries}, {"bytes", s.l1.bytes}}},
          {"l2", {{"enabled", s.l2.enabled}, {"hit_rate", s.l2.hit_rate()}}},
          {"l3", {{"enabled", s.l3.enabled}, {"hit_rate", s.l3.hit_rate()}}}};
    }
    json memory_brief = nullptr;
    if (memory) {
      json m = memory->stats();
      memory_brief = {{"used_fraction", m["used_fraction"]},
                      {"state", m["state"]},
                      {"thresholds", m["thresholds"]}};
    }
    const std::string reason = watchdog.reason();
    return {{"version", INFERA_VERSION},
            {"uptime_seconds", std::chrono::duration<double>(now - started).count()},
            {"status", reason.empty() ? "ok" : "degraded"},
            {"reason", reason.empty() ? json(nullptr) : json(reason)},
            {"models", std::move(models_json)},
            {"cache", std::move(cache_json)},
            {"memory", std::move(memory_brief)},
            {"sla", std::move(overall)},
            {"alerts", alerts.to_json()["firing"]},
            {"self_healing", healing.to_json()},
            {"degradation", ladder.to_json()},
            {"cpu", {{"threads", config.cpu.threads},
                     {"pinned", !config.cpu.cpus.empty()},
                     {"cores", config.cpu.cpus},
                     {"heterogeneous", config.cpu.heterogeneous},
                     {"big_cores", config.cpu.big},
                     {"placement", config.cpu.describe}}}};
  }
};

Operations::Operations(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Operations::~Operations() { stop(); }

void Operations::stop() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
  if (impl_->memory) impl_->memory->stop();
}

Result<std::unique_ptr<Operations>> Operations::create(OperationsConfig config,
                                                       obs::Registry& metrics) {
  std::unique_ptr<obs::WebhookSender> webhook;
  if (!config.alert_webhook.empty()) {
    auto made = obs::WebhookSender::create(config.alert_webhook, obs::WebhookConfig{}, metrics);
    if (!made.ok()) return Status::InvalidArgument("--alert-webhook: " + made.status().message());
    webhook = std::move(made).value();
  }
  return std::unique_ptr<Operations>(
      new Operations(std::make_unique<Impl>(std::move(config), metrics, std::move(webhook))));
}

std::function<std::optional<std::string>()> Operations::load_veto() {
  return [impl = impl_.get()]() -> std::optional<std::string> {
    if (impl->memory && impl->memory->critical()) {
      return "memory is critical (above CRITICAL_MEMORY_THRESHOLD): no model loads until it "
             "recovers";
    }
    return std::nullopt;
  };
}

void Operations::attach(models::Registry& models, cache::Cache* cache) {
  Impl& o = *impl_;
  o.models = &models;
  o.cache = cache;
  std::vector<guard::CleanupAction> actions;
  if (cache != nullptr) {
    actions.push_back({"shrink_cache", [cache] { return cache->shrink_memory(0.5); }});
  }
  actions.push_back({"drop_prefix_blocks", [&models] { return models.drop_caches(); }});
  actions.push_back({"unload_idle_models", [&models] { return models.unload_idle(); }});
  guard::GuardConfig gc;
  gc.cleanup_threshold = o.config.cleanup_threshold;
  gc.critical_threshold = o.config.critical_threshold;
  o.memory =
      std::make_unique<guard::MemoryGuard>(gc, o.memory_source, std::move(actions), o.metrics);
  o.memory->on_critical_change = [&o](bool critical, double fraction) {
    if (critical) {
      o.alerts.open(
          "memory_critical", "critical",
          fmt::format("memory use {:.1f}% is above CRITICAL_MEMORY_THRESHOLD ({:.1f}%): new "
                      "generations and loads get 503",
                      fraction * 100, o.config.critical_threshold * 100),
          fraction, o.config.critical_threshold);
    } else {
      o.alerts.resolve("memory_critical",
                       fmt::format("memory use back to {:.1f}%", fraction * 100));
    }
  };
  o.watchdog.on_change = [&o](const std::string& loop, bool stalled, const std::string& reason) {
    if (stalled) {
      o.alerts.open("engine_stalled:" + loop, "critical", reason);
    } else {
      o.alerts.resolve("engine_stalled:" + loop, "steps resumed");
    }
  };
  for (const auto& s : models.list()) {
    const std::string name = s.spec.name;
    o.watchdog.add(name, [&models, name] {
      guard::ProgressSample p;
      models.for_each_loaded([&](const std::string& n, models::LoadedModel& m) {
        if (n != name) return;
        models::LoadedModel::Progress progress = m.progress();
        p.pending = progress.pending;
        p.steps_completed = progress.steps_completed;
      });
      return p;
    });
    if (o.config.ttft_objective_ms <= 0) continue;
    guard::Limits base{s.spec.max_seqs > 0 ? s.spec.max_seqs : o.config.base_max_seqs,
                       o.config.base_max_batch_tokens};
    Impl::Governed g;
    g.ttft = &o.metrics.histogram("infera_time_to_first_token_seconds",
                                  "Submit to first generated token", {{"model", name}});
    g.last = g.ttft->snapshot();
    g.governor = std::make_unique<guard::TtftGovernor>(
        o.config.ttft_objective_ms, base, [&o, name](guard::Limits l) { o.set_limits(name, l); },
        o.healing);
    o.governed.emplace(name, std::move(g));
  }
}

api::GenerationHooks Operations::generation_hooks() {
  api::GenerationHooks hooks;
  Impl* o = impl_.get();
  hooks.memory_pressure = [o]() -> std::optional<double> {
    if (o->memory && o->memory->critical()) return o->memory->retry_after_seconds();
    return std::nullopt;
  };
  hooks.degradation_level = [o] { return o->ladder.level(); };
  hooks.shortened_max_tokens = o->config.degradation.shortened_max_tokens;
  hooks.on_finished = [o](const std::string&, double latency_ms, double ttft_ms, bool ok) {
    const auto now = Clock::now();
    o->anomalies.record_request(latency_ms, !ok, now);
    if (ttft_ms >= 0) o->anomalies.record_ttft(ttft_ms, now);
  };
  return hooks;
}

http::Server::Observer Operations::observer() {
  Impl* o = impl_.get();
  return [o](const http::Request& req, std::string_view route, std::string_view model, int status,
             double seconds) {
    if (!counts_for_sla(req)) return;
    o->sla.record(route, model, seconds * 1000.0, status < 500, Clock::now());
  };
}

std::optional<std::string> Operations::degraded_reason() const {
  std::string reason = impl_->watchdog.reason();
  if (reason.empty()) return std::nullopt;
  return reason;
}

void Operations::register_routes(http::Server& server) {
  Impl* o = impl_.get();
  server.route("GET", "/api/memory/stats", http::SyncHandler([o](const http::Request&) {
                 return http::Response::json(200, o->memory_json().dump());
               }));
  server.route("GET", "/api/v1/status", http::SyncHandler([o](const http::Request&) {
                 return http::Response::json(200, o->status_json().dump());
               }));
  server.route("GET", "/api/v1/alerts", http::SyncHandler([o](const http::Request&) {
                 json j = o->alerts.to_json();
                 j["anomaly_detector"] = o->anomalies.state();
                 return http::Response::json(200, j.dump());
               }));
  server.route("GET", "/api/v1/metrics/sla", http::SyncHandler([o](const http::Request&) {
                 return http::Response::json(200, o->sla.report(Clock::now()).dump());
               }));
  if (!o->config.test_hooks) return;
  log::warn("ops.test_hooks", "fault-injection routes /admin/test/* are enabled (--test-hooks)");
  // {"model": name, "per_step_ms": N, "duration_ms": M}: every engine step of the
  // model first sleeps per_step_ms, for duration_ms (per_step == duration: a stall).
  server.route("POST", "/admin/test/fault", http::SyncHandler([o](const http::Request& req) {
                 http::Response error;
                 auto body = api::parse_json_object(req, error);
                 if (!body) return error;
                 const std::string name = body->value("model", std::string());
                 const auto per_step = std::chrono::milliseconds(body->value("per_step_ms", 0));
                 const auto duration = std::chrono::milliseconds(body->value("duration_ms", 0));
                 bool found = false;
                 o->models->for_each_loaded([&](const std::string& n, models::LoadedModel& m) {
                   if (n != name || m.text_generator() == nullptr) return;
                   m.text_generator()->scheduler().inject_delay(per_step, duration);
                   found = true;
                 });
                 if (!found) {
                   return http::Response::error(404, "model '" + name + "' is not loaded",
                                                "invalid_request_error", "model_not_found");
                 }
                 return http::Response::json(200, R"({"injected":true})");
               }));
  // {"used_fraction": 0.97} makes the memory guard read that fraction; null ends it.
  server.route("POST", "/admin/test/memory", http::SyncHandler([o](const http::Request& req) {
                 http::Response error;
                 auto body = api::parse_json_object(req, error);
                 if (!body) return error;
                 auto it = body->find("used_fraction");
                 if (it == body->end() || (!it->is_null() && !it->is_number())) {
                   return http::Response::error(400, "'used_fraction' must be a number or null");
                 }
                 o->memory_source.force(it->is_null() ? std::nullopt
                                                      : std::optional<double>(it->get<double>()));
                 return http::Response::json(200, R"({"forced":true})");
               }));
}

void Operations::start() {
  if (impl_->memory) impl_->memory->start();
  impl_->thread = std::thread([impl = impl_.get()] { impl->maintenance_loop(); });
}

}  // namespace infera::cli
