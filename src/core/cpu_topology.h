// Where the engine's compute threads run. On a heterogeneous CPU (big.LITTLE: an
// RK3588's 4 Cortex-A76 + 4 Cortex-A55, Intel's P + E cores) a fork-join forward pass
// runs at the pace of its slowest thread, so threads on little cores halve the speed
// (llama.cpp #7176). The engine defaults to one thread per big core, pinned there.
//
// Capacities come from sysfs: cpuN/cpu_capacity (arm64, scaled to 1024 for the
// biggest), else cpuN/cpufreq/cpuinfo_max_freq. "Big" = capacity above the midpoint of
// the smallest and the largest; a CPU is heterogeneous when its largest capacity is at
// least 1.2x its smallest (turbo bins of a few percent on uniform x86 do not count).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace infera::core {

struct Cpu {
  int id = 0;
  int64_t capacity = 0;  // cpu_capacity, else max frequency in kHz; 0 when unknown
};

// The CPUs this process may run on, with their capacities, read under `sysfs_root`
// (normally /sys/devices/system/cpu). `allowed`: the CPUs to consider (the process's
// affinity mask when null).
std::vector<Cpu> read_cpus(const std::string& sysfs_root = "/sys/devices/system/cpu",
                           const std::vector<int>* allowed = nullptr);

struct CpuPlacement {
  int threads = 1;        // the engine's compute threads
  std::vector<int> cpus;  // thread i runs on cpus[i % size]; empty: not pinned
  bool heterogeneous = false;
  std::vector<int> big;   // the big cores (all CPUs on a uniform one)
  std::string describe;   // one line for logs, `generate --bench` and /api/v1/status
};

// `affinity`: "auto" (heterogeneous: pin to the big cores, then the others by capacity;
// uniform: not pinned), "none" (not pinned), or a list such as "0-3,6" (pinned there;
// every listed CPU must be in `cpus`). `threads` > 0 is the caller's --threads and wins
// over the default (auto: the big cores; a list: its size; none: all CPUs).
Result<CpuPlacement> plan_cpu_placement(const std::vector<Cpu>& cpus, std::string_view affinity,
                                        int threads);

// "0-3,6" -> {0, 1, 2, 3, 6}: sorted, duplicates removed; errors name the bad part.
Result<std::vector<int>> parse_cpu_list(std::string_view text);
std::string format_cpu_list(const std::vector<int>& cpus);  // {0,1,2,3,6} -> "0-3,6"

// Pins the calling thread to one CPU; false when the kernel refuses.
bool pin_current_thread(int cpu);

}  // namespace infera::core
