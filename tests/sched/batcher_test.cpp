// Dynamic batcher behaviour over a runner that computes y = 2x + 1 row by row and
// records every batch it is given. Order-sensitive tests hold the worker inside a
// first "blocker" batch (a gate) while they queue requests, so what the next batches
// contain does not depend on timing. Timing tests use windows of hundreds of
// milliseconds and bounds loose enough for ASan/TSan builds on two busy cores.
#include "sched/batcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

#include "obs/metrics.h"

namespace infera::sched {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Outputs = std::vector<Tensor>;
using Request = DynamicBatcher::Request;

constexpr auto kLongWait = 20s;  // for things that must happen; never reached when they do

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

class Gate {
 public:
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

struct Call {
  int rows = 0;
  std::vector<float> x;  // the first input, as the runner received it
  Clock::time_point at;
};

// The runner under test: records each call, optionally holds the first one at a gate,
// optionally fails, then answers y = 2x + 1 (same width as the first input).
class RecordingRunner {
 public:
  bool hold_first_call = false;
  std::function<Status(size_t call_index)> fail;  // set before the batcher starts

  BatchRunner fn() {
    return [this](const std::vector<Tensor>& inputs, int rows) -> Result<Outputs> {
      size_t index = 0;
      {
        std::lock_guard lock(mu_);
        calls_.push_back(
            {rows, inputs.empty() ? std::vector<float>{} : inputs[0].data, Clock::now()});
        index = calls_.size() - 1;
        changed_.notify_all();
      }
      if (hold_first_call && index == 0) gate.wait();
      if (fail) {
        Status s = fail(index);
        if (!s.ok()) return s;
      }
      Tensor y{"y", inputs[0].width, {}};
      for (float v : inputs[0].data) y.data.push_back(2 * v + 1);
      return Outputs{std::move(y)};
    };
  }

  bool wait_for_calls(size_t n) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, kLongWait, [&] { return calls_.size() >= n; });
  }
  std::vector<Call> calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }
  std::vector<int> rows() const {
    std::vector<int> out;
    for (const Call& c : calls()) out.push_back(c.rows);
    return out;
  }

  Gate gate;

 private:
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::vector<Call> calls_;
};

BatcherConfig config(int max_rows, std::chrono::microseconds delay, std::vector<int> preferred = {},
                     size_t max_queue = 0) {
  BatcherConfig c;
  c.model = "test";
  c.max_batch_size = max_rows;
  c.max_queue_delay = delay;
  c.preferred_batch_sizes = std::move(preferred);
  c.max_queue_size = max_queue;
  return c;
}

// `rows` rows of input "x" (width 1) holding first, first + 1, ...
Request rows_from(int rows, float first, int priority = 1) {
  Tensor x{"x", 1, {}};
  for (int r = 0; r < rows; ++r) x.data.push_back(first + static_cast<float>(r));
  Request req;
  req.inputs.push_back(std::move(x));
  req.rows = rows;
  req.priority = priority;
  return req;
}

std::future<Result<Outputs>> submit(DynamicBatcher& batcher, Request request) {
  auto promise = std::make_shared<std::promise<Result<Outputs>>>();
  auto future = promise->get_future();
  batcher.submit(std::move(request),
                 [promise](Result<Outputs> out) { promise->set_value(std::move(out)); });
  return future;
}

bool ready(std::future<Result<Outputs>>& f, Clock::duration within = kLongWait) {
  return f.wait_for(within) == std::future_status::ready;
}

// The y values a request of `rows` rows starting at `first` must get back.
std::vector<float> expected_y(int rows, float first) {
  std::vector<float> y;
  for (int r = 0; r < rows; ++r) y.push_back(2 * (first + static_cast<float>(r)) + 1);
  return y;
}

void expect_own_rows(std::future<Result<Outputs>>& f, int rows, float first) {
  ASSERT_TRUE(ready(f));
  Result<Outputs> out = f.get();
  ASSERT_TRUE(out.ok()) << out.status().message();
  ASSERT_EQ(out->size(), 1u);
  EXPECT_EQ((*out)[0].name, "y");
  EXPECT_EQ((*out)[0].data, expected_y(rows, first));
}

const std::vector<TensorSpec> kX = {{"x", 1}};

TEST(DynamicBatcher, LoneRequestWaitsTheQueueDelayFromItsArrival) {
  RecordingRunner runner;
  DynamicBatcher batcher(config(8, 300ms), kX, runner.fn(), nullptr);
  const Clock::time_point before = Clock::now();
  auto f = submit(batcher, rows_from(1, 5));
  ASSERT_TRUE(runner.wait_for_calls(1));
  const double waited_ms = ms(runner.calls()[0].at - before);
  EXPECT_GE(waited_ms, 300);
  EXPECT_LT(waited_ms, 300 + 3000);
  expect_own_rows(f, 1, 5);
}

TEST(DynamicBatcher, LaterArrivalDoesNotExtendTheWindowOfTheFirst) {
  RecordingRunner runner;
  DynamicBatcher batcher(config(8, 1000ms), kX, runner.fn(), nullptr);
  const Clock::time_point first_at = Clock::now();
  auto a = submit(batcher, rows_from(1, 1));
  std::this_thread::sleep_for(400ms);
  const Clock::time_point second_at = Clock::now();
  auto b = submit(batcher, rows_from(1, 2));
  ASSERT_TRUE(runner.wait_for_calls(1));
  const Call call = runner.calls()[0];
  EXPECT_EQ(call.rows, 2) << "both requests belong in the first window";
  EXPECT_GE(ms(call.at - first_at), 1000);
  // A window restarted by the newcomer would end 1000 ms after its arrival.
  EXPECT_LT(ms(call.at - second_at), 1000);
  expect_own_rows(a, 1, 1);
  expect_own_rows(b, 1, 2);
}

TEST(DynamicBatcher, ReachingTheLargestPreferredSizeDispatchesAtOnce) {
  RecordingRunner runner;
  DynamicBatcher batcher(config(16, 60s, {4, 8}), kX, runner.fn(), nullptr);
  std::vector<std::future<Result<Outputs>>> futures;
  for (int i = 0; i < 4; ++i) futures.push_back(submit(batcher, rows_from(1, 10.0f * i)));
  std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(runner.calls().empty()) << "4 rows is not the largest preferred size";
  const Clock::time_point filled_at = Clock::now();
  for (int i = 4; i < 8; ++i) futures.push_back(submit(batcher, rows_from(1, 10.0f * i)));
  ASSERT_TRUE(runner.wait_for_calls(1));
  EXPECT_LT(ms(runner.calls()[0].at - filled_at), 10000) << "must not wait for the 60 s delay";
  EXPECT_EQ(runner.rows(), std::vector<int>{8});
  for (int i = 0; i < 8; ++i) expect_own_rows(futures[i], 1, 10.0f * i);
}

TEST(DynamicBatcher, OnDelayExpiryAPreferredSizeIsFormedWhenPossible) {
  RecordingRunner runner;
  DynamicBatcher batcher(config(8, 500ms, {2, 6}), kX, runner.fn(), nullptr);
  auto a = submit(batcher, rows_from(1, 10));
  auto b = submit(batcher, rows_from(1, 20));
  auto c = submit(batcher, rows_from(1, 30));
  ASSERT_TRUE(runner.wait_for_calls(2));
  EXPECT_EQ(runner.rows(), (std::vector<int>{2, 1}));
  EXPECT_EQ(runner.calls()[0].x, (std::vector<float>{10, 20}));
  expect_own_rows(a, 1, 10);
  expect_own_rows(b, 1, 20);
  expect_own_rows(c, 1, 30);
}

TEST(DynamicBatcher, MaxBatchSizeCountsRowsNotRequests) {
  RecordingRunner runner;
  runner.hold_first_call = true;
  DynamicBatcher batcher(config(8, 0us), kX, runner.fn(), nullptr);
  auto blocker = submit(batcher, rows_from(1, 0));
  ASSERT_TRUE(runner.wait_for_calls(1));
  auto a = submit(batcher, rows_from(3, 100));
  auto b = submit(batcher, rows_from(3, 200));
  auto c = submit(batcher, rows_from(3, 300));
  EXPECT_EQ(batcher.stats().queued, 3u);
  runner.gate.open();
  ASSERT_TRUE(runner.wait_for_calls(3));
  EXPECT_EQ(runner.rows(), (std::vector<int>{1, 6, 3}));
  EXPECT_EQ(runner.calls()[1].x, (std::vector<float>{100, 101, 102, 200, 201, 202}));
  expect_own_rows(a, 3, 100);
  expect_own_rows(b, 3, 200);
  expect_own_rows(c, 3, 300);
  expect_own_rows(blocker, 1, 0);

  auto too_big = submit(batcher, rows_from(9, 0));
  ASSERT_TRUE(ready(too_big, 0s)) << "refused inside submit";
  Result<Outputs> refused = too_big.get();
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("9 rows"), std::string::npos);
  auto exactly_max = submit(batcher, rows_from(8, 0));
  expect_own_rows(exactly_max, 8, 0);
}

TEST(DynamicBatcher, FullQueueRefusesAtOnceWithResourceExhausted) {
  RecordingRunner runner;
  runner.hold_first_call = true;
  obs::Registry registry;
  DynamicBatcher batcher(config(4, 0us, {}, 2), kX, runner.fn(), &registry);
  auto blocker = submit(batcher, rows_from(1, 0));
  ASSERT_TRUE(runner.wait_for_calls(1));
  auto a = submit(batcher, rows_from(1, 1));
  auto b = submit(batcher, rows_from(1, 2));
  auto c = submit(batcher, rows_from(1, 3));
  ASSERT_TRUE(ready(c, 0s)) << "a full queue answers inside submit";
  Result<Outputs> refused = c.get();
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(batcher.stats().rejected, 1u);
  EXPECT_EQ(batcher.stats().queued, 2u);
  EXPECT_EQ(registry
                .counter("infera_batcher_requests_total", "",
                         {{"model", "test"}, {"outcome", "queue_full"}})
                .value(),
            1u);
  runner.gate.open();
  expect_own_rows(a, 1, 1);
  expect_own_rows(b, 1, 2);
  expect_own_rows(blocker, 1, 0);
}

TEST(DynamicBatcher, RequestExpiringWhileIdleIsAnsweredAtItsDeadlineUnrun) {
  RecordingRunner runner;
  DynamicBatcher batcher(config(8, 60s), kX, runner.fn(), nullptr);
  const Clock::time_point submitted = Clock::now();
  Request req = rows_from(1, 7);
  req.deadline = submitted + 200ms;
  auto f = submit(batcher, std::move(req));
  ASSERT_TRUE(ready(f));
  const double answered_ms = ms(Clock::now() - submitted);
  EXPECT_GE(answered_ms, 200);
  EXPECT_LT(answered_ms, 10000) << "answered at its deadline, not when a batch forms";
  Result<Outputs> out = f.get();
  EXPECT_EQ(out.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(out.status().message().find("expired in queue after"), std::string::npos)
      << out.status().message();
  EXPECT_TRUE(runner.calls().empty());
  EXPECT_EQ(batcher.stats().expired, 1u);
}

TEST(DynamicBatcher, RequestExpiringBehindABusyRunnerIsNeverRun) {
  RecordingRunner runner;
  runner.hold_first_call = true;
  DynamicBatcher batcher(config(8, 0us), kX, runner.fn(), nullptr);
  auto blocker = submit(batcher, rows_from(1, 0));
  ASSERT_TRUE(runner.wait_for_calls(1));
  Request late = rows_from(1, 7);
  late.deadline = Clock::now() + 100ms;
  auto expired = submit(batcher, std::move(late));
  auto kept = submit(batcher, rows_from(1, 9));
  std::this_thread::sleep_for(200ms);  // let the deadline pass while the runner is held
  runner.gate.open();
  ASSERT_TRUE(ready(expired));
  EXPECT_EQ(expired.get().status().code(), StatusCode::kDeadlineExceeded);
  expect_own_rows(kept, 1, 9);
  for (const Call& call : runner.calls()) {
    EXPECT_EQ(std::count(call.x.begin(), call.x.end(), 7.0f), 0) << "the expired request ran";
  }
}

TEST(DynamicBatcher, HigherPriorityRequestsAreTakenFirstThenFifo) {
  RecordingRunner runner;
  runner.hold_first_call = true;
  DynamicBatcher batcher(config(2, 0us), kX, runner.fn(), nullptr);
  auto blocker = submit(batcher, rows_from(1, 0));
  ASSERT_TRUE(runner.wait_for_calls(1));
  auto low1 = submit(batcher, rows_from(1, 21, /*priority=*/2));
  auto low2 = submit(batcher, rows_from(1, 22, /*priority=*/2));
  auto mid = submit(batcher, rows_from(1, 11, /*priority=*/1));
  auto high = submit(batcher, rows_from(1, 1, /*priority=*/0));
  runner.gate.open();
  ASSERT_TRUE(runner.wait_for_calls(3));
  EXPECT_EQ(runner.calls()[1].x, (std::vector<float>{1, 11}));
  EXPECT_EQ(runner.calls()[2].x, (std::vector<float>{21, 22}));
  expect_own_rows(high, 1, 1);
  expect_own_rows(mid, 1, 11);
  expect_own_rows(low1, 1, 21);
  expect_own_rows(low2, 1, 22);
}

TEST(DynamicBatcher, ResultsReturnToTheirOwnCallersUnder64ConcurrentThreads) {
  constexpr int kThreads = 64;
  constexpr int kPerThread = 20;
  constexpr int kWidth = 3;
  std::atomic<int> largest_batch{0};
  BatchRunner run = [&](const std::vector<Tensor>& in, int rows) -> Result<Outputs> {
    int seen = largest_batch.load();
    while (rows > seen && !largest_batch.compare_exchange_weak(seen, rows)) {
    }
    Tensor y{"y", kWidth, {}};
    Tensor sum{"sum", 1, {}};
    for (int r = 0; r < rows; ++r) {
      float s = 0;
      for (int k = 0; k < kWidth; ++k) {
        float v = in[0].data[static_cast<size_t>(r * kWidth + k)];
        y.data.push_back(2 * v + 1);
        s += v;
      }
      sum.data.push_back(s);
    }
    return Outputs{std::move(y), std::move(sum)};
  };
  DynamicBatcher batcher(config(16, 2ms, {8, 16}), {{"x", kWidth}}, run, nullptr);

  std::atomic<int> wrong{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < kThreads; ++t) {
    callers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const int rows = 1 + (t + i) % 4;
        Request req;
        req.rows = rows;
        Tensor x{"x", kWidth, {}};
        for (int e = 0; e < rows * kWidth; ++e) x.data.push_back(t * 100000.0f + i * 100 + e);
        req.inputs.push_back(x);
        auto f = submit(batcher, std::move(req));
        if (!ready(f)) {
          ++wrong;
          continue;
        }
        Result<Outputs> out = f.get();
        bool right = out.ok() && out->size() == 2 && (*out)[0].data.size() == x.data.size() &&
                     (*out)[1].data.size() == static_cast<size_t>(rows);
        for (size_t e = 0; right && e < x.data.size(); ++e) {
          right = (*out)[0].data[e] == 2 * x.data[e] + 1;
        }
        for (int r = 0; right && r < rows; ++r) {
          const float* row = &x.data[static_cast<size_t>(r * kWidth)];
          right = (*out)[1].data[r] == row[0] + row[1] + row[2];
        }
        if (!right) ++wrong;
      }
    });
  }
  for (auto& c : callers) c.join();
  EXPECT_EQ(wrong.load(), 0);
  const DynamicBatcher::Stats stats = batcher.stats();
  EXPECT_EQ(stats.completed, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_LT(stats.batches, stats.completed) << "requests were never batched together";
  EXPECT_LE(largest_batch.load(), 16);
}

TEST(DynamicBatcher, RunnerErrorReachesEveryRequestOfItsBatch) {
  RecordingRunner runner;
  runner.hold_first_call = true;
  runner.fail = [](size_t call) {
    return call == 0 ? Status::Ok() : Status::Unavailable("device lost");
  };
  DynamicBatcher batcher(config(8, 0us), kX, runner.fn(), nullptr);
  auto blocker = submit(batcher, rows_from(1, 0));
  ASSERT_TRUE(runner.wait_for_calls(1));
  std::vector<std::future<Result<Outputs>>> failing;
  for (int i = 1; i <= 3; ++i) failing.push_back(submit(batcher, rows_from(i, 10.0f * i)));
  runner.gate.open();
  expect_own_rows(blocker, 1, 0);
  for (auto& f : failing) {
    ASSERT_TRUE(ready(f));
    Result<Outputs> out = f.get();
    EXPECT_EQ(out.status().code(), StatusCode::kUnavailable);
    EXPECT_EQ(out.status().message(), "device lost");
  }
  EXPECT_EQ(runner.rows(), (std::vector<int>{1, 6}));
  EXPECT_EQ(batcher.stats().failed, 3u);
  EXPECT_EQ(batcher.stats().completed, 1u);
}

TEST(DynamicBatcher, MalformedRunnerOutputIsAnInternalErrorNamingTheTensor) {
  BatchRunner run = [](const std::vector<Tensor>&, int rows) -> Result<Outputs> {
    return Outputs{Tensor{"scores", 2, std::vector<float>(static_cast<size_t>(rows), 0.0f)}};
  };
  DynamicBatcher batcher(config(8, 0us), kX, run, nullptr);
  auto f = submit(batcher, rows_from(2, 0));
  ASSERT_TRUE(ready(f));
  Result<Outputs> out = f.get();
  EXPECT_EQ(out.status().code(), StatusCode::kInternal);
  EXPECT_NE(out.status().message().find("'scores'"), std::string::npos) << out.status().message();
}

// Records the rows of every warm-up call and checks its inputs are zeros of the
// declared widths.
struct WarmUpRecorder {
  std::vector<int> rows;
  bool inputs_right = true;
  std::function<Status(int)> fail = [](int) { return Status::Ok(); };

  BatchRunner fn() {
    return [this](const std::vector<Tensor>& in, int n) -> Result<Outputs> {
      rows.push_back(n);
      inputs_right = inputs_right && in.size() == 2 && in[0].name == "a" && in[1].name == "b" &&
                     in[0].data == std::vector<float>(static_cast<size_t>(2 * n), 0.0f) &&
                     in[1].data == std::vector<float>(static_cast<size_t>(3 * n), 0.0f);
      Status s = fail(n);
      if (!s.ok()) return s;
      return Outputs{Tensor{"y", 1, std::vector<float>(static_cast<size_t>(n), 0.0f)}};
    };
  }
};

const std::vector<TensorSpec> kAB = {{"a", 2}, {"b", 3}};

TEST(DynamicBatcher, WarmUpRunsEveryBatchSizeWithZeroInputs) {
  WarmUpRecorder recorder;
  DynamicBatcher batcher(config(5, 0us), kAB, recorder.fn(), nullptr);
  Status s = batcher.warm_up();
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(recorder.rows, (std::vector<int>{1, 2, 3, 4, 5}));
  EXPECT_TRUE(recorder.inputs_right);
  EXPECT_EQ(batcher.stats().batches, 0u) << "warm-up is not traffic";
}

TEST(DynamicBatcher, WarmUpOfALargeMaxCoversPreferredSizesPowersOfTwoAndTheMax) {
  WarmUpRecorder recorder;
  DynamicBatcher batcher(config(100, 0us, {24, 48}), kAB, recorder.fn(), nullptr);
  ASSERT_TRUE(batcher.warm_up().ok());
  EXPECT_EQ(recorder.rows, (std::vector<int>{1, 2, 4, 8, 16, 24, 32, 48, 64, 100}));
  EXPECT_TRUE(recorder.inputs_right);
}

TEST(DynamicBatcher, WarmUpFailureNamesTheBatchSize) {
  WarmUpRecorder recorder;
  recorder.fail = [](int n) { return n == 3 ? Status::Internal("out of memory") : Status::Ok(); };
  DynamicBatcher batcher(config(5, 0us), kAB, recorder.fn(), nullptr);
  Status s = batcher.warm_up();
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_NE(s.message().find("3 rows: out of memory"), std::string::npos) << s.message();
  EXPECT_EQ(recorder.rows, (std::vector<int>{1, 2, 3}));
}

TEST(DynamicBatcher, DestructorAnswersQueuedRequestsAndReturns) {
  RecordingRunner runner;
  std::vector<std::future<Result<Outputs>>> futures;
  auto batcher = std::make_unique<DynamicBatcher>(config(8, 60s), kX, runner.fn(), nullptr);
  for (int i = 0; i < 3; ++i) futures.push_back(submit(*batcher, rows_from(1, i)));
  const Clock::time_point before = Clock::now();
  batcher.reset();
  EXPECT_LT(ms(Clock::now() - before), 10000);
  for (auto& f : futures) {
    ASSERT_TRUE(ready(f, 0s));
    EXPECT_EQ(f.get().status().code(), StatusCode::kUnavailable);
  }
  EXPECT_TRUE(runner.calls().empty());
}

TEST(DynamicBatcher, InvalidRequestsAreRefusedOnTheCallersThreadNamingTheTensor) {
  WarmUpRecorder recorder;
  DynamicBatcher batcher(config(4, 0us), kAB, recorder.fn(), nullptr);
  auto make = [](int rows, std::vector<Tensor> inputs, int priority = 1) {
    Request r;
    r.rows = rows;
    r.inputs = std::move(inputs);
    r.priority = priority;
    return r;
  };
  auto zeros = [](const char* name, int64_t width, size_t n) {
    return Tensor{name, width, std::vector<float>(n, 0.0f)};
  };
  struct Case {
    Request request;
    std::string mentions;
  };
  std::vector<Case> cases;
  cases.push_back({make(0, {zeros("a", 2, 0), zeros("b", 3, 0)}), "0 rows"});
  cases.push_back({make(1, {zeros("a", 3, 3), zeros("b", 3, 3)}), "'a' has width 3"});
  cases.push_back({make(2, {zeros("a", 2, 4), zeros("b", 3, 5)}), "'b' has 5 values"});
  cases.push_back({make(1, {zeros("a", 2, 2)}), "'b' is missing"});
  cases.push_back(
      {make(1, {zeros("a", 2, 2), zeros("b", 3, 3), zeros("c", 1, 1)}), "'c' is not declared"});
  cases.push_back({make(1, {zeros("a", 2, 2), zeros("b", 3, 3), zeros("a", 2, 2)}),
                   "'a' is given more than once"});
  cases.push_back({make(1, {zeros("a", 2, 2), zeros("b", 3, 3)}, -1), "priority -1"});
  for (Case& c : cases) {
    std::thread::id answered_on;
    std::optional<Status> status;
    batcher.submit(std::move(c.request), [&](Result<Outputs> out) {
      answered_on = std::this_thread::get_id();
      status = out.status();
    });
    ASSERT_TRUE(status.has_value()) << c.mentions << ": not answered inside submit";
    EXPECT_EQ(answered_on, std::this_thread::get_id());
    EXPECT_EQ(status->code(), StatusCode::kInvalidArgument) << c.mentions;
    EXPECT_NE(status->message().find(c.mentions), std::string::npos) << status->message();
  }
  EXPECT_TRUE(recorder.rows.empty());

  // Declared inputs in another order are accepted and reach the runner in declared order.
  auto f = submit(batcher, make(1, {zeros("b", 3, 3), zeros("a", 2, 2)}));
  ASSERT_TRUE(ready(f));
  EXPECT_TRUE(f.get().ok());
  EXPECT_TRUE(recorder.inputs_right);
}

TEST(DynamicBatcher, MetricsRecordBatchSizesQueueWaitAndOutcomes) {
  RecordingRunner runner;
  runner.hold_first_call = true;
  obs::Registry registry;
  DynamicBatcher batcher(config(8, 0us), kX, runner.fn(), &registry);
  auto blocker = submit(batcher, rows_from(1, 0));
  ASSERT_TRUE(runner.wait_for_calls(1));
  auto a = submit(batcher, rows_from(2, 1));
  auto b = submit(batcher, rows_from(3, 1));
  Request late = rows_from(1, 7);
  late.deadline = Clock::now() + 50ms;
  auto expired = submit(batcher, std::move(late));
  std::this_thread::sleep_for(100ms);
  runner.gate.open();
  expect_own_rows(a, 2, 1);
  expect_own_rows(b, 3, 1);
  ASSERT_TRUE(ready(expired));

  auto outcome = [&](const char* name) {
    return registry
        .counter("infera_batcher_requests_total", "", {{"model", "test"}, {"outcome", name}})
        .value();
  };
  EXPECT_EQ(outcome("ok"), 3u);
  EXPECT_EQ(outcome("expired"), 1u);
  EXPECT_EQ(outcome("error"), 0u);
  const obs::Labels model = {{"model", "test"}};
  auto rows = registry.histogram("infera_batcher_batch_rows", "", model).snapshot();
  EXPECT_EQ(rows.count, 2u);
  EXPECT_DOUBLE_EQ(rows.sum, 1 + 5);
  auto requests = registry.histogram("infera_batcher_batch_requests", "", model).snapshot();
  EXPECT_DOUBLE_EQ(requests.sum, 1 + 2);
  EXPECT_EQ(registry.histogram("infera_batcher_queue_seconds", "", model).snapshot().count, 3u);
  const DynamicBatcher::Stats stats = batcher.stats();
  EXPECT_EQ(stats.batches, 2u);
  EXPECT_EQ(stats.rows, 6u);
  EXPECT_EQ(stats.queued, 0u);
}

TEST(DynamicBatcher, CheckRefusesConfigsOutOfRange) {
  EXPECT_TRUE(DynamicBatcher::check(config(8, 1ms, {2, 8}), kAB).ok());
  EXPECT_FALSE(DynamicBatcher::check(config(0, 1ms), kAB).ok());
  EXPECT_FALSE(DynamicBatcher::check(config(8, 1ms, {16}), kAB).ok());
  EXPECT_FALSE(DynamicBatcher::check(config(8, 1ms, {4, 2}), kAB).ok());
  EXPECT_FALSE(DynamicBatcher::check(config(8, -1ms), kAB).ok());
  EXPECT_FALSE(DynamicBatcher::check(config(8, 1ms), {{"a", 2}, {"a", 1}}).ok());
  EXPECT_FALSE(DynamicBatcher::check(config(8, 1ms), {{"a", 0}}).ok());
}

}  // namespace
}  // namespace infera::sched
