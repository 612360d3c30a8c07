#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "guard/guard.h"

namespace infera::guard {
namespace {

namespace fs = std::filesystem;

// A fake /proc and cgroup v2 mount under a fresh temporary directory.
class FakeTree {
 public:
  FakeTree() {
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::temp_directory_path() /
            ("infera_guard_" + std::to_string(::getpid()) + "_" + test->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "proc" / "self");
    fs::create_directories(root_ / "cgroup");
  }
  ~FakeTree() { fs::remove_all(root_); }

  void write(const fs::path& relative, const std::string& text) {
    fs::create_directories((root_ / relative).parent_path());
    std::ofstream(root_ / relative) << text;
  }
  SystemMemoryPaths paths() const {
    return {(root_ / "proc").string(), (root_ / "cgroup").string()};
  }

 private:
  fs::path root_;
};

TEST(SystemMemorySource, ReadsPlausibleNumbersOnThisMachine) {
  const auto source = make_system_memory_source();
  const MemoryReading r = source->read();
  EXPECT_GT(r.process_rss_bytes, 0u);
  EXPECT_GT(r.system_total_bytes, r.system_available_bytes);
  EXPECT_GT(r.system_available_bytes, 0u);
  EXPECT_LT(r.process_rss_bytes, r.system_total_bytes);
  EXPECT_GT(r.used_fraction(), 0);
  EXPECT_LE(r.used_fraction(), 1);
  if (r.cgroup_current_bytes) {
    EXPECT_GT(*r.cgroup_current_bytes, 0u);
  }
}

TEST(SystemMemorySource, ReadsProcAndOwnCgroupV2Files) {
  FakeTree tree;
  tree.write("proc/self/status", "Name:\tinfera\nVmPeak:\t  9000 kB\nVmRSS:\t  2048 kB\n");
  tree.write("proc/meminfo",
             "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\n");
  tree.write("proc/self/cgroup", "0::/system.slice/infera.service\n");
  tree.write("cgroup/system.slice/infera.service/memory.current", "524288\n");
  tree.write("cgroup/system.slice/infera.service/memory.max", "1048576\n");
  const MemoryReading r = make_system_memory_source(tree.paths())->read();
  EXPECT_EQ(r.process_rss_bytes, 2048u * 1024);
  EXPECT_EQ(r.system_total_bytes, 1000u * 1024);
  EXPECT_EQ(r.system_available_bytes, 400u * 1024);
  EXPECT_EQ(r.cgroup_current_bytes, 524288u);
  EXPECT_EQ(r.cgroup_max_bytes, 1048576u);
  EXPECT_DOUBLE_EQ(r.used_fraction(), 0.6);
}

TEST(SystemMemorySource, UnlimitedCgroupHasNoMax) {
  FakeTree tree;
  tree.write("proc/meminfo", "MemTotal: 1000 kB\nMemAvailable: 900 kB\n");
  tree.write("proc/self/cgroup", "12:memory:/legacy\n0::/\n");
  tree.write("cgroup/memory.current", "4096\n");
  tree.write("cgroup/memory.max", "max\n");
  const MemoryReading r = make_system_memory_source(tree.paths())->read();
  EXPECT_EQ(r.cgroup_current_bytes, 4096u);
  EXPECT_FALSE(r.cgroup_max_bytes.has_value());
  EXPECT_NEAR(r.used_fraction(), 0.1, 1e-12);
}

TEST(SystemMemorySource, FallsBackToMemFreeWithoutMemAvailable) {
  FakeTree tree;
  tree.write("proc/meminfo", "MemTotal: 1000 kB\nMemFree: 250 kB\n");
  const MemoryReading r = make_system_memory_source(tree.paths())->read();
  EXPECT_EQ(r.system_available_bytes, 250u * 1024);
}

TEST(SystemMemorySource, MissingOrMalformedFilesLeaveFieldsEmpty) {
  FakeTree tree;
  const MemoryReading empty = make_system_memory_source(tree.paths())->read();
  EXPECT_EQ(empty.process_rss_bytes, 0u);
  EXPECT_EQ(empty.system_total_bytes, 0u);
  EXPECT_FALSE(empty.cgroup_current_bytes.has_value());
  EXPECT_EQ(empty.used_fraction(), 0);

  tree.write("proc/self/status", "VmRSS: lots\n");
  tree.write("proc/meminfo", "MemTotal: 1000 kB\n");  // nothing available to compare
  tree.write("proc/self/cgroup", "0::/gone\n");       // cgroup directory missing
  const MemoryReading r = make_system_memory_source(tree.paths())->read();
  EXPECT_EQ(r.process_rss_bytes, 0u);
  EXPECT_EQ(r.system_total_bytes, 0u);
  EXPECT_FALSE(r.cgroup_current_bytes.has_value());
  EXPECT_FALSE(r.cgroup_max_bytes.has_value());
}

}  // namespace
}  // namespace infera::guard
