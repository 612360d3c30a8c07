// Single-flight: concurrent callers asking for the same key share one computation. The
// first caller of a key becomes the leader and computes; the others join its Flight and
// either wait for the final value or subscribe to chunks as the leader publishes them
// (streaming responses: followers replay what was already published, then get each new
// chunk). Thread-safe: any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/status.h"

namespace infera::cache {

// One computation in progress. Chunks are published by the leader only.
class Flight {
 public:
  using ChunkFn = std::function<void(std::string_view chunk)>;
  using DoneFn = std::function<void(const Result<std::string>& value)>;

  void publish_chunk(std::string chunk);
  void finish(Result<std::string> value);  // first call wins; later calls are ignored
  bool done() const;
  // Blocks until finished; kDeadlineExceeded if the deadline passes first.
  Result<std::string> wait(std::chrono::steady_clock::time_point deadline) const;
  Result<std::string> wait() const;
  // Calls on_chunk for every chunk so far, then for each new one, then on_done once, all in
  // order. Callbacks run on the subscribing thread (replay) and then on the leader's thread,
  // so they must be short and must not call back into this Flight (post to your executor).
  void subscribe(ChunkFn on_chunk, DoneFn on_done);

 private:
  struct Subscriber {
    ChunkFn on_chunk;
    DoneFn on_done;
  };
  std::mutex delivery_mu_;  // orders callbacks; taken before mu_
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<std::string> chunks_;
  std::optional<Result<std::string>> result_;
  std::vector<std::shared_ptr<Subscriber>> subscribers_;
};

class SingleFlight;

// A caller's place in a flight. The leader must complete() it; a leader ticket destroyed
// without completing finishes the flight with kCancelled so followers never hang.
class FlightTicket {
 public:
  FlightTicket() = default;
  FlightTicket(SingleFlight* owner, std::string key, std::shared_ptr<Flight> flight, bool leader);
  FlightTicket(FlightTicket&& other) noexcept;
  FlightTicket& operator=(FlightTicket&& other) noexcept;
  ~FlightTicket();

  bool leader() const { return leader_; }
  Flight& flight() const { return *flight_; }
  std::shared_ptr<Flight> shared_flight() const { return flight_; }
  void publish_chunk(std::string chunk);     // REQUIRES: leader()
  void complete(Result<std::string> value);  // REQUIRES: leader(); once

 private:
  void abandon();
  SingleFlight* owner_ = nullptr;
  std::string key_;
  std::shared_ptr<Flight> flight_;
  bool leader_ = false;
};

class SingleFlight {
 public:
  // on_value runs on the leader's thread with every successful value before followers are
  // released and before the key is forgotten (the tiered cache fills its tiers there, so a
  // caller arriving after the flight ends finds the value cached).
  using ValueFn = std::function<void(std::string_view key, const std::string& value)>;
  explicit SingleFlight(ValueFn on_value = nullptr);

  FlightTicket join(std::string_view key);
  // join(); the leader runs compute and completes; followers wait. *merged tells which.
  Result<std::string> run(std::string_view key, const std::function<Result<std::string>()>& compute,
                          bool* merged = nullptr);

  std::uint64_t leaders() const;
  std::uint64_t merges() const;

 private:
  friend class FlightTicket;
  void complete(const std::string& key, const std::shared_ptr<Flight>& flight,
                Result<std::string> value);

  ValueFn on_value_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Flight>> flights_;
  std::uint64_t leaders_ = 0;
  std::uint64_t merges_ = 0;
};

}  // namespace infera::cache
