// The response cache of a real `infera serve --model` over real HTTP: L1 in memory, L2 in
// a real RocksDB temp directory, L3 in a real redis-server that the test starts on a free
// loopback port; single-flight, TTL, damaged entries, warming and the cache policy.
// Skipped when ../shared/models is absent; the Redis tests also when redis-server is.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <latch>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "cache/temp_dir.h"
#include "integration/redis_support.h"
#include "integration/server_support.h"

namespace infera::testing {
namespace {

using namespace std::chrono_literals;
using cache::testing::TempDir;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

const std::string kModel = std::string(INFERA_SHARED_MODELS) + "/stories260K.gguf";

#define REQUIRE_MODEL()                 \
  if (!std::filesystem::exists(kModel)) \
  GTEST_SKIP() << "no shared model at " << kModel << " (../shared/models is absent)"

#define REQUIRE_REDIS()                                                         \
  if (!redis_server_installed())                                                \
  GTEST_SKIP() << "redis-server is not installed (scripts/setup installs it); " \
                  "the L3 tests need a real one"

// Polls `condition` every `interval` until it holds or `timeout` passes.
template <typename Condition>
bool eventually(Condition condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval = 20ms) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

json chat_body(const std::string& content, int max_tokens = 16) {
  return {{"messages", {{{"role", "user"}, {"content", content}}}},
          {"max_tokens", max_tokens},
          {"temperature", 0}};
}

json assistant_body(const std::string& question) {
  return {{"question", question}, {"role", "student"}};
}

// One generation response reduced to what the cache tests compare.
struct Answer {
  int status = 0;
  std::string x_cache;
  std::string text;  // message content, completion text, /api/chat answer, or joined SSE deltas
  std::string body;
  std::chrono::milliseconds elapsed{0};
  bool sse_done = false;  // an SSE body whose last event is [DONE]
};

std::vector<std::string> sse_payloads(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    const size_t end = body.find("\n\n", pos);
    out.push_back(body.substr(pos + 6, end - pos - 6));
    pos = end;
  }
  return out;
}

Answer ask(int port, const std::string& path, const json& body,
           const std::map<std::string, std::string>& headers = {},
           std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  std::map<std::string, std::string> h = headers;
  h["Content-Type"] = "application/json";
  const auto start = Clock::now();
  auto r = http_request(port, "POST", path, body.dump(), h, timeout);
  Answer a;
  a.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  if (!r) return a;
  a.status = r->status;
  a.x_cache = r->header("x-cache");
  a.body = r->body;
  if (r->status != 200) return a;
  if (r->header("content-type") == "text/event-stream") {
    auto events = sse_payloads(r->body);
    a.sse_done = !events.empty() && events.back() == "[DONE]";
    for (const auto& e : events) {
      json chunk = json::parse(e, nullptr, false);
      if (!chunk.is_object() || !chunk.contains("choices") || chunk["choices"].empty()) continue;
      const json& delta = chunk["choices"][0]["delta"];
      if (delta.contains("content")) a.text += delta["content"].get<std::string>();
    }
    return a;
  }
  json doc = json::parse(r->body, nullptr, false);
  if (doc.contains("answer")) {
    a.text = doc["answer"];
  } else if (doc.contains("choices")) {
    const json& choice = doc["choices"][0];
    a.text = choice.contains("message") ? choice["message"]["content"] : choice["text"];
  }
  return a;
}

Answer ask_chat(int port, const std::string& content, int max_tokens = 16) {
  return ask(port, "/v1/chat/completions", chat_body(content, max_tokens));
}

json cache_stats(int port) {
  auto r = http_request(port, "GET", "/api/cache/stats");
  if (!r || r->status != 200) return json::object();
  return json::parse(r->body, nullptr, false);
}

// The value of one series in /metrics (e.g. `infera_cache_hits{tier="l1"}`); -1 if absent.
double metric(int port, const std::string& series) {
  auto r = http_request(port, "GET", "/metrics");
  if (!r) return -1;
  std::istringstream lines(r->body);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return -1;
}

std::unique_ptr<ServerProcess> serve(std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--model", kModel, "--default-max-tokens", "16"};
  args.insert(args.end(), extra.begin(), extra.end());
  return std::make_unique<ServerProcess>(std::move(args));
}

// SIGTERM and wait: a clean shutdown flushes RocksDB's memtable into an SST file.
void stop(ServerProcess& server) {
  server.signal(SIGTERM);
  auto status = server.wait_exit(15s);
  ASSERT_TRUE(status.has_value()) << "infera did not exit within 15 s of SIGTERM";
  EXPECT_EQ(*status, 0) << server.logs();
}

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::filesystem::path> files_with_extension(const std::string& dir,
                                                        const std::string& extension) {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == extension) out.push_back(e.path());
  }
  return out;
}

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bitwise: RocksDB's WAL checksum.
uint32_t crc32c(std::string_view bytes) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char b : bytes) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

// RocksDB stores CRCs "masked" (util/coding: rotate right by 15, add a constant).
uint32_t masked_crc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u; }

uint32_t load_le32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i)
    v = (v << 8) | static_cast<unsigned char>(s[at + static_cast<size_t>(i)]);
  return v;
}

// Changes one character of the cached answer text inside the first record of a RocksDB
// write-ahead log and re-seals the record with a valid WAL checksum, so RocksDB replays
// it without complaint and only infera's own entry checksum can notice. The legacy record
// layout is: masked crc32c (4) | payload length (2, LE) | type (1, 1 = full) | payload,
// the crc covering type and payload. Returns an error describing what did not match.
// Flips one character of `answer` inside the first WAL record and fixes the record's
// own checksum, so only infera's entry checksum can tell.
std::string corrupt_answer_in_wal(const std::filesystem::path& wal, const std::string& answer) {
  std::string bytes = read_bytes(wal);
  if (bytes.size() < 7) return wal.string() + ": empty WAL";
  const size_t length = static_cast<unsigned char>(bytes[4]) |
                        (static_cast<size_t>(static_cast<unsigned char>(bytes[5])) << 8);
  if (bytes[6] != 1 || 7 + length > bytes.size())
    return wal.string() + ": first record not a full record";
  if (load_le32(bytes, 0) != masked_crc(crc32c(std::string_view(bytes).substr(6, 1 + length)))) {
    return wal.string() + ": first record's checksum is not the expected masked crc32c";
  }
  const size_t text = bytes.find(answer, 7);
  if (answer.empty() || text == std::string::npos || text + answer.size() > 7 + length) {
    return wal.string() + ": the answer text is not stored plainly in the first record";
  }
  char& c = bytes[text];
  c = c == 'x' ? 'y' : 'x';  // still a well-formed answer: wrong unless the entry checksum says no
  const uint32_t crc = masked_crc(crc32c(std::string_view(bytes).substr(6, 1 + length)));
  for (int i = 0; i < 4; ++i)
    bytes[static_cast<size_t>(i)] = static_cast<char>((crc >> (8 * i)) & 0xFF);
  write_bytes(wal, bytes);
  return {};
}

// ---------------------------------------------------------------------------------------
// Hit after miss in each tier

TEST(CacheTiers, RepeatedRequestIsAMissThenAnL1Hit) {
  REQUIRE_MODEL();
  auto server = serve();
  ASSERT_GT(server->port(), 0);
  const int port = server->port();

  Answer first = ask_chat(port, "Once upon a time");
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(first.x_cache, "MISS");
  Answer second = ask_chat(port, "Once upon a time");
  ASSERT_EQ(second.status, 200) << second.body;
  EXPECT_EQ(second.x_cache, "HIT-L1");
  EXPECT_EQ(second.text, first.text);

  // The assistant endpoint reports the hit in its body too.
  Answer q1 = ask(port, "/api/chat", assistant_body("What is a cat?"));
  Answer q2 = ask(port, "/api/chat", assistant_body("What is a cat?"));
  ASSERT_EQ(q2.status, 200) << q2.body;
  EXPECT_EQ(q1.x_cache, "MISS");
  EXPECT_EQ(q2.x_cache, "HIT-L1");
  EXPECT_EQ(q2.text, q1.text);
  EXPECT_FALSE(json::parse(q1.body)["cached"].get<bool>());
  EXPECT_TRUE(json::parse(q2.body)["cached"].get<bool>());

  json stats = cache_stats(port);
  EXPECT_EQ(stats["l1"]["hits"], 2) << stats.dump();
  EXPECT_EQ(stats["l1"]["misses"], 2) << stats.dump();
  EXPECT_DOUBLE_EQ(stats["l1"]["hit_rate"].get<double>(), 0.5);
  EXPECT_EQ(stats["l1"]["entries"], 2);
  EXPECT_GT(stats["l1"]["bytes"].get<int>(), 0);
  EXPECT_FALSE(stats["l2"]["enabled"].get<bool>());
  EXPECT_FALSE(stats["l3"]["enabled"].get<bool>());
  auto performance = http_request(port, "GET", "/api/v1/performance");
  ASSERT_TRUE(performance);
  EXPECT_EQ(json::parse(performance->body)["cache"]["l1"]["hits"], 2) << performance->body;
  EXPECT_EQ(metric(port, "infera_cache_hits{tier=\"l1\"}"), 2);
  EXPECT_EQ(metric(port, "infera_cache_misses{tier=\"l1\"}"), 2);
}

TEST(CacheTiers, RestartedServerHitsL2ThenL1) {
  REQUIRE_MODEL();
  TempDir dir;
  const std::string l2 = dir.path() + "/l2";
  std::string text;
  {
    auto first = serve({"--cache-dir", l2});
    ASSERT_GT(first->port(), 0);
    Answer a = ask_chat(first->port(), "The little dog");
    ASSERT_EQ(a.status, 200) << a.body;
    EXPECT_EQ(a.x_cache, "MISS");
    text = a.text;
    stop(*first);
  }
  // Not re-warmed at start (--cache-rewarm): this test is about what a request finds.
  auto second = serve({"--cache-dir", l2, "--cache-rewarm", "0"});
  ASSERT_GT(second->port(), 0);
  Answer from_disk = ask_chat(second->port(), "The little dog");
  ASSERT_EQ(from_disk.status, 200) << from_disk.body;
  EXPECT_EQ(from_disk.x_cache, "HIT-L2");
  EXPECT_EQ(from_disk.text, text);
  Answer promoted = ask_chat(second->port(), "The little dog");
  EXPECT_EQ(promoted.x_cache, "HIT-L1");
  EXPECT_EQ(promoted.text, text);
  json stats = cache_stats(second->port());
  EXPECT_EQ(stats["l2"]["hits"], 1) << stats.dump();
  EXPECT_EQ(metric(second->port(), "infera_cache_hits{tier=\"l2\"}"), 1);
}

TEST(CacheRewarm, TheQuestionsAskedMostAreAnsweredAgainAfterARestart) {
  REQUIRE_MODEL();
  TempDir dir;
  const std::string data = dir.path() + "/data";
  std::string asked_most;
  {
    auto first = serve({"--data-dir", data});  // no --cache-dir: answers live in memory only
    ASSERT_GT(first->port(), 0);
    for (int i = 0; i < 3; ++i) {
      Answer a = ask(first->port(), "/api/chat", {{"question", "What is a cat?"}});
      ASSERT_EQ(a.status, 200) << a.body;
      asked_most = a.text;
    }
    ASSERT_EQ(ask_chat(first->port(), "The little dog").status, 200);
    ASSERT_EQ(ask(first->port(), "/api/chat", {{"question", "Private"}, {"session_id", "s1"}}).status, 200);
    stop(*first);
  }
  // Counted: the two cacheable questions (not the one inside a session), most asked first.
  std::ifstream in(data + "/popular.jsonl");
  std::vector<json> rows;
  for (std::string line; std::getline(in, line);) rows.push_back(json::parse(line));
  ASSERT_EQ(rows.size(), 2u);
  const json& cat = rows[0]["count"] == 3 ? rows[0] : rows[1];
  EXPECT_EQ(cat["count"], 3);
  EXPECT_EQ(cat["body"]["question"], "What is a cat?");

  auto second = serve({"--data-dir", data});
  ASSERT_GT(second->port(), 0);
  const auto deadline = Clock::now() + 20s;
  while (cache_stats(second->port())["l1"].value("entries", 0) < 2 && Clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  Answer again = ask(second->port(), "/api/chat", {{"question", "What is a cat?"}});
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(again.x_cache, "HIT-L1");  // answered before anyone asked
  EXPECT_EQ(again.text, asked_most);
  EXPECT_EQ(ask_chat(second->port(), "The little dog").x_cache, "HIT-L1");

  auto off = serve({"--data-dir", data, "--cache-rewarm", "0"});
  ASSERT_GT(off->port(), 0);
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(ask(off->port(), "/api/chat", {{"question", "What is a cat?"}}).x_cache, "MISS");
}

// Two infera processes, each with its own empty L1 and L2, sharing one Redis.
TEST(CacheTiers, ServersSharingRedisServeEachOthersAnswersFromL3) {
  REQUIRE_MODEL();
  REQUIRE_REDIS();
  RedisProcess redis(free_loopback_port());
  ASSERT_TRUE(redis.start()) << "redis-server did not answer PING";
  TempDir dir_a, dir_b;
  auto a = serve({"--redis-url", redis.url(), "--cache-dir", dir_a.path() + "/l2"});
  auto b = serve({"--redis-url", redis.url(), "--cache-dir", dir_b.path() + "/l2"});
  ASSERT_GT(a->port(), 0);
  ASSERT_GT(b->port(), 0);

  Answer filled = ask_chat(a->port(), "A cat sat");
  ASSERT_EQ(filled.status, 200) << filled.body;
  EXPECT_EQ(filled.x_cache, "MISS");
  Answer shared = ask_chat(b->port(), "A cat sat");
  ASSERT_EQ(shared.status, 200) << shared.body;
  EXPECT_EQ(shared.x_cache, "HIT-L3");
  EXPECT_EQ(shared.text, filled.text);
  EXPECT_EQ(ask_chat(b->port(), "A cat sat").x_cache, "HIT-L1");

  // And the other way round.
  Answer from_b = ask_chat(b->port(), "The sun was");
  EXPECT_EQ(from_b.x_cache, "MISS");
  Answer at_a = ask_chat(a->port(), "The sun was");
  EXPECT_EQ(at_a.x_cache, "HIT-L3");
  EXPECT_EQ(at_a.text, from_b.text);

  json stats = cache_stats(b->port());
  EXPECT_EQ(stats["l3"]["hits"], 1) << stats.dump();
  EXPECT_EQ(stats["redis_breaker"]["state"], "closed");
  EXPECT_EQ(metric(a->port(), "infera_cache_hits{tier=\"l3\"}"), 1);
}

// ---------------------------------------------------------------------------------------
// Redis outage

TEST(CacheRedisOutage, KilledRedisCostsABoundedDelayOpensTheBreakerAndL3HitsResumeAfterRestart) {
  REQUIRE_MODEL();
  REQUIRE_REDIS();
  RedisProcess redis(free_loopback_port());
  ASSERT_TRUE(redis.start()) << "redis-server did not answer PING";
  auto a = serve({"--redis-url", redis.url()});
  auto b = serve({"--redis-url", redis.url()});
  ASSERT_GT(a->port(), 0);
  ASSERT_GT(b->port(), 0);
  Answer before = ask_chat(a->port(), "Before the outage");
  ASSERT_EQ(before.status, 200);
  ASSERT_EQ(ask_chat(b->port(), "Before the outage").x_cache, "HIT-L3");

  redis.kill();
  // Each L3 call costs at most its connect + command timeouts (50 + 50 ms) until the
  // breaker opens, then nothing; a generation of 16 tokens takes a few ms here.
  const auto kBound = 1000ms;
  for (int i = 0; i < 10; ++i) {
    Answer r = ask_chat(b->port(), "During the outage " + std::to_string(i));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.x_cache, "MISS");
    EXPECT_LT(r.elapsed, kBound) << "request " << i << " took " << r.elapsed.count() << " ms";
  }
  Answer recomputed = ask_chat(a->port(), "Before the outage");  // A's own L1 still has it
  EXPECT_EQ(recomputed.text, before.text);
  json stats = cache_stats(b->port());
  EXPECT_EQ(stats["redis_breaker"]["state"], "open") << stats.dump();
  EXPECT_GE(stats["redis_breaker"]["opens"].get<int>(), 1);
  EXPECT_GT(stats["l3"]["errors"].get<int>(), 0);
  EXPECT_EQ(metric(b->port(), "infera_cache_redis_breaker_open"), 1);

  ASSERT_TRUE(redis.start()) << "redis-server did not come back on the same port";
  // Redis restarts empty; A fills it again and B must find A's answers in L3 once its
  // breaker lets a probe through (after the 5 s cool-down).
  int round = 0;
  bool resumed = eventually(
      [&] {
        const std::string prompt = "After the outage " + std::to_string(round++);
        Answer filled = ask_chat(a->port(), prompt);
        Answer shared = ask_chat(b->port(), prompt);
        EXPECT_EQ(filled.status, 200);
        EXPECT_EQ(shared.status, 200);
        EXPECT_EQ(shared.text, filled.text);
        return shared.x_cache == "HIT-L3";
      },
      20s, 200ms);
  EXPECT_TRUE(resumed) << "B never hit L3 again within 20 s of Redis coming back: "
                       << cache_stats(b->port()).dump();
  EXPECT_EQ(cache_stats(b->port())["redis_breaker"]["state"], "closed");
  EXPECT_EQ(metric(b->port(), "infera_cache_redis_breaker_open"), 0);
}

// A Redis that accepts connections but never answers (SIGSTOP) costs each call its timeouts
// until the breaker opens; it must never fail or stall a request.
TEST(CacheRedisOutage, HungRedisCostsABoundedDelayAndOpensTheBreaker) {
  REQUIRE_MODEL();
  REQUIRE_REDIS();
  RedisProcess redis(free_loopback_port());
  ASSERT_TRUE(redis.start()) << "redis-server did not answer PING";
  auto server = serve({"--redis-url", redis.url()});
  ASSERT_GT(server->port(), 0);
  const int port = server->port();
  ASSERT_EQ(ask_chat(port, "Before the hang").x_cache, "MISS");

  redis.pause();
  const auto kBound = 1000ms;
  for (int i = 0; i < 10; ++i) {
    Answer r = ask_chat(port, "During the hang " + std::to_string(i));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_LT(r.elapsed, kBound) << "request " << i << " took " << r.elapsed.count() << " ms";
  }
  json stats = cache_stats(port);
  EXPECT_EQ(stats["redis_breaker"]["state"], "open") << stats.dump();
  EXPECT_EQ(ask_chat(port, "Before the hang").x_cache, "HIT-L1");
  redis.resume();
}

// ---------------------------------------------------------------------------------------
// TTL

TEST(CacheExpiry, AnswerIsAMissAgainOnceCacheTimeoutPasses) {
  REQUIRE_MODEL();
  TempDir dir;
  auto server = serve({"--cache-timeout", "1", "--cache-dir", dir.path() + "/l2"});
  ASSERT_GT(server->port(), 0);
  const int port = server->port();
  const auto filled_at = Clock::now();
  Answer first = ask_chat(port, "Tick tock");
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(first.x_cache, "MISS");
  EXPECT_EQ(ask_chat(port, "Tick tock").x_cache, "HIT-L1");

  // Every tier honours the TTL: after expiry neither L1 nor L2 may answer.
  Answer later;
  bool expired = eventually(
      [&] {
        later = ask_chat(port, "Tick tock");
        return later.x_cache == "MISS";
      },
      8s, 100ms);
  ASSERT_TRUE(expired) << "still " << later.x_cache << " 8 s after a 1 s TTL";
  EXPECT_GE(Clock::now() - filled_at, 1s) << "expired before its TTL";
  EXPECT_EQ(later.text, first.text);
  EXPECT_GE(cache_stats(port)["l1"]["expired"].get<int>(), 1);
}

// `--cache-timeout 0` is documented as "0 = no expiry" (infera config), so answers must
// still be cached (every request was a MISS before 4cfb5e7).
TEST(CacheExpiry, ZeroCacheTimeoutMeansAnswersNeverExpire) {
  REQUIRE_MODEL();
  auto server = serve({"--cache-timeout", "0"});
  ASSERT_GT(server->port(), 0);
  EXPECT_EQ(ask_chat(server->port(), "Forever").x_cache, "MISS");
  EXPECT_EQ(ask_chat(server->port(), "Forever").x_cache, "HIT-L1");
}

// ---------------------------------------------------------------------------------------
// Damaged L2 entries

// The entry's bytes are changed under a valid RocksDB checksum (server killed before a
// flush, so the entry lives in the write-ahead log; the record is patched and re-sealed):
// only infera's entry checksum stands between the damage and a wrong answer.
TEST(CacheCorruption, EntryFailingItsChecksumIsAMissNeverAWrongAnswer) {
  REQUIRE_MODEL();
  TempDir dir;
  const std::string l2 = dir.path() + "/l2";
  std::string text;
  {
    auto first = serve({"--cache-dir", l2});
    ASSERT_GT(first->port(), 0);
    Answer a = ask_chat(first->port(), "Lily found a ball");
    ASSERT_EQ(a.status, 200);
    ASSERT_FALSE(a.text.empty());
    text = a.text;
    bool logged = eventually(
        [&] {
          for (const auto& wal : files_with_extension(l2, ".log")) {
            if (std::filesystem::file_size(wal) > 0) return true;
          }
          return false;
        },
        5s);
    ASSERT_TRUE(logged) << "the entry never reached RocksDB's write-ahead log";
    first->signal(SIGKILL);
    ASSERT_TRUE(first->wait_exit(5s).has_value());
  }
  std::string error = "no write-ahead log holding the entry";
  for (const auto& wal : files_with_extension(l2, ".log")) {
    if (std::filesystem::file_size(wal) > 0) error = corrupt_answer_in_wal(wal, text);
  }
  ASSERT_EQ(error, "");

  auto second = serve({"--cache-dir", l2, "--cache-rewarm", "0"});  // see RestartedServerHitsL2ThenL1
  ASSERT_GT(second->port(), 0);
  Answer after = ask_chat(second->port(), "Lily found a ball");
  ASSERT_EQ(after.status, 200) << after.body;
  EXPECT_EQ(after.x_cache, "MISS");
  EXPECT_EQ(after.text, text);
  json stats = cache_stats(second->port());
  EXPECT_EQ(stats["l2"]["corrupt"], 1) << stats.dump();
  EXPECT_EQ(ask_chat(second->port(), "Lily found a ball").text, text);
}

// A flipped byte inside an SST data block (after a clean shutdown flushed the entry):
// RocksDB's block checksum fails the read, which the disk tier must turn into a miss.
TEST(CacheCorruption, DamagedTableFileIsAMissNeverAWrongAnswer) {
  REQUIRE_MODEL();
  TempDir dir;
  const std::string l2 = dir.path() + "/l2";
  std::string text;
  {
    auto first = serve({"--cache-dir", l2});
    ASSERT_GT(first->port(), 0);
    Answer a = ask_chat(first->port(), "Tom had a red car");
    ASSERT_EQ(a.status, 200);
    text = a.text;
    stop(*first);
  }
  auto tables = files_with_extension(l2, ".sst");
  ASSERT_EQ(tables.size(), 1u) << "a clean shutdown should flush the one entry into one SST";
  std::string bytes = read_bytes(tables[0]);
  // The data block starts at offset 0; prefer a byte of the answer when it is stored
  // uncompressed enough to be found, else a byte early in the block.
  size_t at = bytes.find("\"text\":\"");
  at = at == std::string::npos ? 16 : at + 8;
  ASSERT_LT(at, bytes.size());
  bytes[at] = static_cast<char>(bytes[at] ^ 0x20);
  write_bytes(tables[0], bytes);

  auto second = serve({"--cache-dir", l2, "--cache-rewarm", "0"});  // see RestartedServerHitsL2ThenL1
  ASSERT_GT(second->port(), 0);
  Answer after = ask_chat(second->port(), "Tom had a red car");
  ASSERT_EQ(after.status, 200) << after.body;
  EXPECT_EQ(after.x_cache, "MISS");
  EXPECT_EQ(after.text, text);
  json stats = cache_stats(second->port());
  EXPECT_EQ(stats["l2"]["hits"], 0) << stats.dump();
  EXPECT_GE(stats["l2"]["errors"].get<int>() + stats["l2"]["corrupt"].get<int>(), 1)
      << stats.dump();
}

// ---------------------------------------------------------------------------------------
// Single-flight

TEST(CacheSingleFlight, HundredConcurrentIdenticalRequestsRunTheEngineOnce) {
  REQUIRE_MODEL();
  auto server = serve();
  ASSERT_GT(server->port(), 0);
  const int port = server->port();
  ASSERT_EQ(http_request(port, "POST", "/api/models/stories260K/load")->status, 200);  // loads lazily
  const double tokens_before = metric(port, "infera_generated_tokens_total{model=\"stories260K\"}");
  ASSERT_GE(tokens_before, 0) << "no infera_generated_tokens_total in /metrics";

  constexpr int kCallers = 100;
  std::vector<Answer> answers(kCallers);
  std::latch start(kCallers);
  std::vector<std::thread> callers;
  callers.reserve(kCallers);
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back([&, i] {
      start.arrive_and_wait();
      answers[static_cast<size_t>(i)] = ask_chat(port, "Everyone asks the same thing", 64);
    });
  }
  for (auto& t : callers) t.join();
  for (int i = 0; i < kCallers; ++i) {
    ASSERT_EQ(answers[static_cast<size_t>(i)].status, 200)
        << i << ": " << answers[static_cast<size_t>(i)].body;
    EXPECT_EQ(answers[static_cast<size_t>(i)].text, answers[0].text) << i;
  }
  const double tokens_for_all = metric(port, "infera_generated_tokens_total{model=\"stories260K\"}");
  json stats = cache_stats(port);
  EXPECT_EQ(stats["single_flight"]["computations"], 1) << stats.dump();
  EXPECT_GT(stats["single_flight"]["merges"].get<int>(), 0)
      << "every caller came after the generation: single-flight was not exercised";
  EXPECT_EQ(stats["single_flight"]["merges"].get<int>() + stats["l1"]["hits"].get<int>(),
            kCallers - 1)
      << stats.dump();
  EXPECT_EQ(metric(port, "infera_cache_single_flight_merges"),
            stats["single_flight"]["merges"].get<double>());

  // What one generation of that request costs the engine, measured past the cache.
  Answer alone = ask(port, "/v1/chat/completions", chat_body("Everyone asks the same thing", 64),
                     {{"Cache-Control", "no-cache"}});
  ASSERT_EQ(alone.status, 200);
  EXPECT_EQ(alone.text, answers[0].text);
  const double tokens_for_one = metric(port, "infera_generated_tokens_total{model=\"stories260K\"}") - tokens_for_all;
  EXPECT_GT(tokens_for_one, 0);
  EXPECT_EQ(tokens_for_all - tokens_before, tokens_for_one);
}

TEST(CacheSingleFlight, ConcurrentIdenticalStreamsAllGetTheWholeAnswer) {
  REQUIRE_MODEL();
  auto server = serve();
  ASSERT_GT(server->port(), 0);
  const int port = server->port();
  json body = chat_body("Streams share one generation", 64);
  body["stream"] = true;
  constexpr int kCallers = 20;
  std::vector<Answer> answers(kCallers);
  std::latch start(kCallers);
  std::vector<std::thread> callers;
  callers.reserve(kCallers);
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back([&, i] {
      start.arrive_and_wait();
      answers[static_cast<size_t>(i)] = ask(port, "/v1/chat/completions", body);
    });
  }
  for (auto& t : callers) t.join();
  for (int i = 0; i < kCallers; ++i) {
    const Answer& a = answers[static_cast<size_t>(i)];
    ASSERT_EQ(a.status, 200) << i << ": " << a.body;
    EXPECT_TRUE(a.sse_done) << i << ": " << a.body;
    EXPECT_EQ(a.text, answers[0].text) << i;
  }
  EXPECT_FALSE(answers[0].text.empty());
  EXPECT_EQ(cache_stats(port)["single_flight"]["computations"], 1);
}

// A request's own `timeout` is not part of the key (it does not change the answer), so a
// request without one may join a generation whose leader set a short one. The joiner asked
// for the whole answer and must get it (it got 503 shared_generation_failed before 4cfb5e7).
TEST(CacheSingleFlight, JoinerGetsTheWholeAnswerWhenTheLeadersOwnDeadlineEndsIt) {
  REQUIRE_MODEL();
  auto server = serve({"--ctx-size", "4096"});
  ASSERT_GT(server->port(), 0);
  const int port = server->port();
  json body = chat_body("Long two", 3000);
  json hurried = body;
  hurried["timeout"] = 0.2;
  auto leader =
      std::async(std::launch::async, [&] { return ask(port, "/v1/chat/completions", hurried); });
  ASSERT_TRUE(
      eventually([&] { return cache_stats(port)["single_flight"]["computations"] == 1; }, 5s, 5ms));
  // The whole 3000-token answer: ~1 s in a Release build, well over the default 10 s
  // receive timeout under ASan on two busy cores.
  Answer joiner = ask(port, "/v1/chat/completions", body, {}, std::chrono::seconds(120));
  Answer first = leader.get();
  ASSERT_EQ(first.status, 200) << first.body;
  ASSERT_EQ(json::parse(first.body)["choices"][0]["finish_reason"], "timeout")
      << "the leader finished before its deadline; the scenario did not happen";
  ASSERT_EQ(cache_stats(port)["single_flight"]["merges"], 1) << "the second request did not join";
  EXPECT_EQ(joiner.status, 200) << joiner.body;
  if (joiner.status == 200) {
    EXPECT_NE(json::parse(joiner.body)["choices"][0]["finish_reason"], "timeout");
  }
}

// ---------------------------------------------------------------------------------------
// Streaming

TEST(CacheStreaming, CachedAnswerStreamsAsSseEndingWithDone) {
  REQUIRE_MODEL();
  auto server = serve();
  ASSERT_GT(server->port(), 0);
  const int port = server->port();
  Answer whole = ask_chat(port, "The bird flew");
  ASSERT_EQ(whole.status, 200);
  EXPECT_EQ(whole.x_cache, "MISS");

  json body = chat_body("The bird flew");
  body["stream"] = true;
  Answer streamed = ask(port, "/v1/chat/completions", body);
  ASSERT_EQ(streamed.status, 200) << streamed.body;
  EXPECT_EQ(streamed.x_cache, "HIT-L1");
  EXPECT_TRUE(streamed.sse_done) << streamed.body;
  EXPECT_EQ(streamed.text, whole.text);

  // A streamed miss fills the cache for a streamed hit too.
  json other = chat_body("The fish swam");
  other["stream"] = true;
  Answer miss = ask(port, "/v1/chat/completions", other);
  Answer hit = ask(port, "/v1/chat/completions", other);
  EXPECT_EQ(miss.x_cache, "MISS");
  EXPECT_EQ(hit.x_cache, "HIT-L1");
  EXPECT_TRUE(miss.sse_done);
  EXPECT_TRUE(hit.sse_done) << hit.body;
  EXPECT_EQ(hit.text, miss.text);
}

// ---------------------------------------------------------------------------------------
// Policy

TEST(CachePolicy, NoCacheHeaderSkipsTheCache) {
  REQUIRE_MODEL();
  auto server = serve();
  ASSERT_GT(server->port(), 0);
  const int port = server->port();
  Answer filled = ask_chat(port, "Once there was");
  ASSERT_EQ(filled.x_cache, "MISS");
  const double tokens = metric(port, "infera_generated_tokens_total{model=\"stories260K\"}");
  Answer skipped = ask(port, "/v1/chat/completions", chat_body("Once there was"),
                       {{"Cache-Control", "no-cache"}});
  ASSERT_EQ(skipped.status, 200);
  EXPECT_EQ(skipped.x_cache, "MISS");
  EXPECT_EQ(skipped.text, filled.text);
  EXPECT_GT(metric(port, "infera_generated_tokens_total{model=\"stories260K\"}"), tokens) << "no-cache must generate";
  EXPECT_EQ(ask_chat(port, "Once there was").x_cache, "HIT-L1");
}

// Cache-Control directives compare case-insensitively (RFC 9111, section 5.2).
TEST(CachePolicy, NoCacheDirectiveIsCaseInsensitive) {
  REQUIRE_MODEL();
  auto server = serve();
  ASSERT_GT(server->port(), 0);
  ASSERT_EQ(ask_chat(server->port(), "Shouting").x_cache, "MISS");
  Answer r = ask(server->port(), "/v1/chat/completions", chat_body("Shouting"),
                 {{"Cache-Control", "No-Cache"}});
  EXPECT_EQ(r.x_cache, "MISS");
}

TEST(CachePolicy, SampledRequestsAreCachedOnlyWithAFixedSeed) {
  REQUIRE_MODEL();
  auto server = serve();
  ASSERT_GT(server->port(), 0);
  const int port = server->port();
  json sampled = chat_body("Sam liked to");
  sampled["temperature"] = 0.8;
  for (int i = 0; i < 3; ++i) {
    Answer r = ask(port, "/v1/chat/completions", sampled);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.x_cache, "MISS") << "attempt " << i;
  }
  json seeded = sampled;
  seeded["seed"] = 42;
  Answer first = ask(port, "/v1/chat/completions", seeded);
  Answer second = ask(port, "/v1/chat/completions", seeded);
  EXPECT_EQ(first.x_cache, "MISS");
  EXPECT_EQ(second.x_cache, "HIT-L1");
  EXPECT_EQ(second.text, first.text);
}

TEST(CachePolicy, PolicyOffNeverCaches) {
  REQUIRE_MODEL();
  auto server = serve({"--cache-policy", "off"});
  ASSERT_GT(server->port(), 0);
  const int port = server->port();
  double tokens = metric(port, "infera_generated_tokens_total{model=\"stories260K\"}");
  for (int i = 0; i < 2; ++i) {
    Answer r = ask_chat(port, "Nothing is kept");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.x_cache, "MISS") << "attempt " << i;
    const double now = metric(port, "infera_generated_tokens_total{model=\"stories260K\"}");
    EXPECT_GT(now, tokens) << "attempt " << i << " did not reach the engine";
    tokens = now;
  }
  EXPECT_EQ(metric(port, "infera_cache_hits{tier=\"l1\"}"), -1) << "no cache, no cache metrics";
}

TEST(CacheKeys, JsonKeyOrderAndSpacingBetweenTokensShareAnAnswer) {
  REQUIRE_MODEL();
  auto server = serve();
  ASSERT_GT(server->port(), 0);
  const int port = server->port();
  Answer first = ask_chat(port, "Same question");
  ASSERT_EQ(first.x_cache, "MISS");
  const std::string reordered =
      R"({ "temperature" : 0.0 ,"max_tokens":16,
           "messages" : [ { "content" : "Same question", "role" : "user" } ] })";
  auto r = http_request(port, "POST", "/v1/chat/completions", reordered,
                        {{"Content-Type", "application/json"}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->header("x-cache"), "HIT-L1");
  EXPECT_EQ(json::parse(r->body)["choices"][0]["message"]["content"], first.text);
  EXPECT_EQ(ask_chat(port, "Same question", 17).x_cache, "MISS") << "max_tokens is in the key";
}

// ---------------------------------------------------------------------------------------
// Warming

TEST(CacheWarming, WarmFileAtStartMakesTheFirstRequestsHit) {
  REQUIRE_MODEL();
  TempDir dir;
  const std::string warm = dir.path() + "/warm.jsonl";
  {
    std::ofstream out(warm);
    out << chat_body("Warm story one").dump() << "\n"
        << assistant_body("What is the moon?").dump() << "\n";
  }
  auto server = serve({"--cache-warm", warm});
  ASSERT_GT(server->port(), 0);
  const int port = server->port();
  EXPECT_NE(server->logs().find("2 answers cached"), std::string::npos) << server->logs();
  const double tokens = metric(port, "infera_generated_tokens_total{model=\"stories260K\"}");
  Answer chat = ask_chat(port, "Warm story one");
  ASSERT_EQ(chat.status, 200) << chat.body;
  EXPECT_EQ(chat.x_cache, "HIT-L1");
  Answer assistant = ask(port, "/api/chat", assistant_body("What is the moon?"));
  ASSERT_EQ(assistant.status, 200) << assistant.body;
  EXPECT_EQ(assistant.x_cache, "HIT-L1");
  EXPECT_EQ(metric(port, "infera_generated_tokens_total{model=\"stories260K\"}"), tokens);
}

TEST(CacheWarming, AdminWarmThenHitAndAdminClearThenMiss) {
  REQUIRE_MODEL();
  auto server = serve();
  ASSERT_GT(server->port(), 0);
  const int port = server->port();
  json sampled = chat_body("Not deterministic");
  sampled["temperature"] = 0.8;
  json warm = {
      {"requests", {chat_body("Warm story two"), assistant_body("Why is the sky blue?"), sampled}}};
  auto r = http_request(port, "POST", "/admin/cache/warm", warm.dump(),
                        {{"Content-Type", "application/json"}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json report = json::parse(r->body);
  EXPECT_EQ(report["requested"], 3) << r->body;
  EXPECT_EQ(report["cached"], 2) << r->body;
  EXPECT_EQ(report["failed"], 1) << r->body;  // the sampled one is not cacheable

  Answer chat = ask_chat(port, "Warm story two");
  EXPECT_EQ(chat.x_cache, "HIT-L1");
  Answer assistant = ask(port, "/api/chat", assistant_body("Why is the sky blue?"));
  EXPECT_EQ(assistant.x_cache, "HIT-L1");

  auto cleared = http_request(port, "POST", "/admin/cache/clear");
  ASSERT_TRUE(cleared);
  EXPECT_EQ(cleared->status, 200) << cleared->body;
  EXPECT_EQ(cache_stats(port)["l1"]["entries"], 0);
  Answer chat_again = ask_chat(port, "Warm story two");
  EXPECT_EQ(chat_again.x_cache, "MISS");
  EXPECT_EQ(chat_again.text, chat.text);
  EXPECT_EQ(ask(port, "/api/chat", assistant_body("Why is the sky blue?")).x_cache, "MISS");
}

}  // namespace
}  // namespace infera::testing
