// Adapts the embedded engine (engine/engine.h) to the scheduler's ModelRunner port.
#pragma once

#include <memory>

#include "sched/model_runner.h"

namespace infera::engine {
class Model;
}

namespace infera::sched {

// REQUIRES: `model` outlives the runner. `n_ctx` bounds positions per sequence;
// `prefix_cache` false never shares prompt blocks between sequences.
std::unique_ptr<ModelRunner> make_engine_runner(engine::Model& model, int32_t n_ctx,
                                                bool prefix_cache = true);

}  // namespace infera::sched
