// Stored form of an entry in L2 and L3: a header with the absolute expiry and a checksum
// over key, expiry and payload, so that a damaged or misplaced entry is detected (a miss),
// never returned as a wrong answer.
//
//   byte 0      'I' (magic)        byte 1   version (1)
//   bytes 2-9   expires, Unix ms, little-endian
//   bytes 10-17 hash64(payload, seed = hash64(key) ^ expires), little-endian
//   bytes 18-   payload
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace infera::cache {

struct StoredValue {
  std::string value;
  std::int64_t expires_unix_ms = 0;
};

std::string encode_entry(std::string_view key, std::string_view payload,
                         std::int64_t expires_unix_ms);
// kCorrupt when the bytes are not an entry written for this key.
Result<StoredValue> decode_entry(std::string_view key, std::string_view bytes);

std::int64_t now_unix_ms();

}  // namespace infera::cache
