// The block allocator's prefix cache on its own: reference counts, the chain
// hash, exact lookups, deduplication on commit, and LRU eviction that never
// takes a held block.
#include "engine/block_allocator.h"

#include <gtest/gtest.h>

#include <numeric>
#include <set>

#include "core/error.h"

namespace tpinfer {
namespace {

constexpr int kBs = 4;

std::vector<int32_t> seq(int n, int32_t first) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

std::vector<uint64_t> hashes_of(const BlockAllocator& a, const std::vector<int32_t>& tokens) {
  std::vector<uint64_t> h;
  a.hash_blocks(tokens, tokens.size() / static_cast<size_t>(a.block_size()), h);
  return h;
}

// Reserves blocks for all of `tokens` and commits its full blocks, as the
// scheduler does once their K/V are computed.
std::vector<int32_t> computed(BlockAllocator& a, const std::vector<int32_t>& tokens) {
  std::vector<int32_t> table;
  EXPECT_TRUE(a.reserve(table, static_cast<int64_t>(tokens.size())));
  const std::vector<uint64_t> h = hashes_of(a, tokens);
  for (size_t i = 0; i < h.size(); ++i) a.commit(table, static_cast<int>(i), tokens, h[i]);
  return table;
}

TEST(BlockAllocator, ReserveAndReleaseWithoutCaching) {
  BlockAllocator a(4, kBs);
  std::vector<int32_t> t;
  EXPECT_TRUE(a.reserve(t, 9));  // 3 blocks
  EXPECT_EQ(t.size(), 3u);
  EXPECT_EQ(a.free_blocks(), 1);
  EXPECT_EQ(a.used_blocks(), 3);
  std::vector<int32_t> u;
  EXPECT_FALSE(a.reserve(u, 8));
  EXPECT_TRUE(u.empty()) << "a failed reserve leaves the table as it was";
  a.release(t);
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(a.free_blocks(), 4);
  EXPECT_EQ(a.cached_blocks(), 0);
  EXPECT_THROW(BlockAllocator(0, kBs), ConfigError);
}

TEST(BlockAllocator, ChainHashCoversEveryTokenBefore) {
  BlockAllocator a(8, kBs);
  const std::vector<int32_t> x = seq(12, 0);
  std::vector<int32_t> y = x;
  y[1] = 99;  // differs in block 0 only
  const auto hx = hashes_of(a, x), hy = hashes_of(a, y);
  ASSERT_EQ(hx.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_NE(hx[i], hy[i]) << "block " << i << " depends on block 0";
  // The same block of tokens after a different beginning hashes differently.
  EXPECT_NE(BlockAllocator::chain_hash(1, std::vector<int32_t>{4, 5, 6, 7}),
            BlockAllocator::chain_hash(2, std::vector<int32_t>{4, 5, 6, 7}));
  EXPECT_EQ(hx[1], BlockAllocator::chain_hash(hx[0], std::span(x).subspan(4, 4)));
  // Partial blocks are not hashed.
  EXPECT_EQ(hashes_of(a, seq(7, 0)).size(), 1u);
}

TEST(BlockAllocator, SharedBlocksAreHeldByEveryHolderAndFreedByTheLast) {
  BlockAllocator a(8, kBs);
  const std::vector<int32_t> prompt = seq(10, 0);  // 2 full blocks + 2 tokens
  std::vector<int32_t> first = computed(a, prompt);
  EXPECT_EQ(a.cached_blocks(), 2);
  EXPECT_EQ(a.used_blocks(), 3);

  std::vector<int32_t> second;
  const auto h = hashes_of(a, prompt);
  EXPECT_EQ(a.acquire_prefix(second, prompt, h, 2), 2);
  EXPECT_EQ(second, std::vector<int32_t>(first.begin(), first.begin() + 2));
  EXPECT_EQ(a.used_blocks(), 3) << "shared, not copied";
  EXPECT_TRUE(a.reserve(second, 10));
  EXPECT_NE(second[2], first[2]) << "the partial block is the sequence's own";
  EXPECT_EQ(a.used_blocks(), 4);

  a.release(first);
  EXPECT_EQ(a.used_blocks(), 3) << "the shared blocks are still held by the second";
  a.release(second);
  EXPECT_EQ(a.used_blocks(), 0);
  EXPECT_EQ(a.free_blocks(), 8);
  EXPECT_EQ(a.cached_blocks(), 2) << "kept for reuse until room is needed";

  // max_blocks bounds the lookup (the last prompt token must be computed).
  std::vector<int32_t> third;
  EXPECT_EQ(a.acquire_prefix(third, prompt, h, 1), 1);
  a.release(third);
}

TEST(BlockAllocator, LookupIsExactNotOnlyByHash) {
  BlockAllocator a(8, kBs);
  const std::vector<int32_t> x = seq(8, 0);
  std::vector<int32_t> tx = computed(a, x);
  // Other tokens under x's hashes (as a 64-bit collision would present them) find nothing.
  std::vector<int32_t> y = seq(8, 50);
  std::vector<int32_t> ty;
  EXPECT_EQ(a.acquire_prefix(ty, y, hashes_of(a, x), 2), 0);
  EXPECT_TRUE(ty.empty());
  // The same second block after another first block is another prefix.
  std::vector<int32_t> z = x;
  z[0] = 77;
  std::vector<int32_t> tz0 = computed(a, z);
  std::vector<uint64_t> hz = hashes_of(a, z);
  hz[1] = hashes_of(a, x)[1];  // as if the chain hash collided: x's block 1 has z's tokens, after x's block 0
  EXPECT_EQ(a.acquire_prefix(ty, z, hz, 2), 1);
  a.release(ty);
  a.release(tz0);
  // A collision on commit leaves the newcomer uncached.
  std::vector<int32_t> tz;
  ASSERT_TRUE(a.reserve(tz, 8));
  a.commit(tz, 0, y, hashes_of(a, x)[0]);
  EXPECT_EQ(a.cached_blocks(), 4);
  a.release(tz);
  a.release(tx);
  EXPECT_EQ(a.free_blocks(), 8);
}

TEST(BlockAllocator, CommittingADuplicateTakesTheCachedBlock) {
  BlockAllocator a(8, kBs);
  const std::vector<int32_t> p = seq(8, 0);
  // Two sequences computed the same prompt at once, each into its own blocks.
  std::vector<int32_t> t1, t2;
  ASSERT_TRUE(a.reserve(t1, 8));
  ASSERT_TRUE(a.reserve(t2, 8));
  const auto h = hashes_of(a, p);
  for (int i = 0; i < 2; ++i) a.commit(t1, i, p, h[static_cast<size_t>(i)]);
  for (int i = 0; i < 2; ++i) a.commit(t2, i, p, h[static_cast<size_t>(i)]);
  EXPECT_EQ(t2, t1) << "the second now reads the cached copy";
  EXPECT_EQ(a.used_blocks(), 2) << "its own copies are freed";
  EXPECT_EQ(a.cached_blocks(), 2);
  a.release(t1);
  a.release(t2);
  EXPECT_EQ(a.free_blocks(), 8);
}

TEST(BlockAllocator, EvictsLeastRecentlyReleasedAndNeverAHeldBlock) {
  BlockAllocator a(6, kBs);
  std::vector<int32_t> held = computed(a, seq(8, 0));     // 2 blocks, held throughout
  std::vector<int32_t> old_t = computed(a, seq(8, 100));  // released first
  std::vector<int32_t> new_t = computed(a, seq(8, 200));  // released second
  const std::set<int32_t> held_ids(held.begin(), held.end());
  const std::vector<int32_t> old_ids = old_t;
  a.release(old_t);
  a.release(new_t);
  EXPECT_EQ(a.cached_blocks(), 6);
  EXPECT_EQ(a.free_blocks(), 4);
  // Room for two blocks: the older sequence's go, its last block first.
  std::vector<int32_t> fresh;
  ASSERT_TRUE(a.reserve(fresh, 8));
  EXPECT_EQ(a.evictions(), 2u);
  EXPECT_EQ(std::set<int32_t>(fresh.begin(), fresh.end()), std::set<int32_t>(old_ids.begin(), old_ids.end()));
  std::vector<int32_t> probe;
  EXPECT_EQ(a.acquire_prefix(probe, seq(8, 100), hashes_of(a, seq(8, 100)), 2), 0) << "evicted";
  EXPECT_EQ(a.acquire_prefix(probe, seq(8, 200), hashes_of(a, seq(8, 200)), 2), 2) << "still cached";
  a.release(probe);
  // Everything unheld goes before a reserve fails; the held blocks never do.
  std::vector<int32_t> more;
  EXPECT_TRUE(a.reserve(more, 8));
  for (int32_t b : more) EXPECT_EQ(held_ids.count(b), 0u);
  std::vector<int32_t> none;
  EXPECT_FALSE(a.reserve(none, 1));
  EXPECT_EQ(a.cached_blocks(), 2) << "only the held blocks' entries are left";
  a.release(more);
  a.release(fresh);
  a.release(held);
  EXPECT_EQ(a.free_blocks(), 6);
}

TEST(BlockAllocator, ReacquiringACachedBlockTakesItOffTheEvictionList) {
  BlockAllocator a(4, kBs);
  const std::vector<int32_t> p = seq(8, 0);
  std::vector<int32_t> t = computed(a, p);
  a.release(t);
  std::vector<int32_t> again;
  ASSERT_EQ(a.acquire_prefix(again, p, hashes_of(a, p), 2), 2);
  std::vector<int32_t> other;
  EXPECT_TRUE(a.reserve(other, 8));  // the two free blocks
  EXPECT_FALSE(a.reserve(other, 12)) << "the reacquired blocks cannot be evicted";
  EXPECT_EQ(a.evictions(), 0u);
  a.release(other);
  a.release(again);
}

TEST(BlockAllocator, CachedPrefixCountsLeadingHashes) {
  BlockAllocator a(8, kBs);
  const std::vector<int32_t> p = seq(12, 0);
  std::vector<int32_t> t = computed(a, std::vector<int32_t>(p.begin(), p.begin() + 8));
  EXPECT_EQ(a.cached_prefix(hashes_of(a, p)), 2);
  EXPECT_EQ(a.cached_prefix(hashes_of(a, seq(12, 1))), 0);
  a.release(t);
}

}  // namespace
}  // namespace tpinfer
