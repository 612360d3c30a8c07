#include "api/json_body.h"

#include <fmt/format.h>

namespace infera::api {

std::optional<nlohmann::json> parse_json_object(const http::Request& req,
                                                http::Response& error) {
  if (req.body.empty()) {
    error = http::Response::error(400, "request body is empty; expected a JSON object",
                                  "invalid_request_error", "invalid_json");
    return std::nullopt;
  }
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(req.body);
  } catch (const nlohmann::json::parse_error& e) {
    error = http::Response::error(
        400, fmt::format("request body is not valid JSON: malformed at byte {}", e.byte),
        "invalid_request_error", "invalid_json");
    return std::nullopt;
  }
  if (!doc.is_object()) {
    error = http::Response::error(400, "request body must be a JSON object",
                                  "invalid_request_error", "invalid_json");
    return std::nullopt;
  }
  return doc;
}

}  // namespace infera::api
