#include "cache/hash.h"

#include <cstring>

namespace infera::cache {

namespace {
constexpr std::uint64_t kGolden = 0x9e3779b97f4a7c15ULL;
constexpr std::uint64_t rotl(std::uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
}  // namespace

std::uint64_t hash64(std::string_view data, std::uint64_t seed) {
  const char* p = data.data();
  const std::size_t n = data.size();
  std::uint64_t h = mix64(seed ^ (static_cast<std::uint64_t>(n) * kGolden));
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = rotl(h ^ mix64(w + kGolden), 27) * kGolden;
  }
  std::uint64_t tail = 0;
  if (n > i) std::memcpy(&tail, p + i, n - i);
  h ^= mix64(tail ^ (static_cast<std::uint64_t>(n - i) << 56));
  return mix64(h);
}

}  // namespace infera::cache
