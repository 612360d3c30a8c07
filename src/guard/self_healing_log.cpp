// SelfHealingLog: one record of every automatic repair, shared by the watchdog and the
// TTFT governor.
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <utility>

#include "core/log.h"
#include "guard/guard.h"
#include "guard/utc_time.h"
#include "obs/metrics.h"

namespace infera::guard {
namespace {

constexpr size_t kMaxEntries = 100;

struct Entry {
  std::string action;
  std::string detail;
  std::chrono::system_clock::time_point at;
};

}  // namespace

struct SelfHealingLog::Impl {
  explicit Impl(obs::Registry& metrics_in) : metrics(metrics_in) {}

  obs::Registry& metrics;
  mutable std::mutex mu;      // guards the fields below
  std::deque<Entry> entries;  // newest first
  uint64_t total = 0;
};

SelfHealingLog::SelfHealingLog(obs::Registry& metrics) : impl_(std::make_unique<Impl>(metrics)) {}

SelfHealingLog::~SelfHealingLog() = default;

void SelfHealingLog::record(const std::string& action, const std::string& detail) {
  impl_->metrics
      .counter("infera_self_healing_actions_total", "Automatic repairs by action",
               {{"action", action}})
      .inc();
  // Every entry is a repair the server made on its own: operators filtering on warnings
  // should see them.
  log::write(log::Level::kWarn, "self_healing", detail,
             "\"action\":\"" + log::json_escape(action) + "\"");
  std::lock_guard lock(impl_->mu);
  impl_->entries.push_front({action, detail, std::chrono::system_clock::now()});
  if (impl_->entries.size() > kMaxEntries) impl_->entries.pop_back();
  ++impl_->total;
}

nlohmann::json SelfHealingLog::to_json() const {
  std::lock_guard lock(impl_->mu);
  nlohmann::json recent = nlohmann::json::array();
  for (const Entry& e : impl_->entries) {
    recent.push_back({{"action", e.action}, {"detail", e.detail}, {"at", utc_iso8601(e.at)}});
  }
  return {{"total", impl_->total}, {"recent", std::move(recent)}};
}

}  // namespace infera::guard
