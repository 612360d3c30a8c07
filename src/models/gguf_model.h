// Kind "gguf": a GGUF decoder model served by the embedded engine with its own
// continuous-batching scheduler (one engine loop per loaded model).
#pragma once

#include <memory>

#include "engine/engine.h"
#include "models/model.h"
#include "sched/scheduler.h"

namespace infera::obs {
class Registry;
}

namespace infera::models {

struct GgufKindConfig {
  engine::ModelOptions engine;       // threads, ctx_tokens (default), mmap, batch size
  sched::SchedulerConfig scheduler;  // max_seqs (default), queue, batching
  bool prefix_cache = true;          // --prefix-cache
};

// REQUIRES: `metrics` outlives the kind and every model it loads.
std::unique_ptr<ModelKind> make_gguf_kind(GgufKindConfig config, obs::Registry& metrics);

}  // namespace infera::models
