// Parsing and validation helpers shared by the JSON endpoints.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <span>
#include <string_view>

#include "http/server.h"

namespace infera::api {

// Parses the request body as a JSON object. On failure returns the 400 response to
// send (OpenAI-shaped, saying where the JSON is broken) in `error`.
std::optional<nlohmann::json> parse_json_object(const http::Request& req,
                                                http::Response& error);

// Appends `text` as a JSON string literal, quotes included: the same bytes
// nlohmann::json(text).dump() writes for valid UTF-8, without building a json value
// (the cache-hit path writes answers with it). Bytes >= 0x80 pass through unchanged.
void append_json_string(std::string& out, std::string_view text);

// Appends `values` as a JSON array, each in the shortest form that reads back as the
// same float; NaN and infinities as null (JSON has neither).
void append_json_floats(std::string& out, std::span<const float> values);

// Standard or URL-safe base64 (padding and line breaks ignored); nullopt when malformed.
std::optional<std::string> decode_base64(std::string_view text);

// The answer to a failed model lookup or load (models::Registry's statuses):
// NotFound -> 404 model_not_found, ResourceExhausted -> 503 memory_pressure,
// anything else -> 503 model_unavailable, both 503s with Retry-After.
http::Response model_error_response(const Status& status);

}  // namespace infera::api
