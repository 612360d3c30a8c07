// Beast + Asio (C++20 coroutines) implementation of http/server.h.
#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without including it.

#include "http/server.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <fmt/format.h>

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <type_traits>
#include <thread>
#include <unordered_map>

#include "core/log.h"
#include "http/gzip.h"
#include "obs/metrics.h"

namespace infera::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

// ---- Request / Response helpers -------------------------------------------------

std::string_view Request::param(std::string_view name) const {
  for (const auto& [k, v] : params) {
    if (k == name) return v;
  }
  return {};
}

std::string_view Request::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (beast::iequals(beast::string_view(k.data(), k.size()),
                       beast::string_view(name.data(), name.size()))) {
      return v;
    }
  }
  return {};
}

Response Response::json(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Response Response::error(int status, std::string_view message, std::string_view type,
                         std::string_view code) {
  std::string code_json = code.empty() ? "null" : "\"" + log::json_escape(code) + "\"";
  return json(status, fmt::format("{{\"error\":{{\"message\":\"{}\",\"type\":\"{}\",\"code\":{}}}}}",
                                  log::json_escape(message), log::json_escape(type), code_json));
}

// ---- Responder ------------------------------------------------------------------

namespace {

struct Event {
  enum class Kind { kWhole, kStreamBegin, kChunk, kEnd } kind;
  Response response;  // kWhole; kStreamBegin uses status, content_type, headers
  std::string chunk;  // kChunk
};

}  // namespace

struct Responder::State : std::enable_shared_from_this<Responder::State> {
  explicit State(net::any_io_executor e) : executor(std::move(e)) {}
  net::any_io_executor executor;  // the connection's strand
  std::mutex mu;
  std::deque<Event> events;
  bool waiting = false;  // the connection is parked on `wake`
  std::optional<net::steady_timer> wake;
  std::atomic<bool> gone{false};
  bool response_done = false;  // strand-only: the session finished this request
  std::string model;           // guarded by mu: Responder::set_model

  void push(Event ev) {
    bool notify = false;
    {
      std::lock_guard lock(mu);
      events.push_back(std::move(ev));
      notify = waiting;
      waiting = false;
    }
    if (notify) {
      // The timer belongs to the connection's strand; cancel it there.
      net::post(executor, [self = shared_from_this()] { self->wake->cancel(); });
    }
  }
};

void Responder::send(Response response) {
  state_->push(Event{Event::Kind::kWhole, std::move(response), {}});
}
void Responder::begin_stream(int status, std::string content_type, Headers headers) {
  Response r;
  r.status = status;
  r.content_type = std::move(content_type);
  r.headers = std::move(headers);
  state_->push(Event{Event::Kind::kStreamBegin, std::move(r), {}});
}
void Responder::write(std::string chunk) {
  if (chunk.empty()) return;  // an empty chunk would end the chunked body
  state_->push(Event{Event::Kind::kChunk, {}, std::move(chunk)});
}
void Responder::end() { state_->push(Event{Event::Kind::kEnd, {}, {}}); }
void Responder::set_model(std::string model) {
  std::lock_guard lock(state_->mu);
  state_->model = std::move(model);
}

bool Responder::client_gone() const { return state_->gone.load(std::memory_order_relaxed); }

// ---- Server ---------------------------------------------------------------------

namespace {

// The gate's decision for one request, which may come from another thread: the
// session waits on a timer that finish() cancels on the session's strand.
struct GateWait : std::enable_shared_from_this<GateWait> {
  explicit GateWait(net::any_io_executor e) : executor(std::move(e)), wake(executor) {}
  void finish(GateDecision d) {
    bool notify = false;
    {
      std::lock_guard lock(mu);
      decision = std::move(d);
      notify = waiting;
    }
    if (notify) net::post(executor, [self = shared_from_this()] { self->wake.cancel(); });
  }
  net::awaitable<GateDecision> result() {
    for (;;) {
      {
        std::lock_guard lock(mu);
        if (decision) co_return std::move(*decision);
        waiting = true;
      }
      wake.expires_at(net::steady_timer::time_point::max());
      beast::error_code ignored;
      co_await wake.async_wait(net::redirect_error(net::use_awaitable, ignored));
    }
  }
  net::any_io_executor executor;
  net::steady_timer wake;
  std::mutex mu;
  std::optional<GateDecision> decision;
  bool waiting = false;
};

struct RouteEntry {
  std::string method;
  std::string path;
  Handler handler;
  // Per status code, created on first use: the request counter and latency histogram.
  struct StatusMetrics {
    obs::Counter* requests;
    obs::Histogram* duration;
  };
  std::array<std::atomic<StatusMetrics*>, 600> by_status{};
  std::mutex create_mu;
  std::vector<std::unique_ptr<StatusMetrics>> owned;
};

std::string make_request_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  thread_local uint64_t prefix = rng();
  thread_local uint64_t counter = 0;
  return fmt::format("{:016x}{:08x}", prefix, static_cast<uint32_t>(++counter));
}

// %XX escapes of a path segment decoded ("my%20model" -> "my model"); a malformed
// escape is kept as written.
std::string percent_decode(std::string_view text) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && hex(text[i + 1]) >= 0 && hex(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2])));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

bool acceptable_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace

struct Server::Impl {
  Impl(ServerConfig c, obs::Registry& m)
      : config(std::move(c)),
        metrics(m),
        acceptor(ioc),
        connections(m.gauge("http_connections", "Open HTTP connections")),
        in_flight_gauge(m.gauge("http_requests_in_flight", "HTTP requests being handled")) {}

  ServerConfig config;
  obs::Registry& metrics;
  // Body limits of path prefixes above MAX_CONTENT_LENGTH (uploads), and the largest
  // limit, which the parser starts with until the target is known.
  std::vector<std::pair<std::string, uint64_t>> body_limits;
  uint64_t largest_body_limit = 0;

  uint64_t body_limit_for(std::string_view target) const {
    for (const auto& [prefix, bytes] : body_limits) {
      if (target.substr(0, prefix.size()) == prefix) return bytes;
    }
    return config.max_content_length;
  }
  net::io_context ioc;
  tcp::acceptor acceptor;
  std::unordered_map<std::string, std::vector<std::unique_ptr<RouteEntry>>> routes;
  std::unique_ptr<RouteEntry> unmatched;
  // Pattern routes by their pattern, each split into segments.
  std::vector<std::pair<std::vector<std::string>, std::vector<std::unique_ptr<RouteEntry>>*>> patterns;
  Server::Observer observer;
  Gate gate;
  std::vector<std::function<void()>> reload_callbacks;
  std::optional<net::ssl::context> tls;  // set by start() when a certificate is configured
  obs::Gauge& connections;
  obs::Gauge& in_flight_gauge;
  std::atomic<int64_t> in_flight{0};
  std::atomic<bool> draining{false};
  std::atomic<bool> ready{false};
  std::atomic<bool> stopped{false};

  RouteEntry& add_route(const std::string& method, const std::string& path, Handler h) {
    auto e = std::make_unique<RouteEntry>();
    e->method = method;
    e->path = path;
    e->handler = std::move(h);
    auto& ref = *e;
    auto& list = routes[path];
    const bool first = list.empty();
    list.push_back(std::move(e));
    if (first && path.find('{') != std::string::npos) patterns.emplace_back(split_path(path), &list);
    return ref;
  }

  static std::vector<std::string> split_path(std::string_view path) {
    std::vector<std::string> parts;
    size_t pos = 0;
    while (pos <= path.size()) {
      size_t end = path.find('/', pos);
      if (end == std::string_view::npos) end = path.size();
      parts.emplace_back(path.substr(pos, end - pos));
      pos = end + 1;
    }
    return parts;
  }

  // The routes of the first pattern `path` matches (filling `params`), or null.
  std::vector<std::unique_ptr<RouteEntry>>* match_pattern(const std::string& path,
                                                           std::vector<std::pair<std::string, std::string>>& params) {
    if (patterns.empty()) return nullptr;
    const std::vector<std::string> parts = split_path(path);
    for (auto& [pattern, list] : patterns) {
      if (pattern.size() != parts.size()) continue;
      params.clear();
      bool ok = true;
      for (size_t i = 0; i < parts.size() && ok; ++i) {
        const std::string& p = pattern[i];
        if (p.size() > 2 && p.front() == '{' && p.back() == '}') {
          ok = !parts[i].empty();
          params.emplace_back(p.substr(1, p.size() - 2), percent_decode(parts[i]));
        } else {
          ok = p == parts[i];
        }
      }
      if (ok) return list;
    }
    params.clear();
    return nullptr;
  }

  void count(RouteEntry& route, int status, double seconds) {
    size_t idx = status >= 0 && status < 600 ? static_cast<size_t>(status) : 0;
    RouteEntry::StatusMetrics* m = route.by_status[idx].load(std::memory_order_acquire);
    if (m == nullptr) {
      std::lock_guard lock(route.create_mu);
      m = route.by_status[idx].load(std::memory_order_acquire);
      if (m == nullptr) {
        obs::Labels labels{{"route", route.path}, {"method", route.method},
                           {"status", std::to_string(status)}};
        route.owned.push_back(std::make_unique<RouteEntry::StatusMetrics>(RouteEntry::StatusMetrics{
            &metrics.counter("http_requests_total", "HTTP requests by route, method and status",
                             labels),
            &metrics.histogram("http_request_duration_seconds",
                               "Time from request headers read to response written", labels)}));
        m = route.owned.back().get();
        route.by_status[idx].store(m, std::memory_order_release);
      }
    }
    m->requests->inc();
    m->duration->observe(seconds);
  }

  net::awaitable<void> accept_loop();
  net::awaitable<void> tls_session(beast::tcp_stream stream);
  template <class Stream>
  net::awaitable<void> session(Stream stream);
  // The CORS headers of a response to `req` from an allowed origin.
  Headers cors_headers(const Request& req) const;
  bool cors_allowed(std::string_view origin) const;
  std::optional<Response> preflight(const Request& req) const;
  net::awaitable<void> drain_watch();
  void stop();
};

namespace {

bool has_header(const Headers& headers, std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (beast::iequals(beast::string_view(k.data(), k.size()), beast::string_view(name.data(), name.size()))) {
      return true;
    }
  }
  return false;
}

void append_header(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += ": ";
  // A value never ends the header early (CR and LF are dropped; ours never hold them).
  if (value.find_first_of("\r\n") == std::string_view::npos) {
    out += value;
  } else {
    for (char c : value) {
      if (c != '\r' && c != '\n') out += c;
    }
  }
  out += "\r\n";
}

struct HeadOptions {
  bool tls = false;
  bool keep_alive = true;
  bool gzipped = false;
  bool streaming = false;  // chunked, no Content-Length
};

// A response's status line and headers, ready to write: the security headers, the
// CORS and gate headers (`extra`), the handler's own (which replace any default of the
// same name), request id and timing, and the framing. Written as one buffer with the
// body: Beast's per-field serializer cost more than a whole cached answer's handling.
std::string render_head(const Response& r, const Headers& extra, std::string_view extra_lines, const Request& req,
                        Clock::time_point start, const HeadOptions& o, size_t content_length) {
  std::string out;
  out.reserve(384 + 64 * (extra.size() + r.headers.size()));
  out += "HTTP/1.1 ";
  out += std::to_string(r.status);
  out += ' ';
  beast::string_view reason = bhttp::obsolete_reason(static_cast<bhttp::status>(r.status));
  out.append(reason.data(), reason.size());
  out += "\r\n";
  auto add_default = [&](std::string_view name, std::string_view value) {
    if (!has_header(r.headers, name)) append_header(out, name, value);
  };
  add_default("Content-Type", r.content_type);
  if (o.streaming) add_default("Cache-Control", "no-cache");
  add_default("X-Content-Type-Options", "nosniff");
  add_default("X-Frame-Options", "DENY");
  add_default("Referrer-Policy", "no-referrer");
  if (o.tls) add_default("Strict-Transport-Security", "max-age=31536000");
  for (const auto& [k, v] : extra) add_default(k, v);
  out += extra_lines;
  for (const auto& [k, v] : r.headers) append_header(out, k, v);
  if (o.gzipped) {
    append_header(out, "Content-Encoding", "gzip");
    append_header(out, "Vary", "Accept-Encoding");
  }
  append_header(out, "X-Request-ID", req.request_id);
  char timing[32];
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  const int n = std::snprintf(timing, sizeof timing, "%.3fms", ms);
  append_header(out, "X-Response-Time", std::string_view(timing, n > 0 ? static_cast<size_t>(n) : 0));
  if (!o.keep_alive) append_header(out, "Connection", "close");
  if (o.streaming) {
    append_header(out, "Transfer-Encoding", "chunked");
  } else if (r.status >= 200 && r.status != 204 && r.status != 304) {
    append_header(out, "Content-Length", std::to_string(content_length));
  }
  out += "\r\n";
  return out;
}

}  // namespace

namespace {

// Marks the request's client as gone when its connection reaches EOF or fails.
// Waits for readability without consuming data, so a pipelined next request is
// left in the socket for the session to read.
net::awaitable<void> watch_disconnect(tcp::socket& socket, std::shared_ptr<Responder::State> state) {
  beast::error_code ec;
  co_await socket.async_wait(tcp::socket::wait_read, net::redirect_error(net::use_awaitable, ec));
  // After the response the session may already have closed the socket; both
  // coroutines run on the connection's strand, so this flag is race-free.
  if (ec == net::error::operation_aborted || state->response_done) co_return;
  char probe;
  ssize_t n = ::recv(socket.native_handle(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
  if (ec || n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
    state->gone.store(true);
    if (state->wake) state->wake->cancel();
  }
}

}  // namespace

template <class Stream>
net::awaitable<void> Server::Impl::session(Stream stream) {
  constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;
  auto& tcp_layer = beast::get_lowest_layer(stream);
  connections.add(1);
  std::string remote_address;
  {
    beast::error_code addr_ec;
    auto endpoint = tcp_layer.socket().remote_endpoint(addr_ec);
    if (!addr_ec) remote_address = endpoint.address().to_string();
  }
  beast::flat_buffer buffer;
  beast::error_code ec;
  auto token = net::redirect_error(net::use_awaitable, ec);
  const auto header_timeout = std::chrono::milliseconds(config.header_timeout_ms);
  const auto idle_timeout = std::chrono::milliseconds(config.idle_timeout_ms);

  for (;;) {
    // Idle: wait for the first byte of the next request.
    if (buffer.size() == 0) {
      tcp_layer.expires_after(idle_timeout);
      size_t n = co_await stream.async_read_some(buffer.prepare(8192), token);
      if (ec) break;
      buffer.commit(n);
    }
    // Headers must arrive complete within the header timeout (slowloris guard).
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(64 * 1024);
    parser.body_limit(std::max(largest_body_limit, config.max_content_length));
    tcp_layer.expires_after(header_timeout);
    co_await bhttp::async_read_header(stream, buffer, parser, token);
    // The target's own limit, now that it is known (uploads may be larger).
    uint64_t body_limit = config.max_content_length;
    if (!ec) {
      std::string_view target(parser.get().target().data(), parser.get().target().size());
      body_limit = body_limit_for(target);
      if (const auto length = parser.content_length(); length && *length > body_limit) {
        ec = bhttp::error::body_limit;
      } else {
        parser.body_limit(body_limit);
      }
    }
    const Clock::time_point start = Clock::now();
    // A request is in flight from its complete headers until its response is
    // written; a drain waits for it (a body still uploading included).
    struct InFlight {
      Impl& impl;
      explicit InFlight(Impl& i) : impl(i) {
        impl.in_flight.fetch_add(1, std::memory_order_relaxed);
        impl.in_flight_gauge.add(1);
      }
      ~InFlight() {
        impl.in_flight.fetch_sub(1, std::memory_order_relaxed);
        impl.in_flight_gauge.add(-1);
      }
    };
    std::optional<InFlight> in_flight_guard;
    if (!ec) in_flight_guard.emplace(*this);
    // Only requests that arrive after a drain began are refused.
    const bool arrived_draining = draining.load(std::memory_order_relaxed);

    Request req;
    req.request_id = make_request_id();
    req.remote_address = remote_address;
    std::optional<Response> early;  // answered without running a handler
    bool close_after = false;
    if (ec == beast::error::timeout || ec == net::error::eof ||
        ec == net::error::connection_reset) {
      if (ec == beast::error::timeout) {
        log::info("http.header_timeout", "dropped a client that did not finish its headers in {} ms",
                  config.header_timeout_ms);
      }
      break;
    }
    auto too_large = [this, body_limit] {
      return Response::error(
          413,
          body_limit == config.max_content_length
              ? fmt::format("request body exceeds MAX_CONTENT_LENGTH ({} bytes)", body_limit)
              : fmt::format("request body exceeds this route's limit ({} bytes)", body_limit),
          "invalid_request_error", "body_too_large");
    };
    if (ec == bhttp::error::body_limit) {
      // Beast rejects a Content-Length over the limit as soon as the headers are in.
      early = too_large();
      close_after = true;
    } else if (ec == bhttp::error::header_limit) {
      early = Response::error(431, "request headers too large", "invalid_request_error",
                              "headers_too_large");
      close_after = true;
    } else if (ec) {
      early = Response::error(400, "malformed HTTP request: " + ec.message(),
                              "invalid_request_error", "bad_http");
      close_after = true;
    } else {
      if (!parser.is_done()) {
        tcp_layer.expires_after(idle_timeout);
        co_await bhttp::async_read(stream, buffer, parser, token);
        if (ec == bhttp::error::body_limit) {
          early = too_large();
          close_after = true;
          ec = {};
        } else if (ec) {
          break;
        }
      }
    }
    tcp_layer.expires_never();

    bool keep_alive = !close_after;
    bool accept_gzip = false;
    RouteEntry* route = unmatched.get();
    if (parser.is_header_done()) {
      auto& msg = parser.get();
      req.method = std::string(msg.method_string());
      std::string_view target(msg.target().data(), msg.target().size());
      size_t q = target.find('?');
      req.path = std::string(target.substr(0, q));
      if (q != std::string_view::npos) req.query = std::string(target.substr(q + 1));
      req.headers.reserve(8);
      for (const auto& f : msg) {
        req.headers.emplace_back(std::string(f.name_string().data(), f.name_string().size()),
                                 std::string(f.value().data(), f.value().size()));
      }
      if (auto id = req.header("X-Request-ID"); acceptable_request_id(id)) {
        req.request_id = std::string(id);
      }
      keep_alive = keep_alive && msg.keep_alive();
      accept_gzip = accepts_gzip(req.header("Accept-Encoding"));
      if (!early) req.body = std::move(msg.body());
    }

    Headers extra;            // CORS and gate headers: on whatever response is sent
    std::string extra_lines;  // the gate's pre-rendered header lines
    if (!early) {
      extra = cors_headers(req);
      early = preflight(req);
    }
    if (!early) {
      req.params.clear();
      auto it = routes.find(req.path);
      std::vector<std::unique_ptr<RouteEntry>>* candidates =
          it != routes.end() && it->first.find('{') == std::string::npos ? &it->second : nullptr;
      if (candidates == nullptr) candidates = match_pattern(req.path, req.params);
      if (candidates == nullptr) {
        early = Response::error(404, "no route for " + req.method + " " + req.path,
                                "invalid_request_error", "not_found");
      } else {
        route = nullptr;
        for (auto& e : *candidates) {
          if (e->method == req.method) route = e.get();
        }
        if (route == nullptr) {
          route = candidates->front().get();
          early = Response::error(405, "method " + req.method + " not allowed on " + req.path,
                                  "invalid_request_error", "method_not_allowed");
        }
      }
      if (gate) {
        // Unknown paths pass the gate too, so that without a key they are a 401
        // like every other path, not a map of the routes.
        try {
          auto wait = std::make_shared<GateWait>(stream.get_executor());
          gate(req, route->path, [wait](GateDecision decision) { wait->finish(std::move(decision)); });
          GateDecision d = co_await wait->result();
          if (extra.empty()) {
            extra = std::move(d.headers);
          } else {
            for (auto& h : d.headers) extra.push_back(std::move(h));
          }
          extra_lines = std::move(d.header_lines);
          if (d.reject) early = std::move(d.reject);
        } catch (const std::exception& e) {
          log::error("http.gate_exception", "gate for {} threw: {}", req.path, e.what());
          early = Response::error(500, "internal error", "server_error", "internal");
        }
      }
      if (!early && arrived_draining) {
        early = Response::error(503, "server is shutting down", "server_error", "draining");
        keep_alive = false;
      }
    }
    if (draining.load(std::memory_order_relaxed)) keep_alive = false;

    int status = 0;
    bool write_failed = false;
    std::string model;  // the handler's Responder::set_model, for the observer
    if (early) {
      status = early->status;
      HeadOptions o;
      o.tls = kTls;
      o.keep_alive = keep_alive;
      std::string out = render_head(*early, extra, extra_lines, req, start, o, early->body.size());
      out += early->body;
      co_await net::async_write(stream, net::buffer(out), token);
      write_failed = static_cast<bool>(ec);
    } else {
      auto state = std::make_shared<Responder::State>(stream.get_executor());
      try {
        route->handler(req, Responder(state));
      } catch (const std::exception& e) {
        log::error("http.handler_exception", "handler for {} threw: {}", req.path, e.what());
        Responder(state).send(Response::error(500, "internal error", "server_error", "internal"));
      }
      bool streaming = false;
      for (bool done = false; !done;) {
        std::optional<Event> ev;
        {
          std::lock_guard lock(state->mu);
          if (state->events.empty()) {
            state->waiting = true;
          } else {
            ev = std::move(state->events.front());
            state->events.pop_front();
          }
        }
        if (!ev) {
          if (state->gone.load()) {
            // The client left while the handler was still working; nginx's 499.
            status = 499;
            write_failed = true;
            break;
          }
          if (!state->wake) {
            state->wake.emplace(stream.get_executor());
            // Watch for the client hanging up while the handler works, so long
            // generations are cancelled at once (the handler polls client_gone()).
            net::co_spawn(stream.get_executor(), watch_disconnect(tcp_layer.socket(), state),
                          net::detached);
          }
          state->wake->expires_at(net::steady_timer::time_point::max());
          beast::error_code wait_ec;
          co_await state->wake->async_wait(net::redirect_error(net::use_awaitable, wait_ec));
          continue;
        }
        switch (ev->kind) {
          case Event::Kind::kWhole: {
            Response& r = ev->response;
            status = r.status;
            HeadOptions o;
            o.tls = kTls;
            o.keep_alive = keep_alive;
            o.gzipped = accept_gzip && r.body.size() >= config.gzip_min_bytes;
            if (o.gzipped) r.body = gzip_compress(r.body);
            std::string head = render_head(r, extra, extra_lines, req, start, o, r.body.size());
            if (r.body.size() <= 4096) {
              head += r.body;
              co_await net::async_write(stream, net::buffer(head), token);
            } else {
              std::array<net::const_buffer, 2> parts{net::buffer(head), net::buffer(r.body)};
              co_await net::async_write(stream, parts, token);
            }
            done = true;
            break;
          }
          case Event::Kind::kStreamBegin: {
            Response& r = ev->response;
            status = r.status;
            HeadOptions o;
            o.tls = kTls;
            o.keep_alive = keep_alive;
            o.streaming = true;
            std::string head = render_head(r, extra, extra_lines, req, start, o, 0);
            co_await net::async_write(stream, net::buffer(head), token);
            streaming = true;
            break;
          }
          case Event::Kind::kChunk:
            if (streaming) {
              co_await net::async_write(stream, bhttp::make_chunk(net::buffer(ev->chunk)), token);
            }
            break;
          case Event::Kind::kEnd:
            if (streaming) co_await net::async_write(stream, bhttp::make_chunk_last(), token);
            done = true;
            break;
        }
        if (ec) {
          state->gone.store(true);
          write_failed = true;
          done = true;
        }
      }
      if (write_failed) state->gone.store(true);
      state->response_done = true;
      if (observer) {
        std::lock_guard lock(state->mu);
        model = state->model;
      }
      if (state->wake) {
        beast::error_code ignored;
        tcp_layer.socket().cancel(ignored);  // ends the disconnect watcher's wait
      }
    }
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    count(*route, status, seconds);
    if (observer) observer(req, route->path, model, status, seconds);
    if (write_failed || !keep_alive) break;
  }
  if constexpr (kTls) {
    // close_notify, bounded: a peer that never answers it must not hold the session.
    tcp_layer.expires_after(std::chrono::seconds(2));
    co_await stream.async_shutdown(token);
  }
  beast::error_code ignored;
  tcp_layer.socket().shutdown(tcp::socket::shutdown_send, ignored);
  tcp_layer.close();
  connections.add(-1);
}

net::awaitable<void> Server::Impl::tls_session(beast::tcp_stream stream) {
  beast::ssl_stream<beast::tcp_stream> tls_stream(std::move(stream), *tls);
  beast::error_code ec;
  beast::get_lowest_layer(tls_stream).expires_after(std::chrono::milliseconds(config.header_timeout_ms));
  co_await tls_stream.async_handshake(net::ssl::stream_base::server,
                                      net::redirect_error(net::use_awaitable, ec));
  if (ec) {
    log::debug("http.tls_handshake_failed", "TLS handshake failed: {}", ec.message());
    co_return;
  }
  co_await session(std::move(tls_stream));
}

bool Server::Impl::cors_allowed(std::string_view origin) const {
  if (origin.empty()) return false;
  for (const auto& o : config.cors_origins) {
    if (o == "*" || o == origin) return true;
  }
  return false;
}

Headers Server::Impl::cors_headers(const Request& req) const {
  Headers h;
  if (std::string_view origin = req.header("Origin"); cors_allowed(origin)) {
    h.emplace_back("Access-Control-Allow-Origin", std::string(origin));
    h.emplace_back("Vary", "Origin");
    h.emplace_back("Access-Control-Expose-Headers",
                   "X-Request-ID, X-Response-Time, X-Cache, Retry-After, x-ratelimit-limit-requests, "
                   "x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-ratelimit-limit-tokens, "
                   "x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens");
  }
  return h;
}

// A CORS preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered
// here, before the gate: browsers send it without the API key.
std::optional<Response> Server::Impl::preflight(const Request& req) const {
  if (req.method != "OPTIONS" || req.header("Origin").empty() ||
      req.header("Access-Control-Request-Method").empty()) {
    return std::nullopt;
  }
  if (!cors_allowed(req.header("Origin"))) {
    return Response::error(403, "origin " + std::string(req.header("Origin")) + " is not allowed (--cors-origins)",
                           "invalid_request_error", "cors_origin_not_allowed");
  }
  Response r;
  r.status = 204;
  r.content_type = "text/plain";
  r.headers = {{"Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS"},
               {"Access-Control-Allow-Headers",
                "Authorization, Content-Type, X-API-Key, X-Request-ID, Cache-Control"},
               {"Access-Control-Max-Age", "600"}};
  return r;
}

net::awaitable<void> Server::Impl::accept_loop() {
  for (;;) {
    beast::error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(net::make_strand(ioc),
                                                        net::redirect_error(net::use_awaitable, ec));
    if (ec) {
      if (!acceptor.is_open()) co_return;
      log::warn("http.accept_error", "accept failed: {}", ec.message());
      // Out of descriptors or memory, the listening socket stays readable: accepting
      // again at once would spin the I/O thread. Pause, as nginx does, and let
      // finishing connections free what is short.
      if (ec == net::error::no_descriptors || ec.value() == ENFILE || ec == net::error::no_buffer_space ||
          ec == net::error::no_memory) {
        net::steady_timer pause(ioc);
        pause.expires_after(std::chrono::milliseconds(50));
        beast::error_code ignored;
        co_await pause.async_wait(net::redirect_error(net::use_awaitable, ignored));
      }
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    auto executor = socket.get_executor();
    if (tls) {
      net::co_spawn(executor, tls_session(beast::tcp_stream(std::move(socket))), net::detached);
    } else {
      net::co_spawn(executor, session(beast::tcp_stream(std::move(socket))), net::detached);
    }
  }
}

net::awaitable<void> Server::Impl::drain_watch() {
  const auto deadline = Clock::now() + std::chrono::milliseconds(config.drain_timeout_ms);
  net::steady_timer timer(ioc);
  while (in_flight.load() > 0 && Clock::now() < deadline) {
    timer.expires_after(std::chrono::milliseconds(10));
    beast::error_code ec;
    co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
  }
  int64_t left = in_flight.load();
  if (left > 0) {
    log::warn("http.drain_timeout", "drain timed out with {} requests in flight", left);
  } else {
    log::info("http.drained", "all in-flight requests finished");
  }
  stop();
}

void Server::Impl::stop() {
  if (stopped.exchange(true)) return;
  beast::error_code ec;
  acceptor.close(ec);
  ioc.stop();
}

Server::Server(ServerConfig config, obs::Registry& metrics)
    : impl_(std::make_unique<Impl>(std::move(config), metrics)) {
  impl_->unmatched = std::make_unique<RouteEntry>();
  impl_->unmatched->path = "unmatched";
  impl_->unmatched->method = "any";
}

Server::~Server() = default;

void Server::set_observer(Observer observer) { impl_->observer = std::move(observer); }
void Server::set_gate(Gate gate) { impl_->gate = std::move(gate); }
void Server::set_body_limit(const std::string& path_prefix, uint64_t bytes) {
  impl_->body_limits.emplace_back(path_prefix, std::max(bytes, impl_->config.max_content_length));
  impl_->largest_body_limit = std::max(impl_->largest_body_limit, impl_->body_limits.back().second);
}
void Server::on_reload_signal(std::function<void()> callback) {
  impl_->reload_callbacks.push_back(std::move(callback));
}

void Server::route(const std::string& method, const std::string& path, Handler handler) {
  impl_->add_route(method, path, std::move(handler));
}

void Server::route(const std::string& method, const std::string& path, SyncHandler handler) {
  impl_->add_route(method, path,
                   [h = std::move(handler)](const Request& req, Responder r) { r.send(h(req)); });
}

Status Server::start() {
  beast::error_code ec;
  const ServerConfig& c = impl_->config;
  if (c.tls_cert.empty() != c.tls_key.empty()) {
    return Status::InvalidArgument("TLS needs both --tls-cert and --tls-key");
  }
  if (!c.tls_cert.empty()) {
    impl_->tls.emplace(net::ssl::context::tls_server);
    auto& ctx = *impl_->tls;
    ctx.set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                    net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                    net::ssl::context::no_tlsv1_1 | net::ssl::context::single_dh_use);
    ctx.use_certificate_chain_file(c.tls_cert, ec);
    if (ec) {
      impl_->tls.reset();
      return Status::InvalidArgument(fmt::format("--tls-cert {}: {}", c.tls_cert, ec.message()));
    }
    ctx.use_private_key_file(c.tls_key, net::ssl::context::pem, ec);
    if (ec) {
      impl_->tls.reset();
      return Status::InvalidArgument(fmt::format("--tls-key {}: {}", c.tls_key, ec.message()));
    }
  }
  auto address = net::ip::make_address(impl_->config.host, ec);
  if (ec) {
    return Status::InvalidArgument("INFERA_HOST '" + impl_->config.host +
                                   "' is not an IP address: " + ec.message());
  }
  tcp::endpoint endpoint(address, impl_->config.port);
  auto& acc = impl_->acceptor;
  acc.open(endpoint.protocol(), ec);
  if (!ec) acc.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(endpoint, ec);
  if (!ec) acc.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::Unavailable(fmt::format("cannot listen on {}:{}: {}", impl_->config.host,
                                           impl_->config.port, ec.message()));
  }
  net::co_spawn(impl_->ioc, impl_->accept_loop(), net::detached);
  return Status::Ok();
}

uint16_t Server::port() const {
  beast::error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

void Server::run() {
  net::signal_set signals(impl_->ioc, SIGINT, SIGTERM);
  if (!impl_->reload_callbacks.empty()) signals.add(SIGHUP);
  std::function<void(const beast::error_code&, int)> on_signal =
      [this, &signals, &on_signal](const beast::error_code& ec, int signo) {
        if (ec) return;
        if (signo == SIGHUP) {
          log::info("http.signal", "received SIGHUP, reloading");
          for (auto& cb : impl_->reload_callbacks) cb();
          signals.async_wait(on_signal);
          return;
        }
        log::info("http.signal", "received signal {}, draining", signo);
        begin_drain();
      };
  signals.async_wait(on_signal);
  std::vector<std::thread> threads;
  for (int i = 1; i < impl_->config.io_threads; ++i) {
    threads.emplace_back([this] { impl_->ioc.run(); });
  }
  impl_->ioc.run();
  for (auto& t : threads) t.join();
}

void Server::begin_drain() {
  net::post(impl_->ioc, [this] {
    if (impl_->draining.exchange(true)) return;
    impl_->ready.store(false);
    net::co_spawn(impl_->ioc, impl_->drain_watch(), net::detached);
  });
}

bool Server::draining() const { return impl_->draining.load(); }
void Server::set_ready(bool ready) { impl_->ready.store(ready); }
bool Server::ready() const { return impl_->ready.load() && !impl_->draining.load(); }

}  // namespace infera::http
