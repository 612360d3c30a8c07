// A real redis-server for integration tests, started on a free loopback port without
// persistence (a restart starts empty). Integration tests do not link hiredis, so it is
// pinged over a raw socket. tests/cache/redis_server.h is the unit tests' counterpart.
#pragma once

#include <sys/types.h>

#include <string>

namespace infera::testing {

// A free TCP port on 127.0.0.1 (bound, read, closed: another process may take it first).
int free_loopback_port();

// True when `redis-server` is on PATH.
bool redis_server_installed();

class RedisProcess {
 public:
  explicit RedisProcess(int port) : port_(port) {}
  ~RedisProcess() { kill(); }
  RedisProcess(const RedisProcess&) = delete;
  RedisProcess& operator=(const RedisProcess&) = delete;

  // Starts it (killing a running one first) and polls PING for up to 10 s.
  bool start();
  // SIGKILL and reap; no-op when not running.
  void kill();
  void pause();   // SIGSTOP: accepts connections, never answers
  void resume();  // SIGCONT
  bool answers_ping() const;
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

 private:
  int port_;
  pid_t pid_ = -1;
};

}  // namespace infera::testing
