// Stop sequences over streamed text. Text that could still become a stop sequence
// is held back, so a client never sees part of a stop string; once a stop
// sequence completes, the text before it is released and generation should end.
//
// Thread: owned by one sequence; not thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace infera::sched {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  // Appends newly generated text; returns the text that is safe to emit now.
  // After a stop sequence completes, stopped() is true and later pushes return "".
  std::string push(std::string_view text);
  // At the end of generation: releases any held-back text (not after a stop).
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace infera::sched
