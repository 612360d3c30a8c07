#include "models/registry.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "core/log.h"
#include "models/embedding_model.h"
#include "obs/metrics.h"

namespace infera::models {

Status Predictor::features_to_row(const nlohmann::json& /*features*/, float* /*row*/) const {
  return Status::InvalidArgument(
      "this model takes tensors, not named features; use POST /v2/models/{name}/infer");
}

Result<std::vector<float>> Predictor::image_to_row(std::string_view /*encoded*/) const {
  return Status::Unsupported("this model takes no images");
}

uint64_t model_file_bytes(const std::string& path) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  return ec ? 0 : size;
}

std::string model_file_identity(const std::string& path) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  auto mtime = std::filesystem::last_write_time(path, ec).time_since_epoch().count();
  return fmt::format("{}:{}:{}", std::filesystem::absolute(path, ec).string(), size, mtime);
}

using Clock = std::chrono::steady_clock;

const char* to_string(ModelState state) {
  switch (state) {
    case ModelState::kAvailable:
      return "available";
    case ModelState::kLoading:
      return "loading";
    case ModelState::kReady:
      return "loaded";
    case ModelState::kDraining:
      return "unloading";
    case ModelState::kFailed:
      return "failed";
  }
  return "available";
}

namespace {

// Request rates decay with this time constant (value of a loaded model).
constexpr double kRateTauSeconds = 60.0;
constexpr auto kPollInterval = std::chrono::milliseconds(100);

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string mib(uint64_t bytes) {
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1 << 20));
}

}  // namespace

// Mutex and condition variable shared by the registry and every lease, so that a
// lease may outlive nothing it needs.
struct Core {
  std::mutex mu;
  std::condition_variable cv;
};

struct Lease::Entry {
  ModelSpec spec;
  ModelKind* kind = nullptr;
  std::shared_ptr<Core> core;
  // Guarded by core->mu.
  ModelState state = ModelState::kAvailable;
  std::unique_ptr<LoadedModel> model;
  std::string identity;
  uint64_t bytes = 0;
  double load_ms = 0;
  int64_t requests = 0;
  int64_t in_flight = 0;
  int64_t loads = 0;
  double rate_score = 0;  // decayed request count (kRateTauSeconds)
  Clock::time_point rate_at{};
  Clock::time_point last_used{};
  std::optional<std::chrono::system_clock::time_point> last_used_wall;
  std::optional<std::chrono::milliseconds> keep_alive_override;
  struct Waiter {
    LeaseCallback done;
    Clock::time_point deadline;  // max(): none
    bool request = true;         // a request that runs on the model once loaded (not load())
  };
  std::vector<Waiter> waiters;
  std::string last_error;
  std::string pending_identity;  // a changed identity seen once (reloads when seen again)

  double rate_now(Clock::time_point now) const {
    if (rate_score == 0) return 0;
    return rate_score * std::exp(-seconds(now - rate_at) / kRateTauSeconds) / kRateTauSeconds;
  }
  void count_request(Clock::time_point now) {
    rate_score = rate_score * std::exp(-seconds(now - rate_at) / kRateTauSeconds) + 1;
    rate_at = now;
    ++requests;
  }
};

Lease::Lease(std::shared_ptr<Entry> entry, LoadedModel* model, const ModelSpec* spec,
             const std::string* identity, bool counts_as_use)
    : entry_(std::move(entry)),
      model_(model),
      spec_(spec),
      identity_(identity),
      counts_as_use_(counts_as_use) {}

Lease::~Lease() {
  // The loader waits on the lease count only for a draining model (an unload or an
  // eviction) or one kept alive for 0 ms; any other release is seen by its periodic
  // upkeep. Waking it on every
  // release cost a futex wake and a context switch per request (~10% of a cached
  // answer's CPU at 30k req/s).
  bool drained = false;
  {
    std::lock_guard lock(entry_->core->mu);
    --entry_->in_flight;
    const auto zero = std::chrono::milliseconds(0);
    const bool unload_when_idle = entry_->keep_alive_override ? *entry_->keep_alive_override == zero
                                                              : entry_->spec.keep_alive == zero;
    drained = entry_->in_flight == 0 && (entry_->state == ModelState::kDraining || unload_when_idle);
    if (counts_as_use_) {
      entry_->last_used = Clock::now();
      entry_->last_used_wall = std::chrono::system_clock::now();
    }
  }
  if (drained) entry_->core->cv.notify_all();
}

struct Registry::Impl {
  using Entry = Lease::Entry;

  Impl(RegistryConfig c, obs::Registry& m)
      : config(std::move(c)),
        metrics(m),
        core(std::make_shared<Core>()),
        loaded_gauge(m.gauge("infera_models_loaded", "Models loaded now")),
        loaded_bytes_gauge(m.gauge("infera_models_loaded_bytes", "Bytes held by loaded models")),
        load_seconds(
            m.histogram("infera_model_load_seconds", "Model load time including warm-up")) {}

  RegistryConfig config;
  obs::Registry& metrics;
  std::shared_ptr<Core> core;
  obs::Gauge& loaded_gauge;
  obs::Gauge& loaded_bytes_gauge;
  obs::Histogram& load_seconds;

  std::map<std::string, std::unique_ptr<ModelKind>> kinds;
  // Guarded by core->mu.
  std::vector<std::shared_ptr<Entry>> entries;  // declaration order
  std::deque<std::shared_ptr<Entry>> load_queue;
  std::deque<std::pair<std::shared_ptr<Entry>, std::function<void(Status)>>> unload_queue;
  std::deque<std::shared_ptr<Entry>> deferred;  // loads waiting for a victim to drain
  bool stopping = false;
  std::thread loader;
  // The dispatcher ("model dispatcher") runs the callbacks of requests a load served.
  std::mutex dispatch_mu;
  std::condition_variable dispatch_cv;
  std::deque<std::function<void()>> dispatch_queue;  // guarded by dispatch_mu
  bool dispatch_stop = false;                        // guarded by dispatch_mu
  std::thread dispatcher;

  std::shared_ptr<Entry> find(const std::string& name) const {
    for (const auto& e : entries) {
      if (e->spec.name == name) return e;
    }
    return nullptr;
  }

  std::string names() const {
    std::string out;
    for (const auto& e : entries) out += (out.empty() ? "" : ", ") + e->spec.name;
    return out.empty() ? "none" : out;
  }

  // REQUIRES: core->mu held, e->model set.
  std::shared_ptr<Lease> make_lease(const std::shared_ptr<Entry>& e, bool count) {
    ++e->in_flight;
    if (count) e->count_request(Clock::now());
    return std::shared_ptr<Lease>(new Lease(e, e->model.get(), &e->spec, &e->identity, count));
  }

  std::chrono::milliseconds keep_alive_of(const Entry& e) const {
    if (e.keep_alive_override) return *e.keep_alive_override;
    if (e.spec.keep_alive) return *e.spec.keep_alive;
    return config.default_keep_alive;
  }

  void publish_gauges() {
    int64_t n = 0;
    uint64_t bytes = 0;
    for (const auto& e : entries) {
      if (!e->model) continue;
      ++n;
      bytes += e->bytes;
    }
    loaded_gauge.set(static_cast<double>(n));
    loaded_bytes_gauge.set(static_cast<double>(bytes));
  }

  // Takes the model out of `e` (REQUIRES: lock held, no leases); the caller
  // destroys it after unlocking.
  std::unique_ptr<LoadedModel> take_model(Entry& e, const char* reason) {
    std::unique_ptr<LoadedModel> out = std::move(e.model);
    e.state = ModelState::kAvailable;
    e.bytes = 0;
    metrics
        .counter("infera_model_unloads_total", "Model unloads by reason",
                 {{"model", e.spec.name}, {"reason", reason}})
        .inc();
    log::info("model.unloaded", "{}: unloaded ({})", e.spec.name, reason);
    publish_gauges();
    return out;
  }

  // Frees what every kind keeps for quick reloads (nothing is about to load).
  uint64_t release_spare() {
    uint64_t freed = 0;
    for (auto& [name, kind] : kinds) freed += kind->release_spare_memory();
    return freed;
  }

  // Queues a load of `e` unless one is queued or running. REQUIRES: lock held.
  void enqueue_load(const std::shared_ptr<Entry>& e) {
    if (e->state == ModelState::kLoading) return;
    e->state = ModelState::kLoading;
    load_queue.push_back(e);
    core->cv.notify_all();
  }

  // The loaded model to evict for `target`: unpinned, least request rate x reload
  // time, then least recently used. REQUIRES: lock held.
  std::shared_ptr<Entry> pick_victim(const Entry& target) const {
    const auto now = Clock::now();
    std::shared_ptr<Entry> best;
    double best_value = 0;
    for (const auto& e : entries) {
      if (!e->model || e.get() == &target || e->spec.pin) continue;
      double value = e->rate_now(now) * std::max(e->load_ms, 1.0);
      if (!best || value < best_value || (value == best_value && e->last_used < best->last_used)) {
        best = e;
        best_value = value;
      }
    }
    return best;
  }

  int64_t loaded_count() const {
    return std::count_if(entries.begin(), entries.end(),
                         [](const auto& e) { return e->model != nullptr; });
  }
  uint64_t loaded_bytes() const {
    uint64_t sum = 0;
    for (const auto& e : entries) sum += e->model ? e->bytes : 0;
    return sum;
  }

  // Fails every waiter of `e` (REQUIRES: lock held); returns the callbacks to run.
  static std::vector<std::function<void()>> fail_waiters(Entry& e, const Status& status) {
    std::vector<std::function<void()>> calls;
    for (auto& w : e.waiters) calls.push_back([done = std::move(w.done), status] { done(status); });
    e.waiters.clear();
    return calls;
  }

  // Registry::acquire; `request`: the caller runs a request on the model (not load()).
  void acquire(const std::string& name, std::optional<std::chrono::milliseconds> keep_alive,
               LeaseCallback done, bool request);

  std::vector<std::function<void()>> serve_waiters(const std::shared_ptr<Entry>& e) {
    std::vector<std::function<void()>> calls;
    for (auto& w : e->waiters) {
      calls.push_back([done = std::move(w.done), lease = make_lease(e, true)]() mutable {
        done(std::move(lease));
      });
    }
    e->waiters.clear();
    return calls;
  }

  static void run_all(std::vector<std::function<void()>>& calls) {
    for (auto& c : calls) c();
    calls.clear();
  }

  // Hands callbacks of waiting requests to the dispatcher thread: they run the
  // request on (cache lookups, possibly Redis; tokenizing; submitting), which must not
  // hold up the next load. Any thread; takes only the dispatch lock.
  void dispatch(std::vector<std::function<void()>>& calls) {
    if (calls.empty()) return;
    {
      std::lock_guard lock(dispatch_mu);
      for (auto& c : calls) dispatch_queue.push_back(std::move(c));
    }
    calls.clear();
    dispatch_cv.notify_one();
  }

  void dispatcher_loop() {
    std::unique_lock lock(dispatch_mu);
    for (;;) {
      dispatch_cv.wait(lock, [this] { return dispatch_stop || !dispatch_queue.empty(); });
      if (dispatch_queue.empty()) return;  // stopping, nothing left
      std::function<void()> call = std::move(dispatch_queue.front());
      dispatch_queue.pop_front();
      lock.unlock();
      call();
      lock.lock();
    }
  }

  // Makes room for `target` (estimate bytes), evicting idle victims at once. A victim
  // with requests in flight is marked draining and kDraining is returned: the load
  // waits (deferred) while the loader serves other work. REQUIRES: lock held
  // (released while unloading). kNoRoom fills `error`.
  enum class Room { kReady, kDraining, kNoRoom };
  Room make_room(std::unique_lock<std::mutex>& lock, Entry& target, uint64_t estimate,
                 Status& error) {
    const uint64_t budget = config.memory_budget_bytes;
    if (budget > 0 && estimate > budget) {
      error = Status::Unavailable(
          fmt::format("model '{}' needs about {}, more than the whole models memory budget ({})",
                      target.spec.name, mib(estimate), mib(budget)));
      return Room::kNoRoom;
    }
    while (!stopping && (loaded_count() + 1 > config.max_loaded ||
                         (budget > 0 && loaded_bytes() + estimate > budget))) {
      std::shared_ptr<Entry> victim = pick_victim(target);
      if (!victim) {
        std::string pinned;
        for (const auto& e : entries) {
          if (e->model && e->spec.pin) pinned += (pinned.empty() ? "" : ", ") + e->spec.name;
        }
        error = Status::Unavailable(fmt::format(
            "model '{}' cannot be loaded: {} loaded models use {} (budget {}, at most {} models); "
            "pinned: {}",
            target.spec.name, loaded_count(), mib(loaded_bytes()),
            budget > 0 ? mib(budget) : std::string("none"), config.max_loaded,
            pinned.empty() ? "none" : pinned));
        return Room::kNoRoom;
      }
      if (victim->in_flight > 0) {
        if (victim->state != ModelState::kDraining) {
          log::info("model.evicting", "{}: draining {} requests to make room for {}",
                    victim->spec.name, victim->in_flight, target.spec.name);
        }
        victim->state = ModelState::kDraining;
        return Room::kDraining;
      }
      log::info("model.evicting", "{}: evicting to make room for {}", victim->spec.name,
                target.spec.name);
      std::unique_ptr<LoadedModel> gone = take_model(*victim, "evicted");
      if (!victim->waiters.empty()) enqueue_load(victim);
      lock.unlock();
      gone.reset();
      lock.lock();
    }
    if (stopping) {
      error = Status::Unavailable("the server is shutting down");
      return Room::kNoRoom;
    }
    return Room::kReady;
  }

  // Loader thread: one queued load, start to end.
  void run_load(std::unique_lock<std::mutex>& lock, const std::shared_ptr<Entry>& e) {
    std::vector<std::function<void()>> calls;
    if (e->model) {  // loaded meanwhile (a reload request raced with a load)
      e->state = ModelState::kReady;
      calls = serve_waiters(e);
      lock.unlock();
      dispatch(calls);
      lock.lock();
      return;
    }
    if (config.load_veto) {
      if (auto reason = config.load_veto()) {
        e->state = ModelState::kAvailable;
        calls = fail_waiters(*e, Status::ResourceExhausted(*reason));
        lock.unlock();
        dispatch(calls);
        lock.lock();
        return;
      }
    }
    lock.unlock();
    const uint64_t estimate = e->kind->estimate_bytes(e->spec);
    lock.lock();
    Status room_error;
    const Room room = make_room(lock, *e, estimate, room_error);
    if (room == Room::kDraining) {
      deferred.push_back(e);  // retried once a draining model has no requests left
      return;
    }
    if (room == Room::kNoRoom) {
      e->state = ModelState::kAvailable;
      log::warn("model.cannot_fit", "{}", room_error.message());
      calls = fail_waiters(*e, room_error);
      lock.unlock();
      dispatch(calls);
      lock.lock();
      return;
    }
    const bool request_waiting = std::any_of(e->waiters.begin(), e->waiters.end(),
                                             [](const Entry::Waiter& w) { return w.request; });
    lock.unlock();
    const auto start = Clock::now();
    Result<std::unique_ptr<LoadedModel>> loaded = e->kind->load(e->spec);
    const auto loaded_at = Clock::now();
    Status warmed = Status::Ok();
    const bool warm_up = config.warm_up && !request_waiting;
    if (loaded.ok() && warm_up) warmed = (*loaded)->warm_up();
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    const double warm_ms =
        std::chrono::duration<double, std::milli>(Clock::now() - loaded_at).count();
    std::string identity = e->kind->identity(e->spec);
    lock.lock();
    if (!loaded.ok() || !warmed.ok()) {
      const std::string why =
          !loaded.ok() ? loaded.status().message()
                       : fmt::format("{}: warm-up failed: {}", e->spec.path, warmed.message());
      e->state = ModelState::kFailed;
      e->last_error = why;
      log::error("model.load_failed", "{}: {}", e->spec.name, why);
      metrics
          .counter("infera_model_load_failures_total", "Failed model loads",
                   {{"model", e->spec.name}})
          .inc();
      calls = fail_waiters(
          *e, Status::Unavailable(fmt::format("model '{}' failed to load: {}", e->spec.name, why)));
      std::unique_ptr<LoadedModel> discard = loaded.ok() ? std::move(loaded).value() : nullptr;
      lock.unlock();
      discard.reset();
      release_spare();
      dispatch(calls);
      lock.lock();
      return;
    }
    e->model = std::move(loaded).value();
    e->bytes = e->model->bytes();
    e->identity = std::move(identity);
    e->load_ms = ms;
    ++e->loads;
    e->last_used = Clock::now();
    e->state = ModelState::kReady;
    e->last_error.clear();
    load_seconds.observe(ms / 1000.0);
    metrics.counter("infera_model_loads_total", "Model loads", {{"model", e->spec.name}}).inc();
    publish_gauges();
    log::info("model.loaded", "{}: loaded {} in {:.1f} ms ({}{})", e->spec.name, e->spec.path, ms,
              mib(e->bytes),
              warm_up          ? fmt::format(", warm-up {:.1f} ms of it", warm_ms)
              : config.warm_up ? std::string(", no warm-up: a request was waiting")
                               : std::string());
    calls = serve_waiters(e);
    const bool more = !load_queue.empty();
    lock.unlock();
    if (!more) release_spare();  // a spare region this load did not take
    dispatch(calls);
    lock.lock();
  }

  // Idle unloads and file-change reloads. Loader thread, lock held.
  void upkeep(std::unique_lock<std::mutex>& lock, Clock::time_point& next_file_check) {
    const auto now = Clock::now();
    std::vector<std::unique_ptr<LoadedModel>> gone;
    for (const auto& e : entries) {
      if (e->state != ModelState::kReady || e->in_flight > 0 || e->spec.pin) continue;
      const auto keep = keep_alive_of(*e);
      if (keep.count() >= 0 && now - e->last_used >= keep) gone.push_back(take_model(*e, "idle"));
    }
    std::vector<std::function<void()>> expired;
    for (const auto& e : entries) {
      auto late = [now](const Entry::Waiter& w) { return w.deadline <= now; };
      if (std::none_of(e->waiters.begin(), e->waiters.end(), late)) continue;
      const Status status =
          Status::Unavailable(fmt::format("model '{}' did not become ready in time (state: {})",
                                          e->spec.name, to_string(e->state)));
      for (auto& w : e->waiters) {
        if (late(w)) expired.push_back([done = std::move(w.done), status] { done(status); });
      }
      std::erase_if(e->waiters, [](const Entry::Waiter& w) { return !w.done; });
    }
    if (!expired.empty()) {
      lock.unlock();
      dispatch(expired);
      lock.lock();
    }
    if (now >= next_file_check) {
      next_file_check = now + config.file_check_interval;
      for (const auto& e : entries) {
        if (e->state != ModelState::kReady || e->in_flight > 0) continue;
        lock.unlock();
        std::string identity = e->kind->identity(e->spec);
        lock.lock();
        if (e->state != ModelState::kReady || e->in_flight > 0 || identity == e->identity) {
          e->pending_identity.clear();
          continue;
        }
        // A file being copied changes from one check to the next: reload only once the
        // new identity has been seen twice in a row.
        if (identity != e->pending_identity) {
          e->pending_identity = identity;
          continue;
        }
        e->pending_identity.clear();
        log::info("model.file_changed", "{}: {} changed on disk; reloading", e->spec.name,
                  e->spec.path);
        gone.push_back(take_model(*e, "file_changed"));
        enqueue_load(e);
      }
    }
    if (gone.empty()) return;
    const bool reload = !load_queue.empty();
    lock.unlock();
    gone.clear();
    if (!reload) release_spare();
    lock.lock();
  }

  // Explicit unloads: each happens once its model has no requests in flight (the
  // others wait in the queue, marked draining). Loader thread, lock held.
  void process_unloads(std::unique_lock<std::mutex>& lock) {
    std::vector<std::unique_ptr<LoadedModel>> gone;
    std::vector<std::function<void(Status)>> answered;
    for (auto it = unload_queue.begin(); it != unload_queue.end();) {
      auto& [e, done] = *it;
      if (e->model && e->in_flight > 0) {
        e->state = ModelState::kDraining;
        ++it;
        continue;
      }
      if (e->model) {
        gone.push_back(take_model(*e, "requested"));
        if (!e->waiters.empty()) enqueue_load(e);
      }
      answered.push_back(std::move(done));
      it = unload_queue.erase(it);
    }
    if (gone.empty() && answered.empty()) return;
    const bool reload = !load_queue.empty();
    lock.unlock();
    gone.clear();
    if (!reload) release_spare();
    for (auto& done : answered) done(Status::Ok());
    lock.lock();
  }

  // True when a model marked draining has no requests left (deferred loads may go on).
  bool drained() const {
    return std::any_of(entries.begin(), entries.end(), [](const auto& e) {
      return e->model && e->state == ModelState::kDraining && e->in_flight == 0;
    });
  }

  void loader_loop() {
    std::unique_lock lock(core->mu);
    auto next_file_check = Clock::now() + config.file_check_interval;
    while (!stopping) {
      if (!unload_queue.empty()) process_unloads(lock);
      if (!deferred.empty() && drained()) {
        load_queue.insert(load_queue.begin(), deferred.begin(), deferred.end());
        deferred.clear();
      }
      if (!load_queue.empty()) {
        std::shared_ptr<Entry> e = load_queue.front();
        load_queue.pop_front();
        run_load(lock, e);
        continue;
      }
      upkeep(lock, next_file_check);
      if (stopping || !load_queue.empty() || (!deferred.empty() && drained())) continue;
      core->cv.wait_for(lock, kPollInterval);
    }
  }
};

Registry::Registry(RegistryConfig config, obs::Registry& metrics)
    : impl_(std::make_unique<Impl>(std::move(config), metrics)) {
  impl_->loader = std::thread([this] { impl_->loader_loop(); });
  impl_->dispatcher = std::thread([this] { impl_->dispatcher_loop(); });
}

Registry::~Registry() {
  std::vector<std::function<void()>> calls;
  std::vector<std::unique_ptr<LoadedModel>> gone;
  {
    std::lock_guard lock(impl_->core->mu);
    impl_->stopping = true;
  }
  impl_->core->cv.notify_all();
  impl_->loader.join();
  {
    // Callbacks already handed over run first: their requests still reach live models.
    std::lock_guard lock(impl_->dispatch_mu);
    impl_->dispatch_stop = true;
  }
  impl_->dispatch_cv.notify_all();
  impl_->dispatcher.join();
  {
    std::lock_guard lock(impl_->core->mu);
    for (const auto& e : impl_->entries) {
      auto failed = Impl::fail_waiters(*e, Status::Unavailable("the server is shutting down"));
      calls.insert(calls.end(), failed.begin(), failed.end());
      if (e->model) gone.push_back(std::move(e->model));
    }
    for (auto& [e, done] : impl_->unload_queue) {
      calls.push_back(
          [done = std::move(done)] { done(Status::Unavailable("the server is shutting down")); });
    }
    impl_->unload_queue.clear();
  }
  Impl::run_all(calls);
  gone.clear();
  impl_->release_spare();
}

void Registry::register_kind(std::unique_ptr<ModelKind> kind) {
  std::lock_guard lock(impl_->core->mu);
  std::string name = kind->name();
  impl_->kinds[name] = std::move(kind);
}

Status Registry::add(ModelSpec spec) {
  std::lock_guard lock(impl_->core->mu);
  if (spec.name.empty())
    return Status::InvalidArgument(fmt::format("{}: a model needs a name", spec.path));
  if (impl_->find(spec.name)) {
    return Status::InvalidArgument(
        fmt::format("model '{}' is declared twice (again by {})", spec.name, spec.declared_by));
  }
  // An encoder file declared without a kind (--model, --models-dir, a models file
  // entry that leaves kind out) is an embedding model.
  if (spec.kind == "gguf" && impl_->kinds.count("embedding") && is_encoder_file(spec.path)) {
    spec.kind = "embedding";
  }
  // So is an XGBoost model file (.json, .ubj) declared without a kind an xgboost model.
  if (spec.kind == "gguf" && impl_->kinds.count("xgboost") &&
      (spec.path.ends_with(".json") || spec.path.ends_with(".ubj"))) {
    spec.kind = "xgboost";
  }
  if (spec.kind == "gguf" && impl_->kinds.count("onnx") && spec.path.ends_with(".onnx")) spec.kind = "onnx";
  if (spec.kind == "gguf" && impl_->kinds.count("torchscript") &&
      (spec.path.ends_with(".pt") || spec.path.ends_with(".torchscript"))) {
    spec.kind = "torchscript";
  }
  auto kind = impl_->kinds.find(spec.kind);
  if (kind == impl_->kinds.end()) {
    std::string known;
    for (const auto& [k, _] : impl_->kinds) known += (known.empty() ? "" : ", ") + k;
    return Status::InvalidArgument(
        fmt::format("model '{}': unknown kind '{}' (known: {})", spec.name, spec.kind, known));
  }
  if (Status st = kind->second->validate(spec); !st.ok()) return st;
  auto e = std::make_shared<Lease::Entry>();
  e->kind = kind->second.get();
  e->core = impl_->core;
  e->spec = std::move(spec);
  impl_->entries.push_back(std::move(e));
  return Status::Ok();
}

Status Registry::add_directory(const std::string& dir, const ModelSpec& defaults) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return Status::InvalidArgument(fmt::format("--models-dir {}: not a directory", dir));
  }
  std::vector<std::filesystem::path> files;
  for (const auto& f : std::filesystem::directory_iterator(dir, ec)) {
    if (f.is_regular_file() && f.path().extension() == ".gguf") files.push_back(f.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    ModelSpec spec = defaults;
    spec.name = f.stem().string();
    spec.path = f.string();
    spec.kind = "gguf";
    spec.declared_by = "--models-dir " + dir;
    if (Status st = add(std::move(spec)); !st.ok()) return st;
  }
  return Status::Ok();
}

std::string Registry::default_model() const {
  std::lock_guard lock(impl_->core->mu);
  for (const auto& e : impl_->entries) {
    if (e->kind->generates_text()) return e->spec.name;
  }
  return {};
}

std::string Registry::first_of_kind(std::string_view kind) const {
  std::lock_guard lock(impl_->core->mu);
  for (const auto& e : impl_->entries) {
    if (e->spec.kind == kind) return e->spec.name;
  }
  return {};
}

void Registry::acquire(const std::string& name, std::optional<std::chrono::milliseconds> keep_alive,
                       LeaseCallback done) {
  impl_->acquire(name, keep_alive, std::move(done), /*request=*/true);
}

void Registry::Impl::acquire(const std::string& name,
                             std::optional<std::chrono::milliseconds> keep_alive,
                             LeaseCallback done, bool request) {
  std::unique_lock lock(core->mu);
  auto e = find(name);
  if (!e) {
    std::string known = names();
    lock.unlock();
    return done(Status::NotFound(
        fmt::format("model '{}' does not exist; this server serves: {}", name, known)));
  }
  if (keep_alive) e->keep_alive_override = keep_alive;
  if (stopping) {
    lock.unlock();
    return done(Status::Unavailable("the server is shutting down"));
  }
  if (e->state == ModelState::kReady) {
    auto lease = make_lease(e, true);
    lock.unlock();
    return done(std::move(lease));
  }
  const auto deadline = config.acquire_timeout.count() > 0 ? Clock::now() + config.acquire_timeout
                                                           : Clock::time_point::max();
  e->waiters.push_back({std::move(done), deadline, request});
  if (e->state == ModelState::kAvailable || e->state == ModelState::kFailed) enqueue_load(e);
}

void Registry::load(const std::string& name, std::function<void(Status)> done) {
  impl_->acquire(
      name, std::nullopt,
      [done = std::move(done)](Result<std::shared_ptr<Lease>> lease) {
        done(lease.ok() ? Status::Ok() : lease.status());
      },
      /*request=*/false);
}

void Registry::unload(const std::string& name, std::function<void(Status)> done) {
  std::unique_lock lock(impl_->core->mu);
  auto e = impl_->find(name);
  if (!e) {
    lock.unlock();
    return done(Status::NotFound(fmt::format("model '{}' does not exist", name)));
  }
  if (impl_->stopping) {
    lock.unlock();
    return done(Status::Unavailable("the server is shutting down"));
  }
  if (e->model) e->state = ModelState::kDraining;
  impl_->unload_queue.emplace_back(std::move(e), std::move(done));
  impl_->core->cv.notify_all();
}

std::vector<ModelStatus> Registry::list() const {
  std::vector<ModelStatus> out;
  std::vector<ModelKind*> kinds;
  {
    std::lock_guard lock(impl_->core->mu);
    for (const auto& e : impl_->entries) {
      ModelStatus s;
      s.spec = e->spec;
      s.state = e->state;
      s.bytes = e->model ? e->bytes : 0;
      s.load_ms = e->load_ms;
      s.requests = e->requests;
      s.in_flight = e->in_flight;
      s.loads = e->loads;
      s.last_used = e->last_used_wall;
      s.last_error = e->last_error;
      s.identity = e->identity;
      out.push_back(std::move(s));
      kinds.push_back(e->model ? nullptr : e->kind);
    }
  }
  // Expected bytes of models not loaded: may read the file, so outside the lock.
  for (size_t i = 0; i < out.size(); ++i) {
    if (kinds[i] != nullptr) out[i].bytes = kinds[i]->estimate_bytes(out[i].spec);
  }
  return out;
}

void Registry::for_each_loaded(
    const std::function<void(const std::string&, LoadedModel&)>& visit) const {
  std::lock_guard lock(impl_->core->mu);
  for (const auto& e : impl_->entries) {
    if (e->model) visit(e->spec.name, *e->model);
  }
}

uint64_t Registry::loaded_bytes() const {
  std::lock_guard lock(impl_->core->mu);
  return impl_->loaded_bytes();
}

uint64_t Registry::drop_caches() {
  std::vector<std::shared_ptr<Lease>> leases;
  {
    std::lock_guard lock(impl_->core->mu);
    for (const auto& e : impl_->entries) {
      if (e->state == ModelState::kReady) leases.push_back(impl_->make_lease(e, false));
    }
  }
  uint64_t freed = 0;
  for (const auto& l : leases) freed += l->model().drop_caches();
  return freed;
}

uint64_t Registry::unload_idle() {
  std::vector<std::unique_ptr<LoadedModel>> gone;
  uint64_t freed = 0;
  {
    std::lock_guard lock(impl_->core->mu);
    for (const auto& e : impl_->entries) {
      if (e->state != ModelState::kReady || e->in_flight > 0 || e->spec.pin) continue;
      freed += e->bytes;
      gone.push_back(impl_->take_model(*e, "memory_pressure"));
    }
  }
  gone.clear();
  return freed + impl_->release_spare();
}

}  // namespace infera::models
