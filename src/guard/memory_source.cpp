// MemoryReading and the /proc + cgroup v2 source (proc(5), Documentation/admin-guide/
// cgroup-v2.rst in the kernel tree).
#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>

#include "guard/guard.h"

namespace infera::guard {
namespace {

constexpr uint64_t kBytesPerKb = 1024;

// The whole of a small text file; nullopt when it cannot be opened (a missing /proc file
// in a sandbox, a cgroup file the controller does not provide).
std::optional<std::string> read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return std::move(text).str();
}

std::optional<uint64_t> parse_u64(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data()) return std::nullopt;
  return value;
}

// "Key:   123 kB" lines as in /proc/meminfo and /proc/self/status, in bytes.
std::optional<uint64_t> find_kb_field(std::string_view text, std::string_view key) {
  size_t line_start = 0;
  while (line_start < text.size()) {
    size_t line_end = text.find('\n', line_start);
    if (line_end == std::string_view::npos) line_end = text.size();
    std::string_view line = text.substr(line_start, line_end - line_start);
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ':') {
      const auto kb = parse_u64(line.substr(key.size() + 1));
      if (kb) return *kb * kBytesPerKb;
      return std::nullopt;
    }
    line_start = line_end + 1;
  }
  return std::nullopt;
}

// The cgroup v2 path of this process ("0::/system.slice/infera.service"), from
// /proc/self/cgroup; nullopt under a v1-only hierarchy.
std::optional<std::string> own_cgroup_v2_path(const std::string& proc_dir) {
  const auto text = read_text(proc_dir + "/self/cgroup");
  if (!text) return std::nullopt;
  std::istringstream lines(*text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  }
  return std::nullopt;
}

// A cgroup file holding one number; "max" (no limit) and anything unparsable give nullopt.
std::optional<uint64_t> read_cgroup_number(const std::string& path) {
  const auto text = read_text(path);
  if (!text) return std::nullopt;
  return parse_u64(*text);
}

class SystemMemorySource final : public MemorySource {
 public:
  explicit SystemMemorySource(SystemMemoryPaths paths) : paths_(std::move(paths)) {}

  MemoryReading read() override {
    MemoryReading reading;
    if (const auto status = read_text(paths_.proc_dir + "/self/status")) {
      reading.process_rss_bytes = find_kb_field(*status, "VmRSS").value_or(0);
    }
    if (const auto meminfo = read_text(paths_.proc_dir + "/meminfo")) {
      const auto total = find_kb_field(*meminfo, "MemTotal");
      // Kernels before 3.14 lack MemAvailable; MemFree underestimates what is available,
      // which errs towards cleaning up early rather than late.
      auto available = find_kb_field(*meminfo, "MemAvailable");
      if (!available) available = find_kb_field(*meminfo, "MemFree");
      if (total && available) {
        reading.system_total_bytes = *total;
        reading.system_available_bytes = std::min(*available, *total);
      }
    }
    // Resolved on every read: it is one small file, and a process moved between cgroups
    // (systemd slices, a container runtime) is then measured where it now is.
    if (const auto cgroup = own_cgroup_v2_path(paths_.proc_dir)) {
      const std::string dir = *cgroup == "/" ? paths_.cgroup_dir : paths_.cgroup_dir + *cgroup;
      reading.cgroup_current_bytes = read_cgroup_number(dir + "/memory.current");
      if (reading.cgroup_current_bytes) {
        reading.cgroup_max_bytes = read_cgroup_number(dir + "/memory.max");
      }
    }
    return reading;
  }

 private:
  SystemMemoryPaths paths_;
};

}  // namespace

double MemoryReading::used_fraction() const {
  double fraction = 0;
  if (system_total_bytes > 0) {
    fraction =
        1.0 - static_cast<double>(system_available_bytes) / static_cast<double>(system_total_bytes);
  }
  if (cgroup_current_bytes && cgroup_max_bytes && *cgroup_max_bytes > 0) {
    fraction = std::max(fraction, static_cast<double>(*cgroup_current_bytes) /
                                      static_cast<double>(*cgroup_max_bytes));
  }
  return fraction;
}

MemorySource::~MemorySource() = default;

std::unique_ptr<MemorySource> make_system_memory_source(SystemMemoryPaths paths) {
  return std::make_unique<SystemMemorySource>(std::move(paths));
}

}  // namespace infera::guard
