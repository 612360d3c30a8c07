// Cache keys (KeyBuilder), the cacheability policy and its parsing (cache.h).
#include <charconv>
#include <cmath>
#include <cstdio>

#include "cache/cache.h"
#include "cache/hash.h"

namespace infera::cache {

namespace {

// Bumped whenever the canonical form or the value format changes, so entries written
// by an older build (in RocksDB or a shared Redis) are never read as this build's.
constexpr std::string_view kKeyVersion = "infera-cache-v2";

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

void append_collapsed(std::string& out, std::string_view text) {
  bool pending_space = false;
  bool any = false;
  for (char c : text) {
    if (is_space(c)) {
      pending_space = any;
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    any = true;
    out.push_back(c);
  }
}

}  // namespace

KeyBuilder::KeyBuilder(std::string_view model_name, std::string_view model_identity,
                       std::string_view endpoint) {
  form_.reserve(256);
  field('V', {}, kKeyVersion);
  field('M', {}, model_name);
  field('F', {}, model_identity);
  field('E', {}, endpoint);
}

void KeyBuilder::field(char tag, std::string_view name, std::string_view value) {
  char head[48];
  head[0] = tag;
  char* end = std::to_chars(head + 1, head + sizeof(head), name.size()).ptr;
  *end++ = ':';
  form_.append(head, end);
  form_.append(name);
  end = std::to_chars(head, head + sizeof(head), value.size()).ptr;
  *end++ = ':';
  form_.append(head, end);
  form_.append(value);
}

KeyBuilder& KeyBuilder::input(std::string_view text) {
  std::string collapsed;
  collapsed.reserve(text.size());
  append_collapsed(collapsed, text);
  field('I', {}, collapsed);
  return *this;
}

KeyBuilder& KeyBuilder::param(std::string_view name, std::string_view value) {
  field('S', name, value);
  return *this;
}

KeyBuilder& KeyBuilder::param(std::string_view name, double value) {
  if (std::isfinite(value) && value == std::floor(value) && std::fabs(value) < 9.0e15) {
    return param(name, static_cast<std::int64_t>(value));
  }
  char text[40];
  int n = std::snprintf(text, sizeof(text), "%.17g", value);
  field('N', name, std::string_view(text, static_cast<size_t>(n)));
  return *this;
}

KeyBuilder& KeyBuilder::param(std::string_view name, std::int64_t value) {
  char text[32];
  char* end = std::to_chars(text, text + sizeof(text), value).ptr;
  field('N', name, std::string_view(text, static_cast<size_t>(end - text)));
  return *this;
}

KeyBuilder& KeyBuilder::absent(std::string_view name) {
  field('A', name, {});
  return *this;
}

std::string KeyBuilder::key() const {
  const std::uint64_t a = hash64(form_, 0x696e66657261ULL);
  const std::uint64_t b = hash64(form_, a ^ 0x6b6579ULL);
  char hex[40];
  std::snprintf(hex, sizeof(hex), "v2-%016llx%016llx", static_cast<unsigned long long>(a),
                static_cast<unsigned long long>(b));
  return std::string(hex);
}

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

}  // namespace infera::cache
