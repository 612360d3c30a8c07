#include "core/cpu_topology.h"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <thread>

#include <fmt/format.h>

namespace infera::core {
namespace {

int64_t read_number(const std::string& path) {
  std::ifstream in(path);
  int64_t v = 0;
  if (!(in >> v) || v < 0) return 0;
  return v;
}

std::vector<int> affinity_mask() {
  std::vector<int> ids;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int i = 0; i < CPU_SETSIZE; ++i) {
      if (CPU_ISSET(i, &set)) ids.push_back(i);
    }
  }
  if (ids.empty()) {
    const unsigned n = std::max(1u, std::thread::hardware_concurrency());
    for (unsigned i = 0; i < n; ++i) ids.push_back(static_cast<int>(i));
  }
  return ids;
}

bool parse_int(std::string_view s, int& out) {
  if (s.empty()) return false;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && out >= 0 && out < CPU_SETSIZE;
}

std::string threads_text(int n) { return n == 1 ? "1 thread" : fmt::format("{} threads", n); }

}  // namespace

std::vector<Cpu> read_cpus(const std::string& sysfs_root, const std::vector<int>* allowed) {
  const std::vector<int> ids = allowed != nullptr ? *allowed : affinity_mask();
  std::vector<Cpu> cpus;
  cpus.reserve(ids.size());
  for (int id : ids) {
    const std::string dir = fmt::format("{}/cpu{}", sysfs_root, id);
    int64_t capacity = read_number(dir + "/cpu_capacity");
    if (capacity == 0) capacity = read_number(dir + "/cpufreq/cpuinfo_max_freq");
    cpus.push_back({id, capacity});
  }
  return cpus;
}

Result<std::vector<int>> parse_cpu_list(std::string_view text) {
  std::vector<int> out;
  std::string_view rest = text;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    std::string_view part = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    const size_t dash = part.find('-');
    int lo = 0, hi = 0;
    const bool ok = dash == std::string_view::npos
                        ? parse_int(part, lo) && parse_int(part, hi)
                        : parse_int(part.substr(0, dash), lo) && parse_int(part.substr(dash + 1), hi) && lo <= hi;
    if (!ok) {
      return Status::InvalidArgument(fmt::format(
          "CPU list '{}': '{}' is not a CPU number or a range such as 0-3 (CPUs 0-{})", text, part,
          CPU_SETSIZE - 1));
    }
    for (int i = lo; i <= hi; ++i) out.push_back(i);
  }
  if (out.empty()) return Status::InvalidArgument(fmt::format("CPU list '{}' names no CPU", text));
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string format_cpu_list(const std::vector<int>& cpus) {
  std::string out;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += j == i ? std::to_string(cpus[i]) : fmt::format("{}-{}", cpus[i], cpus[j]);
    i = j + 1;
  }
  return out;
}

Result<CpuPlacement> plan_cpu_placement(const std::vector<Cpu>& cpus, std::string_view affinity,
                                        int threads) {
  if (cpus.empty()) return Status::InvalidArgument("no CPU to run on");
  CpuPlacement p;
  int64_t lo = cpus.front().capacity, hi = lo;
  for (const Cpu& c : cpus) {
    lo = std::min(lo, c.capacity);
    hi = std::max(hi, c.capacity);
  }
  p.heterogeneous = lo > 0 && hi * 5 >= lo * 6;  // largest >= 1.2x smallest
  // By capacity, biggest first; ties in id order.
  std::vector<Cpu> ranked = cpus;
  std::stable_sort(ranked.begin(), ranked.end(),
                   [](const Cpu& a, const Cpu& b) { return a.capacity > b.capacity; });
  for (const Cpu& c : cpus) {
    if (!p.heterogeneous || 2 * c.capacity > lo + hi) p.big.push_back(c.id);
  }
  const int n = static_cast<int>(cpus.size());
  const std::string all = format_cpu_list([&] {
    std::vector<int> ids;
    for (const Cpu& c : cpus) ids.push_back(c.id);
    std::sort(ids.begin(), ids.end());
    return ids;
  }());

  if (affinity == "none") {
    p.threads = threads > 0 ? threads : n;
    p.describe = fmt::format("{}, not pinned (CPUs {})", threads_text(p.threads), all);
    return p;
  }
  if (affinity == "auto" || affinity.empty()) {
    if (!p.heterogeneous) {
      p.threads = threads > 0 ? threads : n;
      p.describe = fmt::format("{}, not pinned (CPUs {}, uniform)", threads_text(p.threads), all);
      return p;
    }
    p.threads = threads > 0 ? threads : static_cast<int>(p.big.size());
    for (const Cpu& c : ranked) p.cpus.push_back(c.id);
    p.cpus.resize(std::min<size_t>(p.cpus.size(), static_cast<size_t>(p.threads)));
    std::vector<int> used = p.cpus;
    std::sort(used.begin(), used.end());
    p.describe = fmt::format("{} pinned to CPUs {} (big cores {} of {}: capacity {} vs {})",
                             threads_text(p.threads), format_cpu_list(used), format_cpu_list(p.big), all, hi, lo);
    return p;
  }
  auto list = parse_cpu_list(affinity);
  if (!list.ok()) return Status::InvalidArgument("--cpu-affinity: " + list.status().message());
  std::vector<int> missing;
  for (int id : *list) {
    if (std::none_of(cpus.begin(), cpus.end(), [id](const Cpu& c) { return c.id == id; })) missing.push_back(id);
  }
  if (!missing.empty()) {
    return Status::InvalidArgument(fmt::format(
        "--cpu-affinity {}: CPU {} not available to this process (it may run on {})", affinity,
        format_cpu_list(missing), all));
  }
  p.cpus = *list;
  p.threads = threads > 0 ? threads : static_cast<int>(p.cpus.size());
  p.describe = fmt::format("{} pinned to CPUs {}{}", threads_text(p.threads), format_cpu_list(p.cpus),
                           p.threads > static_cast<int>(p.cpus.size()) ? " (more threads than CPUs: shared)" : "");
  return p;
}

bool pin_current_thread(int cpu) {
  if (cpu < 0 || cpu >= CPU_SETSIZE) return false;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set) == 0;
}

}  // namespace infera::core
