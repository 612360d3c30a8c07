#include "sched/stop_matcher.h"

#include <gtest/gtest.h>

namespace infera::sched {
namespace {

TEST(StopMatcher, PassesTextThroughWithoutStops) {
  StopMatcher m({});
  EXPECT_EQ(m.push("hello "), "hello ");
  EXPECT_EQ(m.push("world"), "world");
  EXPECT_EQ(m.flush(), "");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, StopsAcrossPiecesAndNeverLeaksAPartialStop) {
  StopMatcher m({"\nUser:"});
  std::string out;
  out += m.push("The answer is 4.");
  out += m.push("\nUs");
  EXPECT_EQ(out, "The answer is 4.");  // "\nUs" is held back
  out += m.push("er: next");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(out, "The answer is 4.");
  EXPECT_EQ(m.push("more"), "");
}

TEST(StopMatcher, ReleasesHeldTextWhenItDoesNotBecomeAStop) {
  StopMatcher m({"END"});
  EXPECT_EQ(m.push("the EN"), "the ");
  EXPECT_EQ(m.push("ding"), "ENding");
  EXPECT_EQ(m.push("E"), "");
  EXPECT_EQ(m.flush(), "E");
}

TEST(StopMatcher, EarliestOfSeveralStopsWins) {
  StopMatcher m({"bb", "a"});
  EXPECT_EQ(m.push("xxbbya"), "xx");
  EXPECT_TRUE(m.stopped());
}

}  // namespace
}  // namespace infera::sched
