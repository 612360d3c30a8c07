#include "cache/single_flight.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace infera::cache {
namespace {

using std::chrono::steady_clock;

// Polls cond with a deadline; returns its last value.
template <typename Cond>
bool eventually(Cond cond) {
  const auto deadline = steady_clock::now() + std::chrono::seconds(10);
  while (!cond() && steady_clock::now() < deadline) std::this_thread::yield();
  return cond();
}

TEST(SingleFlight, HundredConcurrentCallersComputeOnce) {
  SingleFlight flights;
  std::atomic<int> computations{0};
  std::atomic<int> merged_callers{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 100; ++i) {
    threads.emplace_back([&] {
      bool merged = false;
      Result<std::string> value = flights.run(
          "same",
          [&]() -> Result<std::string> {
            ++computations;
            // Hold the flight open until every other caller has joined it.
            EXPECT_TRUE(eventually([&] { return flights.merges() == 99; }));
            return std::string("answer");
          },
          &merged);
      EXPECT_TRUE(value.ok());
      if (value.ok()) {
        EXPECT_EQ(*value, "answer");
      }
      if (merged) ++merged_callers;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(computations.load(), 1);
  EXPECT_EQ(merged_callers.load(), 99);
  EXPECT_EQ(flights.leaders(), 1u);
}

TEST(SingleFlight, StreamingFollowerGetsEarlierAndLaterChunksInOrder) {
  SingleFlight flights;
  FlightTicket leader = flights.join("stream");
  ASSERT_TRUE(leader.leader());
  leader.publish_chunk("Hel");
  FlightTicket follower = flights.join("stream");
  ASSERT_FALSE(follower.leader());
  std::string seen;
  std::atomic<bool> done{false};
  follower.flight().subscribe([&](std::string_view chunk) { seen.append(chunk); },
                              [&](const Result<std::string>& v) {
                                EXPECT_TRUE(v.ok());
                                done = true;
                              });
  EXPECT_EQ(seen, "Hel");
  std::thread producer([&] {
    leader.publish_chunk("lo, ");
    leader.publish_chunk("world");
    leader.complete(std::string("Hello, world"));
  });
  producer.join();
  EXPECT_TRUE(done.load());
  EXPECT_EQ(seen, "Hello, world");
  EXPECT_EQ(*follower.flight().wait(), "Hello, world");
}

TEST(SingleFlight, AbandonedLeaderReleasesFollowersWithCancelled) {
  SingleFlight flights;
  std::shared_ptr<Flight> flight;
  {
    FlightTicket leader = flights.join("k");
    flight = flights.join("k").shared_flight();
  }
  Result<std::string> value = flight->wait(steady_clock::now() + std::chrono::seconds(5));
  EXPECT_EQ(value.status().code(), StatusCode::kCancelled);
  EXPECT_TRUE(flights.join("k").leader());  // the key was forgotten
}

TEST(SingleFlight, OnValueRunsBeforeFollowersAreReleased) {
  std::atomic<int> filled{0};
  SingleFlight flights([&](std::string_view key, const std::string& value) {
    EXPECT_EQ(key, "k");
    EXPECT_EQ(value, "v");
    ++filled;
  });
  FlightTicket leader = flights.join("k");
  FlightTicket follower = flights.join("k");
  int filled_when_done = -1;
  follower.flight().subscribe(
      [](std::string_view) {},
      [&](const Result<std::string>&) { filled_when_done = filled.load(); });
  leader.complete(std::string("v"));
  EXPECT_EQ(filled_when_done, 1);
  leader.complete(Status::Internal("ignored: already completed"));
  EXPECT_EQ(*follower.flight().wait(), "v");
}

TEST(SingleFlight, FailuresReachFollowersAndAreNotCached) {
  int filled = 0;
  SingleFlight flights([&](std::string_view, const std::string&) { ++filled; });
  FlightTicket leader = flights.join("k");
  FlightTicket follower = flights.join("k");
  leader.complete(Status::Unavailable("engine overloaded"));
  EXPECT_EQ(follower.flight().wait().status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(filled, 0);
}

}  // namespace
}  // namespace infera::cache
