// WebhookSender: delivers JSON bodies (alert notifications) to one http:// receiver
// without ever blocking the caller.
//
// post() appends to a bounded in-memory queue; a single background thread,
// "infera-webhook", owned by the sender, delivers the bodies one at a time and in
// order. Each attempt is one HTTP/1.1 POST on a fresh connection with a total
// deadline (name resolution, connect, send and response together). A 2xx answer is
// success; any other status, a connection error or a timeout is retried after a
// backoff, up to `max_attempts` attempts.
//
// Metrics: infera_webhook_deliveries_total{result="ok"|"failed"|"dropped"}, where
// "failed" means all attempts were spent and "dropped" means the body never got a
// final attempt: it was pushed out of a full queue or was still pending when the
// sender was destroyed.
//
// Thread-safety: post() and url() may be called from any thread. Destroying the
// sender stops its thread promptly (within ~50 ms): it interrupts the backoff wait
// and the delivery in flight instead of waiting for them. The one exception is a
// DNS lookup in progress, which the resolver finishes first; numeric hosts need none.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/status.h"

namespace infera::obs {

class Counter;
class Registry;

struct WebhookConfig {
  int64_t timeout_ms = 2000;         // per attempt, from name resolution to the response
  int max_attempts = 5;              // >= 1; attempts per body before it counts as failed
  int64_t initial_backoff_ms = 200;  // wait after the first failed attempt
  int64_t max_backoff_ms = 5000;     // the wait doubles per failure up to this cap
  size_t queue_capacity = 1000;      // bodies waiting; past it the oldest is dropped
};

class WebhookSender {
  struct Passkey {
    explicit Passkey() = default;
  };

 public:
  // Validates `url` ("http://host[:port][/path]", port 80 by default, IPv6 hosts in
  // brackets) and `config`, then starts the delivery thread. Returns
  // InvalidArgument naming the problem for an unparsable URL or a non-positive
  // setting, and Unsupported for https:// (no TLS client is built in). Counters
  // live in `metrics`, which must outlive the sender.
  static Result<std::unique_ptr<WebhookSender>> create(const std::string& url, WebhookConfig config,
                                                       Registry& metrics);

  // Use create(); the Passkey keeps construction there.
  WebhookSender(Passkey, std::string url, std::string host, std::string port, std::string path,
                WebhookConfig config, Registry& metrics);
  ~WebhookSender();
  WebhookSender(const WebhookSender&) = delete;
  WebhookSender& operator=(const WebhookSender&) = delete;

  // Queues `body` (a JSON document) for delivery and returns at once; never blocks
  // on the network. When the queue is full the oldest waiting body is dropped.
  void post(std::string body);

  const std::string& url() const { return url_; }

 private:
  void run();
  // Tries `body` until it succeeds, attempts run out or the sender stops.
  void deliver(const std::string& body);
  // Waits up to `wait` unless the sender stops first; false when stopping.
  bool wait_unless_stopping(std::chrono::milliseconds wait);

  const std::string url_;
  const std::string host_;
  const std::string port_;
  const std::string path_;
  const WebhookConfig config_;
  Counter& delivered_ok_;
  Counter& delivered_failed_;
  Counter& dropped_;

  std::mutex mu_;  // guards queue_; stopping_ is set under it so no wake-up is lost
  std::condition_variable wake_;
  std::deque<std::string> queue_;
  std::atomic<bool> stopping_{false};  // also polled, lock-free, by the delivery in flight
  std::thread thread_;                 // last member: starts after everything it uses exists
};

}  // namespace infera::obs
