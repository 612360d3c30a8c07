// Cache keys: canonical form of a request and its stable 128-bit hash (cache.h declares
// make_key, is_cacheable and parse_cache_policy; this header adds the canonical form so
// tests and logs can see what was hashed). Pure functions, safe from any thread.
#pragma once

#include <string>

#include "cache/cache.h"

namespace infera::cache {

// A JSON array text [version, model, identity, endpoint, input, params] with object keys
// sorted, no insignificant whitespace, integral floats written as integers (1.0 -> 1) and
// whitespace runs inside input strings collapsed to one space (trimmed at both ends).
// kInvalidArgument when input_json or params_json is not JSON (params must be an object).
Result<std::string> canonical_form(const KeyRequest& request);

}  // namespace infera::cache
