// Copies the effective configuration into each subsystem's own Config struct.
#pragma once

#include <filesystem>

#include "api/generation.h"
#include "auth/auth.h"
#include "cli/operations.h"
#include "cache/cache.h"
#include "core/config.h"
#include "core/cpu_topology.h"
#include "engine/engine.h"
#include "sched/scheduler.h"
#include "core/log.h"
#include "http/server.h"
#include "models/embedding_model.h"
#include "models/gguf_model.h"
#include "models/registry.h"
#include "predict/predict.h"

namespace infera::cli {

http::ServerConfig server_config_from(const core::Config& config);
auth::AccessOptions access_options_from(const core::Config& config);
log::LogConfig log_config_from(const core::Config& config);
// --max-workers (alias --threads) and --cpu-affinity on this machine's CPUs; fails for
// a CPU list naming CPUs the process may not use.
Result<core::CpuPlacement> cpu_placement_from(const core::Config& config);
engine::ModelOptions model_options_from(const core::Config& config);
sched::SchedulerConfig scheduler_config_from(const core::Config& config);
api::GenerationConfig generation_config_from(const core::Config& config);
cache::Config cache_config_from(const core::Config& config);
models::GgufKindConfig gguf_kind_config_from(const core::Config& config);
models::EmbeddingKindConfig embedding_kind_config_from(const core::Config& config);
predict::PredictKindConfig predict_kind_config_from(const core::Config& config);
// --data-dir, else infera-data beside --cache-dir, else $XDG_STATE_HOME/infera.
std::filesystem::path data_dir_from(const core::Config& config);
// --packed-cache-dir, else packed/ in data_dir_from when --data-dir or --cache-dir is
// set, else $XDG_CACHE_HOME/infera/packed or ~/.cache/infera/packed; empty (off) with
// --no-packed-cache or when none of these can be named.
std::string packed_cache_dir_from(const core::Config& config);
Result<models::RegistryConfig> registry_config_from(const core::Config& config);
Result<OperationsConfig> operations_config_from(const core::Config& config);

}  // namespace infera::cli
