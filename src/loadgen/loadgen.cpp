// Asio/Beast implementation of loadgen.h.
#include "loadgen/loadgen.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>  // Boost 1.74's awaitable.hpp uses std::exchange without including it.

namespace infera::loadgen {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

struct Target {
  std::string host;
  std::string port;
  std::string base_path;
};

Result<Target> parse_url(const std::string& url) {
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0) {
    return Status::InvalidArgument("--url must start with http:// (got '" + url + "')");
  }
  std::string rest = url.substr(scheme.size());
  size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  Target t;
  t.base_path = slash == std::string::npos ? "" : rest.substr(slash);
  while (!t.base_path.empty() && t.base_path.back() == '/') t.base_path.pop_back();
  size_t colon = hostport.rfind(':');
  if (colon == std::string::npos) {
    t.host = hostport;
    t.port = "80";
  } else {
    t.host = hostport.substr(0, colon);
    t.port = hostport.substr(colon + 1);
  }
  if (t.host.empty() || t.port.empty()) return Status::InvalidArgument("--url has no host: " + url);
  return t;
}

Quantiles quantiles(std::vector<double> v) {
  Quantiles q;
  if (v.empty()) return q;
  std::sort(v.begin(), v.end());
  auto at = [&](double p) {
    size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
  };
  q.p50 = at(0.50);
  q.p95 = at(0.95);
  q.p99 = at(0.99);
  q.max = v.back();
  double sum = 0;
  for (double x : v) sum += x;
  q.mean = sum / static_cast<double>(v.size());
  return q;
}

// One client connection (kept alive across a user's requests) and its read buffer.
struct Conn {
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;
};

// Outcome of one request.
struct Sample {
  bool ok = false;
  std::string error_kind;
  double latency_ms = 0;
  double ttft_ms = -1;
  std::vector<double> itl_ms;
  int64_t output_tokens = 0;
};

class Runner {
 public:
  Runner(const Options& o, Target t) : opt_(o), target_(std::move(t)) {}

  Summary run() {
    start_ = Clock::now();
    if (opt_.rate_per_s > 0) {
      net::co_spawn(ioc_, open_loop(), net::detached);
    } else {
      for (int u = 0; u < opt_.concurrency; ++u) net::co_spawn(ioc_, user(u), net::detached);
    }
    if (opt_.progress) net::co_spawn(ioc_, progress(), net::detached);
    ioc_.run();
    if (opt_.progress) std::fprintf(stderr, "\n");
    return summarize();
  }

 private:
  // Claims the next request slot; false once the bounds are reached.
  bool claim() {
    if (opt_.max_requests > 0 && issued_ >= opt_.max_requests) return false;
    if (opt_.duration_s > 0 &&
        std::chrono::duration<double>(Clock::now() - start_).count() >= opt_.duration_s) {
      return false;
    }
    ++issued_;
    ++in_flight_;
    return true;
  }

  std::string body_for(int64_t n) const {
    const std::string& prompt = opt_.prompts[static_cast<size_t>(n) % opt_.prompts.size()];
    json b;
    if (!opt_.model.empty()) b["model"] = opt_.model;
    b["max_tokens"] = opt_.max_tokens;
    b["temperature"] = opt_.temperature;
    b["stream"] = opt_.stream;
    if (opt_.stream) b["stream_options"] = {{"include_usage", true}};
    if (opt_.endpoint.find("chat") != std::string::npos) {
      json messages = json::array();
      if (!opt_.system_prompt.empty()) {
        messages.push_back({{"role", "system"}, {"content", opt_.system_prompt}});
      }
      messages.push_back({{"role", "user"}, {"content", prompt}});
      b["messages"] = messages;
    } else {
      b["prompt"] = opt_.system_prompt.empty() ? prompt : opt_.system_prompt + "\n" + prompt;
    }
    return b.dump();
  }

  // Sends one request on `stream` (connecting if needed) and records its sample.
  net::awaitable<void> one_request(Conn& conn, int64_t n) {
    auto& stream = conn.stream;
    Sample s;
    const auto t0 = Clock::now();
    beast::error_code ec;
    auto token = net::redirect_error(net::use_awaitable, ec);
    auto fail = [&](std::string kind) {
      s.ok = false;
      s.error_kind = std::move(kind);
      stream.reset();
      conn.buffer.clear();
    };
    // A kept-alive connection the server has closed fails on its next request before
    // any answer; such a request is retried once on a new connection, as HTTP
    // clients do, instead of being counted as an error.
    for (bool retry = true; retry;) {
      retry = false;
      const bool reused = stream.has_value();
      do {
        if (!stream) {
          stream.emplace(ioc_);
          stream->expires_after(std::chrono::seconds(10));
          co_await stream->async_connect(endpoints_, token);
          if (ec) {
            fail("connect");
            break;
          }
          stream->socket().set_option(tcp::no_delay(true));
        }
        stream->expires_after(
            std::chrono::milliseconds(static_cast<int64_t>(opt_.request_timeout_s * 1000)));
        bhttp::request<bhttp::string_body> req{bhttp::verb::post, target_.base_path + opt_.endpoint,
                                               11};
        req.set(bhttp::field::host, target_.host);
        req.set(bhttp::field::content_type, "application/json");
        req.keep_alive(true);
        req.body() = body_for(n);
        req.prepare_payload();
        co_await bhttp::async_write(*stream, req, token);
        if (ec && reused) {
          stream.reset();
          conn.buffer.clear();
          retry = true;
          break;
        }
        if (ec) {
          fail(ec == beast::error::timeout ? "timeout" : "write");
          break;
        }
        bhttp::response_parser<bhttp::buffer_body> parser;
        parser.body_limit(std::numeric_limits<std::uint64_t>::max());
        co_await bhttp::async_read_header(*stream, conn.buffer, parser, token);
        if (ec && reused && ec != beast::error::timeout) {
          stream.reset();
          conn.buffer.clear();
          retry = true;
          break;
        }
        if (ec) {
          fail(ec == beast::error::timeout ? "timeout" : "read");
          break;
        }
        int status = parser.get().result_int();
        std::string body;
        std::string pending;  // SSE text not yet split into lines
        auto last_token = t0;
        bool usage_seen = false;
        char chunk[8192];
        while (!parser.is_done()) {
          parser.get().body().data = chunk;
          parser.get().body().size = sizeof chunk;
          co_await bhttp::async_read(*stream, conn.buffer, parser, token);
          if (ec == bhttp::error::need_buffer) ec = {};
          if (ec) break;
          size_t got = sizeof chunk - parser.get().body().size;
          if (!opt_.stream || status != 200) {
            body.append(chunk, got);
            continue;
          }
          pending.append(chunk, got);
          size_t eol;
          while ((eol = pending.find('\n')) != std::string::npos) {
            std::string line = pending.substr(0, eol);
            pending.erase(0, eol + 1);
            if (!line.empty() && line.back() == '\r') line.pop_back();
            if (line.rfind("data:", 0) != 0) continue;
            std::string data = line.substr(line[5] == ' ' ? 6 : 5);
            if (data == "[DONE]") continue;
            json ev = json::parse(data, nullptr, false);
            if (ev.is_discarded()) continue;
            if (ev.contains("usage") && ev["usage"].is_object() &&
                ev["usage"].contains("completion_tokens")) {
              s.output_tokens = ev["usage"]["completion_tokens"].get<int64_t>();
              usage_seen = true;
            }
            if (!ev.contains("choices") || ev["choices"].empty()) continue;
            const json& c = ev["choices"][0];
            std::string text;
            if (c.contains("delta") && c["delta"].contains("content") &&
                c["delta"]["content"].is_string()) {
              text = c["delta"]["content"].get<std::string>();
            } else if (c.contains("text") && c["text"].is_string()) {
              text = c["text"].get<std::string>();
            }
            if (text.empty()) continue;
            auto now = Clock::now();
            if (s.ttft_ms < 0) {
              s.ttft_ms = std::chrono::duration<double, std::milli>(now - t0).count();
            } else {
              s.itl_ms.push_back(
                  std::chrono::duration<double, std::milli>(now - last_token).count());
            }
            last_token = now;
            if (!usage_seen) ++s.output_tokens;
          }
        }
        if (ec) {
          fail(ec == beast::error::timeout ? "timeout" : "read");
          break;
        }
        if (status != 200) {
          fail(fmt::format("http_{}", status));
          break;
        }
        if (!opt_.stream) {
          json doc = json::parse(body, nullptr, false);
          if (doc.is_discarded()) {
            fail("bad_json");
            break;
          }
          if (doc.contains("usage") && doc["usage"].contains("completion_tokens")) {
            s.output_tokens = doc["usage"]["completion_tokens"].get<int64_t>();
          }
        }
        s.ok = true;
        if (!parser.get().keep_alive()) {
          stream.reset();
          conn.buffer.clear();
        }
      } while (false);
    }
    s.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    record(std::move(s));
  }

  net::awaitable<void> user(int u) {
    Conn conn;
    while (claim()) co_await one_request(conn, issued_ - 1);
    if (conn.stream) {
      beast::error_code ignored;
      conn.stream->socket().close(ignored);
    }
    co_return;
  }

  net::awaitable<void> open_loop() {
    net::steady_timer timer(ioc_);
    const auto interval = std::chrono::nanoseconds(static_cast<int64_t>(1e9 / opt_.rate_per_s));
    auto next = Clock::now();
    while (claim()) {
      int64_t n = issued_ - 1;
      net::co_spawn(
          ioc_,
          [this, n]() -> net::awaitable<void> {
            Conn conn;
            co_await one_request(conn, n);
          },
          net::detached);
      next += interval;
      timer.expires_at(next);
      beast::error_code ec;
      co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
    }
  }

  net::awaitable<void> progress() {
    net::steady_timer timer(ioc_);
    while (in_flight_ > 0 || issued_ == 0 || can_issue_more()) {
      timer.expires_after(std::chrono::seconds(1));
      beast::error_code ec;
      co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
      double t = std::chrono::duration<double>(Clock::now() - start_).count();
      int64_t errors = 0;
      for (const auto& [k, v] : errors_) errors += v;
      std::fprintf(stderr, "\r[%6.1fs] %lld done, %lld in flight, %lld errors, %.1f tok/s   ", t,
                   static_cast<long long>(samples_.size()), static_cast<long long>(in_flight_),
                   static_cast<long long>(errors),
                   static_cast<double>(tokens_) / std::max(t, 1e-9));
    }
  }

  bool can_issue_more() const {
    if (opt_.max_requests > 0 && issued_ >= opt_.max_requests) return false;
    if (opt_.duration_s > 0 &&
        std::chrono::duration<double>(Clock::now() - start_).count() >= opt_.duration_s) {
      return false;
    }
    return true;
  }

  void record(Sample s) {
    --in_flight_;
    end_ = Clock::now();
    tokens_ += s.output_tokens;
    if (!s.ok) ++errors_[s.error_kind];
    samples_.push_back(std::move(s));
  }

  Summary summarize() const {
    Summary sum;
    sum.requests = static_cast<int64_t>(samples_.size());
    sum.errors = errors_;
    sum.wall_s = std::chrono::duration<double>(end_ - start_).count();
    std::vector<double> latency, ttft, itl;
    for (const auto& s : samples_) {
      if (!s.ok) continue;
      ++sum.ok;
      sum.output_tokens += s.output_tokens;
      latency.push_back(s.latency_ms);
      if (s.ttft_ms >= 0) ttft.push_back(s.ttft_ms);
      itl.insert(itl.end(), s.itl_ms.begin(), s.itl_ms.end());
    }
    if (sum.wall_s > 0) {
      sum.requests_per_s = static_cast<double>(sum.ok) / sum.wall_s;
      sum.output_tokens_per_s = static_cast<double>(sum.output_tokens) / sum.wall_s;
    }
    sum.latency_ms = quantiles(latency);
    sum.ttft_ms = quantiles(ttft);
    sum.itl_ms = quantiles(itl);
    return sum;
  }

 public:
  Status resolve() {
    beast::error_code ec;
    tcp::resolver resolver(ioc_);
    endpoints_ = resolver.resolve(target_.host, target_.port, ec);
    if (ec) {
      return Status::Unavailable("cannot resolve " + target_.host + ":" + target_.port + ": " +
                                 ec.message());
    }
    return Status::Ok();
  }

 private:
  const Options& opt_;
  Target target_;
  net::io_context ioc_;
  tcp::resolver::results_type endpoints_;
  Clock::time_point start_, end_;
  int64_t issued_ = 0;
  int64_t in_flight_ = 0;
  int64_t tokens_ = 0;
  std::vector<Sample> samples_;
  std::map<std::string, int64_t> errors_;
};

json quantiles_json(const Quantiles& q) {
  return {{"p50", q.p50}, {"p95", q.p95}, {"p99", q.p99}, {"mean", q.mean}, {"max", q.max}};
}

}  // namespace

Result<std::vector<std::string>> load_prompts(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound(path + ": cannot open prompt file");
  std::vector<std::string> prompts;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (line.front() == '{') {
      json doc = json::parse(line, nullptr, false);
      if (doc.is_discarded() || !doc.contains("prompt") || !doc["prompt"].is_string()) {
        return Status::InvalidArgument(
            fmt::format("{}:{}: JSON line without a string \"prompt\" field", path, line_no));
      }
      prompts.push_back(doc["prompt"].get<std::string>());
    } else {
      prompts.push_back(line);
    }
  }
  if (prompts.empty()) return Status::InvalidArgument(path + ": no prompts in file");
  return prompts;
}

Result<Summary> run(const Options& options) {
  if (options.prompts.empty()) return Status::InvalidArgument("no prompts given");
  if (options.rate_per_s <= 0 && options.concurrency < 1) {
    return Status::InvalidArgument("--concurrency must be at least 1");
  }
  if (options.duration_s <= 0 && options.max_requests <= 0) {
    return Status::InvalidArgument("give --duration or --requests to bound the run");
  }
  auto target = parse_url(options.url);
  if (!target.ok()) return target.status();
  Runner runner(options, *target);
  if (Status st = runner.resolve(); !st.ok()) return st;
  return runner.run();
}

std::string to_text(const Summary& s) {
  std::string out;
  out += fmt::format("requests: {} ok, {} failed in {:.2f} s ({:.2f} req/s)\n", s.ok,
                     s.requests - s.ok, s.wall_s, s.requests_per_s);
  out += fmt::format("output tokens: {} ({:.1f} tok/s aggregate)\n", s.output_tokens,
                     s.output_tokens_per_s);
  auto line = [&](const char* name, const Quantiles& q) {
    out +=
        fmt::format("{:<12} p50 {:9.2f}  p95 {:9.2f}  p99 {:9.2f}  mean {:9.2f}  max {:9.2f} ms\n",
                    name, q.p50, q.p95, q.p99, q.mean, q.max);
  };
  line("latency", s.latency_ms);
  line("ttft", s.ttft_ms);
  line("inter-token", s.itl_ms);
  for (const auto& [kind, n] : s.errors) out += fmt::format("errors[{}]: {}\n", kind, n);
  return out;
}

std::string to_json(const Summary& s) {
  json j;
  j["requests"] = s.requests;
  j["ok"] = s.ok;
  j["errors"] = s.errors;
  j["wall_seconds"] = s.wall_s;
  j["requests_per_second"] = s.requests_per_s;
  j["output_tokens"] = s.output_tokens;
  j["output_tokens_per_second"] = s.output_tokens_per_s;
  j["latency_ms"] = quantiles_json(s.latency_ms);
  j["ttft_ms"] = quantiles_json(s.ttft_ms);
  j["inter_token_ms"] = quantiles_json(s.itl_ms);
  return j.dump(2);
}

}  // namespace infera::loadgen
