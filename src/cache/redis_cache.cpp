#include "cache/redis_cache.h"

#include <hiredis/hiredis.h>

#include <charconv>

namespace infera::cache {

namespace {

struct ReplyDeleter {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
  return tv;
}

bool parse_int(std::string_view text, int* out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

Result<RedisEndpoint> parse_redis_url(std::string_view url) {
  constexpr std::string_view kScheme = "redis://";
  const auto bad = [&](const char* why) {
    return Status::InvalidArgument("redis url '" + std::string(url) + "': " + why +
                                   " (expected redis://host:port[/db])");
  };
  if (url.substr(0, kScheme.size()) != kScheme) return bad("scheme must be redis://");
  std::string_view rest = url.substr(kScheme.size());
  RedisEndpoint endpoint;
  if (const std::size_t slash = rest.find('/'); slash != std::string_view::npos) {
    const std::string_view db = rest.substr(slash + 1);
    if (!db.empty() && (!parse_int(db, &endpoint.db) || endpoint.db < 0)) return bad("bad db");
    rest = rest.substr(0, slash);
  }
  if (const std::size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    if (!parse_int(rest.substr(colon + 1), &endpoint.port) || endpoint.port <= 0 ||
        endpoint.port > 65535) {
      return bad("bad port");
    }
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) return bad("missing host");
  endpoint.host = std::string(rest);
  return endpoint;
}

void RedisCache::ContextDeleter::operator()(redisContext* context) const { redisFree(context); }

Result<std::unique_ptr<RedisCache>> RedisCache::open(const RedisCacheOptions& options) {
  Result<RedisEndpoint> endpoint = parse_redis_url(options.url);
  if (!endpoint.ok()) return endpoint.status();
  return std::make_unique<RedisCache>(OpenToken(), options, std::move(endpoint).value());
}

RedisCache::RedisCache(OpenToken, RedisCacheOptions options, RedisEndpoint endpoint)
    : options_(std::move(options)),
      endpoint_(std::move(endpoint)),
      breaker_(options_.breaker_failures, options_.breaker_cooldown) {}

RedisCache::~RedisCache() = default;

Result<RedisCache::ContextPtr> RedisCache::connect() const {
  ContextPtr context(redisConnectWithTimeout(endpoint_.host.c_str(), endpoint_.port,
                                             to_timeval(options_.connect_timeout)));
  if (!context) return Status::Unavailable("redis: out of memory creating a connection");
  if (context->err != 0) {
    return Status::Unavailable("redis " + endpoint_.host + ":" + std::to_string(endpoint_.port) +
                               ": " + context->errstr);
  }
  if (redisSetTimeout(context.get(), to_timeval(options_.command_timeout)) != REDIS_OK) {
    return Status::Unavailable("redis: cannot set the command timeout");
  }
  if (endpoint_.db != 0) {
    ReplyPtr reply(
        static_cast<redisReply*>(redisCommand(context.get(), "SELECT %d", endpoint_.db)));
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
      return Status::Unavailable("redis: SELECT " + std::to_string(endpoint_.db) + " failed");
    }
  }
  return context;
}

Result<RedisCache::ContextPtr> RedisCache::acquire() {
  {
    std::unique_lock lock(pool_mu_);
    const bool available = pool_cv_.wait_for(lock, options_.command_timeout, [&] {
      return !idle_.empty() || live_ < options_.pool_size;
    });
    if (!available) return Status::ResourceExhausted("redis: every pooled connection is busy");
    if (!idle_.empty()) {
      ContextPtr context = std::move(idle_.back());
      idle_.pop_back();
      return context;
    }
    ++live_;
  }
  Result<ContextPtr> context = connect();  // dial outside the lock
  if (!context.ok()) {
    std::lock_guard lock(pool_mu_);
    --live_;
    pool_cv_.notify_one();
  }
  return context;
}

// A busy pool is this process's load, not Redis failing: it must not open the breaker. A
// probe let through by a half-open breaker still has to report, so it counts as a failure.
void RedisCache::report_acquire_failure(const Status& status) {
  ++errors_;
  if (status.code() != StatusCode::kResourceExhausted ||
      breaker_.state() == BreakerState::kHalfOpen) {
    breaker_.on_failure();
  }
}

void RedisCache::release(ContextPtr context, bool healthy) {
  std::lock_guard lock(pool_mu_);
  if (healthy && context && context->err == 0) {
    idle_.push_back(std::move(context));
  } else {
    --live_;  // dropped; the next acquire re-dials
  }
  pool_cv_.notify_one();
}

std::optional<StoredValue> RedisCache::get(std::string_view key) {
  if (!breaker_.allow()) {
    ++errors_;
    ++misses_;
    return std::nullopt;
  }
  Result<ContextPtr> context = acquire();
  if (!context.ok()) {
    report_acquire_failure(context.status());
    ++misses_;
    return std::nullopt;
  }
  const std::string full_key = options_.key_prefix + std::string(key);
  ReplyPtr reply(static_cast<redisReply*>(
      redisCommand(context->get(), "GET %b", full_key.data(), full_key.size())));
  const bool healthy = reply != nullptr;
  release(std::move(context).value(), healthy);
  if (!reply || reply->type == REDIS_REPLY_ERROR) {
    breaker_.on_failure();
    ++errors_;
    ++misses_;
    return std::nullopt;
  }
  breaker_.on_success();
  if (reply->type != REDIS_REPLY_STRING) {
    ++misses_;
    return std::nullopt;
  }
  Result<StoredValue> entry =
      decode_entry(key, std::string_view(reply->str, static_cast<std::size_t>(reply->len)));
  if (!entry.ok()) {
    ++corrupt_;
    ++misses_;
    return std::nullopt;
  }
  if (entry->expires_unix_ms <= now_unix_ms()) {
    ++expired_;
    ++misses_;
    return std::nullopt;
  }
  ++hits_;
  return std::move(entry).value();
}

Status RedisCache::put(std::string_view key, std::string_view value, std::int64_t expires_unix_ms) {
  const std::int64_t ttl_ms = expires_unix_ms - now_unix_ms();
  if (ttl_ms <= 0) return Status::Ok();
  if (!breaker_.allow()) {
    ++errors_;
    return Status::Unavailable("redis: circuit breaker open");
  }
  Result<ContextPtr> context = acquire();
  if (!context.ok()) {
    report_acquire_failure(context.status());
    return context.status();
  }
  const std::string full_key = options_.key_prefix + std::string(key);
  const std::string bytes = encode_entry(key, value, expires_unix_ms);
  ReplyPtr reply(static_cast<redisReply*>(
      redisCommand(context->get(), "SET %b %b PX %lld", full_key.data(), full_key.size(),
                   bytes.data(), bytes.size(), static_cast<long long>(ttl_ms))));
  const bool healthy = reply != nullptr;
  release(std::move(context).value(), healthy);
  if (!reply || reply->type == REDIS_REPLY_ERROR) {
    breaker_.on_failure();
    ++errors_;
    return Status::Unavailable("redis: SET failed");
  }
  breaker_.on_success();
  return Status::Ok();
}

Status RedisCache::clear() {
  if (!breaker_.allow()) return Status::Unavailable("redis: circuit breaker open");
  Result<ContextPtr> context = acquire();
  if (!context.ok()) {
    report_acquire_failure(context.status());
    return context.status();
  }
  const std::string pattern = options_.key_prefix + "*";
  std::string cursor = "0";
  bool healthy = true;
  do {
    ReplyPtr reply(
        static_cast<redisReply*>(redisCommand(context->get(), "SCAN %s MATCH %b COUNT 500",
                                              cursor.c_str(), pattern.data(), pattern.size())));
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
      healthy = reply != nullptr;
      break;
    }
    cursor.assign(reply->element[0]->str, static_cast<std::size_t>(reply->element[0]->len));
    const redisReply* keys = reply->element[1];
    for (std::size_t i = 0; i < keys->elements; ++i) {
      ReplyPtr deleted(
          static_cast<redisReply*>(redisCommand(context->get(), "UNLINK %b", keys->element[i]->str,
                                                static_cast<std::size_t>(keys->element[i]->len))));
      if (!deleted) {
        healthy = false;
        break;
      }
    }
  } while (healthy && cursor != "0");
  release(std::move(context).value(), healthy);
  if (!healthy || cursor != "0") {
    breaker_.on_failure();
    return Status::Unavailable("redis: clear did not finish");
  }
  breaker_.on_success();
  return Status::Ok();
}

TierStats RedisCache::stats() const {
  TierStats s;
  s.enabled = true;
  s.hits = hits_.load();
  s.misses = misses_.load();
  s.expired = expired_.load();
  s.corrupt = corrupt_.load();
  s.errors = errors_.load();
  return s;
}

}  // namespace infera::cache
