#include "cache/single_flight.h"

namespace infera::cache {

void Flight::publish_chunk(std::string chunk) {
  std::lock_guard delivery(delivery_mu_);
  std::vector<std::shared_ptr<Subscriber>> subscribers;
  std::string_view published;  // stays valid: chunks_ only grows under delivery_mu_
  {
    std::lock_guard lock(mu_);
    if (result_) return;
    chunks_.push_back(std::move(chunk));
    published = chunks_.back();
    subscribers = subscribers_;
  }
  for (const auto& s : subscribers) s->on_chunk(published);
}

void Flight::finish(Result<std::string> value) {
  std::lock_guard delivery(delivery_mu_);
  std::vector<std::shared_ptr<Subscriber>> subscribers;
  {
    std::lock_guard lock(mu_);
    if (result_) return;
    result_ = std::move(value);
    subscribers.swap(subscribers_);
  }
  cv_.notify_all();
  for (const auto& s : subscribers) s->on_done(*result_);  // result_ is immutable from here
}

bool Flight::done() const {
  std::lock_guard lock(mu_);
  return result_.has_value();
}

Result<std::string> Flight::wait(std::chrono::steady_clock::time_point deadline) const {
  std::unique_lock lock(mu_);
  if (!cv_.wait_until(lock, deadline, [&] { return result_.has_value(); })) {
    return Status::DeadlineExceeded("single-flight: the computation did not finish in time");
  }
  return *result_;
}

Result<std::string> Flight::wait() const {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return result_.has_value(); });
  return *result_;
}

void Flight::subscribe(ChunkFn on_chunk, DoneFn on_done) {
  auto subscriber =
      std::make_shared<Subscriber>(Subscriber{std::move(on_chunk), std::move(on_done)});
  std::lock_guard delivery(delivery_mu_);
  std::vector<std::string_view> replay;  // valid while delivery_mu_ is held, as above
  bool finished = false;
  {
    std::lock_guard lock(mu_);
    replay.assign(chunks_.begin(), chunks_.end());
    finished = result_.has_value();
    if (!finished) subscribers_.push_back(subscriber);
  }
  for (std::string_view chunk : replay) subscriber->on_chunk(chunk);
  if (finished) subscriber->on_done(*result_);
}

FlightTicket::FlightTicket(SingleFlight* owner, std::string key, std::shared_ptr<Flight> flight,
                           bool leader)
    : owner_(owner), key_(std::move(key)), flight_(std::move(flight)), leader_(leader) {}

FlightTicket::FlightTicket(FlightTicket&& other) noexcept
    : owner_(other.owner_),
      key_(std::move(other.key_)),
      flight_(std::move(other.flight_)),
      leader_(other.leader_) {
  other.leader_ = false;
}

FlightTicket& FlightTicket::operator=(FlightTicket&& other) noexcept {
  if (this != &other) {
    abandon();
    owner_ = other.owner_;
    key_ = std::move(other.key_);
    flight_ = std::move(other.flight_);
    leader_ = other.leader_;
    other.leader_ = false;
  }
  return *this;
}

FlightTicket::~FlightTicket() { abandon(); }

void FlightTicket::abandon() {
  if (leader_ && flight_) {
    complete(Status::Cancelled("single-flight: the computing request went away"));
  }
}

void FlightTicket::publish_chunk(std::string chunk) {
  if (leader_) flight_->publish_chunk(std::move(chunk));
}

void FlightTicket::complete(Result<std::string> value) {
  if (!leader_) return;
  leader_ = false;
  owner_->complete(key_, flight_, std::move(value));
}

SingleFlight::SingleFlight(ValueFn on_value) : on_value_(std::move(on_value)) {}

FlightTicket SingleFlight::join(std::string_view key) {
  std::lock_guard lock(mu_);
  auto [it, inserted] = flights_.try_emplace(std::string(key));
  if (inserted) {
    it->second = std::make_shared<Flight>();
    ++leaders_;
  } else {
    ++merges_;
  }
  return FlightTicket(this, std::string(key), it->second, inserted);
}

void SingleFlight::complete(const std::string& key, const std::shared_ptr<Flight>& flight,
                            Result<std::string> value) {
  if (value.ok() && on_value_) on_value_(key, value.value());
  {
    std::lock_guard lock(mu_);
    auto found = flights_.find(key);
    if (found != flights_.end() && found->second == flight) flights_.erase(found);
  }
  flight->finish(std::move(value));
}

Result<std::string> SingleFlight::run(std::string_view key,
                                      const std::function<Result<std::string>()>& compute,
                                      bool* merged) {
  FlightTicket ticket = join(key);
  if (merged) *merged = !ticket.leader();
  if (!ticket.leader()) return ticket.flight().wait();
  Result<std::string> value = compute();
  std::shared_ptr<Flight> flight = ticket.shared_flight();
  ticket.complete(std::move(value));
  return flight->wait();
}

std::uint64_t SingleFlight::leaders() const {
  std::lock_guard lock(mu_);
  return leaders_;
}

std::uint64_t SingleFlight::merges() const {
  std::lock_guard lock(mu_);
  return merges_;
}

}  // namespace infera::cache
