// libFuzzer target for the whole HTTP request path, in process: the input is the
// bytes a client sends on one connection (one or more requests, or garbage). They
// go through a real http::Server on a loopback port with the application's routes
// registered as `infera serve` registers them (system, model and generation routes;
// the operations routes live in src/cli/, outside any library, see docs/FUZZING.md),
// a tiny synthetic model, small limits and an L1-only response cache, all started
// once in LLVMFuzzerInitialize.
//
// Per input: a fresh connection; write the bytes; read until the server closes, or
// until the answer has gone quiet (then half-close, so the server sees the end of
// the client's bytes, and read to the end). Bugs: a crash or sanitizer report on the
// server's threads, a 500 (a handler threw), a JSON body or streamed event that does
// not parse, a connection the server neither answers nor closes within
// kConnectionDeadline (a hang), and a server that stops answering /health (checked
// every kHealthEvery inputs). Build and run: docs/FUZZING.md.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "api/api.h"
#include "api/generation.h"
#include "cache/cache.h"
#include "core/log.h"
#include "engine/synth.h"
#include "http/server.h"
#include "models/gguf_model.h"
#include "models/registry.h"
#include "obs/metrics.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// How long the client waits for the first answer byte before half-closing, and
// how long an answer may pause before the client takes it as complete.
constexpr auto kFirstByteWait = 50ms;
constexpr auto kQuietWait = 10ms;
// A connection the server has not closed this long after the client half-closed
// is a hang: every request then has a deadline (request timeout 2 s) and an
// incomplete one ends at the header timeout or the end of the client's bytes.
constexpr auto kConnectionDeadline = 10s;
constexpr int kHealthEvery = 25;

struct Fixture {
  std::unique_ptr<infera::obs::Registry> metrics;
  std::unique_ptr<infera::http::Server> server;
  std::unique_ptr<infera::models::Registry> registry;
  std::unique_ptr<infera::cache::Cache> cache;
  std::thread loop;
  std::atomic<bool> loop_returned{false};  // Server::run() came back: a drain ended
  std::string dir;                         // the tiny model's, removed at exit
  uint16_t port = 0;
  int64_t inputs = 0;
  // Printed at exit, to show what the checks saw.
  int64_t responses = 0;
  int64_t json_bodies = 0;
  int64_t json_events = 0;
};

Fixture* g_fixture = nullptr;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "http_fuzz: %s\n", what);
  std::abort();
}

// Connects, retrying for a while on errors that say the machine, not the server,
// is short (ephemeral ports taken by other programs' connections, a full SYN queue).
int connect_to_server() {
  const auto deadline = Clock::now() + 10s;
  for (;;) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket() failed");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(g_fixture->port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
    const int error = errno;
    ::close(fd);
    if (error != ECONNREFUSED && Clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
      continue;
    }
    std::fprintf(stderr, "http_fuzz: connect: %s; server draining: %d, run() returned: %d\n",
                 std::strerror(error), g_fixture->server->draining() ? 1 : 0,
                 g_fixture->loop_returned.load() ? 1 : 0);
    fail("cannot connect to the server");
  }
}

// Writes as much of `bytes` as the server takes (it may close early, e.g. after a
// 413), while draining what it answers so neither side blocks on a full buffer.
void send_all(int fd, std::string_view bytes, std::string& received) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    pollfd p{fd, POLLOUT | POLLIN, 0};
    if (::poll(&p, 1, 1000) <= 0) fail("server accepts no bytes for 1 s");
    if (p.revents & POLLIN) {
      char buf[4096];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return;
      received.append(buf, static_cast<size_t>(n));
    }
    if (p.revents & POLLOUT) {
      const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<size_t>(n);
    }
    if (p.revents & (POLLERR | POLLHUP)) return;
  }
}

// Reads until the server closes. Before half-closing, a pause of `quiet` (or of
// kFirstByteWait with nothing received) ends the wait; returns whether the server
// closed.
bool read_until_close_or_quiet(int fd, std::string& received, bool half_closed) {
  const auto deadline = Clock::now() + kConnectionDeadline;
  const size_t had = received.size();
  while (Clock::now() < deadline) {
    std::chrono::milliseconds wait = kConnectionDeadline;
    if (!half_closed) wait = received.size() > had ? kQuietWait : kFirstByteWait;
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(
        &p, 1,
        static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(wait).count()));
    if (ready == 0) {
      if (!half_closed) return false;
      continue;
    }
    char buf[16384];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return true;
    received.append(buf, static_cast<size_t>(n));
  }
  fail("the server neither answered nor closed the connection within 10 s of the client's end");
}

std::string exchange(std::string_view bytes) {
  const int fd = connect_to_server();
  std::string received;
  send_all(fd, bytes, received);
  if (!read_until_close_or_quiet(fd, received, /*half_closed=*/false)) {
    ::shutdown(fd, SHUT_WR);
    read_until_close_or_quiet(fd, received, /*half_closed=*/true);
  }
  ::close(fd);
  return received;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Splits off one line ending in CRLF; false when there is none.
bool take_line(std::string_view& in, std::string_view& line) {
  const size_t end = in.find("\r\n");
  if (end == std::string_view::npos) return false;
  line = in.substr(0, end);
  in.remove_prefix(end + 2);
  return true;
}

// The body of a chunked message; false when `in` ends before the last chunk.
bool take_chunked(std::string_view& in, std::string& body) {
  for (std::string_view line; take_line(in, line);) {
    size_t size = 0;
    const auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), size, 16);
    if (ec != std::errc() || end == line.data()) return false;
    if (size == 0) return take_line(in, line);  // no trailers are sent
    if (in.size() < size + 2) return false;
    body.append(in.substr(0, size));
    in.remove_prefix(size + 2);
  }
  return false;
}

// Every complete response the server wrote must carry valid JSON where it says
// so: application/json bodies, and the data lines of an event stream (error bodies
// echo request bytes, which must be escaped into valid UTF-8 JSON). Gzipped bodies
// are skipped; so are inputs with a HEAD request, whose responses have no body
// despite their Content-Length.
void check_responses(std::string_view request, std::string_view in) {
  if (request.find("HEAD") != std::string_view::npos) return;
  while (in.rfind("HTTP/1.", 0) == 0) {
    const size_t head_end = in.find("\r\n\r\n");
    if (head_end == std::string_view::npos) return;
    std::string_view head = in.substr(0, head_end + 2);
    in.remove_prefix(head_end + 4);
    std::string_view status_line;
    take_line(head, status_line);
    const int status =
        status_line.size() >= 12 ? std::atoi(std::string(status_line.substr(9, 3)).c_str()) : 0;
    std::string type;
    bool chunked = false;
    bool encoded = false;
    std::optional<size_t> length;
    for (std::string_view line; take_line(head, line);) {
      const size_t colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      const std::string name = lower(line.substr(0, colon));
      std::string_view value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      if (name == "content-type") type = lower(value);
      if (name == "transfer-encoding") chunked = lower(value).find("chunked") != std::string::npos;
      if (name == "content-encoding") encoded = true;
      if (name == "content-length") length = std::strtoull(std::string(value).c_str(), nullptr, 10);
    }
    ++g_fixture->responses;
    if (status < 200 || status == 204 || status == 304) continue;
    std::string body;
    if (chunked) {
      if (!take_chunked(in, body)) return;
    } else if (length) {
      if (in.size() < *length) return;
      body = std::string(in.substr(0, *length));
      in.remove_prefix(*length);
    } else {
      return;  // delimited by the end of the connection
    }
    if (encoded) continue;
    if (type.rfind("application/json", 0) == 0) ++g_fixture->json_bodies;
    if (type.rfind("application/json", 0) == 0 && !nlohmann::json::accept(body)) {
      std::fprintf(stderr, "http_fuzz: invalid JSON body (status %d): %s\n", status, body.c_str());
      fail("a response body is not valid JSON");
    }
    if (type.rfind("text/event-stream", 0) == 0) {
      for (size_t pos = 0; pos < body.size();) {
        size_t end = body.find('\n', pos);
        if (end == std::string::npos) end = body.size();
        const std::string_view line = std::string_view(body).substr(pos, end - pos);
        pos = end + 1;
        if (line.rfind("data: ", 0) != 0 || line == "data: [DONE]") continue;
        ++g_fixture->json_events;
        if (!nlohmann::json::accept(line.substr(6))) {
          std::fprintf(stderr, "http_fuzz: invalid JSON event: %s\n", std::string(line).c_str());
          fail("a streamed event is not valid JSON");
        }
      }
    }
  }
}

void check_health() {
  const std::string answer =
      exchange("GET /health HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n");
  if (answer.rfind("HTTP/1.1 200 ", 0) != 0) fail("GET /health did not answer 200");
}

std::string write_tiny_model(const std::string& dir) {
  infera::engine::SynthOptions o;
  o.shape.name = "fuzz-tiny";
  o.shape.dim = 32;
  o.shape.n_layers = 1;
  o.shape.n_heads = 2;
  o.shape.n_kv_heads = 1;
  o.shape.ffn_dim = 64;
  o.shape.n_ctx_train = 256;
  o.type = infera::engine::GgmlType::kF32;
  o.vocab_path = std::string(INFERA_SOURCE_DIR) + "/models/stories260K-tok512.gguf";
  o.threads = 1;
  const std::string path = dir + "/tiny.gguf";
  if (!infera::engine::write_synthetic_model(o, path).ok()) fail("cannot write the tiny model");
  return path;
}

void stop_fixture() {
  Fixture* f = g_fixture;
  if (f == nullptr) return;
  std::fprintf(stderr,
               "http_fuzz: %lld inputs, %lld responses parsed, %lld JSON bodies and %lld "
               "streamed events checked\n",
               static_cast<long long>(f->inputs), static_cast<long long>(f->responses),
               static_cast<long long>(f->json_bodies), static_cast<long long>(f->json_events));
  f->server->begin_drain();
  f->loop.join();
  f->registry.reset();
  f->cache.reset();
  f->server.reset();
  std::error_code ec;
  std::filesystem::remove_all(f->dir, ec);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  infera::log::LogConfig log_config;
  log_config.level = "off";
  infera::log::init_logging(log_config);

  g_fixture = new Fixture();
  Fixture& f = *g_fixture;
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("infera-http-fuzz-" + std::to_string(::getpid())))
          .string();
  std::filesystem::create_directories(dir);
  f.dir = dir;
  const std::string model_path = write_tiny_model(dir);

  f.metrics = std::make_unique<infera::obs::Registry>();
  infera::http::ServerConfig sc;
  sc.port = 0;
  sc.io_threads = 1;
  sc.max_content_length = 16 << 10;
  sc.header_timeout_ms = 1000;
  sc.idle_timeout_ms = 2000;
  sc.drain_timeout_ms = 3000;
  sc.gzip_min_bytes = 512;
  f.server = std::make_unique<infera::http::Server>(sc, *f.metrics);
  infera::api::register_system_routes(*f.server, *f.metrics);

  infera::models::RegistryConfig rc;
  rc.max_loaded = 2;
  rc.acquire_timeout = 2000ms;
  rc.warm_up = true;
  f.registry = std::make_unique<infera::models::Registry>(rc, *f.metrics);
  infera::models::GgufKindConfig kc;
  kc.engine.threads = 1;
  kc.engine.ctx_tokens = 256;
  kc.scheduler.max_seqs = 4;
  kc.scheduler.max_queue = 8;
  kc.scheduler.max_batch_tokens = 64;
  f.registry->register_kind(infera::models::make_gguf_kind(kc, *f.metrics));
  infera::models::ModelSpec plain;
  plain.name = "tiny";
  plain.path = model_path;
  plain.pin = true;
  plain.declared_by = "fuzz";
  if (!f.registry->add(plain).ok()) fail("cannot declare the tiny model");
  infera::models::ModelSpec chatml = plain;
  chatml.name = "tiny-chatml";
  chatml.pin = false;
  chatml.chat_template = "chatml";
  chatml.keep_alive = 0ms;
  chatml.ctx_size = 128;
  chatml.role_prompts["student"] = "You help a student.";
  if (!f.registry->add(chatml).ok()) fail("cannot declare the chatml model");
  infera::api::register_model_routes(*f.server, *f.registry);

  infera::cache::Config cc;
  cc.max_entries = 64;
  cc.max_bytes = 1 << 20;
  cc.ttl_seconds = 60;
  cc.shards = 2;
  auto cache = infera::cache::Cache::open(cc);
  if (!cache.ok()) fail("cannot open the L1 cache");
  f.cache = std::move(cache).value();

  infera::api::GenerationConfig gc;
  gc.default_max_tokens = 8;
  gc.request_timeout_s = 2;
  gc.student_system_prompt = "You are a patient tutor.";
  gc.teacher_system_prompt = "You assist a teacher.";
  gc.sessions_max = 16;
  gc.session_turns = 2;
  infera::api::register_generation_routes(*f.server, gc, *f.registry, f.cache.get(), cc.policy);
  if (!f.server->start().ok()) fail("cannot start the server");
  f.port = f.server->port();

  std::promise<infera::Status> loaded;
  f.registry->load("tiny", [&loaded](infera::Status st) { loaded.set_value(st); });
  if (!loaded.get_future().get().ok()) fail("cannot load the tiny model");
  f.server->set_ready(true);
  f.loop = std::thread([&f] {
    f.server->run();
    f.loop_returned = true;
  });
  std::atexit(stop_fixture);
  check_health();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view request(reinterpret_cast<const char*>(data), size);
  const std::string answer = exchange(request);
  if (answer.find("HTTP/1.1 500 ") != std::string::npos) fail("the server answered 500");
  check_responses(request, answer);
  if (++g_fixture->inputs % kHealthEvery == 0) check_health();
  return 0;
}
