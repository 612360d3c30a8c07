#include "sched/scheduler.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "core/log.h"
#include "obs/metrics.h"
#include "sched/stop_matcher.h"

namespace infera::sched {

const char* to_string(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kTimeout: return "timeout";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kError: return "error";
  }
  return "error";
}

namespace {

obs::Labels with_reason(obs::Labels labels, std::string reason) {
  labels.emplace_back("reason", std::move(reason));
  return labels;
}

// Exponentially weighted mean; the first sample sets it.
void ewma(std::atomic<double>& mean, double sample, double weight = 0.2) {
  const double old = mean.load(std::memory_order_relaxed);
  mean.store(old == 0 ? sample : old + weight * (sample - old), std::memory_order_relaxed);
}

// Waiting longer than this raises a request's priority by one level, so a stream of
// higher-priority work delays lower priorities but cannot starve them.
constexpr double kAgingSeconds = 5.0;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

struct Waiting {
  std::unique_ptr<Job> job;
  uint64_t arrival = 0;
  int64_t turn = 0;          // its tenant's place in line (order_waiting)
  uint64_t last_served = 0;  // when its tenant was last admitted (0: never)
  int64_t level = 0;         // priority raised by the time waited (order_waiting)
  Clock::time_point submitted;
};

// A sequence being prefilled or decoded. Engine-loop thread only.
struct Running {
  std::unique_ptr<Job> job;
  int32_t seq_id = 0;
  Clock::time_point submitted;
  Clock::time_point admitted;
  Clock::time_point last_token_at;
  int32_t n_past = 0;        // positions already in the KV cache
  int32_t cached = 0;        // prompt tokens reused from the prefix cache
  int32_t generated = 0;
  int32_t next_token = -1;   // sampled, not yet evaluated
  bool prefill_done = false;
  // Every token generated so far; after a preemption the sequence's KV is rebuilt
  // from the prompt and these (`context`), then decoding goes on where it stopped.
  std::vector<int32_t> output;
  std::vector<int32_t> context;  // empty: the prompt
  int preemptions = 0;
  bool holds_kv = false;     // between begin_sequence and end_sequence
  bool parked = false;       // preempted this step: moves to `preempted` after build_batch
  bool in_batch = false;     // has an entry in this step's batch
  uint64_t arrival = 0;
  double ttft_ms = 0;
  std::unique_ptr<TokenSampler> sampler;
  std::unique_ptr<TextStream> text;
  std::unique_ptr<StopMatcher> stops;
};

}  // namespace

struct Scheduler::Impl {
  Impl(SchedulerConfig c, ModelRunner& r, obs::Registry& m)
      : Impl(c, r, m, c.model_name.empty() ? obs::Labels{} : obs::Labels{{"model", c.model_name}}) {}
  Impl(SchedulerConfig c, ModelRunner& r, obs::Registry& m, const obs::Labels& l)
      : config(c),
        runner(r),
        ttft(m.histogram("infera_time_to_first_token_seconds", "Submit to first generated token", l)),
        itl(m.histogram("infera_inter_token_seconds", "Time between generated tokens", l)),
        e2e(m.histogram("infera_request_duration_seconds", "Submit to last token", l)),
        queue_time(m.histogram("infera_queue_seconds", "Submit to admission", l)),
        batch_tokens(m.histogram("infera_batch_tokens", "Tokens evaluated per engine step", l)),
        batch_seqs(m.histogram("infera_batch_sequences", "Sequences in an engine step", l)),
        step_time(m.histogram("infera_step_seconds", "Duration of one engine step", l)),
        generated_tokens(m.counter("infera_generated_tokens_total", "Tokens generated", l)),
        prompt_tokens(m.counter("infera_prompt_tokens_total", "Prompt tokens evaluated", l)),
        prefix_hits(m.counter("infera_prefix_cache_hits_total", "Sequences that reused cached prompt KV blocks", l)),
        prefix_tokens(m.counter("infera_prefix_cache_tokens_total", "Prompt tokens reused from the prefix cache", l)),
        rejected(m.counter("infera_requests_rejected_total", "Requests refused because the queue was full", l)),
        preempted_total(m.counter("infera_sequences_preempted_total",
                                  "Sequences whose KV blocks were freed for others, to resume later", l)),
        tenant_refused(m.counter("infera_tenant_queue_refusals_total",
                                 "Requests refused because their tenant had --tenant-max-queue waiting", l)),
        deadline_refused(m.counter("infera_admission_refusals_total",
                                   "Requests refused at admission because they could not finish in time",
                                   with_reason(l, "deadline"))),
        running_gauge(m.gauge("infera_sequences_running", "Sequences being prefilled or decoded", l)),
        waiting_gauge(m.gauge("infera_sequences_waiting", "Requests waiting for admission", l)),
        kv_used(m.gauge("infera_kv_blocks_used", "KV cache blocks in use", l)),
        kv_free(m.gauge("infera_kv_blocks_free", "KV cache blocks free", l)) {
    max_seqs.store(config.max_seqs);
    max_batch_tokens.store(config.max_batch_tokens);
    publish_kv();
    thread = std::thread([this] { loop(); });
  }

  SchedulerConfig config;
  ModelRunner& runner;
  obs::Histogram& ttft;
  obs::Histogram& itl;
  obs::Histogram& e2e;
  obs::Histogram& queue_time;
  obs::Histogram& batch_tokens;
  obs::Histogram& batch_seqs;
  obs::Histogram& step_time;
  obs::Counter& generated_tokens;
  obs::Counter& prompt_tokens;
  obs::Counter& prefix_hits;
  obs::Counter& prefix_tokens;
  obs::Counter& rejected;
  obs::Counter& preempted_total;
  obs::Counter& tenant_refused;
  obs::Counter& deadline_refused;
  obs::Gauge& running_gauge;
  obs::Gauge& waiting_gauge;
  obs::Gauge& kv_used;
  obs::Gauge& kv_free;

  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<Waiting> incoming;  // guarded by mu
  std::atomic<int64_t> queued{0};  // submitted, not yet admitted or ended
  std::unordered_map<std::string, int64_t> tenant_queued;  // guarded by mu; by Job::tenant
  std::atomic<int64_t> steps{0};   // steps that evaluated a batch
  std::atomic<int64_t> n_preempted{0};  // preempted sequences waiting to resume
  // Measured costs (engine loop writes, submit reads; 0 = not measured yet), EWMAs:
  std::atomic<double> decode_step_s{0};    // one decode step at the recent batch sizes
  std::atomic<double> prefill_token_s{0};  // one prompt token
  std::atomic<double> service_s{0};        // admission to end of a finished request
  std::atomic<double> generated_mean{0};   // tokens a finished request generated
  std::atomic<int64_t> n_running{0};
  std::atomic<int> max_seqs{0};    // limits in force (set_limits)
  std::atomic<int> max_batch_tokens{0};
  // Requests to the loop (guarded by mu): drop unused prefix blocks, then answer.
  std::vector<std::shared_ptr<std::promise<uint64_t>>> drop_requests;
  // Fault injection (guarded by mu).
  Clock::time_point delay_until{};
  std::chrono::milliseconds delay_per_step{0};
  bool stopping = false;         // guarded by mu
  SchedulerStats shared_stats;   // guarded by mu

  // Engine-loop state.
  std::vector<Waiting> waiting;
  std::vector<std::unique_ptr<Running>> running;
  // Preempted sequences (no KV blocks), oldest first; admitted again before `waiting`.
  std::deque<std::unique_ptr<Running>> preempted;
  // Each tenant's most recent admission (a count of admissions), for round-robin.
  std::unordered_map<std::string, uint64_t> last_served;
  uint64_t admissions = 0;
  uint64_t next_arrival = 0;
  int32_t next_seq_id = 0;
  std::vector<BatchEntry> batch;
  std::vector<Running*> batch_owner;  // per entry with logits
  size_t decode_entries = 0;          // batch entries that decode (the rest are prompt)
  std::vector<const float*> logits;
  std::thread thread;

  void publish_kv() {
    KvUsage kv = runner.kv_usage();
    kv_used.set(static_cast<double>(kv.blocks_used));
    kv_free.set(static_cast<double>(kv.blocks_total - kv.blocks_used));
  }

  void finish(Running& r, FinishReason reason, std::string error = {}) {
    auto now = Clock::now();
    if (r.text && reason != FinishReason::kCancelled) {
      std::string tail = r.stops->push(r.text->flush());
      tail += r.stops->flush();
      if (!tail.empty() && r.job->on_text) r.job->on_text(tail);
    }
    if (r.holds_kv) runner.end_sequence(r.seq_id);
    r.holds_kv = false;
    publish_kv();  // before on_done: whoever learns the request ended sees its blocks freed
    Completion c;
    c.reason = reason;
    c.prompt_tokens = static_cast<int32_t>(r.job->prompt.size());
    c.cached_prompt_tokens = r.cached;
    c.completion_tokens = r.generated;
    c.queue_ms = ms_between(r.submitted, r.admitted);
    c.ttft_ms = r.ttft_ms;
    c.total_ms = ms_between(r.submitted, now);
    if (reason == FinishReason::kStop || reason == FinishReason::kLength) {
      // Requests are few next to steps: a heavier weight follows a change of load in
      // a handful of answers (and forgets the load-time warm-up's one-token answer).
      ewma(service_s, std::chrono::duration<double>(now - r.admitted).count(), 0.5);
      ewma(generated_mean, static_cast<double>(r.generated), 0.5);
    }
    c.error = std::move(error);
    e2e.observe(c.total_ms / 1000.0);
    if (r.job->on_done) r.job->on_done(c);
    r.job.reset();
  }

  // A waiting request leaves the queue (admitted or ended).
  void dequeued(const Job& job) {
    queued.fetch_sub(1);
    if (config.tenant_max_queue <= 0) return;
    std::lock_guard lock(mu);
    auto it = tenant_queued.find(job.tenant);
    if (it != tenant_queued.end() && --it->second <= 0) tenant_queued.erase(it);
  }

  void finish_waiting(Waiting& w, FinishReason reason, std::string error = {}) {
    dequeued(*w.job);
    Completion c;
    c.reason = reason;
    c.error = std::move(error);
    c.prompt_tokens = static_cast<int32_t>(w.job->prompt.size());
    c.queue_ms = c.total_ms = ms_between(w.submitted, Clock::now());
    if (w.job->on_done) w.job->on_done(c);
    w.job.reset();
  }

  static bool cancelled(const Job& j) { return j.is_cancelled && j.is_cancelled(); }

  // Ends cancelled and expired work, waiting or running.
  void reap(Clock::time_point now) {
    for (auto& r : running) {
      if (cancelled(*r->job)) {
        finish(*r, FinishReason::kCancelled);
      } else if (now >= r->job->deadline) {
        finish(*r, FinishReason::kTimeout);
      }
    }
    std::erase_if(running, [](const auto& r) { return !r->job; });
    for (auto& r : preempted) {
      if (cancelled(*r->job)) {
        finish(*r, FinishReason::kCancelled);
      } else if (now >= r->job->deadline) {
        finish(*r, FinishReason::kTimeout);
      }
    }
    std::erase_if(preempted, [](const auto& r) { return !r->job; });
    for (auto& w : waiting) {
      if (cancelled(*w.job)) {
        finish_waiting(w, FinishReason::kCancelled);
      } else if (now >= w.job->deadline) {
        finish_waiting(w, FinishReason::kTimeout);
      }
    }
    std::erase_if(waiting, [](const Waiting& w) { return !w.job; });
  }

  // Highest priority first (raised one level per kAgingSeconds waited); within a
  // priority, tenants take turns (round-robin): a
  // request's place is its tenant's sequences already running plus that tenant's
  // requests ahead of it, so the n-th request of a flood queues behind everyone else's
  // first; equal places go to the tenant served longest ago, then by arrival.
  void order_waiting() {
    // A tenant's own requests take their turns earliest deadline first, then in arrival order.
    std::sort(waiting.begin(), waiting.end(), [](const Waiting& a, const Waiting& b) {
      if (a.job->deadline != b.job->deadline) return a.job->deadline < b.job->deadline;
      return a.arrival < b.arrival;
    });
    std::unordered_map<std::string_view, int64_t> turns;
    for (const auto& r : running) {
      if (r->job) ++turns[r->job->tenant];
    }
    for (const auto& r : preempted) ++turns[r->job->tenant];
    const Clock::time_point now = Clock::now();
    for (Waiting& w : waiting) {
      w.turn = turns[w.job->tenant]++;
      auto served = last_served.find(w.job->tenant);
      w.last_served = served == last_served.end() ? 0 : served->second;
      w.level = w.job->priority +
                static_cast<int64_t>(std::chrono::duration<double>(now - w.submitted).count() / kAgingSeconds);
    }
    std::stable_sort(waiting.begin(), waiting.end(), [](const Waiting& a, const Waiting& b) {
      if (a.level != b.level) return a.level > b.level;
      if (a.turn != b.turn) return a.turn < b.turn;
      if (a.job->deadline != b.job->deadline) return a.job->deadline < b.job->deadline;  // EDF
      return a.last_served < b.last_served;
    });
  }

  void served(const std::string& tenant) {
    if (last_served.size() >= 65536) last_served.clear();  // forget, rather than grow without bound
    last_served[tenant] = ++admissions;
  }

  void admit(Clock::time_point now) {
    order_waiting();
    const int limit = max_seqs.load(std::memory_order_relaxed);
    // Preempted sequences resume first: each was admitted before anything waiting.
    while (!preempted.empty() && static_cast<int>(running.size()) < limit) {
      Running& r = *preempted.front();
      const int32_t seq_id = next_seq_id++;
      const int32_t reused = runner.begin_sequence(seq_id, r.context);
      if (reused < 0 && running.empty()) {
        // It ran before, with others: alone, the cache cannot hold it any more.
        finish(r, FinishReason::kLength, "the KV cache cannot hold this sequence's context");
        preempted.pop_front();
        continue;
      }
      if (reused < 0) return;  // no room yet: nothing younger may overtake it
      r.seq_id = seq_id;
      r.holds_kv = true;
      r.n_past = reused;
      r.prefill_done = false;
      running.push_back(std::move(preempted.front()));
      preempted.pop_front();
    }
    if (!preempted.empty()) return;
    size_t taken = 0;
    while (taken < waiting.size() && static_cast<int>(running.size()) < limit) {
      Waiting& w = waiting[taken];
      int32_t seq_id = next_seq_id++;
      int32_t reused = runner.begin_sequence(seq_id, w.job->prompt);
      if (reused < 0 && running.empty()) {
        // Even an empty cache cannot hold this prompt.
        finish_waiting(w, FinishReason::kError, "the prompt does not fit in the KV cache");
        ++taken;
        continue;
      }
      if (reused < 0) break;  // no KV room: wait for running sequences to finish
      dequeued(*w.job);
      served(w.job->tenant);
      auto r = std::make_unique<Running>();
      r->seq_id = seq_id;
      r->holds_kv = true;
      r->submitted = w.submitted;
      r->admitted = now;
      r->n_past = reused;
      r->cached = reused;
      r->sampler = runner.make_sampler(w.job->sampling, w.job->prompt);
      r->text = runner.make_text_stream();
      r->stops = std::make_unique<StopMatcher>(w.job->stop);
      r->arrival = w.arrival;
      r->job = std::move(w.job);
      queue_time.observe(ms_between(r->submitted, now) / 1000.0);
      if (reused > 0) {
        prefix_hits.inc();
        prefix_tokens.inc(static_cast<uint64_t>(reused));
      }
      running.push_back(std::move(r));
      ++taken;
    }
    waiting.erase(waiting.begin(), waiting.begin() + static_cast<std::ptrdiff_t>(taken));
  }

  // Fills `batch`: one decode token per generating sequence, then prompt chunks.
  void build_batch() {
    batch.clear();
    batch_owner.clear();
    decode_entries = 0;
    // Highest priority, then oldest, first: who gets KV room when it runs out.
    std::sort(running.begin(), running.end(), [](const auto& a, const auto& b) {
      if (a->job->priority != b->job->priority) return a->job->priority > b->job->priority;
      return a->arrival < b->arrival;
    });
    for (auto& r : running) r->in_batch = false;
    int budget = max_batch_tokens.load(std::memory_order_relaxed);
    for (auto& r : running) {
      if (!r->job || r->parked || !r->prefill_done || budget <= 0) continue;
      if (!make_room(*r, r->n_past + 1)) continue;  // r itself was preempted (or ended)
      batch.push_back({r->seq_id, r->next_token, r->n_past, true});
      batch_owner.push_back(r.get());
      r->in_batch = true;
      ++decode_entries;
      --budget;
    }
    for (auto& r : running) {
      if (!r->job || r->parked || r->prefill_done || budget <= 0) continue;
      const auto& prompt = r->context.empty() ? r->job->prompt : r->context;
      int32_t remaining = static_cast<int32_t>(prompt.size()) - r->n_past;
      int32_t n = std::min(remaining, budget);
      if (!runner.reserve(r->seq_id, r->n_past + n)) continue;  // retry next step
      for (int32_t i = 0; i < n; ++i) {
        int32_t pos = r->n_past + i;
        bool last = pos + 1 == static_cast<int32_t>(prompt.size());
        batch.push_back({r->seq_id, prompt[static_cast<size_t>(pos)], pos, last});
        if (last) batch_owner.push_back(r.get());
      }
      r->in_batch = true;
      budget -= n;
    }
    for (auto& r : running) {
      if (!r->job || !r->parked) continue;
      r->parked = false;
      // Oldest first: a younger preempted sequence never resumes before an older one.
      auto at = std::find_if(preempted.begin(), preempted.end(),
                             [&](const auto& p) { return p->arrival > r->arrival; });
      preempted.insert(at, std::move(r));
    }
    std::erase_if(running, [](const auto& r) { return !r || !r->job; });
  }

  // Reserves `n_tokens` positions for decoding `r`. When the KV cache is full, frees
  // the blocks of the lowest-priority, youngest sequence (possibly `r`) and requeues it
  // to be recomputed later, instead of cutting anyone's answer short; returns false
  // when `r` was the one preempted. A lone sequence the cache cannot hold has reached
  // the cache's capacity, its context: it ends with kLength.
  bool make_room(Running& r, int32_t n_tokens) {
    while (!runner.reserve(r.seq_id, n_tokens)) {
      Running* victim = nullptr;
      for (auto& o : running) {
        // Not one that ended, holds nothing yet, or already has entries in this batch.
        if (!o->job || o->parked || !o->holds_kv || o->in_batch) continue;
        if (victim == nullptr || o->job->priority < victim->job->priority ||
            (o->job->priority == victim->job->priority && o->arrival > victim->arrival)) {
          victim = o.get();
        }
      }
      if (victim == nullptr || (victim == &r && running_with_kv() == 1)) {
        finish(r, FinishReason::kLength, "the KV cache cannot hold this sequence's context");
        return false;
      }
      preempt(*victim);
      if (victim == &r) return false;
    }
    return true;
  }

  int running_with_kv() const {
    int n = 0;
    for (const auto& o : running) n += o->job && !o->parked && o->holds_kv ? 1 : 0;
    return n;
  }

  // Frees `r`'s blocks and queues it to resume: its prompt and every token generated
  // so far are evaluated again (prefix blocks that survive are reused), then decoding
  // continues with its sampler, text and stop state untouched.
  void preempt(Running& r) {
    runner.end_sequence(r.seq_id);
    r.holds_kv = false;
    preempted_total.inc();
    ++r.preemptions;
    r.context = r.job->prompt;
    if (r.prefill_done) r.context.insert(r.context.end(), r.output.begin(), r.output.end());
    r.n_past = 0;
    r.parked = true;
    log::info("sched.preempted", "sequence of {} tokens preempted (KV cache full; {} so far), resumes later",
              r.context.size(), r.preemptions);
    publish_kv();
  }

  // Splits a step's time between its decode and prompt tokens (engine loop).
  void learn_costs(double seconds) {
    const size_t decode = decode_entries;
    const size_t prompt = batch.size() - decode;
    if (prompt == 0) {
      ewma(decode_step_s, seconds);
      return;
    }
    const double decode_part = decode > 0 ? decode_step_s.load(std::memory_order_relaxed) : 0.0;
    ewma(prefill_token_s, std::max(0.0, seconds - decode_part) / static_cast<double>(prompt));
  }

  void advance_positions() {
    for (const auto& e : batch) {
      for (auto& r : running) {
        if (r->seq_id != e.seq_id) continue;
        r->n_past = std::max(r->n_past, e.pos + 1);
        if (!r->prefill_done) prompt_tokens.inc();
        break;
      }
    }
  }

  void on_token(Running& r, int32_t token, Clock::time_point now) {
    if (!r.prefill_done) {
      r.prefill_done = true;
      runner.publish_prefix(r.seq_id, r.job->prompt);
      if (!r.context.empty()) {
        // Resumed: the recomputed context ended with the token that was to be fed
        // next, so these logits are the ones plain decoding would have sampled.
        r.context.clear();
        r.context.shrink_to_fit();
      }
    }
    r.output.push_back(token);
    ++r.generated;
    generated_tokens.inc();
    if (r.generated == 1) {
      r.ttft_ms = ms_between(r.submitted, now);
      ttft.observe(r.ttft_ms / 1000.0);
    } else {
      itl.observe(std::chrono::duration<double>(now - r.last_token_at).count());
    }
    r.last_token_at = now;
    if (runner.is_end_of_generation(token)) {
      finish(r, FinishReason::kStop);
      return;
    }
    std::string text = r.stops->push(r.text->push(token));
    if (!text.empty() && r.job->on_text) r.job->on_text(text);
    if (r.stops->stopped()) {
      finish(r, FinishReason::kStop);
    } else if (r.generated >= r.job->max_tokens || r.n_past + 1 >= runner.n_ctx()) {
      finish(r, FinishReason::kLength);
    } else {
      r.next_token = token;
    }
  }

  void step() {
    auto start = Clock::now();
    reap(start);
    admit(start);
    build_batch();
    if (batch.empty()) return;
    Status st = runner.eval(batch, logits);
    if (!st.ok()) {
      log::error("sched.eval_failed", "engine step failed: {}", st.message());
      for (auto& r : running) finish(*r, FinishReason::kError, st.message());
      running.clear();
      return;
    }
    steps.fetch_add(1, std::memory_order_relaxed);
    advance_positions();
    auto now = Clock::now();
    for (size_t i = 0; i < batch_owner.size(); ++i) {
      Running& r = *batch_owner[i];
      on_token(r, r.sampler->sample(logits[i]), now);
    }
    std::erase_if(running, [](const auto& r) { return !r->job; });
    batch_tokens.observe(static_cast<double>(batch.size()));
    batch_seqs.observe(static_cast<double>(batch_owner.size()));
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    step_time.observe(seconds);
    learn_costs(seconds);
  }

  // Sleeps while a fault is injected; returns with `lock` held. Engine-loop thread.
  void injected_delay(std::unique_lock<std::mutex>& lock) {
    auto now = Clock::now();
    if (now >= delay_until || delay_per_step.count() <= 0) return;
    auto until = std::min(delay_until, now + delay_per_step);
    cv.wait_until(lock, until, [this] { return stopping; });
  }

  void serve_drop_requests(std::unique_lock<std::mutex>& lock) {
    if (drop_requests.empty()) return;
    auto requests = std::move(drop_requests);
    drop_requests.clear();
    lock.unlock();
    uint64_t released = runner.drop_cached_prefixes();
    publish_kv();
    for (auto& r : requests) r->set_value(released);
    lock.lock();
  }

  void loop() {
    for (;;) {
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [this] {
          return stopping || !incoming.empty() || !running.empty() || !waiting.empty() ||
                 !preempted.empty() || !drop_requests.empty();
        });
        if (stopping) break;
        serve_drop_requests(lock);
        injected_delay(lock);
        if (stopping) break;
        if (running.empty() && waiting.empty() && preempted.empty() && config.batch_timeout_ms > 0) {
          // Idle engine: let a burst of requests arrive so they prefill together.
          auto until = Clock::now() + std::chrono::milliseconds(config.batch_timeout_ms);
          while (!stopping && static_cast<int>(incoming.size()) < max_seqs.load() &&
                 cv.wait_until(lock, until) != std::cv_status::timeout) {
          }
        }
        while (!incoming.empty()) {
          waiting.push_back(std::move(incoming.front()));
          incoming.pop_front();
        }
      }
      step();
      publish();
    }
    for (auto& r : running) finish(*r, FinishReason::kCancelled);
    running.clear();
    for (auto& r : preempted) finish(*r, FinishReason::kCancelled);
    preempted.clear();
    {
      std::lock_guard lock(mu);
      for (auto& w : incoming) waiting.push_back(std::move(w));
      incoming.clear();
    }
    {
      std::lock_guard lock(mu);
      for (auto& r : drop_requests) r->set_value(0);
      drop_requests.clear();
    }
    // Callbacks run without the lock: they may submit again (refused once stopping).
    for (auto& w : waiting) finish_waiting(w, FinishReason::kCancelled);
    waiting.clear();
  }

  // How long the work already queued should take to leave a sequence slot free:
  // the requests ahead beyond the free slots, each taking the measured service time,
  // max_seqs at a time. 0 before anything was measured. REQUIRES: mu held.
  double queue_seconds() const {
    const double service = service_s.load(std::memory_order_relaxed);
    const int slots = std::max(1, max_seqs.load(std::memory_order_relaxed));
    const int64_t ahead = queued.load() + n_preempted.load() + n_running.load() - slots + 1;
    if (service <= 0 || ahead <= 0) return 0;
    return static_cast<double>(ahead) / slots * service;
  }

  struct Lateness {
    double queue_s, own_s, left_s;
  };
  // Set when `job` would end after its deadline by the measured costs: its prompt at
  // the prefill rate, then the tokens a request usually generates (at most its
  // max_tokens) at the decode rate, after the queue ahead. Unmeasured: never late.
  // REQUIRES: mu held.
  std::optional<Lateness> late_by(const Job& job) const {
    const double decode = decode_step_s.load(std::memory_order_relaxed);
    const double prefill = prefill_token_s.load(std::memory_order_relaxed);
    const double typical = generated_mean.load(std::memory_order_relaxed);
    if (decode <= 0 || prefill <= 0 || typical <= 0) return std::nullopt;
    const double tokens = std::min<double>(job.max_tokens, std::max(1.0, typical));
    Lateness l;
    l.queue_s = queue_seconds();
    l.own_s = static_cast<double>(job.prompt.size()) * prefill + tokens * decode;
    l.left_s = std::chrono::duration<double>(job.deadline - Clock::now()).count();
    if (l.queue_s + l.own_s <= l.left_s) return std::nullopt;
    return l;
  }

  void publish() {
    publish_kv();
    running_gauge.set(static_cast<double>(running.size()));
    std::lock_guard lock(mu);
    n_preempted.store(static_cast<int64_t>(preempted.size()));
    waiting_gauge.set(static_cast<double>(waiting.size() + incoming.size() + preempted.size()));
    shared_stats.running = static_cast<int64_t>(running.size());
    n_running.store(static_cast<int64_t>(running.size()));
    shared_stats.waiting = static_cast<int64_t>(waiting.size() + incoming.size());
    shared_stats.kv = runner.kv_usage();
    shared_stats.prefix_hits = static_cast<int64_t>(prefix_hits.value());
    shared_stats.prefix_tokens_reused = static_cast<int64_t>(prefix_tokens.value());
  }
};

Scheduler::Scheduler(SchedulerConfig config, ModelRunner& runner, obs::Registry& metrics)
    : impl_(std::make_unique<Impl>(config, runner, metrics)) {}

Scheduler::~Scheduler() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  impl_->thread.join();
}

Status Scheduler::submit(std::unique_ptr<Job> job, double* retry_after_s) {
  if (job->prompt.empty()) return Status::InvalidArgument("the prompt is empty");
  int64_t need = static_cast<int64_t>(job->prompt.size()) + 1;
  if (need > impl_->runner.n_ctx()) {
    return Status::InvalidArgument(fmt::format(
        "the prompt has {} tokens; this model's context holds {}", job->prompt.size(),
        impl_->runner.n_ctx()));
  }
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return Status::Unavailable("the server is shutting down");
    if (impl_->queued.load() >= impl_->config.max_queue) {
      impl_->rejected.inc();
      if (retry_after_s != nullptr) *retry_after_s = impl_->queue_seconds();
      return Status::ResourceExhausted(fmt::format(
          "the request queue is full ({} waiting); retry later", impl_->config.max_queue));
    }
    if (impl_->config.tenant_max_queue > 0) {
      int64_t& mine = impl_->tenant_queued[job->tenant];
      if (mine >= impl_->config.tenant_max_queue) {
        impl_->tenant_refused.inc();
        if (retry_after_s != nullptr) *retry_after_s = impl_->queue_seconds();
        return Status::ResourceExhausted(fmt::format(
            "{} already has {} requests waiting (the most one client may queue); retry when they are answered",
            job->tenant.empty() ? std::string("this client") : job->tenant, mine));
      }
      ++mine;
    }
    if (job->deadline != Clock::time_point::max()) {
      if (auto late = impl_->late_by(*job); late) {
        impl_->deadline_refused.inc();
        if (retry_after_s != nullptr) *retry_after_s = late->queue_s;
        return Status::DeadlineExceeded(fmt::format(
            "cannot finish in time: about {:.1f} s of queued work ahead and {:.1f} s for this request, "
            "{:.1f} s left before its deadline; retry later or allow more time",
            late->queue_s, late->own_s, late->left_s));
      }
    }
    impl_->queued.fetch_add(1);
    impl_->incoming.push_back(Waiting{std::move(job), impl_->next_arrival++, 0, 0, 0, Clock::now()});
  }
  impl_->cv.notify_one();
  return Status::Ok();
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard lock(impl_->mu);
  SchedulerStats s = impl_->shared_stats;
  s.waiting = impl_->queued.load() + impl_->n_preempted.load();
  s.queue_delay_s = impl_->queue_seconds();
  s.steps_completed = impl_->steps.load();
  s.max_seqs = impl_->max_seqs.load();
  s.max_batch_tokens = impl_->max_batch_tokens.load();
  return s;
}

void Scheduler::set_limits(int max_seqs, int max_batch_tokens) {
  impl_->max_seqs.store(std::max(1, max_seqs));
  impl_->max_batch_tokens.store(std::max(1, max_batch_tokens));
  impl_->cv.notify_all();
}

uint64_t Scheduler::drop_cached_prefixes(std::chrono::milliseconds timeout) {
  auto request = std::make_shared<std::promise<uint64_t>>();
  auto answer = request->get_future();
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return 0;
    impl_->drop_requests.push_back(std::move(request));
  }
  impl_->cv.notify_all();
  if (answer.wait_for(timeout) != std::future_status::ready) return 0;
  return answer.get();
}

void Scheduler::inject_delay(std::chrono::milliseconds per_step, std::chrono::milliseconds duration) {
  {
    std::lock_guard lock(impl_->mu);
    impl_->delay_per_step = per_step;
    impl_->delay_until = Clock::now() + duration;
  }
  impl_->cv.notify_all();
}

}  // namespace infera::sched
