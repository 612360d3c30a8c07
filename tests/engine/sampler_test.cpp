#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

namespace infera::engine {
namespace {

std::vector<float> logits_of(std::initializer_list<float> v) { return std::vector<float>(v); }

TEST(Sampler, GreedyPicksTheLargestLogit) {
  Sampler s({.temperature = 0}, 4);
  auto l = logits_of({0.1f, 2.0f, -1.0f, 1.9f});
  EXPECT_EQ(s.sample(l.data()), 1);
}

TEST(Sampler, SameSeedSameTokens) {
  std::vector<float> l(50);
  for (size_t i = 0; i < l.size(); ++i) l[i] = static_cast<float>(i % 7) * 0.3f;
  SamplerParams p{.temperature = 1.0f, .seed = 42};
  Sampler a(p, 50), b(p, 50);
  std::vector<int32_t> xa, xb;
  for (int i = 0; i < 100; ++i) {
    xa.push_back(a.sample(l.data()));
    xb.push_back(b.sample(l.data()));
  }
  EXPECT_EQ(xa, xb);
  p.seed = 43;
  Sampler c(p, 50);
  std::vector<int32_t> xc;
  for (int i = 0; i < 100; ++i) xc.push_back(c.sample(l.data()));
  EXPECT_NE(xa, xc);
}

TEST(Sampler, TopKOneIsGreedy) {
  auto l = logits_of({0.0f, 0.5f, 3.0f, 0.2f});
  Sampler s({.temperature = 5.0f, .top_k = 1, .seed = 7}, 4);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(s.sample(l.data()), 2);
}

TEST(Sampler, TopPAndMinPCutTheTail) {
  // Probabilities ~ 0.64, 0.24, 0.09, 0.03 at temperature 1.
  auto l = logits_of({3.0f, 2.0f, 1.0f, 0.0f});
  std::map<int32_t, int> seen;
  Sampler top_p({.temperature = 1.0f, .top_p = 0.7f, .seed = 1}, 4);
  for (int i = 0; i < 500; ++i) seen[top_p.sample(l.data())]++;
  EXPECT_EQ(seen.count(2), 0u);
  EXPECT_EQ(seen.count(3), 0u);
  EXPECT_GT(seen[1], 0);
  seen.clear();
  Sampler min_p({.temperature = 1.0f, .min_p = 0.2f, .seed = 1}, 4);
  for (int i = 0; i < 500; ++i) seen[min_p.sample(l.data())]++;
  EXPECT_EQ(seen.count(2), 0u);  // 0.09 < 0.2 * 0.64
  EXPECT_GT(seen[1], 0);
}

TEST(Sampler, TemperatureSpreadsChoices) {
  auto l = logits_of({1.0f, 0.9f, 0.8f});
  Sampler s({.temperature = 1.0f, .seed = 3}, 3);
  std::map<int32_t, int> seen;
  for (int i = 0; i < 300; ++i) seen[s.sample(l.data())]++;
  EXPECT_EQ(seen.size(), 3u);
}

TEST(Sampler, PenaltiesDiscourageRepeats) {
  auto l = logits_of({2.0f, 1.9f});
  Sampler plain({.temperature = 0}, 2);
  EXPECT_EQ(plain.sample(l.data()), 0);
  EXPECT_EQ(plain.sample(l.data()), 0);
  Sampler rep({.temperature = 0, .repetition_penalty = 1.2f}, 2);
  EXPECT_EQ(rep.sample(l.data()), 0);
  EXPECT_EQ(rep.sample(l.data()), 1);  // 2.0 / 1.2 < 1.9
  Sampler presence({.temperature = 0, .presence_penalty = 0.5f}, 2);
  EXPECT_EQ(presence.sample(l.data()), 0);
  EXPECT_EQ(presence.sample(l.data()), 1);
  Sampler frequency({.temperature = 0, .frequency_penalty = 0.06f}, 2);
  EXPECT_EQ(frequency.sample(l.data()), 0);  // 2.0 - 0.06 = 1.94 > 1.9
  EXPECT_EQ(frequency.sample(l.data()), 0);
  EXPECT_EQ(frequency.sample(l.data()), 1);  // 2.0 - 0.12 < 1.9
}

TEST(Sampler, TopKKeepsOnlyTheKMostLikely) {
  std::vector<float> l(100);
  for (size_t i = 0; i < l.size(); ++i) l[i] = static_cast<float>(i) * 0.01f;  // nearly flat
  Sampler s({.temperature = 1.0f, .top_k = 5, .seed = 11}, 100);
  std::map<int32_t, int> seen;
  for (int i = 0; i < 1000; ++i) seen[s.sample(l.data())]++;
  EXPECT_EQ(seen.size(), 5u);
  EXPECT_GE(seen.begin()->first, 95);
}

TEST(Sampler, EveryFilterTogetherStaysDeterministicPerSeed) {
  std::vector<float> l(1000);
  for (size_t i = 0; i < l.size(); ++i) l[i] = std::sin(static_cast<float>(i)) * 3.0f;
  const SamplerParams p{.temperature = 0.8f,
                        .top_k = 40,
                        .top_p = 0.9f,
                        .min_p = 0.05f,
                        .repetition_penalty = 1.1f,
                        .presence_penalty = 0.2f,
                        .frequency_penalty = 0.1f,
                        .seed = 2024};
  auto run = [&] {
    Sampler s(p, 1000);
    std::vector<int32_t> out;
    for (int i = 0; i < 200; ++i) out.push_back(s.sample(l.data()));
    return out;
  };
  EXPECT_EQ(run(), run());
}

TEST(Sampler, AcceptedPromptTokensArePenalizedToo) {
  auto l = logits_of({2.0f, 1.9f});
  Sampler s({.temperature = 0, .repetition_penalty = 1.2f}, 2);
  const std::vector<int32_t> prompt{0};
  s.accept(prompt);
  EXPECT_EQ(s.sample(l.data()), 1);  // 2.0 / 1.2 < 1.9 because the prompt held 0
  Sampler window({.temperature = 0, .repetition_penalty = 1.2f, .penalty_last_n = 1}, 2);
  const std::vector<int32_t> long_prompt{1, 0};
  window.accept(long_prompt);  // only the last token (0) is remembered
  EXPECT_EQ(window.sample(l.data()), 1);
}

}  // namespace
}  // namespace infera::engine
