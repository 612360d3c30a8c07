// Helpers for integration tests: start the real infera binary on a free loopback
// port and talk to it over real sockets.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace infera::testing {

// A running `infera serve` child process. Its stderr (JSON logs) goes to a temp
// file; the port is read from the "http.listening" log line.
class ServerProcess {
 public:
  // Starts `infera serve --port 0 <args>` with extra environment variables.
  // Fails the current test (and returns with port()==0) if it does not listen.
  explicit ServerProcess(std::vector<std::string> args,
                         std::map<std::string, std::string> env = {});
  ~ServerProcess();

  int port() const { return port_; }
  int pid() const { return pid_; }
  void signal(int signo);
  // Waits for exit; returns the exit status, or nullopt on timeout.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  std::string logs() const;

 private:
  int pid_ = -1;
  int port_ = 0;
  std::string log_path_;
};

// Runs a command (`infera config …`), capturing stdout+stderr and the exit code.
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
CommandResult run_command(const std::string& shell_command);

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// A raw TCP connection to 127.0.0.1:port with a receive timeout.
class Connection {
 public:
  explicit Connection(int port, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  ~Connection();
  bool connected() const { return fd_ >= 0; }
  bool send_all(const std::string& data);
  // Reads one full HTTP response (Content-Length or chunked); nullopt on close/timeout.
  std::optional<HttpResponse> read_response();
  // True when the peer closed the connection (read returns 0) before `timeout`.
  bool wait_closed(std::chrono::milliseconds timeout);

 private:
  bool fill();
  int fd_ = -1;
  std::string buffer_;
};

// One request on a fresh connection.
std::optional<HttpResponse> http_request(int port, const std::string& method,
                                         const std::string& path, const std::string& body = {},
                                         const std::map<std::string, std::string>& headers = {},
                                         std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace infera::testing
