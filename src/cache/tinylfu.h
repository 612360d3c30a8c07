// W-TinyLFU admission and eviction for one L1 shard (Einziger, Friedman, Manes, "TinyLFU:
// A Highly Efficient Cache Admission Policy", ACM ToS 2017). New entries enter a small
// LRU window (1% of the budget); an entry leaving the window is admitted to the segmented
// main LRU (probation 20% / protected 80%) only if the frequency sketch estimates it more
// popular than the entry it would push out. One-hit wonders therefore never displace the
// hot set, which is why it beats LRU on skewed (Zipf) traffic.
//
// When a shard's 1% window is smaller than an entry (tiny budgets), the window is empty
// and a new entry must beat main's victim at once: once main is full a first-time answer is
// usually not kept in L1 (L2/L3 are still filled); its second request, now more frequent,
// usually gets it in. Forcing a one-entry window instead cost 2.4 points at 1% in
// bench_cache_hitrate (16 shards).
//
// Budgets are in bytes and entries; both hold at all times. Entries are identified by a
// 64-bit id (the key hash). Not thread-safe: the owning shard serializes calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

namespace infera::cache {

// Count-min sketch of 4 rows of saturating 4-bit-range counters (0..15). Every
// 10 x expected_entries records, all counters are halved, so old popularity fades.
class FrequencySketch {
 public:
  explicit FrequencySketch(std::size_t expected_entries);
  void record(std::uint64_t id);
  std::uint32_t estimate(std::uint64_t id) const;

 private:
  std::size_t index(std::uint64_t id, int row) const;
  void age();

  std::vector<std::uint8_t> counters_;  // 4 rows x width_
  std::size_t width_mask_;
  std::size_t sample_size_;
  std::size_t records_ = 0;
};

class WTinyLfuPolicy {
 public:
  WTinyLfuPolicy(std::size_t max_bytes, std::size_t max_entries);

  void on_access(std::uint64_t id);  // a hit on a resident entry
  void on_miss(std::uint64_t id);    // a lookup that found nothing (feeds the sketch)
  // Adds a new entry (id must not be resident). Appends every id that must now leave,
  // possibly id itself when it is rejected or larger than the whole budget.
  void on_insert(std::uint64_t id, std::size_t bytes, std::vector<std::uint64_t>* evicted);
  void on_erase(std::uint64_t id);  // removal decided by the owner (TTL, overwrite)
  // Evicts the coldest entries (probation's least recent, then the window's, then
  // protected's) until at most `target_bytes` remain; appends their ids.
  void shed(std::size_t target_bytes, std::vector<std::uint64_t>* evicted);

  std::size_t bytes() const { return window_.bytes + probation_.bytes + protected_.bytes; }
  std::size_t entries() const { return nodes_.size(); }

 private:
  enum class Segment : std::uint8_t { kWindow, kProbation, kProtected };
  struct List {
    std::list<std::uint64_t> order;  // front = most recent
    std::size_t bytes = 0;
  };
  struct Node {
    Segment segment;
    std::list<std::uint64_t>::iterator it;
    std::size_t bytes;
  };

  List& list_of(Segment s);
  void move_to(std::uint64_t id, Node& node, Segment to);
  void remove(std::uint64_t id);
  void admit_to_main(std::uint64_t candidate, std::vector<std::uint64_t>* evicted);
  bool main_over(std::size_t extra_bytes, std::size_t extra_entries) const;

  FrequencySketch sketch_;
  std::size_t window_max_bytes_, window_max_entries_;
  std::size_t main_max_bytes_, main_max_entries_;
  std::size_t protected_max_bytes_;
  List window_, probation_, protected_;
  std::unordered_map<std::uint64_t, Node> nodes_;
};

}  // namespace infera::cache
