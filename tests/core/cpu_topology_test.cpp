#include "core/cpu_topology.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace infera::core {
namespace {

namespace fs = std::filesystem;

// A fake /sys/devices/system/cpu: for CPU i, cpu_capacity and/or cpufreq/cpuinfo_max_freq.
class FakeSysfs {
 public:
  explicit FakeSysfs(const std::string& name)
      : root_(fs::temp_directory_path() / ("infera-cpu-" + name + "-" + std::to_string(::getpid()))) {
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  ~FakeSysfs() { fs::remove_all(root_); }
  void capacity(int cpu, int64_t value) { write(fs::path("cpu" + std::to_string(cpu)) / "cpu_capacity", value); }
  void max_freq(int cpu, int64_t khz) {
    write(fs::path("cpu" + std::to_string(cpu)) / "cpufreq" / "cpuinfo_max_freq", khz);
  }
  std::string root() const { return root_.string(); }

 private:
  void write(const fs::path& rel, int64_t value) {
    fs::create_directories((root_ / rel).parent_path());
    std::ofstream(root_ / rel) << value << "\n";
  }
  fs::path root_;
};

std::vector<int> range(int lo, int hi) {
  std::vector<int> v;
  for (int i = lo; i <= hi; ++i) v.push_back(i);
  return v;
}

// RK3588 (Orange Pi 5): CPUs 0-3 Cortex-A55 (capacity 414), 4-7 Cortex-A76 (1024), each
// also with its cluster's max frequency, which cpu_capacity must win over.
std::vector<Cpu> rk3588(FakeSysfs& fs) {
  for (int i = 0; i < 8; ++i) {
    fs.capacity(i, i < 4 ? 414 : 1024);
    fs.max_freq(i, i < 4 ? 1800000 : 2400000);
  }
  const std::vector<int> all = range(0, 7);
  return read_cpus(fs.root(), &all);
}

TEST(CpuTopology, ReadsCapacitiesAndPrefersCpuCapacityOverFrequency) {
  FakeSysfs fs("rk");
  const std::vector<Cpu> cpus = rk3588(fs);
  ASSERT_EQ(cpus.size(), 8u);
  EXPECT_EQ(cpus[0].id, 0);
  EXPECT_EQ(cpus[0].capacity, 414);
  EXPECT_EQ(cpus[7].capacity, 1024);
}

TEST(CpuTopology, BigLittleDefaultsToTheBigCoresPinned) {
  FakeSysfs fs("rk-auto");
  auto p = plan_cpu_placement(rk3588(fs), "auto", 0);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_TRUE(p->heterogeneous);
  EXPECT_EQ(p->threads, 4);
  EXPECT_EQ(p->big, range(4, 7));
  EXPECT_EQ(p->cpus, range(4, 7));
  EXPECT_NE(p->describe.find("pinned to CPUs 4-7"), std::string::npos) << p->describe;
}

TEST(CpuTopology, ThreadsWinAndFillBigCoresFirst) {
  FakeSysfs fs("rk-threads");
  const std::vector<Cpu> cpus = rk3588(fs);
  auto two = plan_cpu_placement(cpus, "auto", 2);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->threads, 2);
  EXPECT_EQ(two->cpus, (std::vector<int>{4, 5}));
  auto six = plan_cpu_placement(cpus, "auto", 6);
  ASSERT_TRUE(six.ok());
  EXPECT_EQ(six->threads, 6);
  EXPECT_EQ(six->cpus, (std::vector<int>{4, 5, 6, 7, 0, 1}));
}

TEST(CpuTopology, UniformCpuIsNotPinned) {
  FakeSysfs fs("x86");
  for (int i = 0; i < 4; ++i) fs.max_freq(i, i == 2 ? 4000000 : 3900000);  // one favoured core
  const std::vector<int> all = range(0, 3);
  auto p = plan_cpu_placement(read_cpus(fs.root(), &all), "auto", 0);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->heterogeneous);
  EXPECT_EQ(p->threads, 4);
  EXPECT_TRUE(p->cpus.empty());
  EXPECT_EQ(p->big, range(0, 3));
}

TEST(CpuTopology, HybridX86WithoutCpuCapacityUsesMaxFrequency) {
  FakeSysfs fs("hybrid");
  for (int i = 0; i < 6; ++i) fs.max_freq(i, i < 2 ? 4700000 : 3600000);  // 2 P + 4 E
  const std::vector<int> all = range(0, 5);
  auto p = plan_cpu_placement(read_cpus(fs.root(), &all), "auto", 0);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->heterogeneous);
  EXPECT_EQ(p->threads, 2);
  EXPECT_EQ(p->cpus, (std::vector<int>{0, 1}));
}

TEST(CpuTopology, UnknownCapacitiesCountAsUniform) {
  FakeSysfs fs("empty");
  const std::vector<int> all = range(0, 2);
  const std::vector<Cpu> cpus = read_cpus(fs.root(), &all);
  ASSERT_EQ(cpus.size(), 3u);
  EXPECT_EQ(cpus[1].capacity, 0);
  auto p = plan_cpu_placement(cpus, "auto", 0);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->heterogeneous);
  EXPECT_TRUE(p->cpus.empty());
  EXPECT_EQ(p->threads, 3);
}

TEST(CpuTopology, OnlyTheAllowedCpusAreConsidered) {
  FakeSysfs fs("cpuset");
  rk3588(fs);
  const std::vector<int> allowed = {0, 1, 6};  // a cpuset of two little cores and one big
  auto p = plan_cpu_placement(read_cpus(fs.root(), &allowed), "auto", 0);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->threads, 1);
  EXPECT_EQ(p->cpus, (std::vector<int>{6}));
}

TEST(CpuTopology, NoneAndListsOverrideTheDefault) {
  FakeSysfs fs("rk-list");
  const std::vector<Cpu> cpus = rk3588(fs);
  auto none = plan_cpu_placement(cpus, "none", 0);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->threads, 8);
  EXPECT_TRUE(none->cpus.empty());
  auto list = plan_cpu_placement(cpus, "0-1,5", 0);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->threads, 3);
  EXPECT_EQ(list->cpus, (std::vector<int>{0, 1, 5}));
  auto more = plan_cpu_placement(cpus, "4", 2);
  ASSERT_TRUE(more.ok());
  EXPECT_EQ(more->threads, 2);
  EXPECT_NE(more->describe.find("shared"), std::string::npos) << more->describe;
}

TEST(CpuTopology, BadListsAreErrorsNamingTheProblem) {
  FakeSysfs fs("rk-bad");
  const std::vector<Cpu> cpus = rk3588(fs);
  auto absent = plan_cpu_placement(cpus, "6-9", 0);
  ASSERT_FALSE(absent.ok());
  EXPECT_NE(absent.status().message().find("CPU 8-9 not available"), std::string::npos)
      << absent.status().message();
  for (const char* bad : {"x", "3-1", "1,,2", "-1", "big"}) {
    auto p = plan_cpu_placement(cpus, bad, 0);
    ASSERT_FALSE(p.ok()) << bad;
    EXPECT_NE(p.status().message().find("--cpu-affinity"), std::string::npos) << p.status().message();
  }
}

TEST(CpuTopology, CpuListsParseAndFormat) {
  auto parsed = parse_cpu_list("6, 0-2,2,4");
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_EQ(*parsed, (std::vector<int>{0, 1, 2, 4, 6}));
  EXPECT_EQ(format_cpu_list(*parsed), "0-2,4,6");
  EXPECT_EQ(format_cpu_list({3}), "3");
  EXPECT_EQ(format_cpu_list({}), "");
  EXPECT_FALSE(parse_cpu_list("").ok());
}

TEST(CpuTopology, ThisMachinesCpusAreReadable) {
  const std::vector<Cpu> cpus = read_cpus();
  ASSERT_FALSE(cpus.empty());
  auto p = plan_cpu_placement(cpus, "auto", 0);
  ASSERT_TRUE(p.ok());
  EXPECT_GE(p->threads, 1);
  EXPECT_FALSE(p->describe.empty());
}

}  // namespace
}  // namespace infera::core
