// Access: the keys in force, the gate every request passes, and the limiter behind it.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <charconv>
#include <map>
#include <thread>
#include <unordered_map>

#include "auth/auth.h"
#include "auth/limiter.h"
#include "cache/circuit_breaker.h"
#include "core/log.h"
#include "http/server.h"
#include "obs/metrics.h"

namespace infera::auth {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

double now_us() {
  return std::chrono::duration<double, std::micro>(Clock::now().time_since_epoch()).count();
}
int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A key as the gate uses it: the role resolved and the limits merged.
struct ResolvedKey {
  std::string name;
  std::string subject;  // "key:<name>"
  std::array<uint8_t, 32> sha256{};
  Role role;
  std::vector<std::string> models;
  Limits limits;
};

struct DigestHash {
  size_t operator()(const std::array<uint8_t, 32>& d) const {
    size_t h;
    std::memcpy(&h, d.data(), sizeof h);  // a SHA-256 is uniformly distributed already
    return h;
  }
};

struct KeySet {
  std::vector<ResolvedKey> keys;
  std::vector<Role> roles;
  std::unordered_map<std::array<uint8_t, 32>, size_t, DigestHash> by_digest;  // -> index in keys
};

Limits merge(const Limits& role, const Limits& key) {
  auto pick = [](int64_t k, int64_t r) { return k > 0 ? k : r; };
  return Limits{pick(key.requests_per_minute, role.requests_per_minute),
                pick(key.request_burst, role.request_burst),
                pick(key.tokens_per_minute, role.tokens_per_minute), pick(key.concurrent, role.concurrent),
                pick(key.tokens_per_day, role.tokens_per_day)};
}

std::shared_ptr<const KeySet> resolve(const KeysFile& file) {
  auto set = std::make_shared<KeySet>();
  set->roles = file.roles;
  for (const auto& k : file.keys) {
    ResolvedKey r;
    r.name = k.name;
    r.subject = "key:" + k.name;
    r.sha256 = k.sha256;
    for (const auto& role : file.roles) {
      if (role.name == k.role) r.role = role;
    }
    r.models = k.models.empty() ? r.role.models : k.models;
    r.limits = merge(r.role.limits, k.limits);
    set->keys.push_back(std::move(r));
  }
  for (size_t i = 0; i < set->keys.size(); ++i) set->by_digest.emplace(set->keys[i].sha256, i);
  return set;
}

bool is_loopback(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

// OpenAI's reset format: "20ms", "1s", "6m0s", "1h2m3s". On every limited response,
// so written by hand (fmt's parsing cost more than the rest of the header).
std::string reset_text(double seconds) {
  if (seconds <= 0) return "0s";
  if (seconds < 1) return std::to_string(static_cast<int64_t>(std::ceil(seconds * 1000))) + "ms";
  int64_t s = static_cast<int64_t>(std::ceil(seconds));
  const int64_t h = s / 3600, m = (s % 3600) / 60;
  s %= 60;
  std::string out;
  if (h > 0) out += std::to_string(h) + "h";
  if (h > 0 || m > 0) out += std::to_string(m) + "m";
  out += std::to_string(s);
  out += 's';
  return out;
}

bool is_admin_route(std::string_view method, std::string_view path, std::string_view route) {
  if (path.starts_with("/admin/")) return true;
  // Model load/unload (infera's routes and KServe v2's model repository).
  if (method == "POST" &&
      (route.starts_with("/api/models/{name}/") || route.starts_with("/v2/repository/"))) {
    return true;
  }
  // The protected image sets: registering and deleting references.
  return (method == "POST" || method == "DELETE") && route.starts_with("/api/v1/images/references");
}

bool is_public_route(std::string_view path) {
  return path == "/health" || path == "/ready" || path == "/api/health" || path == "/api/v1/health" ||
         path == "/v2/health/live" || path == "/v2/health/ready";
}

bool valid_name(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' || c == '@')) return false;
  }
  return true;
}

}  // namespace

// ---- Limiter: local buckets, or Redis with local fallback -------------------------

class Limiter {
 public:
  Limiter(std::unique_ptr<RedisBuckets> redis, obs::Registry& metrics)
      : redis_(std::move(redis)),
        breaker_(3, std::chrono::seconds(2)),
        fallbacks_(metrics.counter("infera_ratelimit_redis_fallbacks_total",
                                   "Rate-limit checks decided locally because Redis was unreachable")),
        breaker_gauge_(metrics.gauge("infera_ratelimit_redis_breaker_open",
                                     "1 while the rate limiter's Redis circuit breaker is open")) {}

  ~Limiter() { redis_.reset(); }  // its pending callbacks still find the local buckets

  // Calls `done` with the subjects and the quote: at once with local limits; from the
  // Redis pipeline thread with shared ones (locally if Redis fails or is skipped).
  using QuoteCallback = std::function<void(std::vector<Subject>, Quote)>;
  void admit_async(std::vector<Subject> subjects, QuoteCallback done) {
    if (redis_ && breaker_.allow()) {
      redis_->admit_async(std::move(subjects),
                          [this, done = std::move(done)](std::vector<Subject> s, std::optional<Quote> q) {
                            if (q) {
                              breaker_.on_success();
                              breaker_gauge_.set(0);
                              return done(std::move(s), *q);
                            }
                            breaker_.on_failure();
                            log::warn("ratelimit.redis_fallback",
                                      "Redis is unreachable; rate limits are enforced per instance until it is back");
                            Quote local = local_admit(s);  // before `s` is moved into done
                            done(std::move(s), local);
                          });
      return;
    }
    Quote q = local_admit(subjects);
    done(std::move(subjects), q);
  }

  void charge(const std::vector<Subject>& subjects, int64_t tokens) {
    if (tokens <= 0) return;
    local_.charge(subjects, tokens, now_us(), utc_day(unix_seconds()));
    if (!redis_) return;
    std::lock_guard lock(mu_);
    std::string group;
    for (const auto& s : subjects) group += s.id + '\n';
    auto& p = pending_[group];
    p.subjects = subjects;
    p.tokens += tokens;
  }

  // Sends the token charges gathered since the last flush to Redis.
  void flush() {
    if (!redis_) return;
    std::map<std::string, Pending> batch;
    {
      std::lock_guard lock(mu_);
      batch.swap(pending_);
    }
    for (auto& [group, p] : batch) {
      if (!breaker_.allow()) return;  // the local buckets were charged already
      if (redis_->charge(p.subjects, p.tokens)) {
        breaker_.on_success();
      } else {
        breaker_.on_failure();
      }
    }
  }

  int64_t daily_used(const std::string& subject) {
    if (redis_ && breaker_.allow()) {
      if (auto v = redis_->daily_used(subject)) {
        breaker_.on_success();
        return *v;
      }
      breaker_.on_failure();
    }
    auto usage = local_.daily_usage(utc_day(unix_seconds()));
    auto it = usage.find(subject);
    return it == usage.end() ? 0 : it->second;
  }

  Quote local_admit(const std::vector<Subject>& subjects) {
    if (redis_) {
      fallbacks_.inc();
      breaker_gauge_.set(breaker_.state() == cache::BreakerState::kOpen ? 1 : 0);
    }
    return local_.admit(subjects, now_us(), utc_day(unix_seconds()));
  }

  LocalBuckets& local() { return local_; }
  Concurrency& concurrency() { return concurrency_; }
  bool shared() const { return redis_ != nullptr; }

 private:
  struct Pending {
    std::vector<Subject> subjects;
    int64_t tokens = 0;
  };
  std::unique_ptr<RedisBuckets> redis_;
  cache::CircuitBreaker breaker_;
  obs::Counter& fallbacks_;
  obs::Gauge& breaker_gauge_;
  LocalBuckets local_;
  Concurrency concurrency_;
  std::mutex mu_;
  std::map<std::string, Pending> pending_;
};

// ---- Access -----------------------------------------------------------------------

struct Access::Impl {
  AccessOptions options;
  obs::Registry& metrics;
  std::shared_ptr<Limiter> limiter;
  mutable std::mutex mu;
  std::shared_ptr<const KeySet> keys;  // null without a keys file
  std::filesystem::file_time_type keys_mtime{};
  uintmax_t keys_size = 0;
  std::string quota_path;
  std::string last_saved_quotas;

  std::thread worker;
  std::mutex worker_mu;
  std::condition_variable worker_cv;
  bool stopping = false;

  obs::Counter& allowed;
  obs::Counter& unauthenticated;
  obs::Counter& forbidden;

  Impl(AccessOptions o, obs::Registry& m)
      : options(std::move(o)),
        metrics(m),
        allowed(m.counter("infera_auth_requests_total", "Requests by gate outcome", {{"outcome", "allowed"}})),
        unauthenticated(m.counter("infera_auth_requests_total", "Requests by gate outcome",
                                  {{"outcome", "unauthenticated"}})),
        forbidden(m.counter("infera_auth_requests_total", "Requests by gate outcome", {{"outcome", "forbidden"}})) {}

  std::shared_ptr<const KeySet> snapshot() const {
    std::lock_guard lock(mu);
    return keys;
  }

  const ResolvedKey* find(const KeySet& set, std::string_view presented) const {
    // The presented key is hashed first, so a lookup's timing depends only on its
    // SHA-256, which a caller cannot steer towards a stored one (that would take a
    // preimage); the final comparison of the whole digest is constant-time. Digests
    // of keys that matched are remembered per I/O thread (SHA-256 was a third of the
    // gate's cost); a presented string is found there only by its own hash and value.
    thread_local std::unordered_map<std::string, std::array<uint8_t, 32>> recent;
    thread_local std::string lookup;  // reused: no allocation per request
    lookup.assign(presented);
    std::array<uint8_t, 32> digest;
    if (auto hit = recent.find(lookup); hit != recent.end()) {
      digest = hit->second;
    } else {
      digest = sha256(presented);
      if (set.by_digest.count(digest) != 0) {
        if (recent.size() >= 256) recent.clear();
        recent.emplace(std::string(presented), digest);
      }
    }
    auto it = set.by_digest.find(digest);
    if (it == set.by_digest.end()) return nullptr;
    const ResolvedKey& k = set.keys[it->second];
    return CRYPTO_memcmp(k.sha256.data(), digest.data(), digest.size()) == 0 ? &k : nullptr;
  }

  bool trusted_proxy(std::string_view address) const {
    for (const auto& p : options.trusted_proxies) {
      if (p == address) return true;
    }
    return false;
  }

  // The client's address: the peer's, or behind trusted proxies the right-most
  // X-Forwarded-For entry that is not one of them (each proxy appends what it saw;
  // entries left of the first untrusted one are the client's to invent).
  std::string client_address(const http::Request& req) const {
    if (options.trusted_proxies.empty() || !trusted_proxy(req.remote_address)) return req.remote_address;
    std::string_view xff = req.header("X-Forwarded-For");
    std::string address = req.remote_address;
    while (!xff.empty()) {
      size_t comma = xff.rfind(',');
      std::string_view entry = comma == std::string_view::npos ? xff : xff.substr(comma + 1);
      xff = comma == std::string_view::npos ? std::string_view() : xff.substr(0, comma);
      while (!entry.empty() && entry.front() == ' ') entry.remove_prefix(1);
      while (!entry.empty() && entry.back() == ' ') entry.remove_suffix(1);
      if (entry.empty() || entry.size() > 45) break;
      address = std::string(entry);
      if (!trusted_proxy(entry)) break;
    }
    return address;
  }

  static std::string_view presented_key(const http::Request& req) {
    std::string_view auth = req.header("Authorization");
    if (auth.size() > 7 && (auth.substr(0, 7) == "Bearer " || auth.substr(0, 7) == "bearer ")) {
      auth.remove_prefix(7);
      while (!auth.empty() && auth.front() == ' ') auth.remove_prefix(1);
      while (!auth.empty() && auth.back() == ' ') auth.remove_suffix(1);
      return auth;
    }
    return req.header("X-API-Key");
  }

  void gate(http::Request& req, std::string_view route, http::GateDone done) {
      http::GateDecision d;
    auto caller = std::make_shared<Caller>();
    caller->client_address = client_address(req);
    std::shared_ptr<const KeySet> set = snapshot();
    if (is_public_route(req.path)) {
      caller->name = "anonymous";
      req.caller = std::move(caller);
      return done(std::move(d));
    }
    std::vector<Subject> subjects;
    subjects.reserve(2);
    if (set) {
      std::string_view presented = presented_key(req);
      if (presented.empty()) {
        unauthenticated.inc();
        d.reject = http::Response::error(
            401, "missing API key: send it as Authorization: Bearer <key> or X-API-Key: <key>",
            "invalid_request_error", "missing_api_key");
        d.reject->headers.emplace_back("WWW-Authenticate", "Bearer");
        return done(std::move(d));
      }
      const ResolvedKey* key = find(*set, presented);
      if (key == nullptr) {
        unauthenticated.inc();
        d.reject = http::Response::error(401, "invalid API key", "invalid_request_error", "invalid_api_key");
        d.reject->headers.emplace_back("WWW-Authenticate", "Bearer error=\"invalid_token\"");
        return done(std::move(d));
      }
      caller->name = key->name;
      caller->role = key->role.name;
      caller->authenticated = true;
      caller->admin = key->role.admin;
      caller->priority = key->role.priority;
      caller->models = key->models;
      if (is_admin_route(req.method, req.path, route) && !key->role.admin) {
        forbidden.inc();
        d.reject = http::Response::error(
            403, fmt::format("key '{}' (role {}) may not use {} {}: an admin key is needed", key->name,
                             key->role.name, req.method, req.path),
            "invalid_request_error", "insufficient_permissions");
        return done(std::move(d));
      }
      if (!key->role.routes.empty() && !key->role.admin) {
        bool ok = false;
        for (const auto& prefix : key->role.routes) ok = ok || req.path.starts_with(prefix);
        if (!ok) {
          forbidden.inc();
          d.reject = http::Response::error(
              403, fmt::format("role {} may not use {}", key->role.name, req.path), "invalid_request_error",
              "insufficient_permissions");
          return done(std::move(d));
        }
      }
      if (key->limits.any()) subjects.push_back({key->subject, key->limits});
    } else {
      caller->name = "anonymous";
      caller->admin = true;  // no keys: the loopback (or --allow-anonymous) operator
    }
    if (options.per_client.any() && !caller->client_address.empty()) {
      subjects.push_back({"ip:" + caller->client_address, options.per_client});
    }
    if (subjects.empty()) {
      allowed.inc();
      req.caller = std::move(caller);
      return done(std::move(d));
    }
    if (!limiter->shared()) {  // local limits: decided here, without a callback
      const Quote q = limiter->local_admit(subjects);
      return done(admitted(req, std::move(caller), std::move(subjects), q));
    }
    // With Redis the quote comes from the limiter's pipeline thread; `req` waits.
    limiter->admit_async(std::move(subjects), [this, &req, caller = std::move(caller), done = std::move(done)](
                                                  std::vector<Subject> subjects, Quote q) mutable {
      done(admitted(req, std::move(caller), std::move(subjects), q));
    });
  }

  // The rest of the gate once the limits have answered.
  http::GateDecision admitted(http::Request& req, std::shared_ptr<Caller> caller, std::vector<Subject> subjects,
                              const Quote& q) {
    http::GateDecision d;
    {
      render_headers(q, d.header_lines);
      if (!q.allowed) {
        metrics.counter("infera_ratelimit_refusals_total", "Requests refused by a rate limit or quota",
                        {{"reason", q.reason}}).inc();
        const bool daily = q.reason == "tokens_per_day";
        const std::string who = q.subject.starts_with("key:") ? "key '" + q.subject.substr(4) + "'"
                                                               : "client " + q.subject.substr(3);
        d.reject = http::Response::error(
            429,
            daily ? fmt::format("daily token quota of {} used up; it renews at 00:00 UTC", who)
                  : fmt::format("rate limit reached for {} on {}; retry in {}", who, q.reason,
                                reset_text(q.retry_after_s)),
            daily ? "insufficient_quota" : "requests", daily ? "insufficient_quota" : "rate_limit_exceeded");
        d.reject->headers.emplace_back(
            "Retry-After", std::to_string(std::max<int64_t>(1, static_cast<int64_t>(std::ceil(q.retry_after_s)))));
        return d;
      }
      std::string refused;
      if (!limiter->concurrency().acquire(subjects, &refused)) {
        metrics.counter("infera_ratelimit_refusals_total", "Requests refused by a rate limit or quota",
                        {{"reason", "concurrent"}}).inc();
        d.reject = http::Response::error(
            429, fmt::format("too many concurrent requests for {}; retry when one finishes", refused),
            "requests", "concurrency_limit_exceeded");
        d.reject->headers.emplace_back("Retry-After", "1");
        return d;
      }
      // What the request counts against: charged as its tokens come, and its
      // concurrency slot, released when its response is written (the server drops
      // the lease; the grant itself may live on in a finishing generation).
      struct Grant {
        std::shared_ptr<Limiter> limiter;
        std::vector<Subject> subjects;
      };
      struct Slot {
        explicit Slot(std::shared_ptr<const Grant> g) : grant(std::move(g)) {}
        Slot(const Slot&) = delete;
        Slot& operator=(const Slot&) = delete;
        ~Slot() { grant->limiter->concurrency().release(grant->subjects); }
        std::shared_ptr<const Grant> grant;
      };
      auto grant = std::make_shared<const Grant>(Grant{limiter, std::move(subjects)});
      req.lease = std::make_shared<Slot>(grant);
      caller->charge = [grant](int64_t tokens) { grant->limiter->charge(grant->subjects, tokens); };
    }
    allowed.inc();
    req.caller = std::move(caller);
    return d;
  }

  // OpenAI's x-ratelimit-* headers, rendered into one string (on every response of a
  // limited caller, so without a vector of allocated pairs).
  static void render_headers(const Quote& q, std::string& out) {
    out.reserve(240);
    auto number = [&out](int64_t value) {
      char digits[24];
      auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
      out.append(digits, end);
    };
    auto line = [&](std::string_view name, int64_t value) {
      out += name;
      out += ": ";
      number(value);
      out += "\r\n";
    };
    auto reset = [&](std::string_view name, double seconds) {
      out += name;
      out += ": ";
      // reset_text's format ("20ms", "12s", "6m0s"), without its temporaries.
      if (seconds <= 0) {
        out += "0s";
      } else if (seconds < 1) {
        number(static_cast<int64_t>(std::ceil(seconds * 1000)));
        out += "ms";
      } else {
        int64_t s = static_cast<int64_t>(std::ceil(seconds));
        const int64_t h = s / 3600, m = (s % 3600) / 60;
        if (h > 0) {
          number(h);
          out += 'h';
        }
        if (h > 0 || m > 0) {
          number(m);
          out += 'm';
        }
        number(s % 60);
        out += 's';
      }
      out += "\r\n";
    };
    if (q.limit_requests > 0) {
      line("x-ratelimit-limit-requests", q.limit_requests);
      line("x-ratelimit-remaining-requests", q.remaining_requests);
      reset("x-ratelimit-reset-requests", q.reset_requests_s);
    }
    if (q.limit_tokens > 0) {
      line("x-ratelimit-limit-tokens", q.limit_tokens);
      line("x-ratelimit-remaining-tokens", q.remaining_tokens);
      reset("x-ratelimit-reset-tokens", q.reset_tokens_s);
    }
  }

  Status reload() {
    if (options.keys_file.empty()) return Status::Ok();
    std::error_code ec;
    auto mtime = std::filesystem::last_write_time(options.keys_file, ec);
    auto size = std::filesystem::file_size(options.keys_file, ec);
    auto parsed = parse_keys_file(options.keys_file);
    if (!parsed.ok()) {
      metrics.counter("infera_auth_key_reloads_total", "Keys file reads", {{"result", "error"}}).inc();
      std::lock_guard lock(mu);
      keys_mtime = mtime;  // not retried until the file changes again
      keys_size = size;
      return parsed.status();
    }
    auto set = resolve(*parsed);
    metrics.counter("infera_auth_key_reloads_total", "Keys file reads", {{"result", "ok"}}).inc();
    std::lock_guard lock(mu);
    keys = std::move(set);
    keys_mtime = mtime;
    keys_size = size;
    return Status::Ok();
  }

  bool keys_file_changed() const {
    std::error_code ec;
    auto mtime = std::filesystem::last_write_time(options.keys_file, ec);
    if (ec) return false;
    auto size = std::filesystem::file_size(options.keys_file, ec);
    std::lock_guard lock(mu);
    return mtime != keys_mtime || size != keys_size;
  }

  // ---- daily quotas kept on disk (without Redis) ----

  void load_quotas() {
    if (quota_path.empty()) return;
    std::ifstream in(quota_path);
    if (!in) return;
    json doc = json::parse(in, nullptr, false);
    if (doc.is_discarded() || !doc.is_object() || !doc.contains("day") || !doc["day"].is_number_integer() ||
        !doc.contains("used") || !doc["used"].is_object()) {
      log::warn("quota.unreadable", "{}: not a quota file; daily usage starts from zero", quota_path);
      return;
    }
    const int64_t day = doc["day"].get<int64_t>();
    if (day != utc_day(unix_seconds())) return;
    for (const auto& [subject, used] : doc["used"].items()) {
      if (used.is_number_integer()) limiter->local().restore_daily(subject, day, used.get<int64_t>());
    }
  }

  void save_quotas() {
    if (quota_path.empty()) return;
    const int64_t day = utc_day(unix_seconds());
    auto usage = limiter->local().daily_usage(day);
    json used = json::object();
    for (const auto& [k, v] : usage) used[k] = v;
    std::string text = json{{"day", day}, {"used", used}}.dump();
    if (text == last_saved_quotas) return;
    // Written beside and renamed over, so a crash leaves the old or the new file.
    const std::string tmp = quota_path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (f == nullptr) {
      log::warn("quota.save_failed", "{}: cannot write daily quotas: {}", tmp, std::strerror(errno));
      return;
    }
    bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    ok = std::fflush(f) == 0 && ok;
    ok = ::fsync(fileno(f)) == 0 && ok;
    std::fclose(f);
    if (!ok || std::rename(tmp.c_str(), quota_path.c_str()) != 0) {
      log::warn("quota.save_failed", "{}: cannot write daily quotas", quota_path);
      return;
    }
    last_saved_quotas = std::move(text);
  }

  void run_worker() {
    std::unique_lock lock(worker_mu);
    int ticks = 0;
    while (!worker_cv.wait_for(lock, std::chrono::milliseconds(100), [this] { return stopping; })) {
      lock.unlock();
      limiter->flush();
      if (++ticks % 10 == 0) {
        save_quotas();
        if (!options.keys_file.empty() && keys_file_changed()) {
          if (Status st = reload(); st.ok()) {
            log::info("auth.keys_reloaded", "{}: keys reloaded (file changed)", options.keys_file);
          } else {
            log::error("auth.keys_reload_failed", "{}; the previous keys stay in force", st.message());
          }
        }
      }
      lock.lock();
    }
  }

  // ---- /admin/keys ----

  json key_json(const ResolvedKey& k) {
    json limits = {{"requests_per_minute", k.limits.requests_per_minute},
                   {"request_burst", k.limits.request_burst},
                   {"tokens_per_minute", k.limits.tokens_per_minute},
                   {"concurrent", k.limits.concurrent},
                   {"tokens_per_day", k.limits.tokens_per_day}};
    return {{"name", k.name},
            {"role", k.role.name},
            {"priority", k.role.priority},
            {"admin", k.role.admin},
            {"models", k.models},
            {"limits", limits},
            {"usage",
             {{"tokens_today", limiter->daily_used("key:" + k.name)},
              {"in_flight", limiter->concurrency().in_flight("key:" + k.name)}}}};
  }

  http::Response list_keys() {
    auto set = snapshot();
    json out = json::array();
    if (set) {
      for (const auto& k : set->keys) out.push_back(key_json(k));
    }
    return http::Response::json(200, json{{"object", "list"}, {"data", out}}.dump());
  }

  // Creates a key: a random secret, shown once; its SHA-256 is appended to the keys file.
  http::Response create_key(const http::Request& req) {
    if (options.keys_file.empty()) {
      return http::Response::error(400, "no keys file is configured (--api-keys-file)", "invalid_request_error",
                                   "no_keys_file");
    }
    json body = json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      return http::Response::error(400, "body must be a JSON object {\"name\":..,\"role\":..}",
                                   "invalid_request_error", "invalid_json");
    }
    auto str = [&](const char* k) {
      return body.contains(k) && body[k].is_string() ? body[k].get<std::string>() : std::string();
    };
    const std::string name = str("name"), role = str("role");
    if (!valid_name(name)) {
      return http::Response::error(400, "name must be 1-64 characters of letters, digits, _ - . @",
                                   "invalid_request_error", "invalid_value");
    }
    auto set = snapshot();
    bool role_known = false;
    for (const auto& r : set->roles) role_known = role_known || r.name == role;
    if (!role_known) {
      return http::Response::error(400, fmt::format("unknown role '{}'", role), "invalid_request_error",
                                   "invalid_value");
    }
    for (const auto& k : set->keys) {
      if (k.name == name) {
        return http::Response::error(409, fmt::format("a key named '{}' exists", name), "invalid_request_error",
                                     "key_exists");
      }
    }
    unsigned char random[24];
    if (RAND_bytes(random, sizeof random) != 1) {
      return http::Response::error(500, "no randomness for a new key", "server_error", "internal");
    }
    std::string secret = "sk-infera-";
    for (unsigned char c : random) secret += fmt::format("{:02x}", c);
    {
      std::ofstream out(options.keys_file, std::ios::app);
      out << fmt::format("\n[[keys]]\nname = \"{}\"\nsha256 = \"{}\"\nrole = \"{}\"\n", name, sha256_hex(secret),
                         role);
      if (!out.flush()) {
        return http::Response::error(500, options.keys_file + ": cannot append the new key", "server_error",
                                     "keys_file_unwritable");
      }
    }
    if (Status st = reload(); !st.ok()) {
      return http::Response::error(500, st.message(), "server_error", "keys_file_invalid");
    }
    log::info("auth.key_created", "key '{}' (role {}) created", name, role);
    return http::Response::json(
        201, json{{"name", name}, {"role", role}, {"key", secret},
                  {"note", "store this key now: infera keeps only its SHA-256 and cannot show it again"}}
                 .dump());
  }
};

Access::Access(AccessOptions options, obs::Registry& metrics)
    : impl_(std::make_unique<Impl>(std::move(options), metrics)) {}

Access::~Access() { stop(); }

Result<std::unique_ptr<Access>> Access::create(const AccessOptions& options, obs::Registry& metrics) {
  if (options.keys_file.empty() && !options.allow_anonymous && !is_loopback(options.host)) {
    return Status::InvalidArgument(fmt::format(
        "refusing to listen on {} without API keys: anyone who can reach it could use every model and "
        "admin route. Give --api-keys-file FILE (docs/AUTH.md), listen on 127.0.0.1, or pass "
        "--allow-anonymous to serve without keys",
        options.host));
  }
  std::unique_ptr<RedisBuckets> redis;
  if (!options.redis_url.empty()) {
    RedisLimiterOptions ro;
    ro.url = options.redis_url;
    ro.prefix = options.instance_prefix;
    auto opened = RedisBuckets::open(ro);
    if (!opened.ok()) return opened.status();
    redis = std::move(opened).value();
  }
  std::unique_ptr<Access> access(new Access(options, metrics));
  Impl& impl = *access->impl_;
  impl.limiter = std::make_shared<Limiter>(std::move(redis), metrics);
  if (!options.keys_file.empty()) {
    if (Status st = impl.reload(); !st.ok()) return st;
    if (impl.snapshot()->keys.empty()) {
      log::warn("auth.no_keys", "{} lists no [[keys]]: only /health and /ready answer", options.keys_file);
    }
  }
  bool daily = options.per_client.tokens_per_day > 0;
  if (auto set = impl.snapshot()) {
    for (const auto& k : set->keys) daily = daily || k.limits.tokens_per_day > 0;
  }
  if (daily && options.redis_url.empty()) {
    if (options.data_dir.empty()) {
      log::warn("quota.not_persisted", "daily token quotas are kept in memory only: set --data-dir");
    } else {
      std::error_code ec;
      std::filesystem::create_directories(options.data_dir, ec);
      if (ec) return Status::IoError(fmt::format("--data-dir {}: {}", options.data_dir, ec.message()));
      impl.quota_path = (std::filesystem::path(options.data_dir) / "quotas.json").string();
      impl.load_quotas();
    }
  }
  return access;
}

void Access::attach(http::Server& server) {
  Impl* impl = impl_.get();
  server.set_gate([impl](http::Request& req, std::string_view route, http::GateDone done) {
    impl->gate(req, route, std::move(done));
  });
  server.on_reload_signal([impl] {
    if (impl->options.keys_file.empty()) return;
    if (Status st = impl->reload(); st.ok()) {
      log::info("auth.keys_reloaded", "{}: keys reloaded (SIGHUP)", impl->options.keys_file);
    } else {
      log::error("auth.keys_reload_failed", "{}; the previous keys stay in force", st.message());
    }
  });
  server.route("GET", "/admin/keys", http::SyncHandler([impl](const http::Request&) { return impl->list_keys(); }));
  server.route("POST", "/admin/keys",
               http::SyncHandler([impl](const http::Request& req) { return impl->create_key(req); }));
}

Status Access::reload() { return impl_->reload(); }

void Access::start() {
  if (impl_->worker.joinable()) return;
  impl_->worker = std::thread([impl = impl_.get()] { impl->run_worker(); });
}

void Access::stop() {
  if (!impl_->worker.joinable()) return;
  {
    std::lock_guard lock(impl_->worker_mu);
    impl_->stopping = true;
  }
  impl_->worker_cv.notify_all();
  impl_->worker.join();
  impl_->limiter->flush();
  impl_->save_quotas();
}

bool Access::keys_configured() const { return impl_->snapshot() != nullptr; }

}  // namespace infera::auth
