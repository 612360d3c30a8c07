// AlertManager: the set of named alerts (SLA breaches, anomalies) that are firing
// now, plus a short history, with a log line and an optional webhook notification
// on every transition.
//
// An alert is identified by its name. open() on a name that is not firing starts a
// new episode (the transition to firing); open() while it fires only refreshes its
// message and value. resolve() ends the episode. Only transitions are logged
// (warn "alert.firing", info "alert.resolved") and posted to the webhook, so a
// caller may call open() on every evaluation without flooding receivers.
//
// Metrics: gauge infera_alerts_firing (alerts firing now) and counter
// infera_alerts_total{name} (transitions to firing).
//
// Webhook body, in the spirit of Alertmanager receivers:
//   {"status":"firing"|"resolved","source":"infera",
//    "alert":{"name","severity","message","value","threshold","opened_at",
//             "resolved_at" (resolved only)}}
// with times as ISO-8601 UTC ("2024-05-01T12:00:00.123Z").
//
// Thread-safety: every method may be called from any thread. The internal lock is
// held while the log line and the webhook body are enqueued (both only queue), so
// notifications leave in transition order.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace infera::obs {

class Gauge;
class Registry;
class WebhookSender;

struct Alert {
  std::string name;
  std::string severity;  // "warning" | "critical"
  std::string message;
  double value = 0;      // the measurement that triggered it, in the alert's own unit
  double threshold = 0;  // the bound it crossed
  std::chrono::system_clock::time_point opened_at;
  std::chrono::system_clock::time_point resolved_at;  // meaningful only when !firing
  bool firing = false;
};

class AlertManager {
 public:
  static constexpr size_t kRecentLimit = 100;

  // `metrics` must outlive the manager; `webhook` may be null (no notifications)
  // and, when set, must outlive it too.
  AlertManager(Registry& metrics, WebhookSender* webhook);
  AlertManager(const AlertManager&) = delete;
  AlertManager& operator=(const AlertManager&) = delete;

  // Opens alert `name`, or updates message, value and threshold while it is
  // already firing (severity keeps its opening value). Logs and notifies on the
  // transition to firing only.
  void open(const std::string& name, const std::string& severity, const std::string& message,
            double value = 0, double threshold = 0);
  // Resolves `name` if it is firing, replacing its message when `message` is not
  // empty; logs and notifies. A no-op when it is not firing.
  void resolve(const std::string& name, const std::string& message = {});

  bool is_firing(const std::string& name) const;
  // Alerts firing now, ordered by name.
  std::vector<Alert> firing() const;
  // The last kRecentLimit episodes (firing or resolved), most recent transition
  // first: an episode moves to the front when it opens and again when it resolves.
  std::vector<Alert> recent() const;
  // {"firing":[alert...], "recent":[alert...]}, each alert as in the webhook body
  // plus "status":"firing"|"resolved".
  nlohmann::json to_json() const;

 private:
  void notify(const Alert& alert) const;  // REQUIRES: mu_ held

  Registry& metrics_;
  WebhookSender* const webhook_;
  Gauge& firing_gauge_;

  mutable std::mutex mu_;
  std::map<std::string, Alert> firing_;
  std::deque<Alert> recent_;  // front = most recent transition
};

}  // namespace infera::obs
