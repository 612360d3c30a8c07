// The registry: named models of several kinds, loaded lazily on first request,
// warmed up before they take traffic, kept under a count and byte budget, unloaded
// when idle past their keep-alive, reloaded when their file changes.
//
// Loading past the budget evicts the unpinned loaded model with the least
// (recent request rate x measured reload time); a model with requests in flight
// is drained first (new requests for it wait for its reload), never cut; while it
// drains, the loader goes on with other models' loads and unloads.
//
// Requests hold a Lease while they use a model; a model is unloaded only when no
// lease is held. Loads, unloads and the idle/file checks run on the registry's own
// loader thread ("model loader"), so a lease released on an engine loop never
// destroys that loop from inside it; the requests a load served continue on a
// dispatcher thread ("model dispatcher"), so they never hold up the next load.
//
// Threads: every public method may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "models/model.h"

namespace infera::obs {
class Registry;
}

namespace infera::models {

struct RegistryConfig {
  int max_loaded = 2;  // MODEL_CACHE_SIZE: most models loaded at once
  uint64_t memory_budget_bytes =
      0;                // --models-memory-budget: bytes of all loaded models (0 = none)
  // MODEL_WARMUP_ENABLED: one pass over the weights right after a load, unless a request
  // is waiting for the load (its own pass touches them, and it would wait for both).
  bool warm_up = true;
  // keep_alive of models that do not set one (--keep-alive): -1 never unload.
  std::chrono::milliseconds default_keep_alive{-1};
  // Longest a request waits for its model to become ready (load, or a victim's
  // drain) before it gets Unavailable; 0 = no limit. --request-timeout.
  std::chrono::milliseconds acquire_timeout{0};
  // How often loaded models' files are checked for changes (a change is acted on when
  // two checks in a row see the same new identity, so a file being copied is not loaded).
  std::chrono::milliseconds file_check_interval{2000};
  // Asked before every load; returns a reason to refuse it (memory pressure: the
  // waiting requests get ResourceExhausted), or nullopt to go ahead. May be empty.
  std::function<std::optional<std::string>()> load_veto;
};

enum class ModelState { kAvailable, kLoading, kReady, kDraining, kFailed };
const char* to_string(ModelState state);

struct ModelStatus {
  ModelSpec spec;
  ModelState state = ModelState::kAvailable;
  uint64_t bytes = 0;     // held now (loaded) or expected (not loaded)
  double load_ms = 0;     // last load including warm-up
  int64_t requests = 0;   // leases handed out since start
  int64_t in_flight = 0;  // leases held now
  int64_t loads = 0;
  std::optional<std::chrono::system_clock::time_point> last_used;
  std::string last_error;  // of the last failed load
  std::string identity;    // of the loaded file
};

class Registry;

// Keeps one model loaded while held. Destroy (release) it when the request ends.
class Lease {
 public:
  ~Lease();
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  LoadedModel& model() const { return *model_; }
  const ModelSpec& spec() const { return *spec_; }
  const std::string& identity() const { return *identity_; }

 private:
  friend class Registry;
  struct Entry;
  Lease(std::shared_ptr<Entry> entry, LoadedModel* model, const ModelSpec* spec,
        const std::string* identity, bool counts_as_use);
  std::shared_ptr<Entry> entry_;
  LoadedModel* model_;
  const ModelSpec* spec_;
  const std::string* identity_;
  bool counts_as_use_;  // false for the registry's own (memory guard) leases
};

using LeaseCallback = std::function<void(Result<std::shared_ptr<Lease>>)>;

class Registry {
 public:
  Registry(RegistryConfig config, obs::Registry& metrics);
  ~Registry();  // stops the loader thread, fails waiting requests, unloads everything
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  void register_kind(std::unique_ptr<ModelKind> kind);
  // Declares a model. InvalidArgument for a duplicate name, an unknown kind or a
  // declaration its kind rejects (e.g. a missing file).
  Status add(ModelSpec spec);
  // Declares every `.gguf` file of `dir` (name: file name without .gguf).
  Status add_directory(const std::string& dir, const ModelSpec& defaults);

  // The model generation requests without a `model` field get: the first declared
  // whose kind generates text; empty when none does.
  std::string default_model() const;
  // The first declared model of `kind` (e.g. "embedding"); empty when none.
  std::string first_of_kind(std::string_view kind) const;

  // Hands `done` a lease on `name`, loading it first if needed; concurrent first
  // requests wait for one load. `keep_alive` (Ollama's per-request field) replaces
  // the model's idle time from now on. `done` runs on the calling thread when the
  // model is ready, else on the dispatcher thread. Errors: NotFound (unknown model, 404),
  // ResourceExhausted (memory pressure: 503), Unavailable (cannot fit the budget,
  // load failed: 503).
  void acquire(const std::string& name, std::optional<std::chrono::milliseconds> keep_alive,
               LeaseCallback done);
  // Loads `name` (as acquire, holding no lease afterwards).
  void load(const std::string& name, std::function<void(Status)> done);
  // Unloads `name` once its requests have finished (pinned models too: an explicit
  // request). NotFound for an unknown name.
  void unload(const std::string& name, std::function<void(Status)> done);

  std::vector<ModelStatus> list() const;
  // Visits every loaded model (ready or draining) under the registry's lock: `visit`
  // must be quick and must not call back into the registry.
  void for_each_loaded(
      const std::function<void(const std::string& name, LoadedModel&)>& visit) const;
  uint64_t loaded_bytes() const;

  // Memory guard actions. drop_caches: every loaded model's rebuildable caches.
  // unload_idle: unloads every unpinned model without requests; returns bytes freed.
  uint64_t drop_caches();
  uint64_t unload_idle();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace infera::models
