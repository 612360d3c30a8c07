#include "cache/entry_codec.h"

#include <chrono>

#include "cache/hash.h"

namespace infera::cache {

namespace {

constexpr std::size_t kHeaderBytes = 18;
constexpr char kMagic = 'I';
constexpr char kVersion = 1;

void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::uint64_t get_u64(std::string_view in, std::size_t at) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[at + i])) << (8 * i);
  }
  return v;
}

std::uint64_t checksum(std::string_view key, std::string_view payload, std::int64_t expires) {
  return hash64(payload, hash64(key) ^ static_cast<std::uint64_t>(expires));
}

}  // namespace

std::string encode_entry(std::string_view key, std::string_view payload,
                         std::int64_t expires_unix_ms) {
  std::string out;
  out.reserve(kHeaderBytes + payload.size());
  out.push_back(kMagic);
  out.push_back(kVersion);
  put_u64(out, static_cast<std::uint64_t>(expires_unix_ms));
  put_u64(out, checksum(key, payload, expires_unix_ms));
  out.append(payload);
  return out;
}

Result<StoredValue> decode_entry(std::string_view key, std::string_view bytes) {
  if (bytes.size() < kHeaderBytes || bytes[0] != kMagic || bytes[1] != kVersion) {
    return Status::Corrupt("cache entry: bad header");
  }
  const auto expires = static_cast<std::int64_t>(get_u64(bytes, 2));
  const std::string_view payload = bytes.substr(kHeaderBytes);
  if (get_u64(bytes, 10) != checksum(key, payload, expires)) {
    return Status::Corrupt("cache entry: checksum mismatch");
  }
  return StoredValue{std::string(payload), expires};
}

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace infera::cache
