#include "auth/limiter.h"

#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <future>
#include <thread>
#include <cmath>

#include "cache/redis_cache.h"
#include "core/log.h"

namespace infera::auth {

// ---- GCRA -----------------------------------------------------------------------

bool Gcra::take(double& tat, double now, double interval, double capacity, double* retry_us) {
  const double next = std::max(tat, now) + interval;
  if (next - now > capacity * interval) {
    if (retry_us) *retry_us = next - now - capacity * interval;
    return false;
  }
  tat = next;
  return true;
}

int64_t Gcra::remaining(double tat, double now, double interval, double capacity) {
  const double free = (now + capacity * interval - std::max(tat, now)) / interval;
  return std::clamp<int64_t>(static_cast<int64_t>(std::floor(free + 1e-9)), 0,
                             static_cast<int64_t>(capacity));
}

double Gcra::reset_us(double tat, double now) { return std::max(0.0, tat - now); }

int64_t utc_day(int64_t unix_seconds) { return unix_seconds >= 0 ? unix_seconds / 86400 : -1; }

double seconds_to_next_utc_day(int64_t unix_seconds) {
  return static_cast<double>(86400 - unix_seconds % 86400);
}

namespace {

constexpr double kMinute = 60e6;  // µs

double request_capacity(const Limits& l) {
  return static_cast<double>(l.request_burst > 0 ? l.request_burst : l.requests_per_minute);
}

}  // namespace

// ---- LocalBuckets ---------------------------------------------------------------

Quote LocalBuckets::admit(const std::vector<Subject>& subjects, double now_us, int64_t day) {
  Quote q;
  std::lock_guard lock(mu_);
  if (++admits_ % 4096 == 0) forget_idle(now_us);
  double new_tats_small[4];
  std::vector<double> new_tats_big;
  double* new_tats = new_tats_small;
  if (subjects.size() > 4) {
    new_tats_big.resize(subjects.size());
    new_tats = new_tats_big.data();
  }
  std::fill(new_tats, new_tats + subjects.size(), -1.0);
  bool headers_set = false;
  for (size_t i = 0; i < subjects.size(); ++i) {
    const Limits& l = subjects[i].limits;
    State& s = states_[subjects[i].id];
    int64_t rem_req = 0, rem_tok = 0;
    double reset_req = 0, reset_tok = 0;
    const double req_interval = l.requests_per_minute > 0 ? kMinute / l.requests_per_minute : 0;
    const double tok_interval = l.tokens_per_minute > 0 ? kMinute / l.tokens_per_minute : 0;
    auto refuse = [&](const char* reason, double retry_s) {
      q.allowed = false;
      q.reason = reason;
      q.subject = subjects[i].id;
      q.retry_after_s = retry_s;
      q.limit_requests = l.requests_per_minute;
      q.remaining_requests =
          req_interval > 0 ? Gcra::remaining(s.request_tat, now_us, req_interval, request_capacity(l)) : 0;
      q.reset_requests_s = Gcra::reset_us(s.request_tat, now_us) / 1e6;
      q.limit_tokens = l.tokens_per_minute;
      q.remaining_tokens =
          tok_interval > 0 ? Gcra::remaining(s.token_tat, now_us, tok_interval, l.tokens_per_minute) : 0;
      q.reset_tokens_s = Gcra::reset_us(s.token_tat, now_us) / 1e6;
      return q;
    };
    if (req_interval > 0) {
      double tat = s.request_tat, retry = 0;
      if (!Gcra::take(tat, now_us, req_interval, request_capacity(l), &retry)) {
        return refuse("requests_per_minute", retry / 1e6);
      }
      new_tats[i] = tat;
      rem_req = Gcra::remaining(tat, now_us, req_interval, request_capacity(l));
      reset_req = Gcra::reset_us(tat, now_us) / 1e6;
    }
    if (tok_interval > 0) {
      const double cap = static_cast<double>(l.tokens_per_minute);
      const double next = std::max(s.token_tat, now_us) + tok_interval;
      if (next - now_us > cap * tok_interval) {
        return refuse("tokens_per_minute", (next - now_us - cap * tok_interval) / 1e6);
      }
      rem_tok = Gcra::remaining(s.token_tat, now_us, tok_interval, cap);
      reset_tok = Gcra::reset_us(s.token_tat, now_us) / 1e6;
    }
    if (l.tokens_per_day > 0) {
      if (s.day != day) {
        s.day = day;
        s.day_used = 0;
      }
      if (s.day_used >= l.tokens_per_day) {
        const double to_midnight = static_cast<double>((day + 1) * 86400) -
                                   std::chrono::duration<double>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count();
        return refuse("tokens_per_day", std::max(1.0, to_midnight));
      }
    }
    if (!headers_set && (req_interval > 0 || tok_interval > 0)) {
      headers_set = true;
      q.limit_requests = l.requests_per_minute;
      q.remaining_requests = rem_req;
      q.reset_requests_s = reset_req;
      q.limit_tokens = l.tokens_per_minute;
      q.remaining_tokens = rem_tok;
      q.reset_tokens_s = reset_tok;
    }
  }
  for (size_t i = 0; i < subjects.size(); ++i) {
    if (new_tats[i] >= 0) states_[subjects[i].id].request_tat = new_tats[i];
  }
  return q;
}

void LocalBuckets::charge(const std::vector<Subject>& subjects, int64_t tokens, double now_us, int64_t day) {
  if (tokens <= 0) return;
  std::lock_guard lock(mu_);
  for (const auto& sub : subjects) {
    const Limits& l = sub.limits;
    if (l.tokens_per_minute <= 0 && l.tokens_per_day <= 0) continue;
    State& s = states_[sub.id];
    if (l.tokens_per_minute > 0) {
      s.token_tat = std::max(s.token_tat, now_us) +
                    static_cast<double>(tokens) * kMinute / static_cast<double>(l.tokens_per_minute);
    }
    if (l.tokens_per_day > 0) {
      if (s.day != day) {
        s.day = day;
        s.day_used = 0;
      }
      s.day_used += tokens;
    }
  }
}

std::unordered_map<std::string, int64_t> LocalBuckets::daily_usage(int64_t day) const {
  std::lock_guard lock(mu_);
  std::unordered_map<std::string, int64_t> out;
  for (const auto& [id, s] : states_) {
    if (s.day == day && s.day_used > 0) out.emplace(id, s.day_used);
  }
  return out;
}

void LocalBuckets::restore_daily(const std::string& subject, int64_t day, int64_t used) {
  std::lock_guard lock(mu_);
  State& s = states_[subject];
  s.day = day;
  s.day_used = used;
}

size_t LocalBuckets::size() const {
  std::lock_guard lock(mu_);
  return states_.size();
}

void LocalBuckets::forget_idle(double now_us) {
  // A subject whose buckets are full again and that holds no daily usage has no state
  // worth keeping; dropping it is the same as never having seen it.
  for (auto it = states_.begin(); it != states_.end();) {
    const State& s = it->second;
    if (s.request_tat <= now_us && s.token_tat <= now_us && s.day_used == 0) {
      it = states_.erase(it);
    } else {
      ++it;
    }
  }
}

// ---- Concurrency ----------------------------------------------------------------

bool Concurrency::acquire(const std::vector<Subject>& subjects, std::string* refused) {
  std::lock_guard lock(mu_);
  for (const auto& s : subjects) {
    if (s.limits.concurrent > 0 && counts_[s.id] >= s.limits.concurrent) {
      if (refused) *refused = s.id;
      return false;
    }
  }
  for (const auto& s : subjects) {
    if (s.limits.concurrent > 0) ++counts_[s.id];
  }
  return true;
}

void Concurrency::release(const std::vector<Subject>& subjects) {
  std::lock_guard lock(mu_);
  for (const auto& s : subjects) {
    if (s.limits.concurrent <= 0) continue;
    auto it = counts_.find(s.id);
    if (it != counts_.end() && it->second > 0) --it->second;
  }
  // Idle subjects keep their entry (no allocation per request) until there are many.
  if (counts_.size() > 4096) std::erase_if(counts_, [](const auto& kv) { return kv.second == 0; });
}

int64_t Concurrency::in_flight(const std::string& subject) const {
  std::lock_guard lock(mu_);
  auto it = counts_.find(subject);
  return it == counts_.end() ? 0 : it->second;
}

// ---- RedisBuckets ---------------------------------------------------------------

namespace {

// The same arithmetic as LocalBuckets::admit, atomically over all of a request's
// subjects, on Redis's clock (so instances with skewed clocks agree). Keys per subject:
// request TAT, token TAT, today's token count. ARGV: subject count, seconds to the
// end of the UTC day, then per subject rpm, burst, tpm, tpd. Returns
// {allowed, subject index, kind (1 requests, 2 tokens, 3 day), retry µs,
//  rpm, remaining requests, reset µs, tpm, remaining tokens, reset µs}.
constexpr const char* kAdmitScript = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local day_end = tonumber(ARGV[2])
local new_tats = {}
local hdr = nil
local function clampf(x, lo, hi) if x < lo then return lo elseif x > hi then return hi else return x end end
for i = 1, n do
  local a = 2 + (i - 1) * 4
  local rpm, burst, tpm, tpd = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local kr, kt, kd = KEYS[(i - 1) * 3 + 1], KEYS[(i - 1) * 3 + 2], KEYS[(i - 1) * 3 + 3]
  local rtat = tonumber(redis.call('GET', kr) or '0')
  local ttat = tonumber(redis.call('GET', kt) or '0')
  local rem_req, reset_req, rem_tok, reset_tok = 0, 0, 0, 0
  local rint, cap, tint = 0, 0, 0
  if rpm > 0 then
    rint = 60000000 / rpm
    cap = burst > 0 and burst or rpm
    rem_req = clampf(math.floor((now + cap * rint - math.max(rtat, now)) / rint + 1e-9), 0, cap)
    reset_req = math.max(0, rtat - now)
  end
  if tpm > 0 then
    tint = 60000000 / tpm
    rem_tok = clampf(math.floor((now + tpm * tint - math.max(ttat, now)) / tint + 1e-9), 0, tpm)
    reset_tok = math.max(0, ttat - now)
  end
  if rpm > 0 then
    local nxt = math.max(rtat, now) + rint
    if nxt - now > cap * rint then
      return {0, i, 1, math.floor(nxt - now - cap * rint), rpm, rem_req, math.floor(reset_req), tpm, rem_tok, math.floor(reset_tok)}
    end
    new_tats[i] = nxt
    rem_req = clampf(math.floor((now + cap * rint - nxt) / rint + 1e-9), 0, cap)
    reset_req = nxt - now
  end
  if tpm > 0 then
    local nxt = math.max(ttat, now) + tint
    if nxt - now > tpm * tint then
      return {0, i, 2, math.floor(nxt - now - tpm * tint), rpm, rem_req, math.floor(reset_req), tpm, rem_tok, math.floor(reset_tok)}
    end
  end
  if tpd > 0 then
    local used = tonumber(redis.call('GET', kd) or '0')
    if used >= tpd then
      return {0, i, 3, day_end * 1000000, rpm, rem_req, math.floor(reset_req), tpm, rem_tok, math.floor(reset_tok)}
    end
  end
  if hdr == nil and (rpm > 0 or tpm > 0) then
    hdr = {rpm, rem_req, math.floor(reset_req), tpm, rem_tok, math.floor(reset_tok)}
  end
end
for i = 1, n do
  if new_tats[i] then
    redis.call('SET', KEYS[(i - 1) * 3 + 1], string.format('%.0f', new_tats[i]), 'PX', math.floor((new_tats[i] - now) / 1000) + 1000)
  end
end
hdr = hdr or {0, 0, 0, 0, 0, 0}
return {1, 0, 0, 0, hdr[1], hdr[2], hdr[3], hdr[4], hdr[5], hdr[6]}
)lua";

// Charges tokens: KEYS per subject token TAT and today's count; ARGV: subject count,
// tokens, day TTL seconds, then per subject tpm, tpd.
constexpr const char* kChargeScript = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n, tokens, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 1, n do
  local tpm, tpd = tonumber(ARGV[3 + (i - 1) * 2 + 1]), tonumber(ARGV[3 + (i - 1) * 2 + 2])
  local kt, kd = KEYS[(i - 1) * 2 + 1], KEYS[(i - 1) * 2 + 2]
  if tpm > 0 then
    local tat = math.max(tonumber(redis.call('GET', kt) or '0'), now) + tokens * 60000000 / tpm
    redis.call('SET', kt, string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
  end
  if tpd > 0 then
    redis.call('INCRBY', kd, tokens)
    redis.call('EXPIRE', kd, ttl)
  end
end
return 1
)lua";

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r) freeReplyObject(r);
  }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

}  // namespace

// The state of one connection: the context and the scripts' digests.
struct RedisConn {
  redisContext* ctx = nullptr;
  std::string admit_sha, charge_sha;
};

struct RedisBuckets::Impl {
  RedisLimiterOptions options;
  cache::RedisEndpoint endpoint;
  std::mutex mu;  // the blocking calls' connection (charges, daily usage)
  redisContext* ctx = nullptr;
  std::string admit_sha, charge_sha;

  // The admission pipeline: its own connection, fed by a queue.
  struct Item {
    std::vector<Subject> subjects;
    AdmitCallback done;
  };
  RedisConn pipe;
  std::mutex qmu;
  std::condition_variable qcv;
  std::deque<Item> queue;
  bool stopping = false;
  std::thread pipeline;

  ~Impl() {
    {
      std::lock_guard lock(qmu);
      stopping = true;
    }
    qcv.notify_all();
    if (pipeline.joinable()) pipeline.join();
    for (auto& item : queue) item.done(std::move(item.subjects), std::nullopt);
    drop();
    if (pipe.ctx) redisFree(pipe.ctx);
  }

  // Opens `c` and loads the scripts on it; false when Redis cannot be reached.
  bool connect_conn(RedisConn& c) {
    if (c.ctx) return true;
    timeval tv{0, static_cast<suseconds_t>(options.timeout.count() * 1000)};
    c.ctx = redisConnectWithTimeout(endpoint.host.c_str(), endpoint.port, tv);
    auto fail = [&c] {
      if (c.ctx) redisFree(c.ctx);
      c.ctx = nullptr;
      return false;
    };
    if (c.ctx == nullptr || c.ctx->err) return fail();
    redisSetTimeout(c.ctx, tv);
    if (endpoint.db != 0) {
      ReplyPtr r(static_cast<redisReply*>(redisCommand(c.ctx, "SELECT %d", endpoint.db)));
      if (!r || r->type == REDIS_REPLY_ERROR) return fail();
    }
    for (auto [script, sha] : {std::pair{kAdmitScript, &c.admit_sha}, std::pair{kChargeScript, &c.charge_sha}}) {
      ReplyPtr r(static_cast<redisReply*>(redisCommand(c.ctx, "SCRIPT LOAD %s", script)));
      if (!r || r->type != REDIS_REPLY_STRING) return fail();
      *sha = std::string(r->str, r->len);
    }
    return true;
  }

  void run_pipeline() {
    std::unique_lock lock(qmu);
    for (;;) {
      qcv.wait(lock, [this] { return stopping || !queue.empty(); });
      if (stopping) return;
      std::vector<Item> batch;
      while (!queue.empty() && batch.size() < 256) {
        batch.push_back(std::move(queue.front()));
        queue.pop_front();
      }
      lock.unlock();
      run_batch(batch);
      lock.lock();
    }
  }

  // Sends every check of `batch` at once, then reads the replies in order.
  void run_batch(std::vector<Item>& batch) {
    std::vector<std::optional<Quote>> results(batch.size());
    std::vector<bool> answered(batch.size(), false);
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!connect_conn(pipe)) break;
      std::vector<size_t> sent;
      for (size_t i = 0; i < batch.size(); ++i) {
        if (answered[i]) continue;
        std::vector<std::string> keys, args;
        admit_args(batch[i].subjects, keys, args);
        std::vector<const char*> argv = {"EVALSHA", pipe.admit_sha.c_str()};
        std::vector<size_t> lens = {7, pipe.admit_sha.size()};
        std::string nkeys = std::to_string(keys.size());
        argv.push_back(nkeys.c_str());
        lens.push_back(nkeys.size());
        for (const auto* list : {&keys, &args}) {
          for (const auto& a : *list) {
            argv.push_back(a.data());
            lens.push_back(a.size());
          }
        }
        redisAppendCommandArgv(pipe.ctx, static_cast<int>(argv.size()), argv.data(), lens.data());
        sent.push_back(i);
      }
      bool io_error = false, noscript = false;
      for (size_t i : sent) {
        void* raw = nullptr;
        if (redisGetReply(pipe.ctx, &raw) != REDIS_OK || raw == nullptr) {
          io_error = true;
          break;
        }
        ReplyPtr r(static_cast<redisReply*>(raw));
        if (r->type == REDIS_REPLY_ERROR && std::string_view(r->str, r->len).starts_with("NOSCRIPT")) {
          noscript = true;
          continue;
        }
        results[i] = parse_quote(r.get(), batch[i].subjects);
        answered[i] = true;
      }
      if (io_error || noscript) {
        redisFree(pipe.ctx);  // unusable, or its scripts are gone: reconnect and reload
        pipe.ctx = nullptr;
      }
      if (io_error || !noscript) break;
    }
    for (size_t i = 0; i < batch.size(); ++i) batch[i].done(std::move(batch[i].subjects), results[i]);
  }

  void admit_args(const std::vector<Subject>& subjects, std::vector<std::string>& keys,
                  std::vector<std::string>& args) const {
    const int64_t now_s = unix_now();
    const int64_t day = utc_day(now_s);
    args.push_back(std::to_string(subjects.size()));
    args.push_back(fmt::format("{:.0f}", seconds_to_next_utc_day(now_s)));
    for (const auto& s : subjects) {
      keys.push_back(key(s.id, "req"));
      keys.push_back(key(s.id, "tok"));
      keys.push_back(key(s.id, fmt::format("day:{}", day).c_str()));
      args.push_back(std::to_string(s.limits.requests_per_minute));
      args.push_back(std::to_string(s.limits.request_burst));
      args.push_back(std::to_string(s.limits.tokens_per_minute));
      args.push_back(std::to_string(s.limits.tokens_per_day));
    }
  }

  static std::optional<Quote> parse_quote(const redisReply* r, const std::vector<Subject>& subjects) {
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements != 10) {
      if (r != nullptr && r->type == REDIS_REPLY_ERROR) {
        log::warn("ratelimit.redis_error", "rate-limit script failed: {}", std::string_view(r->str, r->len));
      }
      return std::nullopt;
    }
    auto num = [&](size_t i) -> int64_t {
      const redisReply* e = r->element[i];
      return e->type == REDIS_REPLY_INTEGER ? e->integer : 0;
    };
    Quote q;
    q.allowed = num(0) == 1;
    if (!q.allowed) {
      const int64_t idx = num(1) - 1;
      if (idx >= 0 && static_cast<size_t>(idx) < subjects.size()) q.subject = subjects[idx].id;
      const int64_t kind = num(2);
      q.reason = kind == 1 ? "requests_per_minute" : kind == 2 ? "tokens_per_minute" : "tokens_per_day";
      q.retry_after_s = static_cast<double>(num(3)) / 1e6;
    }
    q.limit_requests = num(4);
    q.remaining_requests = num(5);
    q.reset_requests_s = static_cast<double>(num(6)) / 1e6;
    q.limit_tokens = num(7);
    q.remaining_tokens = num(8);
    q.reset_tokens_s = static_cast<double>(num(9)) / 1e6;
    return q;
  }
  void drop() {
    if (ctx) redisFree(ctx);
    ctx = nullptr;
  }

  bool connect() {
    if (ctx) return true;
    timeval tv{0, static_cast<suseconds_t>(options.timeout.count() * 1000)};
    ctx = redisConnectWithTimeout(endpoint.host.c_str(), endpoint.port, tv);
    if (ctx == nullptr || ctx->err) {
      drop();
      return false;
    }
    redisSetTimeout(ctx, tv);
    if (endpoint.db != 0) {
      ReplyPtr r(static_cast<redisReply*>(redisCommand(ctx, "SELECT %d", endpoint.db)));
      if (!r || r->type == REDIS_REPLY_ERROR) {
        drop();
        return false;
      }
    }
    admit_sha = load(kAdmitScript);
    charge_sha = load(kChargeScript);
    if (admit_sha.empty() || charge_sha.empty()) {
      drop();
      return false;
    }
    return true;
  }

  std::string load(const char* script) {
    ReplyPtr r(static_cast<redisReply*>(redisCommand(ctx, "SCRIPT LOAD %s", script)));
    if (!r || r->type != REDIS_REPLY_STRING) return {};
    return std::string(r->str, r->len);
  }

  // EVALSHA with the given keys and args; reloads the scripts once on NOSCRIPT.
  ReplyPtr eval(const std::string& sha, const std::vector<std::string>& keys,
                const std::vector<std::string>& args) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!connect()) return nullptr;
      std::vector<const char*> argv;
      std::vector<size_t> lens;
      std::string nkeys = std::to_string(keys.size());
      // `sha` names admit_sha or charge_sha, which connect() refreshes after a reload.
      const std::string& script_sha = sha;
      static const std::string kEvalsha = "EVALSHA";
      argv.push_back(kEvalsha.c_str());
      lens.push_back(kEvalsha.size());
      argv.push_back(script_sha.c_str());
      lens.push_back(script_sha.size());
      argv.push_back(nkeys.c_str());
      lens.push_back(nkeys.size());
      for (const auto& k : keys) {
        argv.push_back(k.data());
        lens.push_back(k.size());
      }
      for (const auto& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
      }
      ReplyPtr r(static_cast<redisReply*>(
          redisCommandArgv(ctx, static_cast<int>(argv.size()), argv.data(), lens.data())));
      if (!r) {
        drop();  // I/O error or timeout: the connection is unusable
        return nullptr;
      }
      if (r->type == REDIS_REPLY_ERROR && std::string_view(r->str, r->len).starts_with("NOSCRIPT")) {
        drop();
        continue;
      }
      if (r->type == REDIS_REPLY_ERROR) {
        log::warn("ratelimit.redis_error", "rate-limit script failed: {}", std::string_view(r->str, r->len));
        return nullptr;
      }
      return r;
    }
    return nullptr;
  }

  std::string key(const std::string& subject, const char* what) const {
    return options.prefix + subject + ":" + what;
  }
};

RedisBuckets::RedisBuckets(RedisLimiterOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
}

RedisBuckets::~RedisBuckets() = default;

Result<std::unique_ptr<RedisBuckets>> RedisBuckets::open(const RedisLimiterOptions& options) {
  auto endpoint = cache::parse_redis_url(options.url);
  if (!endpoint.ok()) return endpoint.status();
  std::unique_ptr<RedisBuckets> b(new RedisBuckets(options));
  b->impl_->endpoint = *endpoint;
  b->impl_->pipeline = std::thread([impl = b->impl_.get()] { impl->run_pipeline(); });
  return b;
}

void RedisBuckets::admit_async(std::vector<Subject> subjects, AdmitCallback done) {
  {
    std::lock_guard lock(impl_->qmu);
    if (!impl_->stopping) {
      impl_->queue.push_back({std::move(subjects), std::move(done)});
      impl_->qcv.notify_one();
      return;
    }
  }
  done(std::move(subjects), std::nullopt);
}

std::optional<Quote> RedisBuckets::admit(const std::vector<Subject>& subjects) {
  std::promise<std::optional<Quote>> promise;
  auto result = promise.get_future();
  admit_async(subjects, [&promise](std::vector<Subject>, std::optional<Quote> q) { promise.set_value(std::move(q)); });
  return result.get();
}

bool RedisBuckets::charge(const std::vector<Subject>& subjects, int64_t tokens) {
  const int64_t day = utc_day(unix_now());
  std::vector<std::string> keys, args;
  args.push_back(std::to_string(subjects.size()));
  args.push_back(std::to_string(tokens));
  args.push_back("172800");  // today's count outlives the day by one more
  for (const auto& s : subjects) {
    keys.push_back(impl_->key(s.id, "tok"));
    keys.push_back(impl_->key(s.id, fmt::format("day:{}", day).c_str()));
    args.push_back(std::to_string(s.limits.tokens_per_minute));
    args.push_back(std::to_string(s.limits.tokens_per_day));
  }
  std::lock_guard lock(impl_->mu);
  return impl_->eval(impl_->charge_sha, keys, args) != nullptr;
}

std::optional<int64_t> RedisBuckets::daily_used(const std::string& subject) {
  const int64_t day = utc_day(unix_now());
  std::lock_guard lock(impl_->mu);
  if (!impl_->connect()) return std::nullopt;
  const std::string k = impl_->key(subject, fmt::format("day:{}", day).c_str());
  ReplyPtr r(static_cast<redisReply*>(redisCommand(impl_->ctx, "GET %b", k.data(), k.size())));
  if (!r) {
    impl_->drop();
    return std::nullopt;
  }
  if (r->type == REDIS_REPLY_NIL) return 0;
  if (r->type != REDIS_REPLY_STRING) return std::nullopt;
  return std::strtoll(std::string(r->str, r->len).c_str(), nullptr, 10);
}

}  // namespace infera::auth
