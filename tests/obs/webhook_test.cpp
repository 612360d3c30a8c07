#include "obs/webhook.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "obs/alerts.h"
#include "obs/metrics.h"

namespace infera::obs {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds limit = 10s) {
  const auto deadline = Clock::now() + limit;
  while (!condition()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// A one-connection-at-a-time HTTP receiver on a free loopback port. The i-th
// request is answered with statuses[i] (the last entry repeats); status 0 means
// "hang": hold the connection without answering until release() (then 200).
class Receiver {
 public:
  explicit Receiver(std::vector<int> statuses) : statuses_(std::move(statuses)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listen_fd_, 16) != 0) {
      ADD_FAILURE() << "cannot listen on loopback";
    }
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~Receiver() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    released_cv_.notify_all();
    thread_.join();
    ::close(listen_fd_);
  }

  std::string url(const std::string& path = "/hook") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  size_t request_count() {
    std::lock_guard lock(mu_);
    return requests_.size();
  }
  std::vector<std::string> bodies() {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const auto& r : requests_) out.push_back(r.substr(r.find("\r\n\r\n") + 4));
    return out;
  }
  std::string request(size_t i) {
    std::lock_guard lock(mu_);
    return requests_.at(i);
  }
  void release() {
    {
      std::lock_guard lock(mu_);
      released_ = true;
    }
    released_cv_.notify_all();
  }

 private:
  bool stopping() {
    std::lock_guard lock(mu_);
    return stopping_;
  }
  // Waits up to 20 ms for `fd` to be readable.
  static bool readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 20) > 0;
  }

  void serve() {
    while (!stopping()) {
      if (!readable(listen_fd_)) continue;
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      handle(fd);
      ::close(fd);
    }
  }

  void handle(int fd) {
    std::string data;
    size_t expected = std::string::npos;
    while (!stopping() && data.size() != expected) {
      if (!readable(fd)) continue;
      char buf[4096];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return;
      data.append(buf, static_cast<size_t>(n));
      const size_t header_end = data.find("\r\n\r\n");
      if (header_end != std::string::npos && expected == std::string::npos) {
        const size_t at = data.find("Content-Length: ");
        const size_t length = at < header_end ? std::stoul(data.substr(at + 16)) : 0;
        expected = header_end + 4 + length;
      }
    }
    int status = 0;
    {
      std::unique_lock lock(mu_);
      status = statuses_[std::min(requests_.size(), statuses_.size() - 1)];
      requests_.push_back(data);
      if (status == 0) {
        released_cv_.wait(lock, [this] { return released_ || stopping_; });
        if (stopping_) return;
        status = 200;
      }
    }
    const std::string response = "HTTP/1.1 " + std::to_string(status) +
                                 " Scripted\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    ::send(fd, response.data(), response.size(), MSG_NOSIGNAL);
  }

  std::vector<int> statuses_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::mutex mu_;
  std::condition_variable released_cv_;
  std::vector<std::string> requests_;
  bool released_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

// A loopback port with nothing listening on it.
uint16_t closed_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

WebhookConfig fast_retries() {
  WebhookConfig c;
  c.timeout_ms = 5000;
  c.max_attempts = 3;
  c.initial_backoff_ms = 1;
  c.max_backoff_ms = 4;
  return c;
}

uint64_t deliveries(Registry& r, const std::string& result) {
  return r.counter("infera_webhook_deliveries_total", "", {{"result", result}}).value();
}

TEST(WebhookSender, RetriesUntilTheReceiverAcceptsAndCountsOk) {
  Receiver receiver({500, 500, 200});
  Registry metrics;
  auto sender = WebhookSender::create(receiver.url(), fast_retries(), metrics);
  ASSERT_TRUE(sender.ok()) << sender.status().message();

  (*sender)->post(R"({"status":"firing"})");
  ASSERT_TRUE(eventually([&] { return deliveries(metrics, "ok") == 1; }));
  EXPECT_EQ(deliveries(metrics, "failed"), 0u);
  ASSERT_EQ(receiver.request_count(), 3u);
  for (const std::string& body : receiver.bodies()) EXPECT_EQ(body, R"({"status":"firing"})");
  const std::string first = receiver.request(0);
  EXPECT_EQ(first.rfind("POST /hook HTTP/1.1\r\n", 0), 0u) << first;
  EXPECT_NE(first.find("Content-Type: application/json"), std::string::npos) << first;
}

TEST(WebhookSender, GivesUpAfterMaxAttemptsOfErrorStatus) {
  Receiver receiver({503});
  Registry metrics;
  auto sender = WebhookSender::create(receiver.url(), fast_retries(), metrics);
  ASSERT_TRUE(sender.ok());
  (*sender)->post("{}");
  ASSERT_TRUE(eventually([&] { return deliveries(metrics, "failed") == 1; }));
  EXPECT_EQ(receiver.request_count(), 3u);
  EXPECT_EQ(deliveries(metrics, "ok"), 0u);
}

TEST(WebhookSender, ClosedPortCountsFailedAfterMaxAttempts) {
  Registry metrics;
  auto sender = WebhookSender::create("http://127.0.0.1:" + std::to_string(closed_port()) + "/x",
                                      fast_retries(), metrics);
  ASSERT_TRUE(sender.ok());
  (*sender)->post("{}");
  ASSERT_TRUE(eventually([&] { return deliveries(metrics, "failed") == 1; }));
  EXPECT_EQ(deliveries(metrics, "ok"), 0u);
}

TEST(WebhookSender, PostReturnsAtOnceAndDestructionIsPromptWhileTheReceiverHangs) {
  Receiver receiver({0});
  Registry metrics;
  WebhookConfig config = fast_retries();
  config.timeout_ms = 30000;
  auto sender = WebhookSender::create(receiver.url(), config, metrics);
  ASSERT_TRUE(sender.ok());
  (*sender)->post("first");
  ASSERT_TRUE(eventually([&] { return receiver.request_count() == 1; }));

  // The delivery thread is stuck on the hanging receiver; posting must not wait.
  const auto start = Clock::now();
  for (int i = 0; i < 100; ++i) (*sender)->post("more");
  EXPECT_LT(Clock::now() - start, 500ms);

  const auto destroy_start = Clock::now();
  sender->reset();
  EXPECT_LT(Clock::now() - destroy_start, 2s);      // far less than the 30 s attempt timeout
  EXPECT_EQ(deliveries(metrics, "dropped"), 101u);  // in flight + queued, never delivered
}

TEST(WebhookSender, FullQueueDropsTheOldestBodies) {
  Receiver receiver({0, 200});
  Registry metrics;
  WebhookConfig config = fast_retries();
  config.queue_capacity = 2;
  auto sender = WebhookSender::create(receiver.url(), config, metrics);
  ASSERT_TRUE(sender.ok());
  (*sender)->post("1");
  ASSERT_TRUE(eventually([&] { return receiver.request_count() == 1; }));
  for (const char* body : {"2", "3", "4", "5"}) (*sender)->post(body);
  EXPECT_EQ(deliveries(metrics, "dropped"), 2u);

  receiver.release();
  ASSERT_TRUE(eventually([&] { return deliveries(metrics, "ok") == 3; }));
  EXPECT_EQ(receiver.bodies(), (std::vector<std::string>{"1", "4", "5"}));
}

TEST(WebhookSender, CreateRejectsUrlsItCannotServe) {
  Registry metrics;
  auto https = WebhookSender::create("https://hooks.example.com/x", {}, metrics);
  ASSERT_FALSE(https.ok());
  EXPECT_EQ(https.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(https.status().message().find("https is not supported"), std::string::npos);

  for (const char* url :
       {"", "ftp://host/x", "http://", "http://:80/x", "http://host:99999/", "http://host:port/",
        "http://user:pw@host/", "http://[::1/x", "http://host:/x", "http://bad host/"}) {
    auto result = WebhookSender::create(url, {}, metrics);
    ASSERT_FALSE(result.ok()) << url;
    EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument) << url;
    EXPECT_NE(result.status().message().find("webhook URL"), std::string::npos)
        << result.status().message();
  }
  WebhookConfig no_attempts;
  no_attempts.max_attempts = 0;
  EXPECT_FALSE(WebhookSender::create("http://127.0.0.1:9/", no_attempts, metrics).ok());

  auto ok = WebhookSender::create("http://[::1]:8080", {}, metrics);
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ((*ok)->url(), "http://[::1]:8080");
}

TEST(WebhookSender, AlertTransitionsArriveAsAlertmanagerStyleBodies) {
  Receiver receiver({200});
  Registry metrics;
  auto sender = WebhookSender::create(receiver.url(), fast_retries(), metrics);
  ASSERT_TRUE(sender.ok());
  AlertManager alerts(metrics, sender->get());
  alerts.open("sla_latency", "critical", "P95 3 s over 2 s", 3000, 2000);
  alerts.open("sla_latency", "critical", "P95 3.5 s over 2 s", 3500, 2000);  // no transition
  alerts.resolve("sla_latency", "P95 back under 2 s");

  ASSERT_TRUE(eventually([&] { return deliveries(metrics, "ok") == 2; }));
  const auto bodies = receiver.bodies();
  ASSERT_EQ(bodies.size(), 2u);
  const auto firing = nlohmann::json::parse(bodies[0]);
  EXPECT_EQ(firing["status"], "firing");
  EXPECT_EQ(firing["source"], "infera");
  EXPECT_EQ(firing["alert"]["name"], "sla_latency");
  EXPECT_EQ(firing["alert"]["severity"], "critical");
  EXPECT_EQ(firing["alert"]["value"], 3000.0);
  EXPECT_EQ(firing["alert"]["threshold"], 2000.0);
  EXPECT_TRUE(firing["alert"]["opened_at"].is_string());
  EXPECT_FALSE(firing["alert"].contains("resolved_at"));
  const auto resolved = nlohmann::json::parse(bodies[1]);
  EXPECT_EQ(resolved["status"], "resolved");
  EXPECT_EQ(resolved["alert"]["message"], "P95 back under 2 s");
  EXPECT_TRUE(resolved["alert"]["resolved_at"].is_string());
}

}  // namespace
}  // namespace infera::obs
