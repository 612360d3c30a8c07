#include "api/json_body.h"

#include <array>
#include <charconv>
#include <cmath>

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
  } catch (const nlohmann::json::out_of_range&) {
    // A number past the range of a double (1e400) is out_of_range, not parse_error.
    error = http::Response::error(400, "request body is not valid JSON: a number is out of range",
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

namespace {
constexpr auto kNeedsEscape = [] {
  std::array<bool, 256> table{};
  for (int c = 0; c < 0x20; ++c) table[c] = true;
  table['"'] = table['\\'] = true;
  return table;
}();
}  // namespace

void append_json_string(std::string& out, std::string_view text) {
  out.reserve(out.size() + text.size() + 2);
  out.push_back('"');
  size_t run = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (!kNeedsEscape[c]) continue;
    out.append(text.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default: {
        static constexpr char kHex[] = "0123456789abcdef";
        const char esc[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
        out.append(esc, 6);
      }
    }
  }
  out.append(text.data() + run, text.size() - run);
  out.push_back('"');
}

void append_json_floats(std::string& out, std::span<const float> values) {
  out.reserve(out.size() + values.size() * 12 + 2);
  out.push_back('[');
  char buf[32];
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out.push_back(',');
    if (!std::isfinite(values[i])) {
      out += "null";
      continue;
    }
    const auto r = std::to_chars(buf, buf + sizeof buf, values[i]);
    out.append(buf, r.ptr);
  }
  out.push_back(']');
}

http::Response model_error_response(const Status& status) {
  if (status.code() == StatusCode::kNotFound) {
    return http::Response::error(404, status.message(), "invalid_request_error", "model_not_found");
  }
  const bool pressure = status.code() == StatusCode::kResourceExhausted;
  http::Response r = http::Response::error(503, status.message(), "server_error",
                                           pressure ? "memory_pressure" : "model_unavailable");
  r.headers.emplace_back("Retry-After", pressure ? "5" : "1");
  return r;
}

std::optional<std::string> decode_base64(std::string_view text) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '+' || c == '-') v = 62;
    else if (c == '/' || c == '_') v = 63;
    else if (c == '=' || c == '\n' || c == '\r' || c == ' ') continue;
    else return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

}  // namespace infera::api
