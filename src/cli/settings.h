// Copies the effective configuration into each subsystem's own Config struct.
#pragma once

#include "core/config.h"
#include "core/log.h"
#include "http/server.h"

namespace infera::cli {

http::ServerConfig server_config_from(const core::Config& config);
log::LogConfig log_config_from(const core::Config& config);

}  // namespace infera::cli
