#include "knowledge/semantic_cache.h"

#include <algorithm>
#include <deque>
#include <map>
#include <mutex>

#include "knowledge/semantic_guard.h"

namespace infera::knowledge {

struct SemanticCache::Impl {
  struct Entry {
    uint64_t seq = 0;
    std::string question;
    std::string normalized;
    std::vector<float> vector;
    std::string value;
    std::string collection;
  };

  SemanticCacheOptions options;
  mutable std::mutex mu;
  // Entries per scope, oldest first; `order` gives the global insertion order.
  std::map<std::string, std::deque<Entry>, std::less<>> scopes;
  std::deque<std::pair<uint64_t, std::string>> order;  // (seq, scope)
  uint64_t next_seq = 0;
  size_t size = 0;
  SemanticCacheStats stats;

  void evict_oldest() {
    while (!order.empty()) {
      auto [seq, scope] = order.front();
      order.pop_front();
      auto it = scopes.find(scope);
      if (it == scopes.end()) continue;
      auto& entries = it->second;
      auto e = std::find_if(entries.begin(), entries.end(), [&](const Entry& x) { return x.seq == seq; });
      if (e == entries.end()) continue;  // already gone (invalidated)
      entries.erase(e);
      --size;
      if (entries.empty()) scopes.erase(it);
      return;
    }
  }
};

SemanticCache::SemanticCache(SemanticCacheOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
}

SemanticCache::~SemanticCache() = default;

std::optional<SemanticHit> SemanticCache::lookup(std::string_view scope, std::string_view question,
                                                 std::span<const float> vector) {
  const std::string normalized = normalize_question(question);
  std::lock_guard lock(impl_->mu);
  auto it = impl_->scopes.find(scope);
  if (it == impl_->scopes.end()) {
    ++impl_->stats.misses;
    return std::nullopt;
  }
  // Candidates: equal normalised form, or similar enough; best first.
  std::vector<std::pair<float, const Impl::Entry*>> candidates;
  for (const auto& e : it->second) {
    float sim = 0;
    if (e.normalized == normalized) {
      sim = 1.0f;
    } else if (e.vector.size() == vector.size()) {
      for (size_t i = 0; i < vector.size(); ++i) sim += e.vector[i] * vector[i];
      if (sim < impl_->options.threshold) continue;
    } else {
      continue;
    }
    candidates.emplace_back(sim, &e);
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& [sim, e] : candidates) {
    if (e->normalized != normalized && !compatible(e->question, question).ok) {
      ++impl_->stats.guard_refusals;
      continue;
    }
    ++impl_->stats.hits;
    return SemanticHit{e->value, sim, e->question};
  }
  ++impl_->stats.misses;
  return std::nullopt;
}

void SemanticCache::insert(std::string_view scope, std::string_view question,
                           std::span<const float> vector, std::string value,
                           std::string_view collection) {
  Impl::Entry e;
  e.question = std::string(question);
  e.normalized = normalize_question(question);
  e.vector.assign(vector.begin(), vector.end());
  e.value = std::move(value);
  e.collection = std::string(collection);
  std::lock_guard lock(impl_->mu);
  auto& entries = impl_->scopes[std::string(scope)];
  // One entry per normalised question and scope: the newer answer replaces the older.
  auto same = std::find_if(entries.begin(), entries.end(),
                           [&](const Impl::Entry& x) { return x.normalized == e.normalized; });
  if (same != entries.end()) {
    entries.erase(same);
    --impl_->size;
  }
  e.seq = impl_->next_seq++;
  impl_->order.emplace_back(e.seq, std::string(scope));
  entries.push_back(std::move(e));
  ++impl_->size;
  while (impl_->size > impl_->options.max_entries) impl_->evict_oldest();
  // Keep `order` from growing with entries that already left.
  if (impl_->order.size() > 2 * impl_->options.max_entries + 16) {
    std::deque<std::pair<uint64_t, std::string>> live;
    for (auto& [seq, s] : impl_->order) {
      auto sit = impl_->scopes.find(s);
      if (sit == impl_->scopes.end()) continue;
      for (const auto& x : sit->second) {
        if (x.seq == seq) {
          live.emplace_back(seq, s);
          break;
        }
      }
    }
    impl_->order.swap(live);
  }
}

void SemanticCache::invalidate_collection(std::string_view collection) {
  if (collection.empty()) return;
  std::lock_guard lock(impl_->mu);
  for (auto it = impl_->scopes.begin(); it != impl_->scopes.end();) {
    auto& entries = it->second;
    const size_t before = entries.size();
    entries.erase(std::remove_if(entries.begin(), entries.end(),
                                 [&](const Impl::Entry& e) { return e.collection == collection; }),
                  entries.end());
    impl_->size -= before - entries.size();
    impl_->stats.invalidated += before - entries.size();
    it = entries.empty() ? impl_->scopes.erase(it) : std::next(it);
  }
}

void SemanticCache::clear() {
  std::lock_guard lock(impl_->mu);
  impl_->scopes.clear();
  impl_->order.clear();
  impl_->size = 0;
}

SemanticCacheStats SemanticCache::stats() const {
  std::lock_guard lock(impl_->mu);
  SemanticCacheStats s = impl_->stats;
  s.entries = impl_->size;
  return s;
}

}  // namespace infera::knowledge
