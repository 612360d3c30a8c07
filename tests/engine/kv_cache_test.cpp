#include "engine/kv_cache.h"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

namespace infera::engine {
namespace {

std::vector<int32_t> tokens(int n, int32_t first = 100) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

TEST(KvCache, ReservesWholeBlocksAndFreesThemAtTheEnd) {
  KvCache kv(/*n_layers=*/2, /*kv_dim=*/8, /*n_blocks=*/10, /*block_tokens=*/4);
  EXPECT_EQ(kv.begin_sequence(0, tokens(5)), 0);
  EXPECT_EQ(kv.table(0).size(), 2u);  // 5 positions -> 2 blocks of 4
  EXPECT_TRUE(kv.reserve(0, 9));
  EXPECT_EQ(kv.table(0).size(), 3u);
  EXPECT_EQ(kv.usage().blocks_used, 3);
  EXPECT_EQ(kv.usage().blocks_total, 10);
  kv.end_sequence(0);
  EXPECT_FALSE(kv.has_sequence(0));
  EXPECT_EQ(kv.usage().blocks_used, 0);
}

TEST(KvCache, DroppingCachedPrefixesFreesOnlyBlocksNoSequenceHolds) {
  // Blocks of 4 positions x 512 halves = one 4 KiB page per layer and tensor.
  KvCache kv(/*n_layers=*/2, /*kv_dim=*/512, /*n_blocks=*/16, /*block_tokens=*/4);
  const auto shared = tokens(9);
  ASSERT_EQ(kv.begin_sequence(0, shared), 0);
  kv.publish_prefix(0, shared);
  kv.end_sequence(0);                      // its 2 full blocks stay cached
  ASSERT_EQ(kv.begin_sequence(1, tokens(9, 900)), 0);
  kv.publish_prefix(1, tokens(9, 900));    // still held by sequence 1
  EXPECT_EQ(kv.usage().blocks_cached, 2);
  const uint64_t freed = kv.drop_cached_prefixes();
  EXPECT_EQ(freed, 2u * kv.usage().block_bytes);
  EXPECT_EQ(kv.usage().blocks_cached, 0);
  EXPECT_EQ(kv.cached_prefix_tokens(shared), 0);            // forgotten
  EXPECT_EQ(kv.cached_prefix_tokens(tokens(9, 900)), 8);    // in use: kept
  // Freed blocks are reused and read back what is written into them.
  ASSERT_EQ(kv.begin_sequence(2, tokens(16, 300)), 0);
  for (int32_t pos = 0; pos < 16; ++pos) kv.k_row(1, 2, pos)[7] = static_cast<uint16_t>(pos + 1);
  for (int32_t pos = 0; pos < 16; ++pos) EXPECT_EQ(kv.k_row(1, 2, pos)[7], pos + 1);
}

TEST(KvCache, RefusesASequenceThatDoesNotFitAndHoldsNothing) {
  KvCache kv(1, 8, 3, 4);
  EXPECT_EQ(kv.begin_sequence(0, tokens(8)), 0);
  EXPECT_EQ(kv.begin_sequence(1, tokens(8, 500)), -1);
  EXPECT_FALSE(kv.has_sequence(1));
  EXPECT_EQ(kv.usage().blocks_used, 2);
  EXPECT_FALSE(kv.reserve(0, 20));
}

TEST(KvCache, RowsOfDifferentSequencesDoNotOverlap) {
  KvCache kv(2, 4, 8, 2);
  ASSERT_EQ(kv.begin_sequence(0, tokens(3)), 0);
  ASSERT_EQ(kv.begin_sequence(1, tokens(3, 900)), 0);
  for (int layer = 0; layer < 2; ++layer) {
    for (int32_t seq = 0; seq < 2; ++seq) {
      for (int32_t pos = 0; pos < 3; ++pos) {
        uint16_t mark = static_cast<uint16_t>(layer * 100 + seq * 10 + pos);
        std::fill_n(kv.k_row(layer, seq, pos), 4, mark);
        std::fill_n(kv.v_row(layer, seq, pos), 4, static_cast<uint16_t>(mark + 1000));
      }
    }
  }
  for (int layer = 0; layer < 2; ++layer) {
    for (int32_t seq = 0; seq < 2; ++seq) {
      for (int32_t pos = 0; pos < 3; ++pos) {
        uint16_t mark = static_cast<uint16_t>(layer * 100 + seq * 10 + pos);
        EXPECT_EQ(kv.k_row(layer, seq, pos)[3], mark);
        EXPECT_EQ(kv.v_row(layer, seq, pos)[0], mark + 1000);
      }
    }
  }
}

TEST(KvCache, ReusesPublishedFullBlocksButAlwaysLeavesTheLastToken) {
  KvCache kv(1, 8, 16, 4);
  const auto prompt = tokens(12);
  ASSERT_EQ(kv.begin_sequence(0, prompt), 0);
  kv.publish_prefix(0, prompt);
  const auto blocks = kv.table(0);
  kv.end_sequence(0);
  EXPECT_EQ(kv.usage().blocks_cached, 3);
  EXPECT_EQ(kv.usage().blocks_used, 0);
  // Same 12 tokens: two blocks reused, the third holds the last token to evaluate.
  EXPECT_EQ(kv.cached_prefix_tokens(prompt), 8);
  EXPECT_EQ(kv.begin_sequence(1, prompt), 8);
  EXPECT_EQ(kv.table(1)[0], blocks[0]);
  EXPECT_EQ(kv.table(1)[1], blocks[1]);
  EXPECT_NE(kv.table(1)[2], blocks[2]);
  // A longer prompt with the same start reuses all three.
  EXPECT_EQ(kv.begin_sequence(2, tokens(14)), 12);
}

TEST(KvCache, BlocksMatchOnlyAfterTheSamePrefix) {
  KvCache kv(1, 8, 16, 4);
  auto a = tokens(9);
  ASSERT_EQ(kv.begin_sequence(0, a), 0);
  kv.publish_prefix(0, a);
  kv.end_sequence(0);
  auto b = a;
  b[0] = 7;  // same second block, different first block
  EXPECT_EQ(kv.cached_prefix_tokens(b), 0);
  EXPECT_EQ(kv.begin_sequence(1, b), 0);
}

TEST(KvCache, EvictsLeastRecentlyUsedCachedBlocksWhenFull) {
  KvCache kv(1, 8, 4, 4);
  auto a = tokens(9), b = tokens(9, 500);
  ASSERT_EQ(kv.begin_sequence(0, a), 0);  // 3 blocks
  kv.publish_prefix(0, a);                // caches a's 2 full blocks
  kv.end_sequence(0);
  EXPECT_EQ(kv.usage().blocks_cached, 2);
  // b needs 3 blocks: 2 free, then the least recently used cached one.
  ASSERT_EQ(kv.begin_sequence(1, b), 0);
  EXPECT_EQ(kv.usage().blocks_used, 3);
  EXPECT_EQ(kv.usage().blocks_cached, 1);
  kv.end_sequence(1);
  // a's first block was published first and used least recently: it went first.
  EXPECT_EQ(kv.cached_prefix_tokens(a), 0);
}

TEST(KvCache, SharedBlocksStayWhileAnySequenceHoldsThem) {
  KvCache kv(1, 8, 8, 4);
  auto prompt = tokens(9);
  ASSERT_EQ(kv.begin_sequence(0, prompt), 0);
  kv.publish_prefix(0, prompt);
  ASSERT_EQ(kv.begin_sequence(1, prompt), 8);
  kv.end_sequence(0);
  // Sequence 1 still holds the two shared blocks plus its own third.
  EXPECT_EQ(kv.usage().blocks_used, 3);
  kv.end_sequence(1);
  EXPECT_EQ(kv.usage().blocks_used, 0);
  EXPECT_EQ(kv.usage().blocks_cached, 2);
}

TEST(KvCache, ForkSharesFullBlocksAndCopiesThePartialOne) {
  KvCache kv(2, 4, 8, 4);
  ASSERT_EQ(kv.begin_sequence(0, tokens(6)), 0);
  for (int layer = 0; layer < 2; ++layer) {
    for (int32_t pos = 0; pos < 6; ++pos)
      std::fill_n(kv.k_row(layer, 0, pos), 4, static_cast<uint16_t>(pos + 1));
  }
  ASSERT_TRUE(kv.fork_sequence(0, 1, 6));
  EXPECT_EQ(kv.table(1)[0], kv.table(0)[0]);
  EXPECT_NE(kv.table(1)[1], kv.table(0)[1]);
  EXPECT_EQ(kv.usage().blocks_used, 3);
  for (int32_t pos = 0; pos < 6; ++pos) EXPECT_EQ(kv.k_row(1, 1, pos)[2], pos + 1);
  // Writing the fork's next position leaves the source untouched.
  ASSERT_TRUE(kv.reserve(1, 7));
  std::fill_n(kv.k_row(0, 1, 6), 4, uint16_t{99});
  ASSERT_TRUE(kv.reserve(0, 7));
  std::fill_n(kv.k_row(0, 0, 6), 4, uint16_t{42});
  EXPECT_EQ(kv.k_row(0, 1, 6)[0], 99);
  kv.end_sequence(0);
  EXPECT_EQ(kv.k_row(1, 1, 3)[0], 4);  // shared block still alive through the fork
  kv.end_sequence(1);
  EXPECT_EQ(kv.usage().blocks_used, 0);
  EXPECT_FALSE(kv.fork_sequence(5, 6, 1));  // unknown source
}

}  // namespace
}  // namespace infera::engine
