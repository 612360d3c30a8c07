// Beast + Asio implementation of obs/webhook.h.
// clang-format off
#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without including it.
// clang-format on

#include "obs/webhook.h"

#include <fmt/format.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#if defined(__linux__)
#include <pthread.h>
#endif

#include <algorithm>
#include <cctype>
#include <exception>
#include <random>

#include "core/log.h"
#include "obs/metrics.h"

namespace infera::obs {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

// Receivers answer with a short acknowledgement; anything longer is not read.
constexpr size_t kMaxResponseBytes = size_t{64} * 1024;
// How often a delivery in flight checks whether the sender is being destroyed.
constexpr std::chrono::milliseconds kStopPollInterval{50};

struct ParsedUrl {
  std::string host;  // without IPv6 brackets
  std::string port;
  std::string path;
};

bool starts_with_ignoring_case(const std::string& text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(text[i])) != prefix[i]) return false;
  }
  return true;
}

bool valid_host_char(char c, bool bracketed) {
  const auto u = static_cast<unsigned char>(c);
  if (bracketed) return std::isxdigit(u) || c == ':' || c == '.';
  return std::isalnum(u) || c == '.' || c == '-' || c == '_';
}

Result<ParsedUrl> parse_http_url(const std::string& url) {
  auto bad = [&](std::string_view why) {
    return Status::InvalidArgument(fmt::format("webhook URL '{}': {}", url, why));
  };
  if (starts_with_ignoring_case(url, "https://")) {
    return Status::Unsupported(fmt::format(
        "webhook URL '{}': https is not supported; use an http:// receiver (for example a "
        "local TLS-terminating proxy)",
        url));
  }
  if (!starts_with_ignoring_case(url, "http://")) {
    return bad("expected http://host[:port][/path]");
  }
  const std::string rest = url.substr(7);
  const size_t authority_end = rest.find_first_of("/?#");
  const std::string authority = rest.substr(0, authority_end);
  ParsedUrl parsed;
  parsed.path = authority_end == std::string::npos ? "/" : rest.substr(authority_end);
  parsed.path = parsed.path.substr(0, parsed.path.find('#'));
  if (parsed.path.empty() || parsed.path[0] != '/') parsed.path.insert(0, "/");
  if (parsed.path.find_first_of(" \t\r\n") != std::string::npos) {
    return bad("the path contains whitespace");
  }
  if (authority.find('@') != std::string::npos) {
    return bad("credentials in the URL are not supported");
  }

  std::string port_text;
  bool bracketed = false;
  if (!authority.empty() && authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == std::string::npos) return bad("unterminated '[' in the IPv6 host");
    bracketed = true;
    parsed.host = authority.substr(1, close - 1);
    const std::string after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad("unexpected text after the IPv6 host");
      port_text = after.substr(1);
      if (port_text.empty()) return bad("empty port");
    }
  } else {
    const size_t colon = authority.find(':');
    parsed.host = authority.substr(0, colon);
    if (colon != std::string::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) return bad("empty port");
    }
  }
  if (parsed.host.empty()) return bad("missing host");
  for (char c : parsed.host) {
    if (!valid_host_char(c, bracketed)) {
      return bad(fmt::format("invalid character '{}' in host", c));
    }
  }
  if (port_text.empty()) {
    parsed.port = "80";
  } else {
    if (port_text.size() > 5 || !std::all_of(port_text.begin(), port_text.end(), [](char c) {
          return std::isdigit(static_cast<unsigned char>(c));
        })) {
      return bad(fmt::format("port '{}' is not a number", port_text));
    }
    const int port = std::stoi(port_text);
    if (port < 1 || port > 65535) return bad(fmt::format("port {} is out of range 1-65535", port));
    parsed.port = std::to_string(port);
  }
  return parsed;
}

Status validate(const WebhookConfig& c) {
  if (c.timeout_ms <= 0) return Status::InvalidArgument("webhook timeout_ms must be positive");
  if (c.max_attempts < 1) return Status::InvalidArgument("webhook max_attempts must be at least 1");
  if (c.initial_backoff_ms < 0 || c.max_backoff_ms < c.initial_backoff_ms) {
    return Status::InvalidArgument(
        "webhook backoffs need 0 <= initial_backoff_ms <= max_backoff_ms");
  }
  if (c.queue_capacity == 0)
    return Status::InvalidArgument("webhook queue_capacity must be positive");
  return Status::Ok();
}

struct Attempt {
  bool finished = false;
  int http_status = 0;  // 0 when no response arrived
  std::string error;    // why no response arrived
};

struct Request {
  const std::string& host;
  const std::string& port;
  const std::string& path;
  const std::string& body;
  Clock::time_point deadline;
};

std::string describe(const beast::error_code& ec, std::string_view step, int64_t timeout_ms) {
  if (ec == beast::error::timeout)
    return fmt::format("{} timed out ({} ms per attempt)", step, timeout_ms);
  return fmt::format("{}: {}", step, ec.message());
}

net::awaitable<void> exchange(Request r, int64_t timeout_ms, Attempt& out) {
  auto executor = co_await net::this_coro::executor;
  beast::error_code ec;
  auto token = net::redirect_error(net::use_awaitable, ec);

  tcp::resolver resolver(executor);
  auto endpoints = co_await resolver.async_resolve(r.host, r.port, token);
  if (ec) {
    out.error = describe(ec, "resolve", timeout_ms);
    co_return;
  }
  beast::tcp_stream stream(executor);
  stream.expires_at(r.deadline);  // one deadline for connect, write and read together
  co_await stream.async_connect(endpoints, token);
  if (ec) {
    out.error = describe(ec, "connect", timeout_ms);
    co_return;
  }

  bhttp::request<bhttp::string_body> request{bhttp::verb::post, r.path, 11};
  const bool ipv6 = r.host.find(':') != std::string::npos;
  std::string host_header = ipv6 ? "[" + r.host + "]" : r.host;
  if (r.port != "80") host_header += ":" + r.port;
  request.set(bhttp::field::host, host_header);
  request.set(bhttp::field::user_agent, "infera-webhook");
  request.set(bhttp::field::content_type, "application/json");
  request.keep_alive(false);
  request.body() = r.body;
  request.prepare_payload();
  co_await bhttp::async_write(stream, request, token);
  if (ec) {
    out.error = describe(ec, "send", timeout_ms);
    co_return;
  }

  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(kMaxResponseBytes);
  co_await bhttp::async_read(stream, buffer, parser, token);
  if (ec) {
    out.error = describe(ec, "read response", timeout_ms);
    co_return;
  }
  out.http_status = static_cast<int>(parser.get().result_int());
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);  // best effort: we are done
}

// One POST on its own io_context, run in slices so that `stopping` is noticed
// within kStopPollInterval. Leaving early destroys the io_context, which destroys
// the suspended coroutine and closes its socket.
Attempt attempt_once(const Request& r, int64_t timeout_ms, const std::atomic<bool>& stopping) {
  Attempt out;
  net::io_context ioc;
  net::co_spawn(ioc, exchange(r, timeout_ms, out), [&out](std::exception_ptr e) {
    out.finished = true;
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      out.error = x.what();
    }
  });
  while (!out.finished) {
    if (stopping.load(std::memory_order_relaxed)) {
      out.error = "sender stopped";
      break;
    }
    const auto now = Clock::now();
    if (now >= r.deadline) {
      // Only name resolution can get here: the stream enforces the same deadline.
      out.error = fmt::format("timed out ({} ms per attempt)", timeout_ms);
      break;
    }
    ioc.run_for(std::min<Clock::duration>(kStopPollInterval, r.deadline - now));
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<WebhookSender>> WebhookSender::create(const std::string& url,
                                                             WebhookConfig config,
                                                             Registry& metrics) {
  auto parsed = parse_http_url(url);
  if (!parsed.ok()) return parsed.status();
  if (Status s = validate(config); !s.ok()) return s;
  return std::make_unique<WebhookSender>(Passkey{}, url, parsed->host, parsed->port, parsed->path,
                                         config, metrics);
}

WebhookSender::WebhookSender(Passkey, std::string url, std::string host, std::string port,
                             std::string path, WebhookConfig config, Registry& metrics)
    : url_(std::move(url)),
      host_(std::move(host)),
      port_(std::move(port)),
      path_(std::move(path)),
      config_(config),
      delivered_ok_(metrics.counter("infera_webhook_deliveries_total",
                                    "Alert webhook bodies by outcome", {{"result", "ok"}})),
      delivered_failed_(metrics.counter("infera_webhook_deliveries_total",
                                        "Alert webhook bodies by outcome", {{"result", "failed"}})),
      dropped_(metrics.counter("infera_webhook_deliveries_total", "Alert webhook bodies by outcome",
                               {{"result", "dropped"}})),
      thread_([this] { run(); }) {
#if defined(__linux__)
  pthread_setname_np(thread_.native_handle(), "infera-webhook");
#endif
}

WebhookSender::~WebhookSender() {
  {
    std::lock_guard lock(mu_);
    stopping_.store(true);
  }
  wake_.notify_all();
  thread_.join();
}

void WebhookSender::post(std::string body) {
  {
    std::lock_guard lock(mu_);
    if (queue_.size() >= config_.queue_capacity) {
      queue_.pop_front();
      dropped_.inc();
    }
    queue_.push_back(std::move(body));
  }
  wake_.notify_one();
}

void WebhookSender::run() {
  for (;;) {
    std::string body;
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [this] { return stopping_.load() || !queue_.empty(); });
      if (stopping_.load()) {
        dropped_.inc(queue_.size());
        queue_.clear();
        return;
      }
      body = std::move(queue_.front());
      queue_.pop_front();
    }
    deliver(body);
  }
}

void WebhookSender::deliver(const std::string& body) {
  std::minstd_rand rng{std::random_device{}()};
  int64_t backoff_ms = config_.initial_backoff_ms;
  std::string last_error;
  for (int attempt = 1; attempt <= config_.max_attempts; ++attempt) {
    const Request request{host_, port_, path_, body,
                          Clock::now() + std::chrono::milliseconds(config_.timeout_ms)};
    const Attempt result = attempt_once(request, config_.timeout_ms, stopping_);
    if (stopping_.load()) {
      dropped_.inc();
      return;
    }
    if (result.http_status >= 200 && result.http_status < 300) {
      delivered_ok_.inc();
      return;
    }
    last_error = result.http_status ? fmt::format("HTTP {}", result.http_status) : result.error;
    if (attempt == config_.max_attempts) break;
    log::debug("webhook.retry", "{} attempt {} failed: {}", url_, attempt, last_error);
    // Jitter over [backoff/2, backoff] keeps many senders from retrying in lockstep.
    std::uniform_int_distribution<int64_t> jitter(backoff_ms / 2, backoff_ms);
    if (!wait_unless_stopping(std::chrono::milliseconds(jitter(rng)))) {
      dropped_.inc();
      return;
    }
    backoff_ms = std::min(backoff_ms * 2, config_.max_backoff_ms);
  }
  delivered_failed_.inc();
  log::warn("webhook.failed", "giving up on {} after {} attempts: {}", url_, config_.max_attempts,
            last_error);
}

bool WebhookSender::wait_unless_stopping(std::chrono::milliseconds wait) {
  std::unique_lock lock(mu_);
  return !wake_.wait_for(lock, wait, [this] { return stopping_.load(); });
}

}  // namespace infera::obs
