// libFuzzer target for the cache's value decoders: the stored-entry codec of L2
// and L3 (cache/entry_codec.h) and, inside it, the generation routes' answer
// encoding (api/answer_sinks.h). Input: byte 0 holds the key length (low 6 bits)
// and a flag (high bit) asking the target to write a correct header and checksum
// over the rest, so that the payload decoder is reached too; then the key; then
// the stored bytes. Decoding must fail cleanly or succeed, and a success must
// re-encode to exactly the bytes it came from. Build and run: docs/FUZZING.md.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "api/answer_sinks.h"
#include "cache/entry_codec.h"
#include "require.h"

namespace {


constexpr size_t kHeaderBytes = 18;  // entry_codec.h's layout

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t key_len = std::min<size_t>(data[0] & 0x3F, size - 1);
  const bool fix_checksum = (data[0] & 0x80) != 0;
  const std::string key(reinterpret_cast<const char*>(data + 1), key_len);
  std::string bytes(reinterpret_cast<const char*>(data + 1 + key_len), size - 1 - key_len);

  if (fix_checksum && bytes.size() >= kHeaderBytes) {
    int64_t expires = 0;
    for (int i = 0; i < 8; ++i) {
      expires |= static_cast<int64_t>(static_cast<uint8_t>(bytes[2 + i])) << (8 * i);
    }
    const std::string header =
        infera::cache::encode_entry(key, std::string_view(bytes).substr(kHeaderBytes), expires)
            .substr(0, kHeaderBytes);
    bytes.replace(0, kHeaderBytes, header);
  }

  const auto entry = infera::cache::decode_entry(key, bytes);
  if (!entry.ok()) {
    require(entry.status().code() == infera::StatusCode::kCorrupt);
    return 0;
  }
  require(infera::cache::encode_entry(key, entry->value, entry->expires_unix_ms) == bytes);

  const auto outcome = infera::api::decode(entry->value);
  if (outcome) require(infera::api::encode(*outcome) == entry->value);
  return 0;
}
