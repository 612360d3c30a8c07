#include "cache/key.h"

#include <gtest/gtest.h>

namespace infera::cache {
namespace {

KeyRequest base() {
  KeyRequest r;
  r.model_name = "llama";
  r.model_identity = "1234:5678:abcd";
  r.endpoint = "chat";
  r.input_json = R"([{"role":"user","content":"What is 2 + 2?"}])";
  r.params_json = R"({"temperature":0,"max_tokens":64,"stop":["\n\n"]})";
  return r;
}

std::string key_of(const KeyRequest& r) {
  Result<std::string> key = make_key(r);
  EXPECT_TRUE(key.ok()) << key.status().message();
  return key.ok() ? *key : std::string();
}

TEST(CacheKey, IsStableAndWellFormed) {
  const std::string key = key_of(base());
  EXPECT_EQ(key, key_of(base()));
  EXPECT_EQ(key.size(), 35u);
  EXPECT_EQ(key.substr(0, 3), "v1-");
}

TEST(CacheKey, IgnoresJsonKeyOrderAndWhitespace) {
  KeyRequest r = base();
  r.input_json = R"( [ { "content" : "  What   is 2 +\n 2?\t", "role":"user" } ] )";
  r.params_json = R"({ "stop" : ["\n\n"], "max_tokens": 64, "temperature": 0.0 })";
  EXPECT_EQ(key_of(r), key_of(base()));
}

TEST(CacheKey, ChangesWithEveryOutputAffectingPart) {
  const std::string original = key_of(base());
  KeyRequest r = base();
  r.model_name = "qwen";
  EXPECT_NE(key_of(r), original);
  r = base();
  r.model_identity = "1234:5679:abcd";
  EXPECT_NE(key_of(r), original);
  r = base();
  r.endpoint = "completions";
  EXPECT_NE(key_of(r), original);
  r = base();
  r.input_json = R"([{"role":"user","content":"What is 2 + 3?"}])";
  EXPECT_NE(key_of(r), original);
  r = base();
  r.params_json = R"({"temperature":0,"max_tokens":65,"stop":["\n\n"]})";
  EXPECT_NE(key_of(r), original);
  r = base();  // whitespace inside parameters is significant (a stop sequence)
  r.params_json = R"({"temperature":0,"max_tokens":64,"stop":["\n"]})";
  EXPECT_NE(key_of(r), original);
}

TEST(CacheKey, CanonicalFormSortsKeysAndWritesIntegralFloatsAsIntegers) {
  KeyRequest r = base();
  r.params_json = R"({"b":1.0,"a":0.5})";
  Result<std::string> form = canonical_form(r);
  ASSERT_TRUE(form.ok());
  EXPECT_NE(form->find(R"({"a":0.5,"b":1})"), std::string::npos) << *form;
}

TEST(CacheKey, RejectsMalformedJson) {
  KeyRequest r = base();
  r.input_json = "[{";
  EXPECT_EQ(make_key(r).status().code(), StatusCode::kInvalidArgument);
  r = base();
  r.params_json = "[1]";
  EXPECT_EQ(make_key(r).status().code(), StatusCode::kInvalidArgument);
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
