// The one table of infera's options. Each becomes a flag (--flag), an environment
// variable (env) and a TOML key (key); see config.h for precedence.
#include <thread>

#include "core/config.h"

namespace infera::core {
namespace {

std::string default_workers() {
  unsigned n = std::thread::hardware_concurrency();
  return std::to_string(n == 0 ? 1 : n);
}

std::vector<OptionSpec> make_specs() {
  using T = OptionType;
  return {
      // Server
      {"host", "INFERA_HOST", "host", T::kString, "127.0.0.1", 0, 0, {}, "address to listen on"},
      {"port", "INFERA_PORT", "port", T::kInt, "8080", 0, 65535, {}, "TCP port (0 = any free port)"},
      {"io_threads", "INFERA_IO_THREADS", "io-threads", T::kInt, "1", 1, 64, {},
       "threads running the HTTP event loop"},
      {"max_content_length", "MAX_CONTENT_LENGTH", "max-content-length", T::kSize, "1MiB", 1,
       1073741824, {}, "largest accepted request body, bytes (suffixes KiB/MiB/GiB); 413 past it"},
      {"header_timeout_ms", "INFERA_HEADER_TIMEOUT_MS", "header-timeout-ms", T::kInt, "10000", 10,
       3600000, {}, "time a client has to send complete request headers, ms (slowloris guard)"},
      {"idle_timeout_ms", "INFERA_IDLE_TIMEOUT_MS", "idle-timeout-ms", T::kInt, "60000", 10,
       86400000, {}, "keep-alive connection idle time before it is closed, ms"},
      {"drain_timeout_ms", "INFERA_DRAIN_TIMEOUT_MS", "drain-timeout-ms", T::kInt, "30000", 0,
       3600000, {}, "on SIGTERM/SIGINT, longest wait for in-flight requests, ms"},
      {"gzip_min_bytes", "INFERA_GZIP_MIN_BYTES", "gzip-min-bytes", T::kSize, "1KiB", 0,
       1073741824, {}, "compress response bodies at least this large when the client accepts gzip"},
      // Compute and batching
      {"max_workers", "MAX_WORKERS", "max-workers", T::kInt, default_workers(), 1, 1024, {},
       "compute threads of the inference engine"},
      {"batch_size", "BATCH_SIZE", "batch-size", T::kInt, "8", 1, 4096, {},
       "most sequences decoded together in one engine step (continuous batching)", "max-seqs"},
      {"batch_timeout", "BATCH_TIMEOUT", "batch-timeout", T::kInt, "2", 0, 60000, {},
       "when the engine is idle, how long the first request waits for others to batch with, ms"},
      // Model and serving
      {"model", "INFERA_MODEL", "model", T::kString, "", 0, 0, {},
       "GGUF model file to serve (empty = no generation endpoints)"},
      {"model_name", "INFERA_MODEL_NAME", "model-name", T::kString, "", 0, 0, {},
       "model id reported by the API (default: the file name without .gguf)"},
      {"ctx_size", "INFERA_CTX_SIZE", "ctx-size", T::kInt, "4096", 16, 1048576, {},
       "KV cache size in tokens, shared by all sequences"},
      {"mmap", "INFERA_MMAP", "mmap", T::kBool, "true", 0, 0, {},
       "map the model file (false: read it into huge-page memory; slower load, faster decode)"},
      {"max_queue", "INFERA_MAX_QUEUE", "max-queue", T::kInt, "256", 1, 1000000, {},
       "requests waiting for a sequence slot before new ones get 429"},
      {"max_batch_tokens", "INFERA_MAX_BATCH_TOKENS", "max-batch-tokens", T::kInt, "256", 1, 65536,
       {}, "tokens evaluated per engine step (prompt prefill is chunked to fit)"},
      {"prefix_cache", "INFERA_PREFIX_CACHE", "prefix-cache", T::kBool, "true", 0, 0, {},
       "reuse the KV blocks of identical prompt prefixes (e.g. a shared system prompt)"},
      {"request_timeout", "INFERA_REQUEST_TIMEOUT", "request-timeout", T::kFloat, "300", 0, 86400,
       {}, "longest a generation may take, seconds (0 = no limit); finish_reason \"timeout\""},
      {"default_max_tokens", "INFERA_DEFAULT_MAX_TOKENS", "default-max-tokens", T::kInt, "256", 1,
       1048576, {}, "max_tokens when a request does not say"},
      {"chat_template", "INFERA_CHAT_TEMPLATE", "chat-template", T::kChoice, "auto", 0, 0,
       {"auto", "llama2", "llama3", "chatml", "qwen", "mistral", "zephyr", "phi3", "gemma", "plain"},
       "chat format (auto = detect from the model's tokenizer.chat_template)"},
      {"student_prompt", "INFERA_STUDENT_PROMPT", "student-prompt", T::kString,
       "You are a patient tutor. Explain step by step in simple words.", 0, 0, {},
       "system prompt for /api/chat role \"student\""},
      {"teacher_prompt", "INFERA_TEACHER_PROMPT", "teacher-prompt", T::kString,
       "You are an expert assistant for teachers. Be precise and concise.", 0, 0, {},
       "system prompt for /api/chat role \"teacher\""},
      // Cache
      {"cache_timeout", "CACHE_TIMEOUT", "cache-timeout", T::kInt, "3600", 0, 31536000, {},
       "time to live of cached answers, seconds (0 = no expiry)"},
      {"cache_max_size", "CACHE_MAX_SIZE", "cache-max-size", T::kInt, "10000", 0, 1000000000, {},
       "most entries in the in-memory cache"},
      {"cache_max_bytes", "INFERA_CACHE_MAX_BYTES", "cache-max-bytes", T::kSize, "256MiB", 0,
       1099511627776.0, {}, "bytes the in-memory cache may hold (after compression)"},
      {"cache_dir", "INFERA_CACHE_DIR", "cache-dir", T::kString, "", 0, 0, {},
       "RocksDB directory of the disk cache, kept across restarts (empty = no disk tier)"},
      {"cache_disk_max_bytes", "INFERA_CACHE_DISK_MAX_BYTES", "cache-disk-max-bytes", T::kSize,
       "1GiB", 0, 1099511627776.0, {}, "bytes the disk cache may hold"},
      {"redis_url", "INFERA_REDIS_URL", "redis-url", T::kString, "", 0, 0, {},
       "redis://host:port[/db] shared by several infera instances (empty = no Redis tier)"},
      {"cache_policy", "INFERA_CACHE_POLICY", "cache-policy", T::kChoice, "deterministic", 0, 0,
       {"deterministic", "all", "off"},
       "which answers are cached: greedy or seeded requests, all, or none"},
      {"cache_warm", "INFERA_CACHE_WARM", "cache-warm", T::kString, "", 0, 0, {},
       "JSON lines of requests answered at start so their repeats hit the cache"},
      // Models and memory
      {"model_cache_size", "MODEL_CACHE_SIZE", "model-cache-size", T::kInt, "2", 1, 1024, {},
       "most models kept loaded at once"},
      {"model_warmup_enabled", "MODEL_WARMUP_ENABLED", "model-warmup-enabled", T::kBool, "true", 0,
       0, {}, "run a warm-up pass when a model is loaded"},
      {"memory_cleanup_threshold", "MEMORY_CLEANUP_THRESHOLD", "memory-cleanup-threshold", T::kFloat,
       "0.80", 0.05, 1.0, {}, "fraction of memory in use that triggers cleanup"},
      {"critical_memory_threshold", "CRITICAL_MEMORY_THRESHOLD", "critical-memory-threshold",
       T::kFloat, "0.95", 0.05, 1.0, {}, "fraction of memory in use that triggers shedding"},
      // Logging
      {"log_level", "INFERA_LOG_LEVEL", "log-level", T::kChoice, "info", 0, 0,
       {"trace", "debug", "info", "warn", "error", "off"}, "least severe level written"},
      {"log_file", "INFERA_LOG_FILE", "log-file", T::kString, "", 0, 0, {},
       "also write JSON logs to this rotating file (empty = stderr only)"},
      {"log_burst_limit", "INFERA_LOG_BURST_LIMIT", "log-burst-limit", T::kInt, "20", 1, 1000000,
       {}, "lines per second per message key before repeats are collapsed into a count"},
  };
}

}  // namespace

const std::vector<OptionSpec>& option_specs() {
  static const std::vector<OptionSpec> specs = make_specs();
  return specs;
}

}  // namespace infera::core
