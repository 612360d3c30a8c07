// knowledge/semantic_cache.h: the labelled pairs at the worst similarity an embedder
// could report (identical vectors), scopes, the threshold, invalidation and bounds.
#include "knowledge/semantic_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

namespace infera::knowledge {
namespace {

std::vector<float> unit(std::vector<float> v) {
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  for (float& x : v) x = static_cast<float>(x / std::sqrt(s));
  return v;
}

// Every trap misses and every paraphrase hits even when the embedder calls the two
// questions identical (similarity 1): the guard alone decides.
TEST(SemanticCache, LabelledPairsAtSimilarityOne) {
  std::ifstream in(std::string(INFERA_SOURCE_DIR) + "/tests/data/semantic_pairs.jsonl");
  ASSERT_TRUE(in) << "tests/data/semantic_pairs.jsonl missing";
  const std::vector<float> same = unit({1, 2, 3, 4});
  int traps = 0, paraphrases = 0, trap_hits = 0, paraphrase_misses = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line);
    SemanticCache cache({.threshold = 0.95f});
    cache.insert("scope", j["a"].get<std::string>(), same, "answer to a");
    auto hit = cache.lookup("scope", j["b"].get<std::string>(), same);
    if (j["expect"] == "hit") {
      ++paraphrases;
      if (!hit) {
        ++paraphrase_misses;
        ADD_FAILURE() << "paraphrase missed: " << line;
      } else {
        EXPECT_EQ(hit->value, "answer to a");
      }
    } else {
      ++traps;
      if (hit) {
        ++trap_hits;
        ADD_FAILURE() << "trap hit: " << line;
      }
    }
  }
  EXPECT_GE(traps + paraphrases, 200);
  EXPECT_EQ(trap_hits, 0);
  EXPECT_EQ(paraphrase_misses, 0);
}

TEST(SemanticCache, ScopeThresholdAndNormalisedForms) {
  SemanticCache cache({.threshold = 0.95f});
  const auto a = unit({1, 0, 0});
  const auto close = unit({1, 0.2f, 0});   // cosine 0.98
  const auto far = unit({1, 0.5f, 0});     // cosine 0.89
  cache.insert("teacher|m1", "What is photosynthesis?", a, "A");
  // Other scope (role, model, context...): never.
  EXPECT_FALSE(cache.lookup("student|m1", "What is photosynthesis?", a));
  // Same words in another form: hit even when the vectors are far apart.
  auto same = cache.lookup("teacher|m1", "what is photosynthesis", far);
  ASSERT_TRUE(same);
  EXPECT_FLOAT_EQ(same->similarity, 1.0f);
  // Compatible wording: hit only above the threshold.
  EXPECT_TRUE(cache.lookup("teacher|m1", "Please, what is photosynthesis?", close));
  EXPECT_FALSE(cache.lookup("teacher|m1", "Explain photosynthesis to me", far));
  // Similar vectors but a different entity: the guard refuses.
  EXPECT_FALSE(cache.lookup("teacher|m1", "What is Photosynthesis in Paris?", a));
  const SemanticCacheStats s = cache.stats();
  EXPECT_EQ(s.entries, 1u);
  EXPECT_GE(s.hits, 2u);
  EXPECT_GE(s.guard_refusals, 1u);
}

TEST(SemanticCache, CollectionChangesInvalidateAndSizeIsBounded) {
  SemanticCache cache({.threshold = 0.9f, .max_entries = 3});
  const auto v = unit({0, 1});
  cache.insert("s", "What is a cell?", v, "bio answer", "biology");
  cache.insert("s", "What is a rock?", v, "geo answer", "geology");
  cache.invalidate_collection("biology");
  EXPECT_FALSE(cache.lookup("s", "What is a cell?", v));
  EXPECT_TRUE(cache.lookup("s", "What is a rock?", v));
  EXPECT_EQ(cache.stats().invalidated, 1u);
  for (int i = 0; i < 10; ++i) {
    cache.insert("s", "What is element " + std::to_string(i) + "?", v, "x");
  }
  EXPECT_EQ(cache.stats().entries, 3u);
  EXPECT_TRUE(cache.lookup("s", "What is element 9?", v));
  EXPECT_FALSE(cache.lookup("s", "What is element 0?", v));  // the oldest left first
  // The newer answer to the same question replaces the older.
  cache.insert("s", "What is element 9?", v, "newer");
  EXPECT_EQ(cache.lookup("s", "what is element 9", v)->value, "newer");
  EXPECT_EQ(cache.stats().entries, 3u);
}

}  // namespace
}  // namespace infera::knowledge
