#include "integration/server_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

namespace infera::testing {
namespace {

using Clock = std::chrono::steady_clock;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A sanitized build's infera (scripts/sanitize) prints a report on stderr when it finds
// a bug, then exits: fail the test that started it, even when the test never noticed the
// exit, with the report from its first line.
void expect_no_sanitizer_report(const std::string& output, const std::string& what) {
  for (const char* marker : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                             "WARNING: ThreadSanitizer", "runtime error:"}) {
    auto at = output.find(marker);
    if (at == std::string::npos) continue;
    auto line = output.rfind('\n', at);
    ADD_FAILURE() << what << " reported a sanitizer finding:\n"
                  << output.substr(line == std::string::npos ? 0 : line + 1);
    return;
  }
}

}  // namespace

ServerProcess::ServerProcess(std::vector<std::string> args,
                             std::map<std::string, std::string> env) {
  char tmpl[] = "/tmp/infera-test-log-XXXXXX";
  int fd = mkstemp(tmpl);
  log_path_ = tmpl;
  pid_ = fork();
  if (pid_ == 0) {
    dup2(fd, STDERR_FILENO);
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, STDIN_FILENO);
    dup2(devnull, STDOUT_FILENO);
    // State (documents, sessions, quotas) and packed-weight images of servers without
    // --data-dir go to directories of this test process, not the user's
    // ~/.local/state/infera and ~/.cache/infera.
    setenv("XDG_STATE_HOME", ("/tmp/infera-test-state-" + std::to_string(getppid())).c_str(), 1);
    setenv("XDG_CACHE_HOME",
           ("/tmp/infera-test-state-" + std::to_string(getppid()) + "/cache").c_str(), 1);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<std::string> argv_s = {INFERA_BINARY, "serve", "--host", "127.0.0.1", "--port", "0"};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(fd);
  const std::regex listening(R"("event":"http.listening".*"port":(\d+))");
  auto deadline = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < deadline) {
    std::smatch m;
    std::string logs = read_file(log_path_);
    if (std::regex_search(logs, m, listening)) {
      port_ = std::stoi(m[1]);
      return;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      ADD_FAILURE() << "infera exited before listening: " << logs;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ADD_FAILURE() << "infera did not listen within 20 s: " << read_file(log_path_);
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  expect_no_sanitizer_report(read_file(log_path_), "infera serve");
  unlink(log_path_.c_str());
}

void ServerProcess::signal(int signo) {
  if (pid_ > 0) kill(pid_, signo);
}

std::optional<int> ServerProcess::wait_exit(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    int status = 0;
    if (pid_ > 0 && waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return std::nullopt;
}

std::string ServerProcess::logs() const { return read_file(log_path_); }

CommandResult run_command(const std::string& shell_command) {
  CommandResult r;
  FILE* p = popen((shell_command + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  expect_no_sanitizer_report(r.output, shell_command);
  return r;
}

Connection::Connection(int port, std::chrono::milliseconds timeout) {
  fd_ = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd_);
    fd_ = -1;
    return;
  }
  timeval tv{};
  tv.tv_sec = timeout.count() / 1000;
  tv.tv_usec = (timeout.count() % 1000) * 1000;
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

Connection::~Connection() {
  if (fd_ >= 0) close(fd_);
}

bool Connection::send_all(const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

bool Connection::fill() {
  char buf[16384];
  ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
  if (n <= 0) return false;
  buffer_.append(buf, static_cast<size_t>(n));
  return true;
}

std::optional<HttpResponse> Connection::read_response() {
  size_t header_end;
  while ((header_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
    if (!fill()) return std::nullopt;
  }
  HttpResponse r;
  std::istringstream head(buffer_.substr(0, header_end));
  std::string line;
  std::getline(head, line);
  if (line.size() < 12) return std::nullopt;
  r.status = std::stoi(line.substr(9, 3));
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    size_t v = colon + 1;
    while (v < line.size() && line[v] == ' ') ++v;
    r.headers[name] = line.substr(v);
  }
  buffer_.erase(0, header_end + 4);
  if (r.header("transfer-encoding") == "chunked") {
    for (;;) {
      size_t eol;
      while ((eol = buffer_.find("\r\n")) == std::string::npos) {
        if (!fill()) return std::nullopt;
      }
      size_t size = std::stoul(buffer_.substr(0, eol), nullptr, 16);
      while (buffer_.size() < eol + 2 + size + 2) {
        if (!fill()) return std::nullopt;
      }
      r.body += buffer_.substr(eol + 2, size);
      buffer_.erase(0, eol + 2 + size + 2);
      if (size == 0) break;
    }
  } else {
    size_t length = r.headers.count("content-length") ? std::stoul(r.header("content-length")) : 0;
    while (buffer_.size() < length) {
      if (!fill()) return std::nullopt;
    }
    r.body = buffer_.substr(0, length);
    buffer_.erase(0, length);
  }
  return r;
}

bool Connection::wait_closed(std::chrono::milliseconds timeout) {
  pollfd p{fd_, POLLIN, 0};
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (poll(&p, 1, std::max(left, 1)) > 0) {
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0) return true;
      if (n < 0 && errno != EAGAIN) return true;
      if (n > 0) buffer_.append(buf, static_cast<size_t>(n));
    }
  }
  return false;
}

std::optional<HttpResponse> http_request(int port, const std::string& method,
                                         const std::string& path, const std::string& body,
                                         const std::map<std::string, std::string>& headers,
                                         std::chrono::milliseconds timeout) {
  Connection c(port, timeout);
  if (!c.connected()) return std::nullopt;
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
  if (!body.empty() || method == "POST" || method == "PUT") {
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n" + body;
  if (!c.send_all(req)) return std::nullopt;
  return c.read_response();
}

}  // namespace infera::testing
