// Scheduler behaviour over a small deterministic model: token t is always
// followed by t+1; token ids render as "<id> ". KV accounting is in blocks of 4.
#include "sched/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "obs/metrics.h"

namespace infera::sched {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class CountingModel : public ModelRunner {
 public:
  static constexpr int32_t kVocab = 64;
  static constexpr int32_t kEos = 63;
  static constexpr int32_t kBlock = 4;

  explicit CountingModel(int64_t blocks, std::chrono::microseconds step_cost = 0us)
      : blocks_total_(blocks), step_cost_(step_cost) {}

  int32_t n_vocab() const override { return kVocab; }
  int32_t n_ctx() const override { return 512; }
  bool is_end_of_generation(int32_t t) const override { return t == kEos; }

  int32_t begin_sequence(int32_t seq, std::span<const int32_t> prompt) override {
    std::lock_guard lock(mu_);
    int32_t reused = 0;
    std::vector<int32_t> p(prompt.begin(), prompt.end());
    for (const auto& known : prefixes_) {
      size_t n = 0;
      while (n < known.size() && n + 1 < p.size() && known[n] == p[n]) ++n;
      reused = std::max(reused, static_cast<int32_t>(n / kBlock * kBlock));
    }
    int64_t need = blocks_for(static_cast<int32_t>(prompt.size()));
    if (used_ + need > blocks_total_) return -1;
    held_[seq] = 0;
    if (!grow(seq, static_cast<int32_t>(prompt.size()))) return -1;
    return reused;
  }
  bool reserve(int32_t seq, int32_t n) override {
    std::lock_guard lock(mu_);
    return grow(seq, n);
  }
  void publish_prefix(int32_t, std::span<const int32_t> prompt) override {
    std::lock_guard lock(mu_);
    prefixes_.emplace_back(prompt.begin(), prompt.end());
  }
  void end_sequence(int32_t seq) override {
    std::lock_guard lock(mu_);
    used_ -= held_[seq];
    held_.erase(seq);
  }
  KvUsage kv_usage() const override {
    std::lock_guard lock(mu_);
    return {blocks_total_, used_, kBlock};
  }
  Status eval(std::span<const BatchEntry> batch, std::vector<const float*>& logits) override {
    if (step_cost_.count() > 0) std::this_thread::sleep_for(step_cost_);
    logits.clear();
    rows_.resize(batch.size() * kVocab);
    std::map<int32_t, int> seqs;
    size_t row = 0;
    for (const auto& e : batch) {
      seqs[e.seq_id]++;
      if (!e.want_logits) continue;
      float* l = &rows_[row * kVocab];
      std::fill(l, l + kVocab, 0.0f);
      l[(e.token + 1) % kVocab] = 1.0f;
      logits.push_back(l);
      ++row;
    }
    max_seqs_in_batch_ = std::max(max_seqs_in_batch_.load(), static_cast<int>(seqs.size()));
    return Status::Ok();
  }
  std::unique_ptr<TokenSampler> make_sampler(const SamplingParams&, std::span<const int32_t>) override {
    struct Argmax : TokenSampler {
      int32_t sample(const float* l) override {
        return static_cast<int32_t>(std::max_element(l, l + kVocab) - l);
      }
    };
    return std::make_unique<Argmax>();
  }
  std::unique_ptr<TextStream> make_text_stream() override {
    struct Ids : TextStream {
      std::string push(int32_t t) override { return std::to_string(t) + " "; }
      std::string flush() override { return {}; }
    };
    return std::make_unique<Ids>();
  }

  int max_seqs_in_batch() const { return max_seqs_in_batch_; }

 private:
  static int64_t blocks_for(int32_t n) { return (n + kBlock - 1) / kBlock; }
  bool grow(int32_t seq, int32_t n) {
    int64_t need = blocks_for(n) - held_[seq];
    if (need <= 0) return true;
    if (used_ + need > blocks_total_) return false;
    used_ += need;
    held_[seq] += need;
    return true;
  }

  mutable std::mutex mu_;
  int64_t blocks_total_;
  int64_t used_ = 0;
  std::map<int32_t, int64_t> held_;
  std::vector<std::vector<int32_t>> prefixes_;
  std::chrono::microseconds step_cost_;
  std::vector<float> rows_;
  std::atomic<int> max_seqs_in_batch_{0};
};

struct Outcome {
  std::string text;
  Completion completion;
};

// Submits a job and returns a future for its outcome.
std::future<Outcome> submit(Scheduler& s, std::vector<int32_t> prompt, int max_tokens,
                            Status* status = nullptr,
                            std::function<void(Job&)> customize = nullptr) {
  auto job = std::make_unique<Job>();
  job->prompt = std::move(prompt);
  job->max_tokens = max_tokens;
  auto out = std::make_shared<Outcome>();
  auto promise = std::make_shared<std::promise<Outcome>>();
  job->on_text = [out](std::string_view t) { out->text += t; };
  job->on_done = [out, promise](const Completion& c) {
    out->completion = c;
    promise->set_value(*out);
  };
  if (customize) customize(*job);
  auto f = promise->get_future();
  Status st = s.submit(std::move(job));
  if (status) *status = st;
  return f;
}

TEST(Scheduler, GeneratesUntilMaxTokens) {
  obs::Registry metrics;
  CountingModel model(64);
  Scheduler s({}, model, metrics);
  auto out = submit(s, {1, 2, 3}, 4).get();
  EXPECT_EQ(out.text, "4 5 6 7 ");
  EXPECT_EQ(out.completion.reason, FinishReason::kLength);
  EXPECT_EQ(out.completion.completion_tokens, 4);
  EXPECT_EQ(out.completion.prompt_tokens, 3);
}

TEST(Scheduler, SetLimitsChangesSequencesAdmittedTogetherAtRunTime) {
  obs::Registry metrics;
  CountingModel model(256, 2ms);
  Scheduler s({.max_seqs = 8, .max_queue = 64, .max_batch_tokens = 64}, model, metrics);
  s.set_limits(1, 16);
  EXPECT_EQ(s.stats().max_seqs, 1);
  EXPECT_EQ(s.stats().max_batch_tokens, 16);
  std::vector<std::future<Outcome>> outs;
  for (int i = 0; i < 4; ++i) outs.push_back(submit(s, {1, 2, 3}, 4));
  for (auto& o : outs) EXPECT_EQ(o.get().text, "4 5 6 7 ");
  EXPECT_EQ(model.max_seqs_in_batch(), 1);
  s.set_limits(8, 64);
  outs.clear();
  for (int i = 0; i < 4; ++i) outs.push_back(submit(s, {1, 2, 3}, 8));
  for (auto& o : outs) o.get();
  EXPECT_GE(model.max_seqs_in_batch(), 2);
}

TEST(Scheduler, AnInjectedStallMakesNoStepsWhileWorkWaits) {
  obs::Registry metrics;
  CountingModel model(64);
  Scheduler s({}, model, metrics);
  submit(s, {1}, 2).get();
  const int64_t steps = s.stats().steps_completed;
  EXPECT_GT(steps, 0);
  s.inject_delay(400ms, 400ms);
  auto out = submit(s, {1}, 2);
  EXPECT_EQ(out.wait_for(150ms), std::future_status::timeout);
  EXPECT_EQ(s.stats().steps_completed, steps);
  EXPECT_GT(s.stats().waiting + s.stats().running, 0);
  EXPECT_EQ(out.get().text, "2 3 ");  // steps resume after the stall
  EXPECT_GT(s.stats().steps_completed, steps);
}

TEST(Scheduler, DropCachedPrefixesRunsOnTheEngineLoop) {
  struct Dropping : CountingModel {
    Dropping() : CountingModel(64) {}
    uint64_t drop_cached_prefixes() override {
      thread = std::this_thread::get_id();
      return 4096;
    }
    std::thread::id thread;
  };
  obs::Registry metrics;
  Dropping model;
  Scheduler s({}, model, metrics);
  EXPECT_EQ(s.drop_cached_prefixes(1s), 4096u);
  EXPECT_NE(model.thread, std::this_thread::get_id());
}

TEST(Scheduler, StopsAtEndOfGenerationToken) {
  obs::Registry metrics;
  CountingModel model(64);
  Scheduler s({}, model, metrics);
  auto out = submit(s, {60}, 10).get();
  EXPECT_EQ(out.text, "61 62 ");
  EXPECT_EQ(out.completion.reason, FinishReason::kStop);
}

TEST(Scheduler, StopSequenceEndsGenerationWithoutLeakingIt) {
  obs::Registry metrics;
  CountingModel model(64);
  Scheduler s({}, model, metrics);
  auto out = submit(s, {1}, 20, nullptr, [](Job& j) { j.stop = {"5 6"}; }).get();
  EXPECT_EQ(out.text, "2 3 4 ");
  EXPECT_EQ(out.completion.reason, FinishReason::kStop);
}

TEST(Scheduler, RunsSequencesTogetherWithSameResultsAsAlone) {
  obs::Registry metrics;
  // Steps that take time, and an idle engine that waits for a batch to gather: the
  // eight requests overlap even when the submitting thread is descheduled (a busy CI
  // machine once ran them one after another).
  CountingModel model(256, 1ms);
  Scheduler s({.max_seqs = 8, .batch_timeout_ms = 200, .max_queue = 64, .max_batch_tokens = 16}, model,
              metrics);
  std::vector<std::future<Outcome>> futures;
  for (int i = 0; i < 8; ++i) futures.push_back(submit(s, {i, i + 1, i + 2, i + 3, i + 4}, 6));
  for (int i = 0; i < 8; ++i) {
    auto out = futures[static_cast<size_t>(i)].get();
    std::string expect;
    for (int t = i + 5; t < i + 11; ++t) expect += std::to_string(t) + " ";
    EXPECT_EQ(out.text, expect);
  }
  EXPECT_GE(model.max_seqs_in_batch(), 2);
}

// Records the order in which jobs end: record(name, setup) customizes a job (setup may
// set its tenant, priority, deadline) and appends `name` when it is done.
struct CompletionOrder {
  std::mutex mu;
  std::vector<std::string> names;
  std::function<void(Job&)> record(std::string name, std::function<void(Job&)> setup) {
    return [this, name, setup](Job& j) {
      setup(j);
      auto done = j.on_done;
      j.on_done = [this, name, done](const Completion& c) {
        {
          std::lock_guard lock(mu);
          names.push_back(name);
        }
        done(c);
      };
    };
  }
};

std::string counting_text(int from, int n) {
  std::string text;
  for (int t = from; t < from + n; ++t) text += std::to_string(t) + " ";
  return text;
}

uint64_t preemptions(obs::Registry& metrics) {
  return metrics.counter("infera_sequences_preempted_total", "").value();
}

TEST(Scheduler, FullKvCachePreemptsAndResumesInsteadOfTruncating) {
  obs::Registry metrics;
  // 6 blocks of 4 = 24 positions; each sequence needs 3 + 12 = 15 (4 blocks): both fit
  // at admission, not both to the end.
  CountingModel model(6, 1ms);
  Scheduler s({.max_seqs = 4, .batch_timeout_ms = 200, .max_queue = 16, .max_batch_tokens = 16}, model,
              metrics);
  auto a = submit(s, {1, 2, 3}, 12);
  auto b = submit(s, {11, 12, 13}, 12);
  const Outcome oa = a.get(), ob = b.get();
  EXPECT_EQ(oa.text, counting_text(4, 12));
  EXPECT_EQ(ob.text, counting_text(14, 12));
  for (const Outcome* o : {&oa, &ob}) {
    EXPECT_EQ(o->completion.reason, FinishReason::kLength);  // max_tokens, nothing else
    EXPECT_EQ(o->completion.completion_tokens, 12);
    EXPECT_TRUE(o->completion.error.empty()) << o->completion.error;
  }
  EXPECT_GE(preemptions(metrics), 1u);
  // Every block given back (the stats are published after the step that ended them).
  for (int i = 0; i < 200 && s.stats().kv.blocks_used != 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(s.stats().kv.blocks_used, 0);
}

TEST(Scheduler, TheLowestPriorityYoungestSequenceIsPreempted) {
  obs::Registry metrics;
  CountingModel model(8, 1ms);  // 32 positions; three sequences of 3 + 10 need 12 blocks
  Scheduler s({.max_seqs = 4, .batch_timeout_ms = 200, .max_queue = 16, .max_batch_tokens = 16}, model,
              metrics);
  CompletionOrder order;
  auto named = [&](std::string name, int priority) {
    return order.record(std::move(name), [priority](Job& j) { j.priority = priority; });
  };
  auto low = submit(s, {1, 2, 3}, 10, nullptr, named("low", 0));
  auto high_old = submit(s, {21, 22, 23}, 10, nullptr, named("high-old", 5));
  auto high_young = submit(s, {41, 42, 43}, 10, nullptr, named("high-young", 5));
  EXPECT_EQ(low.get().text, counting_text(4, 10));
  EXPECT_EQ(high_old.get().text, counting_text(24, 10));
  EXPECT_EQ(high_young.get().text, counting_text(44, 10));
  ASSERT_EQ(order.names.size(), 3u);
  EXPECT_EQ(order.names.back(), "low");  // it gave its blocks up and finished last
  EXPECT_GE(preemptions(metrics), 1u);
}

TEST(Scheduler, ASequenceTheWholeCacheCannotHoldEndsAtItsCapacity) {
  obs::Registry metrics;
  // 12 positions: the prompt's 3 and 9 generated tokens are evaluated; the 10th is
  // sampled from the last position's logits.
  CountingModel model(3);
  Scheduler s({}, model, metrics);
  auto out = submit(s, {1, 2, 3}, 20).get();
  EXPECT_EQ(out.completion.reason, FinishReason::kLength);
  EXPECT_EQ(out.completion.completion_tokens, 10);
  EXPECT_EQ(out.text, counting_text(4, 10));
  EXPECT_EQ(preemptions(metrics), 0u);
}

TEST(Scheduler, TenantsTakeTurnsWithinAPriority) {
  obs::Registry metrics;
  CountingModel model(256, 1ms);
  Scheduler s({.max_seqs = 1, .batch_timeout_ms = 100, .max_queue = 64, .max_batch_tokens = 64}, model, metrics);
  CompletionOrder order;
  auto as = [&](std::string tenant, std::string name) {
    return order.record(std::move(name), [tenant](Job& j) { j.tenant = tenant; });
  };
  std::vector<std::future<Outcome>> outs;
  // A long answer holds the one sequence slot while everything else queues behind it.
  outs.push_back(submit(s, {9}, 40, nullptr, as("key:first", "first")));
  for (int i = 0; i < 200 && s.stats().running == 0; ++i) std::this_thread::sleep_for(1ms);
  for (int i = 0; i < 6; ++i) outs.push_back(submit(s, {1, 2, 3}, 3, nullptr, as("key:flood", "f" + std::to_string(i))));
  outs.push_back(submit(s, {5, 6}, 3, nullptr, as("key:alice", "alice")));
  outs.push_back(submit(s, {7, 8}, 3, nullptr, as("key:bob", "bob")));
  for (auto& o : outs) o.get();
  ASSERT_EQ(order.names.size(), 9u);
  // One sequence at a time: each tenant's first request before anyone's second.
  const auto& names = order.names;
  const auto at = [&](const std::string& name) { return std::find(names.begin(), names.end(), name) - names.begin(); };
  EXPECT_LT(at("alice"), at("f1")) << ::testing::PrintToString(names);
  EXPECT_LT(at("bob"), at("f1")) << ::testing::PrintToString(names);
  EXPECT_LT(at("f0"), at("alice"));  // arrival order among first requests
  EXPECT_LT(at("f1"), at("f2"));     // a tenant's own requests stay in arrival order
}

TEST(Scheduler, TenantQueueCapRefusesOnlyThatTenant) {
  obs::Registry metrics;
  CountingModel model(256, 2ms);
  Scheduler s({.max_seqs = 1, .max_queue = 64, .max_batch_tokens = 64, .tenant_max_queue = 2}, model, metrics);
  std::vector<std::future<Outcome>> outs;
  Status st;
  int refused = 0;
  for (int i = 0; i < 6; ++i) {
    auto f = submit(s, {1, 2, 3}, 20, &st, [](Job& j) { j.tenant = "ip:10.0.0.9"; });
    if (st.ok()) {
      outs.push_back(std::move(f));
    } else {
      ++refused;
      EXPECT_EQ(st.code(), StatusCode::kResourceExhausted);
      EXPECT_NE(st.message().find("ip:10.0.0.9 already has 2 requests waiting"), std::string::npos) << st.message();
    }
  }
  EXPECT_GE(refused, 3);  // at most one admitted and two waiting when the rest arrive
  auto other = submit(s, {4, 5}, 2, &st, [](Job& j) { j.tenant = "ip:10.0.0.10"; });
  EXPECT_TRUE(st.ok()) << st.message();
  for (auto& o : outs) o.get();
  other.get();
  EXPECT_EQ(metrics.counter("infera_tenant_queue_refusals_total", "").value(), static_cast<uint64_t>(refused));
  // Answered requests leave the tenant's count: it may queue again.
  auto again = submit(s, {1}, 1, &st, [](Job& j) { j.tenant = "ip:10.0.0.9"; });
  EXPECT_TRUE(st.ok()) << st.message();
  again.get();
}

TEST(Scheduler, ARequestThatCannotFinishInTimeIsRefusedAtOnce) {
  obs::Registry metrics;
  CountingModel model(256, 3ms);
  Scheduler s({.max_seqs = 1, .max_queue = 64, .max_batch_tokens = 64}, model, metrics);
  // Unmeasured: nothing is refused for its deadline.
  auto warm = submit(s, {1, 2, 3}, 30, nullptr, [](Job& j) { j.deadline = Clock::now() + 1ms; });
  warm.get();
  for (int i = 0; i < 3; ++i) submit(s, {1, 2, 3, 4, 5, 6}, 30).get();  // ~100 ms each: measured
  // A long answer occupies the one slot; another waits behind it.
  auto busy = submit(s, {1}, 60);
  auto queued = submit(s, {2}, 30);
  Status st;
  double retry_after = 0;
  auto job = std::make_unique<Job>();
  job->prompt = {3, 4};
  job->max_tokens = 30;
  job->deadline = Clock::now() + 50ms;  // the queue ahead alone takes longer
  bool done = false;
  job->on_done = [&done](const Completion&) { done = true; };
  const auto before = Clock::now();
  st = s.submit(std::move(job), &retry_after);
  EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << st.message();
  EXPECT_NE(st.message().find("cannot finish in time"), std::string::npos) << st.message();
  EXPECT_LT(Clock::now() - before, 20ms);  // decided at once, not after the deadline
  EXPECT_GT(retry_after, 0.05);            // the queued work, measured
  EXPECT_FALSE(done);                      // refused: no callback
  EXPECT_EQ(metrics.counter("infera_admission_refusals_total", "", {{"reason", "deadline"}}).value(), 1u);
  // The same request with time enough is taken.
  auto patient = submit(s, {3, 4}, 30, &st, [](Job& j) { j.deadline = Clock::now() + 30s; });
  EXPECT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(patient.get().completion.reason, FinishReason::kLength);
  busy.get();
  queued.get();
}

TEST(Scheduler, WaitingRaisesPriorityAndEarlierDeadlinesGoFirst) {
  obs::Registry metrics;
  CountingModel model(256, 1ms);
  Scheduler s({.max_seqs = 1, .batch_timeout_ms = 100, .max_queue = 64, .max_batch_tokens = 64}, model, metrics);
  CompletionOrder order;
  auto named = [&](std::string name, Clock::time_point deadline) {
    return order.record(std::move(name), [deadline](Job& j) { j.deadline = deadline; });
  };
  std::vector<std::future<Outcome>> outs;
  outs.push_back(submit(s, {9}, 30, nullptr, named("first", Clock::time_point::max())));
  for (int i = 0; i < 200 && s.stats().running == 0; ++i) std::this_thread::sleep_for(1ms);
  outs.push_back(submit(s, {1}, 2, nullptr, named("late", Clock::now() + 20s)));
  outs.push_back(submit(s, {2}, 2, nullptr, named("soon", Clock::now() + 10s)));
  outs.push_back(submit(s, {3}, 2, nullptr, named("none", Clock::time_point::max())));
  for (auto& o : outs) o.get();
  EXPECT_EQ(order.names, (std::vector<std::string>{"first", "soon", "late", "none"}));
}

TEST(Scheduler, HigherPriorityIsAdmittedFirst) {
  obs::Registry metrics;
  CountingModel model(256, 200us);
  Scheduler s({.max_seqs = 1, .max_queue = 64, .max_batch_tokens = 64}, model, metrics);
  CompletionOrder order;
  auto record = [&](std::string name, int priority = 0) {
    return order.record(std::move(name), [priority](Job& j) { j.priority = priority; });
  };
  auto busy = submit(s, {1}, 200, nullptr, record("busy"));
  auto deadline = Clock::now() + 5s;
  while (s.stats().running == 0 && Clock::now() < deadline) std::this_thread::sleep_for(100us);
  ASSERT_EQ(s.stats().running, 1);
  auto low = submit(s, {1}, 2, nullptr, record("low", 0));
  auto high = submit(s, {1}, 2, nullptr, record("high", 5));
  busy.get();
  low.get();
  high.get();
  ASSERT_EQ(order.names.size(), 3u) << ::testing::PrintToString(order.names);
  EXPECT_EQ(order.names[1], "high");
  EXPECT_EQ(order.names[2], "low");
}

TEST(Scheduler, DeadlineEndsWithTimeout) {
  obs::Registry metrics;
  CountingModel model(256, 1ms);
  Scheduler s({}, model, metrics);
  auto out = submit(s, {1}, 10000, nullptr, [](Job& j) {
               j.deadline = Clock::now() + 50ms;
             }).get();
  EXPECT_EQ(out.completion.reason, FinishReason::kTimeout);
  EXPECT_GT(out.completion.completion_tokens, 0);
  EXPECT_LT(out.completion.total_ms, 2000);
}

TEST(Scheduler, FullQueueIsRefused) {
  obs::Registry metrics;
  CountingModel model(256, 1ms);
  Scheduler s({.max_seqs = 1, .max_queue = 2, .max_batch_tokens = 64}, model, metrics);
  std::vector<std::future<Outcome>> futures;
  int refused = 0;
  for (int i = 0; i < 6; ++i) {
    Status st;
    auto f = submit(s, {1}, 20, &st);
    if (st.code() == StatusCode::kResourceExhausted) {
      ++refused;
    } else {
      futures.push_back(std::move(f));
    }
  }
  EXPECT_GE(refused, 3);
  for (auto& f : futures) f.get();
}

TEST(Scheduler, CancellationFreesKvBlocksAtOnce) {
  obs::Registry metrics;
  CountingModel model(256, 1ms);
  Scheduler s({}, model, metrics);
  auto gone = std::make_shared<std::atomic<bool>>(false);
  auto f = submit(s, {1, 2, 3, 4, 5, 6, 7, 8, 9}, 100000, nullptr,
                  [gone](Job& j) { j.is_cancelled = [gone] { return gone->load(); }; });
  auto deadline = Clock::now() + 5s;
  while (model.kv_usage().blocks_used == 0 && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  ASSERT_GT(model.kv_usage().blocks_used, 0);
  gone->store(true);
  auto out = f.get();
  EXPECT_EQ(out.completion.reason, FinishReason::kCancelled);
  EXPECT_EQ(model.kv_usage().blocks_used, 0);
}

TEST(Scheduler, SharedPromptPrefixIsReused) {
  obs::Registry metrics;
  CountingModel model(256);
  Scheduler s({}, model, metrics);
  std::vector<int32_t> prompt = {5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
  auto first = submit(s, prompt, 2).get();
  EXPECT_EQ(first.completion.cached_prompt_tokens, 0);
  prompt.push_back(20);
  auto second = submit(s, prompt, 2).get();
  EXPECT_EQ(second.completion.cached_prompt_tokens, 8);
  EXPECT_EQ(second.text, "21 22 ");
  EXPECT_EQ(s.stats().prefix_hits, 1);
}

TEST(Scheduler, PromptLargerThanContextIsInvalid) {
  obs::Registry metrics;
  CountingModel model(256);
  Scheduler s({}, model, metrics);
  Status st;
  submit(s, std::vector<int32_t>(600, 1), 4, &st);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace infera::sched
