// Adapts the embedded engine (engine/engine.h) to the scheduler's ModelRunner port.
#pragma once

#include <memory>

#include "sched/model_runner.h"

namespace infera::engine {
class Model;
}

namespace infera::sched {

// REQUIRES: `model` outlives the runner. `n_ctx` bounds positions per sequence.
std::unique_ptr<ModelRunner> make_engine_runner(engine::Model& model, int32_t n_ctx);

}  // namespace infera::sched
