#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cache/cache.h"

namespace infera::cache {
namespace {

struct Request {
  std::string model = "llama", identity = "1234:5678:abcd", endpoint = "chat";
  std::vector<std::string> inputs = {"user", "What is 2 + 2?"};
  double temperature = 0;
  int max_tokens = 64;
  std::string stop = "\n\n";
  bool has_seed = false;
};

std::string key_of(const Request& r, std::string* form = nullptr) {
  KeyBuilder k(r.model, r.identity, r.endpoint);
  for (const auto& text : r.inputs) k.input(text);
  k.param("temperature", r.temperature).param("max_tokens", r.max_tokens).param("stop", r.stop);
  if (r.has_seed) {
    k.param("seed", 7);
  } else {
    k.absent("seed");
  }
  if (form) *form = k.canonical();
  return k.key();
}

TEST(CacheKey, IsStableAndWellFormed) {
  const std::string key = key_of(Request{});
  EXPECT_EQ(key, key_of(Request{}));
  EXPECT_EQ(key.size(), 35u);
  EXPECT_EQ(key.substr(0, 3), "v2-");
  EXPECT_EQ(key.find_first_not_of("0123456789abcdef", 3), std::string::npos);
}

TEST(CacheKey, CollapsesWhitespaceInInputsOnly) {
  Request r;
  r.inputs = {"user", "  What   is 2 +\n 2?\t"};
  EXPECT_EQ(key_of(r), key_of(Request{}));
  r = Request{};  // whitespace inside parameters is significant (a stop sequence)
  r.stop = "\n";
  EXPECT_NE(key_of(r), key_of(Request{}));
}

TEST(CacheKey, IntegralFloatsEqualIntegers) {
  KeyBuilder a("m", "id", "chat"), b("m", "id", "chat"), c("m", "id", "chat");
  a.param("temperature", 1.0);
  b.param("temperature", 1);
  c.param("temperature", 1.5);
  EXPECT_EQ(a.key(), b.key());
  EXPECT_NE(a.key(), c.key());
  EXPECT_NE(c.canonical().find("1.5"), std::string::npos) << c.canonical();
}

TEST(CacheKey, ChangesWithEveryOutputAffectingPart) {
  const std::string original = key_of(Request{});
  std::vector<Request> changed(8);
  changed[0].model = "qwen";
  changed[1].identity = "1234:5679:abcd";
  changed[2].endpoint = "completions";
  changed[3].inputs = {"user", "What is 2 + 3?"};
  changed[4].max_tokens = 65;
  changed[5].temperature = 0.5;
  changed[6].has_seed = true;
  changed[7].inputs = {"system", "What is 2 + 2?"};
  for (size_t i = 0; i < changed.size(); ++i) EXPECT_NE(key_of(changed[i]), original) << i;
}

TEST(CacheKey, FieldBoundariesCannotBeShifted) {
  // The same characters split differently over fields are different requests.
  Request a, b;
  a.inputs = {"user", "ab"};
  b.inputs = {"usera", "b"};
  EXPECT_NE(key_of(a), key_of(b));
  a.inputs = {"user", "a b"};
  b.inputs = {"user a", "b"};
  EXPECT_NE(key_of(a), key_of(b));
  KeyBuilder one("m", "id", "chat"), two("m", "id", "chat");
  one.param("stop", "x");
  two.param("stopx", "");
  EXPECT_NE(one.key(), two.key());
}

TEST(CachePolicy, DeterministicCachesOnlyGreedyOrSeeded) {
  Sampling s;
  s.temperature = 0.7;
  EXPECT_FALSE(is_cacheable(CachePolicy::kDeterministic, s));
  EXPECT_TRUE(is_cacheable(CachePolicy::kAll, s));
  s.seed = 42;
  EXPECT_TRUE(is_cacheable(CachePolicy::kDeterministic, s));
  s.seed.reset();
  s.top_k = 1;
  EXPECT_TRUE(is_cacheable(CachePolicy::kDeterministic, s));
  s.top_k = 0;
  s.temperature = 0.0;
  EXPECT_TRUE(is_cacheable(CachePolicy::kDeterministic, s));
  EXPECT_FALSE(is_cacheable(CachePolicy::kOff, s));
  s.client_no_cache = true;
  EXPECT_FALSE(is_cacheable(CachePolicy::kAll, s));
}

TEST(CachePolicy, ParsesNamesAndRejectsOthers) {
  EXPECT_EQ(*parse_cache_policy("deterministic"), CachePolicy::kDeterministic);
  EXPECT_EQ(*parse_cache_policy("all"), CachePolicy::kAll);
  EXPECT_EQ(*parse_cache_policy("off"), CachePolicy::kOff);
  EXPECT_FALSE(parse_cache_policy("sometimes").ok());
}

}  // namespace
}  // namespace infera::cache
