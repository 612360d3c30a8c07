// TtftGovernor: multiplicative decrease / multiplicative increase of the scheduler's
// limits from windowed P95 time to first token. Halving reacts within one window when a
// burst overloads prefill; doubling back returns to full throughput in log2(base) good
// windows instead of creeping up one sequence at a time.
#include <fmt/format.h>

#include <algorithm>
#include <mutex>
#include <utility>

#include "guard/guard.h"

namespace infera::guard {
namespace {

// Below this a prefill chunk spends more on per-step overhead than on the prompt.
constexpr int kMinBatchTokens = 16;

std::string describe(Limits from, Limits to) {
  return fmt::format("max_seqs {} -> {}, max_batch_tokens {} -> {}", from.max_seqs, to.max_seqs,
                     from.max_batch_tokens, to.max_batch_tokens);
}

}  // namespace

struct TtftGovernor::Impl {
  Impl(double objective, Limits base_in, std::function<void(Limits)> apply_in,
       SelfHealingLog& log_in)
      : objective_p95_ms(objective),
        base(base_in),
        floor{std::min(1, base_in.max_seqs), std::min(kMinBatchTokens, base_in.max_batch_tokens)},
        apply(std::move(apply_in)),
        log(log_in),
        current(base_in) {}

  const double objective_p95_ms;
  const Limits base;
  const Limits floor;
  const std::function<void(Limits)> apply;
  SelfHealingLog& log;

  mutable std::mutex mu;  // guards current; held across apply() so values land in order
  Limits current;
};

TtftGovernor::TtftGovernor(double objective_p95_ms, Limits base, std::function<void(Limits)> apply,
                           SelfHealingLog& log)
    : impl_(std::make_unique<Impl>(objective_p95_ms, base, std::move(apply), log)) {}

TtftGovernor::~TtftGovernor() = default;

void TtftGovernor::observe_window(double p95_ttft_ms, int64_t requests) {
  Impl& g = *impl_;
  if (requests <= 0) return;  // no evidence either way
  std::lock_guard lock(g.mu);
  const Limits from = g.current;
  const bool breached = p95_ttft_ms > g.objective_p95_ms;
  Limits to;
  if (breached) {
    to = {std::max(g.floor.max_seqs, from.max_seqs / 2),
          std::max(g.floor.max_batch_tokens, from.max_batch_tokens / 2)};
  } else {
    to = {std::min(g.base.max_seqs, from.max_seqs * 2),
          std::min(g.base.max_batch_tokens, from.max_batch_tokens * 2)};
  }
  if (to == from) return;
  g.current = to;
  if (g.apply) g.apply(to);
  g.log.record(breached ? "lower_limits" : "raise_limits",
               fmt::format("P95 time to first token {:.0f} ms {} objective {:.0f} ms over {} "
                           "requests: {}",
                           p95_ttft_ms, breached ? ">" : "<=", g.objective_p95_ms, requests,
                           describe(from, to)));
}

Limits TtftGovernor::current() const {
  std::lock_guard lock(impl_->mu);
  return impl_->current;
}

}  // namespace infera::guard
