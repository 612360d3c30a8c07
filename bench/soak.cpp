// Soak: a real `infera serve` under paced, mixed traffic for a set duration, its resident
// memory (VmRSS from /proc/<pid>/status) sampled every few seconds. The traffic mixes
// cache hits (a small set of repeated greedy prompts), misses (unique prompts), streams,
// streams the client abandons after the first event (reset, not closed politely), the
// assistant endpoint, and bad input (malformed JSON, bodies past --max-content-length,
// unknown models). The caches are bounded small (L1 entries, L2 bytes) and the cached
// answers are long enough that L1 fills and L2 flushes its first memtable during warm-up,
// so their filling is not mistaken for a leak.
//
// Reports RSS over time (VmRSS, and its anonymous and file-backed parts) and the growth
// after warm-up: the mean VmRSS over the last tenth of the run against the mean over the
// tenth after the first tenth (10-20%). Means over windows longer than the L2 memtable's
// fill-and-flush cycle (a few minutes here), so that sawtooth is not taken for growth; the
// raw last sample against the sample at 10% is printed too. Exits 1 if the growth is
// >= --max-growth-pct (issue 13 goal: < 5%), if infera died, or if any request got an
// answer other than the one its kind expects.
//
//   build/bench/bench_soak [--duration 3600] [--rate 20] [--sample-s 5] [--infera build/infera]
//                          [--model models/stories260K-tok512.gguf] [--max-growth-pct 5]
//
// Run from the repository root. The load generator is open-loop (--rate requests per
// second over a few worker threads), so a slow server shows up as late requests, not as
// less load; keep the rate modest on a shared machine.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct Options {
  double duration_s = 3600;
  double rate_per_s = 20;
  double sample_s = 5;
  double warmup_fraction = 0.1;
  double max_growth_pct = 5;
  int workers = 8;
  std::string infera = "build/infera";
  std::string model = "models/stories260K-tok512.gguf";
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "%s\nusage: bench_soak [--duration S] [--rate R] [--sample-s S] [--workers N]\n"
               "                  [--warmup-fraction F] [--max-growth-pct P] [--infera PATH]\n"
               "                  [--model PATH]\n",
               why);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage(("missing value for " + a).c_str());
    const char* v = argv[++i];
    if (a == "--duration")
      o.duration_s = std::atof(v);
    else if (a == "--rate")
      o.rate_per_s = std::atof(v);
    else if (a == "--sample-s")
      o.sample_s = std::atof(v);
    else if (a == "--workers")
      o.workers = std::atoi(v);
    else if (a == "--warmup-fraction")
      o.warmup_fraction = std::atof(v);
    else if (a == "--max-growth-pct")
      o.max_growth_pct = std::atof(v);
    else if (a == "--infera")
      o.infera = v;
    else if (a == "--model")
      o.model = v;
    else
      usage(("unknown option " + a).c_str());
  }
  if (o.duration_s <= 0 || o.rate_per_s <= 0 || o.sample_s <= 0 || o.workers < 1)
    usage("durations, rate and workers must be positive");
  return o;
}

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

// One request on a fresh connection (`Connection: close`); the reply is read to EOF.
// With abandon_after_first_event, the socket is reset (SO_LINGER 0) as soon as the first
// SSE event arrives: a client vanishing mid-stream.
struct Reply {
  int status = 0;  // 0: no HTTP answer (connect, send or read failed)
  std::string body;
};

Reply exchange(int port, const std::string& request, bool abandon_after_first_event = false) {
  Reply r;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return r;
  }
  // The server may answer (413) and close before the whole body is sent: send errors are
  // not failures, a missing status line is.
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string in;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
    if (abandon_after_first_event && in.find("data: ") != std::string::npos) {
      linger hard{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
      break;
    }
  }
  ::close(fd);
  if (in.compare(0, 9, "HTTP/1.1 ") == 0 && in.size() >= 12) r.status = std::atoi(in.c_str() + 9);
  const size_t body = in.find("\r\n\r\n");
  if (body != std::string::npos) r.body = in.substr(body + 4);
  return r;
}

std::string post(const std::string& path, const std::string& body) {
  return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" +
         "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

std::string get(const std::string& path) {
  return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
}

std::string chat(const std::string& content, int max_tokens, bool stream,
                 const std::string& model = "") {
  std::string body = "{\"messages\":[{\"role\":\"user\",\"content\":\"" + content +
                     "\"}],\"max_tokens\":" + std::to_string(max_tokens) +
                     ",\"temperature\":0,\"stream\":" + (stream ? "true" : "false");
  if (!model.empty()) body += ",\"model\":\"" + model + "\"";
  return body + "}";
}

// The kinds of traffic, their share, and the status each must get.
enum class Kind {
  kHit,
  kMiss,
  kStream,
  kCancel,
  kAssistant,
  kMalformed,
  kOversized,
  kUnknownModel,
  kMetrics
};
struct KindInfo {
  const char* name;
  int weight;
  int expect;  // HTTP status; kCancel accepts any answer that started with 200
};
const std::map<Kind, KindInfo> kKinds = {
    {Kind::kHit, {"hit", 30, 200}},
    {Kind::kMiss, {"miss", 15, 200}},
    {Kind::kStream, {"stream", 15, 200}},
    {Kind::kCancel, {"cancel", 10, 200}},
    {Kind::kAssistant, {"assistant", 10, 200}},
    {Kind::kMalformed, {"malformed", 6, 400}},
    {Kind::kOversized, {"oversized", 4, 413}},
    {Kind::kUnknownModel, {"unknown_model", 6, 404}},
    {Kind::kMetrics, {"metrics", 4, 200}},
};

const char* kHitPrompts[] = {"Once upon a time",  "The little dog",    "A cat sat",
                             "Lily found a ball", "Tom had a red car", "The sun was",
                             "Ben and Mia",       "The big tree"};

struct Tally {
  std::mutex mutex;
  std::map<std::string, std::int64_t> sent, unexpected;
  std::string first_unexpected;
};

void run_one(int port, Kind kind, std::uint64_t n, Tally& tally) {
  Reply r;
  const std::string unique = "Soak question " + std::to_string(n);
  switch (kind) {
    case Kind::kHit:
      r = exchange(port, post("/v1/chat/completions",
                              chat(kHitPrompts[n % std::size(kHitPrompts)], 24, false)));
      break;
    case Kind::kMiss:
      r = exchange(port, post("/v1/chat/completions", chat(unique, 128, false)));
      break;
    case Kind::kStream:
      r = exchange(port, post("/v1/chat/completions", chat(unique + " streamed", 128, true)));
      break;
    case Kind::kCancel:
      r = exchange(port, post("/v1/chat/completions", chat(unique + " abandoned", 200, true)),
                   true);
      break;
    case Kind::kAssistant:
      r = exchange(port, post("/api/chat", "{\"question\":\"" + std::string(kHitPrompts[n % 3]) +
                                               "\",\"role\":\"student\"}"));
      break;
    case Kind::kMalformed:
      r = exchange(port, post("/v1/chat/completions", "{\"messages\":[{\"role\":\"user\","));
      break;
    case Kind::kOversized:
      r = exchange(port, post("/v1/chat/completions", chat(std::string(80 * 1024, 'a'), 8, false)));
      break;
    case Kind::kUnknownModel:
      r = exchange(port, post("/v1/chat/completions", chat(unique, 8, false, "no-such-model")));
      break;
    case Kind::kMetrics:
      r = exchange(port, get(n % 2 ? "/metrics" : "/api/cache/stats"));
      break;
  }
  const KindInfo& info = kKinds.at(kind);
  std::lock_guard lock(tally.mutex);
  ++tally.sent[info.name];
  if (r.status != info.expect) {
    ++tally.unexpected[info.name];
    if (tally.first_unexpected.empty())
      tally.first_unexpected = std::string(info.name) + ": status " + std::to_string(r.status) +
                               " " + r.body.substr(0, 200);
  }
}

struct Rss {
  long total_kib = -1, anon_kib = -1, file_kib = -1;  // VmRSS, RssAnon, RssFile
};

Rss rss(int pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  Rss r;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) r.total_kib = std::atol(line.c_str() + 6);
    if (line.rfind("RssAnon:", 0) == 0) r.anon_kib = std::atol(line.c_str() + 8);
    if (line.rfind("RssFile:", 0) == 0) r.file_kib = std::atol(line.c_str() + 8);
  }
  return r;
}

bool alive(int pid) { return ::waitpid(pid, nullptr, WNOHANG) == 0; }

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  if (::access(o.infera.c_str(), X_OK) != 0) usage((o.infera + " is not executable").c_str());
  if (::access(o.model.c_str(), R_OK) != 0) usage((o.model + " is not readable").c_str());

  char dir_template[] = "/tmp/infera-soak-XXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  const std::string log_path = dir + "/infera.log";
  const int port = free_loopback_port();
  const std::vector<std::string> args = {o.infera,
                                         "serve",
                                         "--host",
                                         "127.0.0.1",
                                         "--port",
                                         std::to_string(port),
                                         "--model",
                                         o.model,
                                         "--cache-dir",
                                         dir + "/l2",
                                         "--cache-max-size",
                                         "500",
                                         "--cache-disk-max-bytes",
                                         "2MiB",
                                         "--max-content-length",
                                         "64KiB",
                                         "--log-level",
                                         "warn"};
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(log, STDERR_FILENO);
    const int devnull = ::open("/dev/null", O_RDWR);
    ::dup2(devnull, STDIN_FILENO);
    ::dup2(devnull, STDOUT_FILENO);
    std::vector<char*> argv_c;
    for (const auto& a : args) argv_c.push_back(const_cast<char*>(a.c_str()));
    argv_c.push_back(nullptr);
    ::execv(argv_c[0], argv_c.data());
    ::_exit(127);
  }
  std::string command;
  for (const auto& a : args) command += a + " ";
  std::printf("infera: %s\n", command.c_str());
  const auto ready_deadline = Clock::now() + 30s;
  while (exchange(port, get("/ready")).status != 200) {
    if (Clock::now() > ready_deadline || !alive(pid)) {
      std::fprintf(stderr, "infera did not become ready; log at %s\n", log_path.c_str());
      ::kill(pid, SIGKILL);
      return 1;
    }
    std::this_thread::sleep_for(100ms);
  }

  std::vector<Kind> deck;  // weighted choice by index
  for (const auto& [kind, info] : kKinds) deck.insert(deck.end(), info.weight, kind);

  Tally tally;
  std::atomic<std::uint64_t> next{0}, late{0};
  std::atomic<bool> stop{false};  // infera died: no point sending more
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(o.duration_s));
  const auto interval = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(1.0 / o.rate_per_s));
  std::vector<std::thread> workers;
  for (int w = 0; w < o.workers; ++w) {
    workers.emplace_back([&, w] {
      std::mt19937_64 rng(static_cast<std::uint64_t>(w) + 1);
      for (;;) {
        const std::uint64_t n = next.fetch_add(1);
        const auto due = start + interval * static_cast<std::int64_t>(n);
        if (due >= end || stop.load()) return;
        if (Clock::now() > due + 1s) ++late;
        std::this_thread::sleep_until(due);
        run_one(port, deck[rng() % deck.size()], n, tally);
      }
    });
  }

  struct Sample {
    double t_s;
    Rss rss;
  };
  std::vector<Sample> samples;
  bool died = false;
  std::printf("%8s %10s %10s %10s %8s\n", "t_s", "rss_kib", "anon_kib", "file_kib", "sent");
  for (auto t = start; t < end; t += std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(o.sample_s))) {
    std::this_thread::sleep_until(t);
    if (!alive(pid)) {
      died = true;
      stop = true;
      break;
    }
    const double t_s = std::chrono::duration<double>(Clock::now() - start).count();
    samples.push_back({t_s, rss(pid)});
    const Rss& r = samples.back().rss;
    std::printf("%8.0f %10ld %10ld %10ld %8llu\n", t_s, r.total_kib, r.anon_kib, r.file_kib,
                static_cast<unsigned long long>(std::min<std::uint64_t>(next.load(), 1ull << 62)));
    std::fflush(stdout);
  }
  for (auto& w : workers) w.join();
  if (!died && alive(pid)) {
    samples.push_back({std::chrono::duration<double>(Clock::now() - start).count(), rss(pid)});
    ::kill(pid, SIGTERM);
    ::waitpid(pid, nullptr, 0);
  } else {
    died = true;
  }

  std::int64_t total = 0, bad = 0;
  std::printf("\n%-14s %8s %10s\n", "kind", "sent", "unexpected");
  for (const auto& [name, count] : tally.sent) {
    total += count;
    bad += tally.unexpected[name];
    std::printf("%-14s %8lld %10lld\n", name.c_str(), static_cast<long long>(count),
                static_cast<long long>(tally.unexpected[name]));
  }
  if (!tally.first_unexpected.empty())
    std::printf("first unexpected answer: %s\n", tally.first_unexpected.c_str());
  const double ran_s = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("requests: %lld in %.0f s (%.1f/s), %llu started more than 1 s late\n",
              static_cast<long long>(total), ran_s, static_cast<double>(total) / ran_s,
              static_cast<unsigned long long>(late.load()));

  int exit_code = 0;
  if (died) {
    std::printf("FAIL: infera exited during the soak; log at %s\n", log_path.c_str());
    return 1;
  }
  if (samples.size() < 2) {
    std::printf("FAIL: fewer than 2 RSS samples\n");
    return 1;
  }
  // Mean of a field over the samples with t in [from, to) seconds.
  auto mean = [&](long Rss::*field, double from, double to) {
    double sum = 0;
    int n = 0;
    for (const auto& sample : samples) {
      if (sample.t_s >= from && sample.t_s < to) {
        sum += static_cast<double>(sample.rss.*field);
        ++n;
      }
    }
    return n == 0 ? 0.0 : sum / n;
  };
  const double warm_s = o.warmup_fraction * o.duration_s;
  const double window_s = o.warmup_fraction * o.duration_s;
  const double end_s = samples.back().t_s + 1;
  const Sample* at_warm = &samples.back();
  for (const auto& sample : samples) {
    if (sample.t_s >= warm_s) {
      at_warm = &sample;
      break;
    }
  }
  long peak = 0;
  for (const auto& sample : samples) peak = std::max(peak, sample.rss.total_kib);
  const Sample& last = samples.back();
  auto pct = [](double from, double to) { return from <= 0 ? 0.0 : 100.0 * (to - from) / from; };
  std::printf("\nRSS every %.0f s (KiB):\n", o.duration_s / 12);
  double next_print = 0;
  for (const auto& sample : samples) {
    if (sample.t_s + 0.5 < next_print) continue;
    std::printf("  t %6.0f s  VmRSS %7ld  anon %7ld  file %7ld\n", sample.t_s, sample.rss.total_kib,
                sample.rss.anon_kib, sample.rss.file_kib);
    next_print += o.duration_s / 12;
  }
  const double base_total = mean(&Rss::total_kib, warm_s, warm_s + window_s);
  const double last_total = mean(&Rss::total_kib, end_s - window_s, end_s);
  const double base_anon = mean(&Rss::anon_kib, warm_s, warm_s + window_s);
  const double last_anon = mean(&Rss::anon_kib, end_s - window_s, end_s);
  const double growth = pct(base_total, last_total);
  std::printf(
      "VmRSS: first %ld KiB, at %.0f s %ld KiB, last %ld KiB (raw growth %+.2f%%), peak %ld KiB\n",
      samples.front().rss.total_kib, at_warm->t_s, at_warm->rss.total_kib, last.rss.total_kib,
      pct(static_cast<double>(at_warm->rss.total_kib), static_cast<double>(last.rss.total_kib)),
      peak);
  std::printf(
      "mean VmRSS %.0f-%.0f s: %.0f KiB, last %.0f s: %.0f KiB; anonymous part %.0f -> %.0f KiB "
      "(%+.2f%%)\n",
      warm_s, warm_s + window_s, base_total, window_s, last_total, base_anon, last_anon,
      pct(base_anon, last_anon));
  std::printf("RSS growth after warm-up: %+.2f%% (goal < %.0f%%)\n", growth, o.max_growth_pct);
  if (growth >= o.max_growth_pct) {
    std::printf("FAIL: RSS grew %.2f%% after warm-up\n", growth);
    exit_code = 1;
  }
  if (bad > 0) {
    std::printf("FAIL: %lld requests got an unexpected answer\n", static_cast<long long>(bad));
    exit_code = 1;
  }
  if (exit_code == 0) {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  } else {
    std::printf("infera log and cache directory kept in %s\n", dir.c_str());
  }
  return exit_code;
}
