#include "obs/alerts.h"

#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <nlohmann/json.hpp>

#include "core/log.h"
#include "obs/metrics.h"
#include "obs/webhook.h"

namespace infera::obs {
namespace {

std::string iso8601_utc(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto ms_total = duration_cast<milliseconds>(t.time_since_epoch()).count();
  // Floor division keeps times before 1970 well-formed.
  int64_t secs = ms_total / 1000;
  int64_t ms = ms_total % 1000;
  if (ms < 0) {
    ms += 1000;
    secs -= 1;
  }
  const std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

nlohmann::json alert_json(const Alert& a) {
  nlohmann::json j = {{"name", a.name},           {"severity", a.severity},
                      {"message", a.message},     {"value", a.value},
                      {"threshold", a.threshold}, {"opened_at", iso8601_utc(a.opened_at)}};
  if (!a.firing) j["resolved_at"] = iso8601_utc(a.resolved_at);
  return j;
}

nlohmann::json alert_json_with_status(const Alert& a) {
  nlohmann::json j = alert_json(a);
  j["status"] = a.firing ? "firing" : "resolved";
  return j;
}

std::string log_fields(const Alert& a) {
  return fmt::format(R"("alert":"{}","severity":"{}","value":{},"threshold":{})",
                     log::json_escape(a.name), log::json_escape(a.severity),
                     nlohmann::json(a.value).dump(), nlohmann::json(a.threshold).dump());
}

}  // namespace

AlertManager::AlertManager(Registry& metrics, WebhookSender* webhook)
    : metrics_(metrics),
      webhook_(webhook),
      firing_gauge_(metrics.gauge("infera_alerts_firing", "Alerts firing now")) {
  firing_gauge_.set(0);
}

void AlertManager::open(const std::string& name, const std::string& severity,
                        const std::string& message, double value, double threshold) {
  std::lock_guard lock(mu_);
  if (auto it = firing_.find(name); it != firing_.end()) {
    Alert& a = it->second;
    a.message = message;
    a.value = value;
    a.threshold = threshold;
    for (Alert& r : recent_) {
      if (r.name == name && r.firing) {
        r = a;
        break;
      }
    }
    return;
  }
  Alert a;
  a.name = name;
  a.severity = severity;
  a.message = message;
  a.value = value;
  a.threshold = threshold;
  a.opened_at = std::chrono::system_clock::now();
  a.firing = true;
  firing_.emplace(name, a);
  firing_gauge_.set(static_cast<double>(firing_.size()));
  metrics_.counter("infera_alerts_total", "Alerts opened (transitions to firing)", {{"name", name}})
      .inc();
  recent_.push_front(a);
  if (recent_.size() > kRecentLimit) recent_.pop_back();

  if (log::enabled(log::Level::kWarn)) {
    log::write(log::Level::kWarn, "alert.firing", fmt::format("{}: {}", name, message),
               log_fields(a));
  }
  notify(a);
}

void AlertManager::resolve(const std::string& name, const std::string& message) {
  std::lock_guard lock(mu_);
  auto it = firing_.find(name);
  if (it == firing_.end()) return;
  Alert a = std::move(it->second);
  firing_.erase(it);
  firing_gauge_.set(static_cast<double>(firing_.size()));
  if (!message.empty()) a.message = message;
  a.firing = false;
  a.resolved_at = std::chrono::system_clock::now();
  // The episode moves to the front; it may already have aged out of the history.
  auto same_episode = [&](const Alert& r) { return r.name == name && r.firing; };
  if (auto r = std::find_if(recent_.begin(), recent_.end(), same_episode); r != recent_.end()) {
    recent_.erase(r);
  }
  recent_.push_front(a);
  if (recent_.size() > kRecentLimit) recent_.pop_back();

  if (log::enabled(log::Level::kInfo)) {
    log::write(log::Level::kInfo, "alert.resolved", fmt::format("{}: {}", name, a.message),
               log_fields(a));
  }
  notify(a);
}

void AlertManager::notify(const Alert& alert) const {
  if (webhook_ == nullptr) return;
  const nlohmann::json body = {{"status", alert.firing ? "firing" : "resolved"},
                               {"alert", alert_json(alert)},
                               {"source", "infera"}};
  webhook_->post(body.dump());
}

bool AlertManager::is_firing(const std::string& name) const {
  std::lock_guard lock(mu_);
  return firing_.count(name) != 0;
}

std::vector<Alert> AlertManager::firing() const {
  std::lock_guard lock(mu_);
  std::vector<Alert> out;
  out.reserve(firing_.size());
  for (const auto& [name, alert] : firing_) out.push_back(alert);
  return out;
}

std::vector<Alert> AlertManager::recent() const {
  std::lock_guard lock(mu_);
  return {recent_.begin(), recent_.end()};
}

nlohmann::json AlertManager::to_json() const {
  std::lock_guard lock(mu_);
  nlohmann::json firing = nlohmann::json::array();
  for (const auto& [name, alert] : firing_) firing.push_back(alert_json_with_status(alert));
  nlohmann::json recent = nlohmann::json::array();
  for (const Alert& alert : recent_) recent.push_back(alert_json_with_status(alert));
  return {{"firing", std::move(firing)}, {"recent", std::move(recent)}};
}

}  // namespace infera::obs
