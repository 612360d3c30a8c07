// Faults a real `infera serve` must survive (issue 13): Redis killed and restarted under
// load, an L2 directory that is read-only or full, kill -9 in the middle of cache writes,
// clients vanishing at every stage of a request, a thousand slow-loris connections, and
// ten thousand idle keep-alive connections. Each test asserts what a user or an operator
// can observe: status codes, answers, X-Cache, /api/cache/stats, /metrics, the log.
// The model is the bundled models/stories260K-tok512.gguf; Redis is a real redis-server
// on a free loopback port (skipped when not installed); a full or read-only L2 is a tiny
// tmpfs when the test runs as root, else a chmod-ed directory (the full-disk case is
// then skipped).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "cache/temp_dir.h"
#include "integration/redis_support.h"
#include "integration/server_support.h"

namespace infera::testing {
namespace {

using namespace std::chrono_literals;
using cache::testing::TempDir;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

const std::string kModel = std::string(INFERA_SOURCE_DIR) + "/models/stories260K-tok512.gguf";
const std::string kModelName = "stories260K-tok512";

#define REQUIRE_REDIS()                                                         \
  if (!redis_server_installed())                                                \
  GTEST_SKIP() << "redis-server is not installed (scripts/setup installs it); " \
                  "the L3 fault tests need a real one"

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

std::unique_ptr<ServerProcess> serve(std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--model", kModel, "--default-max-tokens", "16"};
  args.insert(args.end(), extra.begin(), extra.end());
  return std::make_unique<ServerProcess>(std::move(args));
}

json chat_body(const std::string& content, int max_tokens = 16, bool stream = false) {
  return {{"messages", {{{"role", "user"}, {"content", content}}}},
          {"max_tokens", max_tokens},
          {"temperature", 0},
          {"stream", stream}};
}

struct Answer {
  int status = 0;  // 0: no HTTP answer at all
  std::string x_cache;
  std::string text;
  std::string body;
  double ms = 0;
};

Answer ask_chat(int port, const std::string& content, int max_tokens = 16,
                std::map<std::string, std::string> headers = {}) {
  headers["Content-Type"] = "application/json";
  const auto start = Clock::now();
  auto r = http_request(port, "POST", "/v1/chat/completions", chat_body(content, max_tokens).dump(),
                        headers);
  Answer a;
  a.ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  if (!r) return a;
  a.status = r->status;
  a.x_cache = r->header("x-cache");
  a.body = r->body;
  json doc = json::parse(r->body, nullptr, false);
  if (r->status == 200 && doc.is_object() && doc.contains("choices"))
    a.text = doc["choices"][0]["message"]["content"].get<std::string>();
  return a;
}

json cache_stats(int port) {
  auto r = http_request(port, "GET", "/api/cache/stats");
  if (!r || r->status != 200) return json::object();
  return json::parse(r->body, nullptr, false);
}

// Every sample of /metrics whose series starts with `name` (labels included), by series.
std::map<std::string, double> metrics(int port) {
  std::map<std::string, double> out;
  auto r = http_request(port, "GET", "/metrics");
  if (!r) return out;
  std::istringstream lines(r->body);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

double metric(int port, const std::string& series) {
  auto all = metrics(port);
  auto it = all.find(series);
  return it == all.end() ? -1 : it->second;
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t rank =
      static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

// A non-blocking loopback TCP socket whose connect has been started; -1 on failure.
int open_socket(int port, bool blocking = true) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (!blocking) ::fcntl(fd, F_SETFL, O_NONBLOCK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Closes with RST (SO_LINGER 0): the client vanishes without a goodbye.
void reset_close(int fd) {
  linger hard{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  ::close(fd);
}

// Reads from a blocking socket until `needle` arrives, the peer closes, or `timeout`.
bool read_until(int fd, const std::string& needle, std::chrono::milliseconds timeout,
                std::string* got = nullptr) {
  std::string in;
  const auto deadline = Clock::now() + timeout;
  char buf[4096];
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
    if (in.find(needle) != std::string::npos) {
      if (got) *got = in;
      return true;
    }
  }
  if (got) *got = in;
  return false;
}

std::string post_request(const std::string& path, const std::string& body) {
  return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

bool send_all(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Raises the soft RLIMIT_NOFILE to at least `wanted` (children inherit it); returns the
// soft limit now in force.
rlim_t raise_open_files(rlim_t wanted) {
  rlimit lim{};
  ::getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_cur < wanted) {
    lim.rlim_cur = std::min(wanted, lim.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &lim);
    ::getrlimit(RLIMIT_NOFILE, &lim);
  }
  return lim.rlim_cur;
}

// A directory the server cannot write: a read-only tmpfs when root may mount one (root
// ignores file modes), else mode 0555. Unmounted on destruction.
class ReadOnlyDir {
 public:
  explicit ReadOnlyDir(const std::string& path) : path_(path) {
    std::filesystem::create_directories(path_);
    if (::geteuid() == 0) {
      mounted_ = ::mount("tmpfs", path_.c_str(), "tmpfs", MS_RDONLY, "size=1m") == 0;
      how_ = mounted_ ? "a read-only tmpfs" : "";
    } else if (::chmod(path_.c_str(), 0555) == 0) {
      how_ = "a directory of mode 0555";
    }
  }
  ~ReadOnlyDir() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
    ::chmod(path_.c_str(), 0755);
  }
  ReadOnlyDir(const ReadOnlyDir&) = delete;
  ReadOnlyDir& operator=(const ReadOnlyDir&) = delete;
  const std::string& how() const { return how_; }  // empty: could not make it read-only

 private:
  std::string path_;
  bool mounted_ = false;
  std::string how_;
};

// A tmpfs of `bytes` mounted at `path` (root only), unmounted on destruction.
class SmallTmpfs {
 public:
  SmallTmpfs(const std::string& path, size_t bytes) : path_(path) {
    std::filesystem::create_directories(path_);
    const std::string options = "size=" + std::to_string(bytes);
    mounted_ =
        ::geteuid() == 0 && ::mount("tmpfs", path_.c_str(), "tmpfs", 0, options.c_str()) == 0;
  }
  ~SmallTmpfs() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;
  bool mounted() const { return mounted_; }

  // Writes a file until the filesystem has no space left; returns the bytes written.
  size_t fill(const std::string& name) {
    const int fd = ::open((path_ + "/" + name).c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return 0;
    const std::string block(4096, 'f');
    size_t written = 0;
    for (;;) {
      const ssize_t n = ::write(fd, block.data(), block.size());
      if (n <= 0) break;
      written += static_cast<size_t>(n);
    }
    ::close(fd);
    return written;
  }

 private:
  std::string path_;
  bool mounted_ = false;
};

// ---------------------------------------------------------------------------------------
// Redis killed and restarted under load

// Two servers share one Redis while four clients keep both busy; Redis is SIGKILLed and
// started again on the same port. No request may fail, and once Redis is back (and each
// breaker has let a probe through) an answer one server computed is a HIT-L3 on the other.
TEST(Faults, RedisKilledAndRestartedUnderLoadFailsNoRequestAndL3HitsResume) {
  REQUIRE_REDIS();
  RedisProcess redis(free_loopback_port());
  ASSERT_TRUE(redis.start()) << "redis-server did not answer PING";
  auto a = serve({"--redis-url", redis.url()});
  auto b = serve({"--redis-url", redis.url()});
  ASSERT_GT(a->port(), 0);
  ASSERT_GT(b->port(), 0);
  ASSERT_EQ(ask_chat(a->port(), "Shared before the kill").x_cache, "MISS");
  ASSERT_EQ(ask_chat(b->port(), "Shared before the kill").x_cache, "HIT-L3");
  const double l3_hits_before = cache_stats(b->port())["l3"]["hits"].get<double>();

  std::atomic<bool> stop{false};
  std::atomic<int> sent{0}, failed{0};
  std::mutex failure_mutex;
  std::string first_failure;
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      for (int n = 0; !stop.load(); ++n) {
        const int port = (c % 2 == 0 ? a : b)->port();
        // Half the prompts repeat across clients (hits in some tier), half are new.
        const std::string prompt = n % 2 == 0
                                       ? "Load " + std::to_string(c) + " " + std::to_string(n)
                                       : "Common " + std::to_string(n % 20);
        Answer r = ask_chat(port, prompt, 8);
        ++sent;
        if (r.status != 200 || r.text.empty()) {
          ++failed;
          std::lock_guard lock(failure_mutex);
          if (first_failure.empty())
            first_failure = std::to_string(r.status) + " " + r.body + " (" + prompt + ")";
        }
      }
    });
  }
  auto wait_for_requests = [&](int more) {
    const int target = sent.load() + more;
    return eventually([&] { return sent.load() >= target; }, 30s, 5ms);
  };
  EXPECT_TRUE(wait_for_requests(40));
  redis.kill();
  EXPECT_TRUE(wait_for_requests(80)) << "requests stalled while Redis was down";
  ASSERT_TRUE(redis.start()) << "redis-server did not come back on the same port";

  // Redis restarted empty: A fills it again, and B must find A's answer in L3.
  int round = 0;
  const bool resumed = eventually(
      [&] {
        const std::string prompt = "After the restart " + std::to_string(round++);
        Answer filled = ask_chat(a->port(), prompt);
        Answer shared = ask_chat(b->port(), prompt);
        EXPECT_EQ(shared.text, filled.text);
        return shared.x_cache == "HIT-L3";
      },
      30s, 200ms);
  EXPECT_TRUE(wait_for_requests(40));
  stop = true;
  for (auto& t : clients) t.join();

  EXPECT_TRUE(resumed) << "B never hit L3 again within 30 s of Redis coming back: "
                       << cache_stats(b->port()).dump();
  EXPECT_EQ(failed.load(), 0) << "of " << sent.load() << " requests; first: " << first_failure;
  EXPECT_GT(sent.load(), 160);
  json stats = cache_stats(b->port());
  EXPECT_GT(stats["l3"]["hits"].get<double>(), l3_hits_before) << stats.dump();
  EXPECT_GT(stats["l3"]["errors"].get<double>(), 0)
      << "the outage was never noticed: " << stats.dump();
  EXPECT_EQ(stats["redis_breaker"]["state"], "closed") << stats.dump();
  EXPECT_EQ(metric(b->port(), "infera_cache_redis_breaker_open"), 0);
}

// ---------------------------------------------------------------------------------------
// L2 directory read-only or full

TEST(Faults, ReadOnlyL2DirectoryDisablesL2WithAWarningAndRequestsSucceed) {
  TempDir dir;
  const std::string l2 = dir.path() + "/l2";
  ReadOnlyDir read_only(l2);
  if (read_only.how().empty()) GTEST_SKIP() << "could not make " << l2 << " read-only";
  auto server = serve({"--cache-dir", l2});
  ASSERT_GT(server->port(), 0) << "a read-only L2 directory must not stop start-up ("
                               << read_only.how() << ")";
  const int port = server->port();
  Answer first = ask_chat(port, "A read-only disk");
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(first.x_cache, "MISS");
  Answer second = ask_chat(port, "A read-only disk");
  ASSERT_EQ(second.status, 200) << second.body;
  EXPECT_EQ(second.x_cache, "HIT-L1");
  EXPECT_EQ(second.text, first.text);
  json stats = cache_stats(port);
  EXPECT_FALSE(stats["l2"]["enabled"].get<bool>()) << stats.dump();
  const std::string logs = server->logs();
  EXPECT_NE(logs.find("\"level\":\"warning\",\"event\":\"cache.l2_disabled\""), std::string::npos)
      << logs;
  EXPECT_NE(logs.find(l2), std::string::npos) << "the warning should name the directory: " << logs;
}

// The disk fills while the server runs (a tiny tmpfs topped up with a filler file): the
// first failed write turns L2 off with one warning, and every request still succeeds.
TEST(Faults, FullL2DiskDisablesL2WithAWarningAndRequestsSucceed) {
  TempDir dir;
  const std::string mount_point = dir.path() + "/disk";
  SmallTmpfs disk(mount_point, 8u << 20);
  if (!disk.mounted())
    GTEST_SKIP() << "mounting a small tmpfs needs root (euid " << ::geteuid()
                 << "); without it there is no full disk to test on";
  const std::string l2 = mount_point + "/l2";
  auto server = serve({"--cache-dir", l2, "--cache-disk-max-bytes", "4MiB"});
  ASSERT_GT(server->port(), 0);
  const int port = server->port();
  ASSERT_TRUE(cache_stats(port)["l2"]["enabled"].get<bool>());
  // Before the first entry: RocksDB preallocates its write-ahead log on the first write,
  // and writes into preallocated space would not notice the full disk until a flush.
  ASSERT_GT(disk.fill("filler"), 0u);
  Answer before = ask_chat(port, "Once the disk filled");
  ASSERT_EQ(before.status, 200) << before.body;
  for (int i = 0; i < 20; ++i) {
    Answer r = ask_chat(port, "On a full disk " + std::to_string(i));
    ASSERT_EQ(r.status, 200) << i << ": " << r.body;
    EXPECT_FALSE(r.text.empty());
    Answer again = ask_chat(port, "On a full disk " + std::to_string(i));
    ASSERT_EQ(again.status, 200) << again.body;
    EXPECT_EQ(again.x_cache, "HIT-L1");
    EXPECT_EQ(again.text, r.text);
  }
  json stats = cache_stats(port);
  EXPECT_FALSE(stats["l2"]["enabled"].get<bool>()) << stats.dump();
  EXPECT_GE(stats["l2"]["errors"].get<int>(), 1) << stats.dump();
  const std::string logs = server->logs();
  const size_t warning = logs.find("\"event\":\"cache.l2_disabled\"");
  EXPECT_NE(warning, std::string::npos) << logs;
  EXPECT_EQ(logs.find("\"event\":\"cache.l2_disabled\"", warning + 1), std::string::npos)
      << "one warning, not one per request: " << logs;
  EXPECT_EQ(ask_chat(port, "Once the disk filled").text, before.text);
  // Shutting down flushes L2: on the full disk that fails, and must fail quietly.
  server->signal(SIGTERM);
  EXPECT_EQ(server->wait_exit(15s), std::optional<int>(0)) << server->logs();
}

// ---------------------------------------------------------------------------------------
// kill -9 during cache writes

// Servers on one L2 directory are SIGKILLed three times while four clients fill the cache;
// then a last server on the same directory answers every prompt. Every answer, before and
// after the kills, must equal the uncached answer of a server with caching off.
TEST(Faults, KillNineDuringCacheWritesThenRestartNeverServesAWrongAnswer) {
  TempDir dir;
  const std::string l2 = dir.path() + "/l2";
  constexpr int kPrompts = 24;
  auto prompt = [](int i) { return "Kill nine prompt " + std::to_string(i); };
  std::vector<std::string> reference(kPrompts);
  {
    auto uncached = serve({"--cache-policy", "off"});
    ASSERT_GT(uncached->port(), 0);
    for (int i = 0; i < kPrompts; ++i) {
      Answer r = ask_chat(uncached->port(), prompt(i), 24);
      ASSERT_EQ(r.status, 200) << r.body;
      reference[static_cast<size_t>(i)] = r.text;
    }
  }
  std::atomic<int> wrong{0}, answered{0};
  std::mutex wrong_mutex;
  std::string first_wrong;
  auto check = [&](int i, const Answer& r) {
    if (r.status != 200) return;  // the kill cut it off: no answer is not a wrong answer
    ++answered;
    if (r.text != reference[static_cast<size_t>(i)]) {
      ++wrong;
      std::lock_guard lock(wrong_mutex);
      if (first_wrong.empty())
        first_wrong = prompt(i) + " (" + r.x_cache + "): '" + r.text + "' expected '" +
                      reference[static_cast<size_t>(i)] + "'";
    }
  };
  for (int kill = 0; kill < 3; ++kill) {
    auto server = serve({"--cache-dir", l2});
    ASSERT_GT(server->port(), 0) << "restart " << kill << " on the killed server's L2 failed";
    const int port = server->port();
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int c = 0; c < 4; ++c) {
      clients.emplace_back([&, c] {
        std::mt19937 rng(static_cast<unsigned>(kill * 10 + c));
        while (!stop.load()) {
          const int i = static_cast<int>(rng() % kPrompts);
          std::map<std::string, std::string> headers;
          if (i % 3 == 0) headers["Cache-Control"] = "no-cache";  // computed, then written again
          check(i, ask_chat(port, prompt(i), 24, headers));
        }
      });
    }
    const int target = answered.load() + 20 + 10 * kill;
    EXPECT_TRUE(eventually([&] { return answered.load() >= target; }, 30s, 1ms));
    server->signal(SIGKILL);  // mid-traffic: writes to RocksDB are in flight
    ASSERT_TRUE(server->wait_exit(10s).has_value());
    stop = true;
    for (auto& t : clients) t.join();
  }
  auto last = serve({"--cache-dir", l2});
  ASSERT_GT(last->port(), 0) << "the server did not start on the L2 of a killed one";
  int l2_hits = 0;
  for (int i = 0; i < kPrompts; ++i) {
    Answer r = ask_chat(last->port(), prompt(i), 24);
    ASSERT_EQ(r.status, 200) << r.body;
    check(i, r);
    if (r.x_cache == "HIT-L2") ++l2_hits;
  }
  EXPECT_EQ(wrong.load(), 0) << "first: " << first_wrong;
  EXPECT_GT(l2_hits, 0) << "no entry survived the kills: the test did not exercise recovery";
  json stats = cache_stats(last->port());
  EXPECT_TRUE(stats["l2"]["enabled"].get<bool>()) << stats.dump();
}

// ---------------------------------------------------------------------------------------
// Clients vanishing at every stage

// Idle: no sequence running or waiting, no KV block held, only the /metrics request itself
// in flight on its own connection.
struct Gauges {
  double running = -1, waiting = -1, kv_used = -1, in_flight = -1, connections = -1;
  bool idle() const {
    return running == 0 && waiting == 0 && kv_used == 0 && in_flight == 1 && connections == 1;
  }
  std::string describe() const {
    std::ostringstream s;
    s << "running " << running << ", waiting " << waiting << ", kv blocks used " << kv_used
      << ", http requests in flight " << in_flight << ", http connections " << connections;
    return s.str();
  }
};

Gauges gauges(int port) {
  auto m = metrics(port);
  const std::string label = "{model=\"" + kModelName + "\"}";
  Gauges g;
  g.running =
      m.count("infera_sequences_running" + label) ? m["infera_sequences_running" + label] : -1;
  g.waiting =
      m.count("infera_sequences_waiting" + label) ? m["infera_sequences_waiting" + label] : -1;
  g.kv_used = m.count("infera_kv_blocks_used" + label) ? m["infera_kv_blocks_used" + label] : -1;
  g.in_flight = m.count("http_requests_in_flight") ? m["http_requests_in_flight"] : -1;
  g.connections = m.count("http_connections") ? m["http_connections"] : -1;
  return g;
}

// One generation slot, each engine step slowed to 20 ms by the test hook, chunked prefill
// of 8 tokens and no prefix cache (so idle means 0 KV blocks used): requests that would
// run for 8 s are abandoned while queued, in prefill, mid-stream, and at a sweep of delays
// after sending. Each time the server must be idle again within 3 s, long before any
// abandoned generation could have finished on its own.
TEST(Faults, ClientsVanishingAtEveryStageLeaveNoSequencesBlocksOrRequestsBehind) {
  auto server = serve({"--max-seqs", "1", "--max-batch-tokens", "8", "--prefix-cache", "false",
                       "--cache-policy", "off", "--test-hooks", "true"});
  ASSERT_GT(server->port(), 0);
  const int port = server->port();
  ASSERT_EQ(http_request(port, "POST", "/api/models/" + kModelName + "/load")->status, 200);
  ASSERT_TRUE(eventually([&] { return gauges(port).idle(); }, 5s)) << gauges(port).describe();
  auto slow =
      http_request(port, "POST", "/admin/test/fault",
                   json{{"model", kModelName}, {"per_step_ms", 20}, {"duration_ms", 600000}}.dump(),
                   {{"Content-Type", "application/json"}});
  ASSERT_TRUE(slow && slow->status == 200) << (slow ? slow->body : "no answer");

  std::string long_prompt;
  for (int i = 0; i < 10; ++i) long_prompt += "the cat sat on the mat and ";
  // 400 tokens at >= 20 ms a step: at least 8 s if nobody stops it; the prefill of the
  // long prompt alone takes several steps.
  const std::string stream_body = chat_body(long_prompt, 400, true).dump();
  const std::string whole_body = chat_body(long_prompt, 400, false).dump();
  auto start_request = [&](const std::string& body) {
    const int fd = open_socket(port);
    EXPECT_GE(fd, 0);
    EXPECT_TRUE(send_all(fd, post_request("/v1/chat/completions", body)));
    return fd;
  };
  auto wait_gauge = [&](auto predicate, const char* what) {
    EXPECT_TRUE(eventually([&] { return predicate(gauges(port)); }, 3s, 2ms))
        << what << ": " << gauges(port).describe();
  };

  // 1. Mid-stream: after the first token event.
  {
    const int fd = start_request(stream_body);
    EXPECT_TRUE(read_until(fd, "\"content\"", 10s)) << "no token streamed";
    reset_close(fd);
  }
  wait_gauge([](const Gauges& g) { return g.idle(); }, "after a mid-stream vanish");

  // 2. Queued behind a running stream (one slot): a stream and a whole answer vanish while
  // waiting, then the running one vanishes too.
  {
    const int running = start_request(stream_body);
    wait_gauge([](const Gauges& g) { return g.running == 1; }, "first request never ran");
    const int queued_stream = start_request(stream_body);
    const int queued_whole = start_request(whole_body);
    wait_gauge([](const Gauges& g) { return g.waiting == 2; }, "requests never queued");
    reset_close(queued_stream);
    reset_close(queued_whole);
    wait_gauge([](const Gauges& g) { return g.waiting == 0 && g.running == 1; },
               "queued requests stayed queued after their clients left");
    reset_close(running);
  }
  wait_gauge([](const Gauges& g) { return g.idle(); }, "after queued clients vanished");

  // 3. In prefill: as soon as the sequence runs, before any token was sent.
  for (const std::string* body : {&stream_body, &whole_body}) {
    const int fd = start_request(*body);
    wait_gauge([](const Gauges& g) { return g.running == 1; }, "never ran");
    std::string got;
    read_until(fd, "\"content\"", 1ms, &got);
    EXPECT_EQ(got.find("\"content\""), std::string::npos) << "prefill was already over";
    reset_close(fd);
    wait_gauge([](const Gauges& g) { return g.idle(); }, "after a vanish in prefill");
  }

  // 4. A sweep of delays after sending (parsing, admission, prefill, decode), streamed and
  // whole, closed politely (FIN) and with RST alternately.
  int n = 0;
  for (int delay_ms : {0, 1, 3, 10, 30, 100, 300, 1000}) {
    for (const std::string* body : {&stream_body, &whole_body}) {
      const int fd = start_request(*body);
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
      if (n++ % 2 == 0) {
        reset_close(fd);
      } else {
        ::shutdown(fd, SHUT_RDWR);
        ::close(fd);
      }
    }
  }
  const auto last_vanished = Clock::now();
  Gauges after;
  const bool idle = eventually(
      [&] {
        after = gauges(port);
        return after.idle();
      },
      3s, 5ms);
  EXPECT_TRUE(idle) << "3 s after the last client vanished: " << after.describe();
  EXPECT_LT(Clock::now() - last_vanished, 3s);

  // Still serving, and a finished request leaves it idle too.
  Answer ok = ask_chat(port, "Still there?", 4);
  EXPECT_EQ(ok.status, 200) << ok.body;
  wait_gauge([](const Gauges& g) { return g.idle(); }, "after a normal request");
  EXPECT_GT(metric(port, "infera_kv_blocks_free{model=\"" + kModelName + "\"}"), 0);
}

// ---------------------------------------------------------------------------------------
// Slow-loris and idle connections

// The latency of normal traffic: `count` sequential uncached generations of 16 tokens,
// each on a fresh connection. Returns the milliseconds of each.
std::vector<double> normal_latencies(int port, int count, int* failures) {
  std::vector<double> ms;
  ms.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    Answer r = ask_chat(port, "Normal traffic " + std::to_string(i % 50), 16,
                        {{"Cache-Control", "no-cache"}});
    if (r.status != 200) ++*failures;
    ms.push_back(r.ms);
  }
  return ms;
}

// 1,000 connections each trickle a request's headers one byte at a time (a byte per
// connection every 150 ms, reconnecting whenever the server drops one) while one
// client sends normal requests. Normal P99 must stay within 2x of the same client's P99
// on the same server without the slow clients, measured just before and just after them
// (pooled, so that a change in the machine's background load during the test does not
// count for or against the server).
TEST(Faults, ThousandSlowLorisConnectionsKeepNormalP99WithinTwiceUnloaded) {
  constexpr int kLoris = 1000;
  ASSERT_GE(raise_open_files(kLoris + 512), static_cast<rlim_t>(kLoris + 512));
  // One compute thread: two would meet at a barrier several times per token, so a
  // descheduled one stalls the other and the machine's background load (not the server)
  // would dominate the tail of both measurements.
  auto server = serve({"--cache-policy", "off", "--max-workers", "1"});
  ASSERT_GT(server->port(), 0);
  const int port = server->port();
  ASSERT_EQ(ask_chat(port, "warm up").status, 200);

  constexpr int kSamples = 1000;  // P99 is then the 10th worst: stable enough on a busy machine
  int failures = 0;
  std::vector<double> unloaded = normal_latencies(port, kSamples / 2, &failures);

  const std::string headers =
      "GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow-loris\r\n"
      "X-Padding: " +
      std::string(200, 'p') + "\r\n";  // never the final empty line
  std::atomic<bool> stop{false};
  std::atomic<int> reconnects{0};
  std::thread loris([&] {
    struct Slow {
      int fd = -1;
      size_t sent = 0;
    };
    std::vector<Slow> conns(kLoris);
    auto reopen = [&](Slow& s) {
      if (s.fd >= 0) ::close(s.fd);
      s.fd = open_socket(port, false);
      s.sent = 0;
    };
    for (auto& s : conns) reopen(s);
    // Every connection sends one byte every 150 ms, the connections' sends spread evenly
    // over those 150 ms (30 slices of 5 ms), as independent clients' would be.
    constexpr int kSlices = 30;
    auto slice_start = Clock::now();
    for (int slice = 0; !stop.load(); slice = (slice + 1) % kSlices) {
      for (size_t i = static_cast<size_t>(slice); i < conns.size(); i += kSlices) {
        Slow& s = conns[i];
        const char byte = headers[s.sent % headers.size()];
        const ssize_t n = ::send(s.fd, &byte, 1, MSG_NOSIGNAL);
        if (n == 1) {
          ++s.sent;
        } else if (!(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN))) {
          ++reconnects;  // dropped by the server (header timeout): come back, as attackers do
          reopen(s);
        }  // else the connect is still in progress
      }
      slice_start += 5ms;
      std::this_thread::sleep_until(slice_start);
    }
    for (auto& s : conns) ::close(s.fd);
  });
  const bool all_connected =
      eventually([&] { return metric(port, "http_connections") >= kLoris; }, 20s, 50ms);
  const std::vector<double> loaded = normal_latencies(port, kSamples, &failures);
  const double connections_during = metric(port, "http_connections");
  stop = true;
  loris.join();
  EXPECT_TRUE(eventually([&] { return metric(port, "http_connections") <= 1; }, 10s, 50ms));
  const std::vector<double> after = normal_latencies(port, kSamples / 2, &failures);
  unloaded.insert(unloaded.end(), after.begin(), after.end());

  const double p99_unloaded = percentile(unloaded, 99);
  const double p99_loaded = percentile(loaded, 99);
  const double ratio = p99_loaded / p99_unloaded;
  std::printf(
      "[ slow-loris ] %d slow connections (%d reconnects), %.0f server connections: "
      "normal P50 %.2f -> %.2f ms, P99 %.2f -> %.2f ms, ratio %.2f\n",
      kLoris, reconnects.load(), connections_during, percentile(unloaded, 50),
      percentile(loaded, 50), p99_unloaded, p99_loaded, ratio);
  EXPECT_TRUE(all_connected) << "the server never held " << kLoris << " slow connections";
  EXPECT_GE(connections_during, kLoris);
  EXPECT_EQ(failures, 0);
  EXPECT_LE(ratio, 2.0) << "normal P99 " << p99_loaded << " ms under slow-loris against "
                        << p99_unloaded << " ms without";
}

// 10,000 keep-alive connections each complete one request and stay open and idle; the
// server must keep every one of them and go on answering new clients and the idle ones.
TEST(Faults, TenThousandIdleKeepAliveConnectionsAreHeldWhileRequestsSucceed) {
  constexpr int kIdle = 10000;
  constexpr rlim_t kNeeded = kIdle + 1024;  // the server's own files, the test's clients
  const rlim_t limit = raise_open_files(kNeeded);
  if (limit < kNeeded) {
    rlimit lim{};
    ::getrlimit(RLIMIT_NOFILE, &lim);
    GTEST_SKIP() << "RLIMIT_NOFILE: need " << kNeeded << " open files for " << kIdle
                 << " connections, the hard limit is " << lim.rlim_max << " (soft " << lim.rlim_cur
                 << ")";
  }
  auto server = serve();
  ASSERT_GT(server->port(), 0);
  const int port = server->port();
  const std::string health = "GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

  // Open in batches: connect a batch, send on each, then read each answer.
  std::vector<int> idle;
  idle.reserve(kIdle);
  int failed = 0;
  constexpr int kBatch = 500;
  for (int base = 0; base < kIdle; base += kBatch) {
    std::vector<int> batch;
    for (int i = 0; i < kBatch; ++i) {
      const int fd = open_socket(port);
      if (fd < 0 || !send_all(fd, health)) {
        ++failed;
        if (fd >= 0) ::close(fd);
        continue;
      }
      batch.push_back(fd);
    }
    for (int fd : batch) {
      std::string got;
      if (!read_until(fd, "\"status\"", 10s, &got) || got.rfind("HTTP/1.1 200", 0) != 0) ++failed;
      idle.push_back(fd);
    }
  }
  ASSERT_EQ(failed, 0) << "of " << kIdle << " keep-alive connections";
  const double held = metric(port, "http_connections");
  std::printf("[ idle ] %zu idle keep-alive connections, server reports %.0f open\n", idle.size(),
              held);
  EXPECT_GE(held, kIdle);

  // New clients are served, generations included.
  for (int i = 0; i < 20; ++i) {
    Answer r = ask_chat(port, "Among many idle connections " + std::to_string(i % 5));
    EXPECT_EQ(r.status, 200) << r.body;
  }
  // And idle connections taken up again answer at once.
  int reused_ok = 0;
  for (int i = 0; i < kIdle; i += kIdle / 100) {
    std::string got;
    if (send_all(idle[static_cast<size_t>(i)], health) &&
        read_until(idle[static_cast<size_t>(i)], "\"status\"", 10s, &got) &&
        got.rfind("HTTP/1.1 200", 0) == 0)
      ++reused_ok;
  }
  EXPECT_EQ(reused_ok, 100);
  EXPECT_GE(metric(port, "http_connections"), kIdle);
  for (int fd : idle) ::close(fd);
  EXPECT_TRUE(eventually([&] { return metric(port, "http_connections") <= 1; }, 10s, 50ms))
      << "connections not released after the clients closed: " << metric(port, "http_connections");
}

}  // namespace
}  // namespace infera::testing
