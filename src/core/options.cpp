// The one table of infera's options. Each becomes a flag (--flag), an environment
// variable (env) and a TOML key (key); see config.h for precedence.
#include <thread>

#include "core/config.h"
#include "core/cpu_topology.h"

namespace infera::core {
namespace {

// One per CPU this process may use, or per big core of a big.LITTLE CPU.
std::string default_workers() {
  auto placement = plan_cpu_placement(read_cpus(), "auto", 0);
  if (placement.ok()) return std::to_string(placement->threads);
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
      {"cors_origins", "INFERA_CORS_ORIGINS", "cors-origins", T::kString, "", 0, 0, {},
       "origins browsers may call from (https://app.example.org; * = any), comma-separated", "",
       true},
      {"tls_cert", "INFERA_TLS_CERT", "tls-cert", T::kString, "", 0, 0, {},
       "PEM certificate chain: serve HTTPS (with --tls-key)"},
      {"tls_key", "INFERA_TLS_KEY", "tls-key", T::kString, "", 0, 0, {}, "PEM private key of --tls-cert"},
      // Access control and rate limits
      {"api_keys_file", "INFERA_API_KEYS_FILE", "api-keys-file", T::kString, "", 0, 0, {},
       "TOML file of API keys (name, sha256, role, limits, models) and roles; reloaded on change and "
       "SIGHUP (docs/AUTH.md)"},
      {"allow_anonymous", "INFERA_ALLOW_ANONYMOUS", "allow-anonymous", T::kBool, "false", 0, 0, {},
       "without API keys, listen on a non-loopback address anyway (anyone reaching it may use everything)"},
      {"client_requests_per_minute", "INFERA_CLIENT_REQUESTS_PER_MINUTE", "client-requests-per-minute",
       T::kInt, "0", 0, 1000000000, {}, "requests per minute per client address (0 = no limit)"},
      {"client_request_burst", "INFERA_CLIENT_REQUEST_BURST", "client-request-burst", T::kInt, "0", 0,
       1000000000, {}, "requests a client address may send at once (0 = a minute's worth)"},
      {"client_tokens_per_minute", "INFERA_CLIENT_TOKENS_PER_MINUTE", "client-tokens-per-minute", T::kInt,
       "0", 0, 1000000000000.0, {}, "prompt + completion tokens per minute per client address (0 = no limit)"},
      {"client_concurrent", "INFERA_CLIENT_CONCURRENT", "client-concurrent", T::kInt, "0", 0, 1000000, {},
       "requests in flight per client address (0 = no limit)"},
      {"trusted_proxies", "INFERA_TRUSTED_PROXIES", "trusted-proxies", T::kString, "", 0, 0, {},
       "addresses of proxies (HAProxy, nginx) whose X-Forwarded-For names the client for "
       "per-address limits, comma-separated", "", true},
      {"data_dir", "INFERA_DATA_DIR", "data-dir", T::kString, "", 0, 0, {},
       "directory for state kept across restarts: documents, chunks, vector indexes and chat "
       "sessions (SQLite), daily token quotas without Redis; empty = infera-data beside "
       "--cache-dir, else $XDG_STATE_HOME/infera (~/.local/state/infera)"},
      // Compute and batching
      {"max_workers", "MAX_WORKERS", "max-workers", T::kInt, default_workers(), 1, 1024, {},
       "compute threads of the inference engine (default: one per big core on a big.LITTLE "
       "CPU, else one per CPU; a --cpu-affinity list: its size)", "threads"},
      {"cpu_affinity", "INFERA_CPU_AFFINITY", "cpu-affinity", T::kString, "auto", 0, 0, {},
       "where the compute threads run: auto (big cores, pinned, on a big.LITTLE CPU), none "
       "(not pinned), or a CPU list such as 0-3,6 (pinned there)"},
      {"batch_size", "BATCH_SIZE", "batch-size", T::kInt, "8", 1, 4096, {},
       "most sequences decoded together in one engine step (continuous batching)", "max-seqs"},
      {"batch_timeout", "BATCH_TIMEOUT", "batch-timeout", T::kInt, "2", 0, 60000, {},
       "when the engine is idle, how long the first request waits for others to batch with, ms"},
      // Model and serving
      {"model", "INFERA_MODEL", "model", T::kString, "", 0, 0, {},
       "a model to serve: name=path.gguf or path.gguf (name: file name without .gguf); with no "
       "model option at all, the bundled models/stories260K-tok512.gguf",
       "", true},
      {"models_file", "INFERA_MODELS_FILE", "models-file", T::kString, "", 0, 0, {},
       "TOML file of [[models]] (name, path, kind, pin, keep_alive, ctx_size, max_seqs, "
       "chat_template, role_prompts)"},
      {"models_dir", "INFERA_MODELS_DIR", "models-dir", T::kString, "", 0, 0, {},
       "serve every .gguf file of this directory, each loaded on first use"},
      {"models_memory_budget", "INFERA_MODELS_MEMORY_BUDGET", "models-memory-budget", T::kSize, "0",
       0, 1099511627776.0, {}, "bytes all loaded models may hold together (0 = no limit)"},
      {"keep_alive", "INFERA_KEEP_ALIVE", "keep-alive", T::kString, "-1", 0, 0, {},
       "idle time before a model without its own keep_alive is unloaded (30s, 5m, 1h; -1 never, 0 "
       "at once)"},
      {"ctx_size", "INFERA_CTX_SIZE", "ctx-size", T::kInt, "4096", 16, 1048576, {},
       "KV cache size in tokens, shared by all sequences"},
      {"mmap", "INFERA_MMAP", "mmap", T::kBool, "true", 0, 0, {},
       "map the model file (false: read it into huge-page memory; slower load, faster decode)"},
      {"packed_cache_dir", "INFERA_PACKED_CACHE_DIR", "packed-cache-dir", T::kString, "", 0, 0, {},
       "directory of repacked-weight images: the first load of a model file writes one, later "
       "loads map it instead of repacking (empty = packed/ in --data-dir when --data-dir or "
       "--cache-dir is set, else $XDG_CACHE_HOME/infera/packed, ~/.cache/infera/packed)"},
      {"packed_cache_max_bytes", "INFERA_PACKED_CACHE_MAX_BYTES", "packed-cache-max-bytes", T::kSize,
       "8GiB", 0, 1099511627776.0, {},
       "bytes the repacked-weight images may take; least recently used ones are deleted past it"},
      {"no_packed_cache", "INFERA_NO_PACKED_CACHE", "no-packed-cache", T::kBool, "false", 0, 0, {},
       "neither write nor use repacked-weight images (every load repacks)"},
      {"max_queue", "INFERA_MAX_QUEUE", "max-queue", T::kInt, "256", 1, 1000000, {},
       "requests waiting for a sequence slot before new ones get 429"},
      {"tenant_max_queue", "INFERA_TENANT_MAX_QUEUE", "tenant-max-queue", T::kInt, "0", 0, 1000000, {},
       "most requests one tenant (API key, else client address) may have waiting per model before "
       "429; 0 = only --max-queue"},
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
       "redis://host:port[/db] shared by several infera instances: L3 cache and rate limits (empty = none)"},
      {"cache_policy", "INFERA_CACHE_POLICY", "cache-policy", T::kChoice, "deterministic", 0, 0,
       {"deterministic", "all", "off"},
       "which answers are cached: greedy or seeded requests, all, or none"},
      {"cache_warm", "INFERA_CACHE_WARM", "cache-warm", T::kString, "", 0, 0, {},
       "JSON lines of requests answered at start so their repeats hit the cache"},
      {"cache_rewarm", "INFERA_CACHE_REWARM", "cache-rewarm", T::kInt, "100", 0, 100000, {},
       "after a start, answer this many of the questions asked most in earlier runs (counted in "
       "<data-dir>/popular.jsonl) at the lowest priority while idle, so they hit the cache (0 = off)"},
      // Models and memory
      {"model_cache_size", "MODEL_CACHE_SIZE", "model-cache-size", T::kInt, "2", 1, 1024, {},
       "most models loaded at once; loading another evicts the least valuable unpinned one"},
      {"model_warmup_enabled", "MODEL_WARMUP_ENABLED", "model-warmup-enabled", T::kBool, "true", 0,
       0, {}, "run a warm-up pass when a model is loaded (not when a request waits for the load: its own "
       "pass warms the model)"},
      {"memory_cleanup_threshold", "MEMORY_CLEANUP_THRESHOLD", "memory-cleanup-threshold", T::kFloat,
       "0.80", 0.05, 1.0, {},
       "fraction of memory in use (machine, or the cgroup's limit) above which caches shrink and "
       "idle models unload"},
      {"critical_memory_threshold", "CRITICAL_MEMORY_THRESHOLD", "critical-memory-threshold",
       T::kFloat, "0.95", 0.05, 1.0, {},
       "fraction of memory in use above which new generations and loads get 503 memory_pressure"},
      // Operations: self-healing, SLA, alerts
      {"stall_timeout", "INFERA_STALL_TIMEOUT", "stall-timeout", T::kFloat, "10", 0.05, 3600, {},
       "seconds an engine with queued work may go without a step before it is reported stalled"},
      {"ttft_objective_ms", "INFERA_TTFT_OBJECTIVE_MS", "ttft-objective-ms", T::kFloat, "5000", 0,
       3600000, {},
       "P95 time to first token, ms; a window above it lowers admitted sequences and prefill chunk "
       "until healthy (0 = off)"},
      {"degrade_shorten_after", "INFERA_DEGRADE_SHORTEN_AFTER", "degrade-shorten-after", T::kFloat, "10", 0,
       86400, {}, "overload level 1 at this estimated queue delay, seconds: low-priority requests without "
       "max_tokens get --degraded-max-tokens (0 = never)"},
      {"degrade_refuse_after", "INFERA_DEGRADE_REFUSE_AFTER", "degrade-refuse-after", T::kFloat, "30", 0,
       86400, {}, "overload level 2 at this estimated queue delay, seconds: low-priority requests the cache "
       "cannot answer get 429 (0 = never)"},
      {"degraded_max_tokens", "INFERA_DEGRADED_MAX_TOKENS", "degraded-max-tokens", T::kInt, "64", 1, 1000000,
       {}, "max_tokens of low-priority requests that did not set it, while overloaded (level 1+)"},
      {"sla_objectives", "INFERA_SLA_OBJECTIVES", "sla-objectives", T::kString,
       "*=p95:2000ms,availability:99.9", 0, 0, {},
       "latency and availability objectives per scope, e.g. "
       "\"*=p95:2000ms,availability:99.9;route:/api/chat=p95:5000ms;model:tiny=p95:800ms\""},
      {"anomaly_window_ms", "INFERA_ANOMALY_WINDOW_MS", "anomaly-window-ms", T::kInt, "10000", 100,
       3600000, {}, "length of the anomaly detector's windows, ms (a window beyond 2 sigma alerts)"},
      {"alert_webhook", "INFERA_ALERT_WEBHOOK", "alert-webhook", T::kString, "", 0, 0, {},
       "http:// URL that receives each alert as JSON when it fires and resolves (retried)"},
      // Knowledge
      {"max_document_bytes", "INFERA_MAX_DOCUMENT_BYTES", "max-document-bytes", T::kSize, "50MiB",
       1024, 1073741824, {}, "largest document accepted by POST /api/documents, bytes"},
      {"session_turns", "INFERA_SESSION_TURNS", "session-turns", T::kInt, "8", 1, 1000, {},
       "question/answer pairs of an /api/chat session read back into its prompt (at most)"},
      {"history_tokens", "INFERA_HISTORY_TOKENS", "history-tokens", T::kInt, "1024", 0, 1000000, {},
       "most tokens of past turns put in an /api/chat prompt (newest first)"},
      {"session_ttl", "INFERA_SESSION_TTL", "session-ttl", T::kInt, "0", 0, 315360000, {},
       "seconds an /api/chat session is kept after its last message (0 = until deleted)"},
      {"semantic_cache", "INFERA_SEMANTIC_CACHE", "semantic-cache", T::kBool, "false", 0, 0, {},
       "answer a single-turn question with the cached answer to one that means the same "
       "(embedding similarity, then a guard on numbers, negations, entities and order)"},
      {"image_match_model", "INFERA_IMAGE_MATCH_MODEL", "image-match-model", T::kString, "", 0, 0, {},
       "the model (onnx or torchscript, with image preprocessing in its config) whose first output "
       "embeds images for /api/v1/images/match; empty = perceptual hashes only"},
      {"image_match_threshold", "INFERA_IMAGE_MATCH_THRESHOLD", "image-match-threshold", T::kFloat,
       "0.9", -1, 1, {}, "default least score of an image match (cosine similarity, or 1 - hash distance / 64)"},
      {"image_hash_distance", "INFERA_IMAGE_HASH_DISTANCE", "image-hash-distance", T::kInt, "16", 0,
       64, {}, "image matching's first filter: most bits of 64 a reference's perceptual hash may differ"},
      {"semantic_threshold", "INFERA_SEMANTIC_THRESHOLD", "semantic-threshold", T::kFloat, "0.95",
       0.5, 1, {}, "least cosine similarity of two questions for a semantic cache hit"},
      {"semantic_model", "INFERA_SEMANTIC_MODEL", "semantic-model", T::kString, "", 0, 0, {},
       "embedding model of the semantic cache (empty = the first embedding model declared)"},
      {"semantic_cache_size", "INFERA_SEMANTIC_CACHE_SIZE", "semantic-cache-size", T::kInt, "10000", 1,
       10000000, {}, "most questions the semantic cache remembers"},
      {"chunk_tokens", "INFERA_CHUNK_TOKENS", "chunk-tokens", T::kInt, "512", 16, 1000000, {},
       "most tokens per document chunk (lowered to the embedding model's context)"},
      {"chunk_overlap", "INFERA_CHUNK_OVERLAP", "chunk-overlap", T::kInt, "64", 0, 500000, {},
       "tokens a chunk repeats from the end of the previous one"},
      {"test_hooks", "INFERA_TEST_HOOKS", "test-hooks", T::kBool, "false", 0, 0, {},
       "enable fault-injection routes under /admin/test/ (tests only; never in production)"},
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
