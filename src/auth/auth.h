// Who calls, and how much they may: API keys and roles from a keys file, and rate
// limits and quotas per key and per client address (local GCRA buckets, or shared by
// several instances through Redis). Applied by http::Server's gate before any handler.
//
//   auto access = auth::Access::create(options, metrics);   // reads the keys file
//   server.set_gate(access->gate());                        // 401/403/429 + headers
//   ... a handler: req.caller->may_use_model(name), caller->charge_tokens(n)
//
// Keys are never stored or logged, only their SHA-256 and their name. Thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace infera::http {
class Server;
}
namespace infera::obs {
class Registry;
}

namespace infera::auth {

// Per subject (a key, or a client address). 0 means no limit.
struct Limits {
  int64_t requests_per_minute = 0;
  int64_t request_burst = 0;   // requests allowed at once; 0 = a minute's worth
  int64_t tokens_per_minute = 0;
  int64_t concurrent = 0;      // requests in flight at once (per instance)
  int64_t tokens_per_day = 0;  // UTC day; survives restarts
  bool any() const {
    return requests_per_minute > 0 || tokens_per_minute > 0 || concurrent > 0 || tokens_per_day > 0;
  }
};

// A role: its scheduling priority, limits for its keys, and what it may use.
struct Role {
  std::string name;
  int priority = 0;                  // scheduler priority of its requests (-100..100)
  bool admin = false;                // admin routes: models load/unload, cache, keys
  std::vector<std::string> models;   // allowed models; empty = all
  std::vector<std::string> routes;   // allowed route prefixes ("/v1/", "/api/chat"); empty = all non-admin
  Limits limits;
};

// One API key of the keys file.
struct KeyEntry {
  std::string name;
  std::array<uint8_t, 32> sha256{};
  std::string role;
  std::vector<std::string> models;   // narrows the role's; empty = the role's
  Limits limits;                     // each non-zero field overrides the role's
};

struct KeysFile {
  std::vector<Role> roles;   // the built-in admin/teacher/student, as configured, then custom
  std::vector<KeyEntry> keys;
};

// Parses a keys file (TOML):
//   [roles.student]           priority, requests_per_minute, request_burst,
//   [roles.teacher]           tokens_per_minute, concurrent, tokens_per_day,
//   [roles.ta]                models = [...], routes = [...], admin = bool
//   [[keys]]  name = "alice"  sha256 = "<64 hex>"  role = "student"  (+ any limit, models)
// Errors name the file, the entry and the problem.
Result<KeysFile> parse_keys_file(const std::string& path);

// SHA-256 of `text`, raw and as lower-case hex.
std::array<uint8_t, 32> sha256(std::string_view text);
std::string sha256_hex(std::string_view text);

// The identity of one request, set by the gate.
struct Caller {
  std::string name;            // the key's name; "anonymous" without keys
  std::string role;            // empty when anonymous
  bool authenticated = false;
  bool admin = false;          // true for anonymous callers (no keys configured)
  int priority = 0;
  std::vector<std::string> models;  // allowed; empty = all
  std::string client_address;

  bool may_use_model(std::string_view model) const;
  // Charges prompt or completion tokens, as they are produced, to this request's
  // token buckets and daily quota. Any thread.
  void charge_tokens(int64_t tokens) const {
    if (charge) charge(tokens);
  }
  std::function<void(int64_t)> charge;
};

struct AccessOptions {
  std::string keys_file;               // --api-keys-file; empty = no keys
  bool allow_anonymous = false;        // --allow-anonymous
  std::string host;                    // where the server listens (loopback check)
  Limits per_client;                   // --client-requests-per-minute ...
  // Proxies whose X-Forwarded-For names the client (--trusted-proxies); from any other
  // peer the header is ignored.
  std::vector<std::string> trusted_proxies;
  std::string redis_url;               // --redis-url: limits shared across instances
  std::string data_dir;                // where local daily quotas are kept
  std::string instance_prefix = "infera:rl:";
};

class Limiter;

// Keys, roles and limits together; the server's gate.
class Access {
 public:
  // Reads the keys file; refuses to serve a non-loopback address without keys unless
  // anonymous access is allowed (the message says how to fix it).
  static Result<std::unique_ptr<Access>> create(const AccessOptions& options, obs::Registry& metrics);
  ~Access();
  Access(const Access&) = delete;
  Access& operator=(const Access&) = delete;

  // Installs the gate on `server` and GET/POST /admin/keys; reloads on SIGHUP.
  void attach(http::Server& server);
  // Re-reads the keys file; on error the previous keys stay in force (logged).
  Status reload();
  // Starts the file watcher (reload when the keys file changes) and the limiter's
  // background work; stop() ends them.
  void start();
  void stop();
  bool keys_configured() const;

 private:
  Access(AccessOptions options, obs::Registry& metrics);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace infera::auth
