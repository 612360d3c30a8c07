#include "cache/key.h"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cache/hash.h"

namespace infera::cache {

namespace {

using nlohmann::json;

constexpr std::string_view kKeyVersion = "infera-cache-v1";

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string collapse_whitespace(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool pending_space = false;
  for (char c : text) {
    if (is_space(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(c);
  }
  return out;
}

// Rewrites a parsed value into its canonical shape (objects are std::map: sorted keys).
void canonicalize(json& value, bool collapse_strings) {
  if (value.is_object() || value.is_array()) {
    for (auto& child : value) canonicalize(child, collapse_strings);
  } else if (value.is_string() && collapse_strings) {
    value = collapse_whitespace(value.get_ref<const std::string&>());
  } else if (value.is_number_float()) {
    const double d = value.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) {
      value = static_cast<std::int64_t>(d);
    }
  }
}

}  // namespace

Result<CachePolicy> parse_cache_policy(std::string_view text) {
  if (text == "deterministic") return CachePolicy::kDeterministic;
  if (text == "all") return CachePolicy::kAll;
  if (text == "off") return CachePolicy::kOff;
  return Status::InvalidArgument("cache policy '" + std::string(text) +
                                 "' is not one of: deterministic, all, off");
}

bool is_cacheable(CachePolicy policy, const Sampling& sampling) {
  if (sampling.client_no_cache) return false;
  switch (policy) {
    case CachePolicy::kOff:
      return false;
    case CachePolicy::kAll:
      return true;
    case CachePolicy::kDeterministic:
      return sampling.temperature <= 0.0 || sampling.top_k == 1 || sampling.seed.has_value();
  }
  return false;
}

Result<std::string> canonical_form(const KeyRequest& request) {
  json input = json::parse(request.input_json, nullptr, /*allow_exceptions=*/false);
  if (input.is_discarded()) {
    return Status::InvalidArgument("cache key: input is not valid JSON");
  }
  json params = request.params_json.empty()
                    ? json::object()
                    : json::parse(request.params_json, nullptr, /*allow_exceptions=*/false);
  if (params.is_discarded() || !params.is_object()) {
    return Status::InvalidArgument("cache key: parameters are not a JSON object");
  }
  canonicalize(input, /*collapse_strings=*/true);
  canonicalize(params, /*collapse_strings=*/false);
  json form = json::array({std::string(kKeyVersion), std::string(request.model_name),
                           std::string(request.model_identity), std::string(request.endpoint),
                           std::move(input), std::move(params)});
  return form.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<std::string> make_key(const KeyRequest& request) {
  Result<std::string> form = canonical_form(request);
  if (!form.ok()) return form.status();
  const std::uint64_t a = hash64(*form, 0x696e66657261ULL);
  const std::uint64_t b = hash64(*form, a ^ 0x6b6579ULL);
  char hex[36];
  std::snprintf(hex, sizeof(hex), "v1-%016llx%016llx", static_cast<unsigned long long>(a),
                static_cast<unsigned long long>(b));
  return std::string(hex);
}

}  // namespace infera::cache
