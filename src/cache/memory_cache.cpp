#include "cache/memory_cache.h"

#include <lz4.h>

#include <algorithm>
#include <mutex>
#include <unordered_map>

#include "cache/hash.h"
#include "cache/tinylfu.h"

namespace infera::cache {

namespace {

using Clock = std::chrono::steady_clock;

struct Entry {
  std::string key;
  std::string stored;  // LZ4 block when compressed, else the value itself
  std::size_t raw_size = 0;
  bool compressed = false;
  Clock::time_point expires_at;
  std::size_t charge() const {
    return stored.size() + key.size() + MemoryCache::kEntryOverheadBytes;
  }
};

// Returns the LZ4 block for value, or nothing when it would not be smaller.
std::optional<std::string> compress(std::string_view value) {
  if (value.size() > static_cast<std::size_t>(LZ4_MAX_INPUT_SIZE)) return std::nullopt;
  std::string out(static_cast<std::size_t>(LZ4_compressBound(static_cast<int>(value.size()))),
                  '\0');
  const int n = LZ4_compress_default(value.data(), out.data(), static_cast<int>(value.size()),
                                     static_cast<int>(out.size()));
  if (n <= 0 || static_cast<std::size_t>(n) >= value.size()) return std::nullopt;
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::optional<std::string> decompress(std::string_view block, std::size_t raw_size) {
  std::string out(raw_size, '\0');
  const int n = LZ4_decompress_safe(block.data(), out.data(), static_cast<int>(block.size()),
                                    static_cast<int>(raw_size));
  if (n < 0 || static_cast<std::size_t>(n) != raw_size) return std::nullopt;
  return out;
}

}  // namespace

struct MemoryCache::Shard {
  Shard(std::size_t max_bytes, std::size_t max_entries) : policy(max_bytes, max_entries) {}

  // REQUIRES: mu held.
  void drop(std::uint64_t id) {
    auto found = entries.find(id);
    if (found == entries.end()) return;
    stored_bytes -= found->second.stored.size();
    raw_bytes -= found->second.raw_size;
    if (found->second.compressed) --compressed_entries;
    entries.erase(found);
  }

  std::mutex mu;
  WTinyLfuPolicy policy;
  std::unordered_map<std::uint64_t, Entry> entries;
  std::uint64_t hits = 0, misses = 0, evictions = 0, expired = 0, corrupt = 0;
  std::uint64_t raw_bytes = 0, stored_bytes = 0, compressed_entries = 0;
};

MemoryCache::MemoryCache(const MemoryCacheOptions& options) : options_(options) {
  const std::size_t n = std::max<std::size_t>(1, options.shards);
  options_.shards = n;
  for (std::size_t i = 0; i < n; ++i) {
    shards_.push_back(std::make_unique<Shard>(options.max_bytes / n,
                                              std::max<std::size_t>(1, options.max_entries / n)));
  }
}

MemoryCache::~MemoryCache() = default;

MemoryCache::Shard& MemoryCache::shard_for(std::uint64_t id) {
  return *shards_[(id >> 48) % shards_.size()];
}

std::optional<std::string> MemoryCache::get(std::string_view key) {
  const std::uint64_t id = hash64(key);
  Shard& shard = shard_for(id);
  std::string stored;
  std::size_t raw_size = 0;
  bool compressed = false;
  {
    std::lock_guard lock(shard.mu);
    auto found = shard.entries.find(id);
    if (found == shard.entries.end() || found->second.key != key) {
      ++shard.misses;
      shard.policy.on_miss(id);
      return std::nullopt;
    }
    if (found->second.expires_at <= Clock::now()) {
      ++shard.misses;
      ++shard.expired;
      shard.policy.on_erase(id);
      shard.drop(id);
      shard.policy.on_miss(id);
      return std::nullopt;
    }
    ++shard.hits;
    shard.policy.on_access(id);
    stored = found->second.stored;
    raw_size = found->second.raw_size;
    compressed = found->second.compressed;
  }
  if (!compressed) return stored;
  std::optional<std::string> value = decompress(stored, raw_size);
  if (!value) {
    std::lock_guard lock(shard.mu);
    ++shard.corrupt;
    shard.policy.on_erase(id);
    shard.drop(id);
  }
  return value;
}

std::optional<std::string> MemoryCache::peek(std::string_view key) {
  const std::uint64_t id = hash64(key);
  Shard& shard = shard_for(id);
  Entry copy;
  {
    std::lock_guard lock(shard.mu);
    auto found = shard.entries.find(id);
    if (found == shard.entries.end() || found->second.key != key ||
        found->second.expires_at <= Clock::now()) {
      return std::nullopt;
    }
    copy.stored = found->second.stored;
    copy.raw_size = found->second.raw_size;
    copy.compressed = found->second.compressed;
  }
  if (!copy.compressed) return std::move(copy.stored);
  return decompress(copy.stored, copy.raw_size);
}

void MemoryCache::put(std::string_view key, std::string_view value, std::chrono::milliseconds ttl) {
  Entry entry;
  entry.key = std::string(key);
  entry.raw_size = value.size();
  if (value.size() >= options_.compress_threshold_bytes) {
    if (std::optional<std::string> block = compress(value)) {
      entry.stored = std::move(*block);
      entry.compressed = true;
    }
  }
  if (!entry.compressed) entry.stored = std::string(value);
  entry.expires_at = Clock::now() + (ttl.count() > 0 ? ttl : options_.default_ttl);

  const std::uint64_t id = hash64(key);
  Shard& shard = shard_for(id);
  std::vector<std::uint64_t> evicted;
  std::lock_guard lock(shard.mu);
  shard.policy.on_erase(id);
  shard.drop(id);
  shard.policy.on_insert(id, entry.charge(), &evicted);
  shard.raw_bytes += entry.raw_size;
  shard.stored_bytes += entry.stored.size();
  if (entry.compressed) ++shard.compressed_entries;
  shard.entries.emplace(id, std::move(entry));
  for (std::uint64_t gone : evicted) {
    if (gone != id) ++shard.evictions;
    shard.drop(gone);
  }
}

bool MemoryCache::erase(std::string_view key) {
  const std::uint64_t id = hash64(key);
  Shard& shard = shard_for(id);
  std::lock_guard lock(shard.mu);
  auto found = shard.entries.find(id);
  if (found == shard.entries.end() || found->second.key != key) return false;
  shard.policy.on_erase(id);
  shard.drop(id);
  return true;
}

void MemoryCache::clear() {
  for (auto& shard : shards_) {
    std::lock_guard lock(shard->mu);
    for (const auto& [id, entry] : shard->entries) shard->policy.on_erase(id);
    shard->entries.clear();
    shard->raw_bytes = shard->stored_bytes = shard->compressed_entries = 0;
  }
}

std::size_t MemoryCache::evict_expired() {
  std::size_t dropped = 0;
  for (auto& shard : shards_) {
    std::vector<std::uint64_t> gone;
    std::lock_guard lock(shard->mu);
    const Clock::time_point now = Clock::now();
    for (const auto& [id, entry] : shard->entries) {
      if (entry.expires_at <= now) gone.push_back(id);
    }
    for (std::uint64_t id : gone) {
      shard->policy.on_erase(id);
      shard->drop(id);
    }
    shard->expired += gone.size();
    dropped += gone.size();
  }
  return dropped;
}

std::uint64_t MemoryCache::shrink(double keep_fraction) {
  keep_fraction = std::clamp(keep_fraction, 0.0, 1.0);
  std::uint64_t freed = 0;
  for (auto& shard : shards_) {
    std::vector<std::uint64_t> gone;
    std::lock_guard lock(shard->mu);
    const auto target = static_cast<std::size_t>(static_cast<double>(shard->policy.bytes()) * keep_fraction);
    shard->policy.shed(target, &gone);
    const std::uint64_t before = shard->stored_bytes;
    for (std::uint64_t id : gone) shard->drop(id);
    freed += before - shard->stored_bytes;
    shard->evictions += gone.size();
  }
  return freed;
}

MemoryCacheStats MemoryCache::stats() const {
  MemoryCacheStats s;
  s.tier.enabled = true;
  for (const auto& shard : shards_) {
    std::lock_guard lock(shard->mu);
    s.tier.hits += shard->hits;
    s.tier.misses += shard->misses;
    s.tier.entries += shard->entries.size();
    s.tier.bytes += shard->policy.bytes();
    s.tier.evictions += shard->evictions;
    s.tier.expired += shard->expired;
    s.tier.corrupt += shard->corrupt;
    s.raw_bytes += shard->raw_bytes;
    s.stored_bytes += shard->stored_bytes;
    s.compressed_entries += shard->compressed_entries;
  }
  return s;
}

}  // namespace infera::cache
