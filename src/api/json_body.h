// Parsing and validation helpers shared by the JSON endpoints.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>

#include "http/server.h"

namespace infera::api {

// Parses the request body as a JSON object. On failure returns the 400 response to
// send (OpenAI-shaped, saying where the JSON is broken) in `error`.
std::optional<nlohmann::json> parse_json_object(const http::Request& req,
                                                http::Response& error);

}  // namespace infera::api
