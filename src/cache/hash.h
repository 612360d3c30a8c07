// 64-bit non-cryptographic hash for cache keys, sketch indexes and entry checksums.
// Stable across runs and processes on little-endian machines (x86-64, AArch64), which is
// what lets several instances share Redis keys. Not for adversarial collision resistance.
#pragma once

#include <cstdint>
#include <string_view>

namespace infera::cache {

std::uint64_t hash64(std::string_view data, std::uint64_t seed = 0);

// Finalizer that spreads every input bit over the output (MurmurHash3 fmix64).
inline std::uint64_t mix64(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

}  // namespace infera::cache
