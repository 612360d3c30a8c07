#include "api/popularity.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include <fmt/format.h>
#include <unistd.h>

namespace infera::api {

using nlohmann::json;

PopularityLog::PopularityLog(std::string path, size_t capacity)
    : path_(std::move(path)), capacity_(std::max<size_t>(1, capacity)) {
  if (path_.empty()) return;
  std::ifstream in(path_);
  std::string line;
  while (std::getline(in, line) && entries_.size() < capacity_) {
    json row = json::parse(line, nullptr, false);
    if (!row.is_object() || !row.contains("key") || !row["key"].is_string() || !row.contains("body") ||
        !row["body"].is_object() || !row.contains("count") || !row["count"].is_number_unsigned()) {
      continue;
    }
    entries_[row["key"].get<std::string>()] = Entry{row["body"].dump(), row["count"].get<uint64_t>()};
  }
}

void PopularityLog::record(const std::string& key, const std::string& body) {
  std::lock_guard lock(mu_);
  dirty_ = true;
  if (auto it = entries_.find(key); it != entries_.end()) {
    ++it->second.count;
    return;
  }
  if (entries_.size() >= capacity_) {
    auto least = std::min_element(entries_.begin(), entries_.end(),
                                  [](const auto& a, const auto& b) { return a.second.count < b.second.count; });
    entries_.erase(least);
  }
  entries_.emplace(key, Entry{body, 1});
}

std::vector<std::string> PopularityLog::top(size_t n) const {
  std::vector<std::pair<uint64_t, const std::string*>> ranked;
  std::lock_guard lock(mu_);
  ranked.reserve(entries_.size());
  for (const auto& [key, e] : entries_) ranked.emplace_back(e.count, &e.body);
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> out;
  for (size_t i = 0; i < ranked.size() && i < n; ++i) out.push_back(*ranked[i].second);
  return out;
}

size_t PopularityLog::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

Status PopularityLog::save() {
  std::string text;
  {
    std::lock_guard lock(mu_);
    if (path_.empty() || !dirty_) return Status::Ok();
    for (const auto& [key, e] : entries_) {
      json body = json::parse(e.body, nullptr, false);
      if (body.is_discarded()) continue;
      text += json{{"key", key}, {"count", e.count}, {"body", std::move(body)}}.dump() + "\n";
    }
    dirty_ = false;
  }
  const std::string tmp = path_ + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return Status::Unavailable(fmt::format("{}: cannot write question counts", tmp));
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = std::fflush(f) == 0 && ok;
  ok = ::fsync(fileno(f)) == 0 && ok;
  std::fclose(f);
  if (!ok || std::rename(tmp.c_str(), path_.c_str()) != 0) {
    std::lock_guard lock(mu_);
    dirty_ = true;  // tried again at the next save
    return Status::Unavailable(fmt::format("{}: cannot write question counts", path_));
  }
  return Status::Ok();
}

}  // namespace infera::api
