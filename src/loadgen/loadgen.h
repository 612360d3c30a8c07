// Load generator for any OpenAI-compatible server (`infera bench`): closed loop (N
// concurrent users, each sending its next request when the last one finished) or
// open loop (a fixed request rate, whatever the latency), streaming or not.
//
// It measures end-to-end latency, time to first token (first streamed content),
// inter-token latency, output tokens (from `usage` when the server reports it, else
// streamed content chunks), and errors by kind.
//
// Threads: run() drives everything on the calling thread (one Asio event loop),
// which keeps the generator's own overhead off the measured server's cores.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"

namespace infera::loadgen {

struct Options {
  std::string url = "http://127.0.0.1:8080";  // base URL of the server
  std::string endpoint = "/v1/chat/completions";  // or /v1/completions
  std::string model;  // sent as "model" when not empty
  int concurrency = 1;        // closed loop: simultaneous users
  double rate_per_s = 0;      // > 0: open loop at this request rate
  double duration_s = 0;      // stop issuing after this long (0 = no bound)
  int64_t max_requests = 0;   // stop issuing after this many (0 = no bound)
  bool stream = true;
  int max_tokens = 64;
  double temperature = 0;
  std::vector<std::string> prompts;  // used round-robin; must not be empty
  std::string system_prompt;         // optional, prepended as a system message
  double request_timeout_s = 600;
  bool progress = true;              // live progress line on stderr
};

struct Quantiles {
  double p50 = 0, p95 = 0, p99 = 0, mean = 0, max = 0;
};

struct Summary {
  int64_t requests = 0;   // finished (ok or failed)
  int64_t ok = 0;
  std::map<std::string, int64_t> errors;  // kind → count (e.g. "http_429", "timeout")
  double wall_s = 0;
  double requests_per_s = 0;
  int64_t output_tokens = 0;
  double output_tokens_per_s = 0;
  Quantiles latency_ms;
  Quantiles ttft_ms;       // streaming only
  Quantiles itl_ms;        // inter-token latency, streaming only
};

// Parses "key: value" prompt files: one prompt per line, or JSON lines with a
// "prompt" field. Empty lines are skipped.
Result<std::vector<std::string>> load_prompts(const std::string& path);

// Runs the load. Fails before sending anything on bad options or an unusable URL.
Result<Summary> run(const Options& options);

std::string to_text(const Summary& summary);
std::string to_json(const Summary& summary);

}  // namespace infera::loadgen
