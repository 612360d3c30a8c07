#include "cache/tinylfu.h"

#include <algorithm>
#include <bit>

#include "cache/hash.h"

namespace infera::cache {

namespace {
constexpr int kRows = 4;
constexpr std::uint8_t kMaxCount = 15;
constexpr std::uint64_t kRowSeeds[kRows] = {0x97cb3127ULL, 0xc2b2ae3d27d4eb4fULL,
                                            0x165667b19e3779f9ULL, 0x85ebca77c2b2ae63ULL};
}  // namespace

FrequencySketch::FrequencySketch(std::size_t expected_entries)
    : width_mask_(std::bit_ceil(std::max<std::size_t>(expected_entries, 64)) - 1),
      sample_size_(10 * std::max<std::size_t>(expected_entries, 64)) {
  counters_.assign(kRows * (width_mask_ + 1), 0);
}

std::size_t FrequencySketch::index(std::uint64_t id, int row) const {
  const std::uint64_t h = mix64(id ^ kRowSeeds[row]);
  return static_cast<std::size_t>(row) * (width_mask_ + 1) + (h & width_mask_);
}

void FrequencySketch::record(std::uint64_t id) {
  // Conservative update: raise only the counters equal to the current minimum.
  const std::uint32_t current = estimate(id);
  if (current < kMaxCount) {
    for (int row = 0; row < kRows; ++row) {
      std::uint8_t& c = counters_[index(id, row)];
      if (c == current) ++c;
    }
  }
  if (++records_ >= sample_size_) age();
}

std::uint32_t FrequencySketch::estimate(std::uint64_t id) const {
  std::uint32_t lowest = kMaxCount;
  for (int row = 0; row < kRows; ++row) {
    lowest = std::min<std::uint32_t>(lowest, counters_[index(id, row)]);
  }
  return lowest;
}

void FrequencySketch::age() {
  for (std::uint8_t& c : counters_) c = static_cast<std::uint8_t>(c >> 1);
  records_ /= 2;
}

WTinyLfuPolicy::WTinyLfuPolicy(std::size_t max_bytes, std::size_t max_entries)
    : sketch_(max_entries),
      window_max_bytes_(max_bytes / 100),
      window_max_entries_(std::max<std::size_t>(1, max_entries / 100)),
      main_max_bytes_(max_bytes - max_bytes / 100),
      main_max_entries_(max_entries > window_max_entries_ ? max_entries - window_max_entries_ : 1),
      protected_max_bytes_(main_max_bytes_ / 5 * 4) {}

WTinyLfuPolicy::List& WTinyLfuPolicy::list_of(Segment s) {
  switch (s) {
    case Segment::kWindow:
      return window_;
    case Segment::kProbation:
      return probation_;
    case Segment::kProtected:
      break;
  }
  return protected_;
}

void WTinyLfuPolicy::move_to(std::uint64_t id, Node& node, Segment to) {
  List& from_list = list_of(node.segment);
  from_list.order.erase(node.it);
  from_list.bytes -= node.bytes;
  List& to_list = list_of(to);
  to_list.order.push_front(id);
  to_list.bytes += node.bytes;
  node.it = to_list.order.begin();
  node.segment = to;
}

void WTinyLfuPolicy::remove(std::uint64_t id) {
  auto found = nodes_.find(id);
  if (found == nodes_.end()) return;
  List& list = list_of(found->second.segment);
  list.order.erase(found->second.it);
  list.bytes -= found->second.bytes;
  nodes_.erase(found);
}

void WTinyLfuPolicy::on_access(std::uint64_t id) {
  sketch_.record(id);
  auto found = nodes_.find(id);
  if (found == nodes_.end()) return;
  Node& node = found->second;
  if (node.segment == Segment::kWindow) {
    move_to(id, node, Segment::kWindow);
    return;
  }
  move_to(id, node, Segment::kProtected);
  // Keep protected within its share by demoting its least recent entries to probation.
  while (protected_.bytes > protected_max_bytes_ && protected_.order.size() > 1) {
    const std::uint64_t demoted = protected_.order.back();
    move_to(demoted, nodes_.at(demoted), Segment::kProbation);
  }
}

void WTinyLfuPolicy::on_miss(std::uint64_t id) { sketch_.record(id); }

void WTinyLfuPolicy::on_erase(std::uint64_t id) { remove(id); }

void WTinyLfuPolicy::shed(std::size_t target_bytes, std::vector<std::uint64_t>* evicted) {
  for (List* list : {&probation_, &window_, &protected_}) {
    while (bytes() > target_bytes && !list->order.empty()) {
      const std::uint64_t id = list->order.back();
      remove(id);
      evicted->push_back(id);
    }
  }
}

bool WTinyLfuPolicy::main_over(std::size_t extra_bytes, std::size_t extra_entries) const {
  return probation_.bytes + protected_.bytes + extra_bytes > main_max_bytes_ ||
         probation_.order.size() + protected_.order.size() + extra_entries > main_max_entries_;
}

void WTinyLfuPolicy::on_insert(std::uint64_t id, std::size_t bytes,
                               std::vector<std::uint64_t>* evicted) {
  if (bytes > main_max_bytes_ || nodes_.count(id) != 0) {
    evicted->push_back(id);
    return;
  }
  window_.order.push_front(id);
  window_.bytes += bytes;
  nodes_.emplace(id, Node{Segment::kWindow, window_.order.begin(), bytes});
  while (!window_.order.empty() &&
         (window_.bytes > window_max_bytes_ || window_.order.size() > window_max_entries_)) {
    admit_to_main(window_.order.back(), evicted);
  }
}

// The window's least recent entry competes with main's eviction victims: it gets in only by
// being estimated strictly more frequent than each entry it displaces.
void WTinyLfuPolicy::admit_to_main(std::uint64_t candidate, std::vector<std::uint64_t>* evicted) {
  Node& node = nodes_.at(candidate);
  const std::uint32_t candidate_freq = sketch_.estimate(candidate);
  while (main_over(node.bytes, 1)) {
    const List& victims = probation_.order.empty() ? protected_ : probation_;
    if (victims.order.empty()) break;
    const std::uint64_t victim = victims.order.back();
    if (candidate_freq <= sketch_.estimate(victim)) {
      evicted->push_back(candidate);
      remove(candidate);
      return;
    }
    evicted->push_back(victim);
    remove(victim);
  }
  move_to(candidate, node, Segment::kProbation);
}

}  // namespace infera::cache
