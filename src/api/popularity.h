// The questions asked most, remembered across restarts so that a restarted server can
// answer them from its cache before anyone asks again (serve's --cache-rewarm).
//
// Each cacheable request is counted under its cache key, with a request body that
// reproduces it (api::rewarm_popular runs those bodies through the cache). The log is
// bounded (the least asked entry makes room) and saved as JSON lines,
// {"key": cache key, "count": N, "body": {...}}, written beside and renamed over so a crash leaves the
// old or the new file. Thread: all methods from any thread.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/status.h"

namespace infera::api {

class PopularityLog {
 public:
  // Reads `path` when it exists (unreadable lines are skipped); empty path: not saved.
  explicit PopularityLog(std::string path, size_t capacity = 2048);

  void record(const std::string& key, const std::string& body);
  // The bodies of the `n` most asked, most asked first.
  std::vector<std::string> top(size_t n) const;
  size_t size() const;
  // Writes the file if anything changed since the last save.
  Status save();

 private:
  struct Entry {
    std::string body;
    uint64_t count = 0;
  };
  std::string path_;
  size_t capacity_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;  // by cache key
  bool dirty_ = false;
};

}  // namespace infera::api
