// infera's HTTP/1.1 server: keep-alive, request body limit (413), header-read and
// idle timeouts (slow clients are dropped), gzip for large bodies, X-Request-ID and
// X-Response-Time on every response, streamed (chunked, SSE) responses, and a
// graceful drain on SIGTERM/SIGINT (in-flight requests finish, new ones get 503).
//
// Handlers may answer at once or later from any thread through their Responder.
// Errors are JSON in the OpenAI shape {"error":{"message","type","code"}}.
//
// Before a handler runs, the gate (set_gate; auth/) may refuse the request (401, 403,
// 429) or name its caller; CORS preflights are answered for the configured origins;
// every response carries the security headers (nosniff, frame and referrer policy;
// HSTS with TLS). With a certificate and key the server speaks HTTPS only.
//
// Threads: `io_threads` threads run the event loop; each connection is confined to
// one strand. Handlers run on an I/O thread and must not block: long work goes to
// another thread, which answers through the Responder.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace infera::obs {
class Registry;
}
namespace infera::auth {
struct Caller;
}

namespace infera::http {

struct ServerConfig {
  std::string host = "127.0.0.1";          // INFERA_HOST / --host / host
  uint16_t port = 8080;                     // INFERA_PORT / --port / port (0 = any free port)
  int io_threads = 1;                       // INFERA_IO_THREADS / --io-threads
  uint64_t max_content_length = 1 << 20;   // MAX_CONTENT_LENGTH, bytes
  int64_t header_timeout_ms = 10000;        // INFERA_HEADER_TIMEOUT_MS
  int64_t idle_timeout_ms = 60000;          // INFERA_IDLE_TIMEOUT_MS
  int64_t drain_timeout_ms = 30000;         // INFERA_DRAIN_TIMEOUT_MS
  uint64_t gzip_min_bytes = 1024;           // INFERA_GZIP_MIN_BYTES
  // Origins browsers may call from (INFERA_CORS_ORIGINS; "*" = any); empty = no CORS.
  std::vector<std::string> cors_origins;
  // PEM certificate chain and private key (INFERA_TLS_CERT / INFERA_TLS_KEY): HTTPS.
  std::string tls_cert;
  std::string tls_key;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Request {
  std::string method;
  std::string path;    // target without the query string
  std::string query;   // text after '?', may be empty
  std::string body;
  std::string request_id;
  std::string remote_address;  // the client's IP address
  Headers headers;
  // Who calls, as the gate established it; null when no gate is set.
  std::shared_ptr<const auth::Caller> caller;
  // Held until the response is written (e.g. the caller's concurrency slot).
  std::shared_ptr<void> lease;
  // Values of a pattern route's {placeholders}, percent-decoded, e.g. {"name", "tiny"}.
  std::vector<std::pair<std::string, std::string>> params;
  // The placeholder's value; empty when absent.
  std::string_view param(std::string_view name) const;
  // Case-insensitive header lookup; empty when absent.
  std::string_view header(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  Headers headers;

  static Response json(int status, std::string body);
  // OpenAI-shaped error: {"error":{"message":..,"type":..,"code":..}}.
  static Response error(int status, std::string_view message,
                        std::string_view type = "invalid_request_error",
                        std::string_view code = {});
};

// A handle for answering one request, copyable and usable from any thread. Exactly
// one of send() or begin_stream()…end() must be called; the connection waits.
class Responder {
 public:
  struct State;
  explicit Responder(std::shared_ptr<State> state) : state_(std::move(state)) {}

  void send(Response response);
  // Chunked response; `content_type` e.g. "text/event-stream".
  void begin_stream(int status, std::string content_type, Headers headers = {});
  void write(std::string chunk);
  void end();
  // Names the model serving this request, for the server's observer (SLA per model).
  void set_model(std::string model);
  // True once the client has disconnected (a write failed or the server stopped).
  bool client_gone() const;

 private:
  std::shared_ptr<State> state_;
};

using Handler = std::function<void(const Request&, Responder)>;

// The gate's answer for one request: refuse it with `reject`, or let it through;
// `headers` go on its response either way (e.g. x-ratelimit-*).
struct GateDecision {
  std::optional<Response> reject;
  Headers headers;
  // Further header lines, already rendered ("name: value\r\n" each; names that no
  // handler sets): the cheap form for headers on every response.
  std::string header_lines;
};
// Runs on an I/O thread after routing (`route` is the matched path or pattern,
// "unmatched" for none) and before the handler; may set request.caller and .lease.
// It calls `done` exactly once, at once or later from any thread (e.g. after asking
// Redis); `request` stays valid and untouched by the server until then.
using GateDone = std::function<void(GateDecision)>;
using Gate = std::function<void(Request& request, std::string_view route, GateDone done)>;
using SyncHandler = std::function<Response(const Request&)>;

class Server {
 public:
  Server(ServerConfig config, obs::Registry& metrics);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Registers a handler for an exact path, or for a pattern whose segments may be
  // placeholders ("/api/models/{name}/load": one non-empty segment each, see
  // Request::param). Exact paths win over patterns. REQUIRES: before start().
  void route(const std::string& method, const std::string& path, Handler handler);
  void route(const std::string& method, const std::string& path, SyncHandler handler);

  // Called once per finished request (any thread) with the route it matched (its
  // registered path or pattern, "unmatched" otherwise), the model the handler named
  // (Responder::set_model; may be empty), the status and the time from headers read
  // to response written. For SLA tracking. REQUIRES: before start().
  using Observer = std::function<void(const Request&, std::string_view route, std::string_view model,
                                      int status, double seconds)>;
  void set_observer(Observer observer);

  // Requests whose target starts with `path_prefix` may carry bodies up to `bytes`
  // (when more than MAX_CONTENT_LENGTH: document uploads). REQUIRES: before start().
  void set_body_limit(const std::string& path_prefix, uint64_t bytes);

  // Installs the gate every request passes before its handler. REQUIRES: before start().
  void set_gate(Gate gate);
  // Called (on an I/O thread) when the process receives SIGHUP, e.g. to reload keys.
  // REQUIRES: before run().
  void on_reload_signal(std::function<void()> callback);

  // Binds and listens; port() is known afterwards. Fails with a message naming
  // the address when it cannot bind.
  Status start();
  uint16_t port() const;
  // Runs the event loop until a drain (signal or begin_drain) completes.
  void run();
  // Starts a graceful drain; thread-safe. run() returns when in-flight requests
  // have finished or drain_timeout_ms has passed.
  void begin_drain();
  bool draining() const;
  // /ready answers 200 only when ready and not draining.
  void set_ready(bool ready);
  bool ready() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace infera::http
