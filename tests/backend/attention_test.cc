// Paged attention (backend/cpu/attention.h): attend_group on every
// instruction-set level and KV cache type against the double-precision
// attend_ref, on fresh random queries, keys and values, with scattered block
// tables, GQA groups of several tokens, odd head sizes and partial blocks.
#include "backend/cpu/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "backend/cpu/quant.h"
#include "backend_test_util.h"
#include "core/error.h"

namespace tpinfer::cpu {
namespace {

struct Cache {
  KVLayerView view;
  std::vector<uint8_t> k, v;
};

// A cache of n_blocks blocks with n_kv heads per slot, every slot filled with
// random keys and values stored as `type`.
Cache make_cache(DType type, int n_kv, int hd, int bs, int n_blocks, std::mt19937& rng) {
  Cache c;
  const uint64_t slot = row_bytes(type, static_cast<uint64_t>(n_kv) * hd);
  c.k.resize(slot * static_cast<uint64_t>(bs) * n_blocks);
  c.v.resize(c.k.size());
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> row(static_cast<size_t>(n_kv) * hd);
  for (int s = 0; s < bs * n_blocks; ++s) {
    for (float& x : row) x = normal(rng);
    store_kv(type, row.data(), c.k.data() + slot * s, static_cast<int64_t>(row.size()));
    for (float& x : row) x = normal(rng) * 2.0f;
    store_kv(type, row.data(), c.v.data() + slot * s, static_cast<int64_t>(row.size()));
  }
  c.view = {type, c.k.data(), c.v.data(), slot, hd, bs};
  return c;
}

struct Case {
  DType type;
  int hd, bs, n_kv, heads_per_kv, tokens, first_pos;
};

void check(const Case& cs, Isa isa, std::mt19937& rng) {
  const int n_blocks = (cs.first_pos + cs.tokens + cs.bs - 1) / cs.bs + 2;
  Cache c = make_cache(cs.type, cs.n_kv, cs.hd, cs.bs, n_blocks, rng);
  // A scattered block table: the sequence's blocks in a random order of the cache.
  std::vector<int32_t> table(static_cast<size_t>(n_blocks));
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), rng);
  table.resize(static_cast<size_t>((cs.first_pos + cs.tokens + cs.bs - 1) / cs.bs));

  const int m = cs.tokens * cs.heads_per_kv;
  std::normal_distribution<float> normal(0.0f, 1.5f);
  std::vector<std::vector<float>> q(static_cast<size_t>(m)), out(static_cast<size_t>(m));
  std::vector<const float*> qp;
  std::vector<float*> op;
  std::vector<int> n_ctx;
  for (int t = 0; t < cs.tokens; ++t) {
    for (int h = 0; h < cs.heads_per_kv; ++h) {
      const size_t i = static_cast<size_t>(t * cs.heads_per_kv + h);
      q[i].resize(static_cast<size_t>(cs.hd));
      for (float& x : q[i]) x = normal(rng);
      out[i].assign(static_cast<size_t>(cs.hd), NAN);
      qp.push_back(q[i].data());
      op.push_back(out[i].data());
      n_ctx.push_back(cs.first_pos + t + 1);
    }
  }
  const int kv_head = cs.n_kv - 1;
  const float scale = 1.0f / std::sqrt(static_cast<float>(cs.hd));
  AttnScratch scratch;
  attend_group(isa, AttnGroup{qp.data(), n_ctx.data(), op.data(), m}, kv_head, table, c.view, scale, scratch);

  std::vector<float> want(static_cast<size_t>(cs.hd));
  for (int i = 0; i < m; ++i) {
    attend_ref(qp[static_cast<size_t>(i)], kv_head, table, n_ctx[static_cast<size_t>(i)], c.view, scale, want.data());
    float peak = 0.0f;
    for (float w : want) peak = std::max(peak, std::fabs(w));
    for (int d = 0; d < cs.hd; ++d) {
      ASSERT_NEAR(out[static_cast<size_t>(i)][static_cast<size_t>(d)], want[static_cast<size_t>(d)], 2e-5f * peak + 1e-6f)
          << dtype_name(cs.type) << "/" << isa_name(isa) << " hd=" << cs.hd << " bs=" << cs.bs << " query " << i
          << " n_ctx " << n_ctx[static_cast<size_t>(i)] << " dim " << d;
    }
  }
}

TEST(Attention, GroupMatchesReferenceOnEveryIsaAndCacheType) {
  std::mt19937 rng(2026);
  const std::vector<Case> cases = {
      // type, head dim, block size, kv heads, heads per kv, tokens, first position
      {DType::F32, 64, 16, 2, 4, 1, 0},   {DType::F32, 64, 16, 2, 4, 1, 37},  {DType::F16, 128, 16, 1, 1, 1, 300},
      {DType::F16, 32, 16, 4, 2, 8, 0},   {DType::F16, 64, 8, 2, 4, 5, 21},   {DType::BF16, 80, 16, 2, 3, 3, 50},
      {DType::F32, 36, 4, 3, 1, 6, 9},    {DType::F32, 7, 3, 1, 2, 4, 2},     {DType::BF16, 96, 32, 1, 8, 8, 100},
      {DType::Q8_0, 64, 16, 2, 4, 7, 40}, {DType::Q8_0, 128, 16, 1, 2, 1, 513}, {DType::Q8_0, 32, 16, 4, 1, 8, 0},
  };
  for (const Case& cs : cases) {
    for (Isa isa : supported_isas()) check(cs, isa, rng);
  }
}

// The engine groups a token's query heads with other tokens of its sequence;
// how it is grouped must not change a bit of its result (pipeline micro-batches
// and continuous batching rely on a token's output not depending on its batch).
TEST(Attention, ResultDoesNotDependOnTheGroup) {
  std::mt19937 rng(77);
  for (DType type : {DType::F32, DType::F16, DType::Q8_0}) {
    for (int hd : {32, 64, 40}) {
      if (type == DType::Q8_0 && hd % 32 != 0) continue;
      Cache c = make_cache(type, 2, hd, 16, 8, rng);
      const std::vector<int32_t> table = {3, 0, 6, 1, 7, 2, 5, 4};
      std::normal_distribution<float> normal(0.0f, 1.0f);
      const int m = 11;
      std::vector<std::vector<float>> q(m, std::vector<float>(static_cast<size_t>(hd)));
      std::vector<std::vector<float>> together(m, std::vector<float>(static_cast<size_t>(hd)));
      std::vector<const float*> qp;
      std::vector<float*> op;
      std::vector<int> n_ctx;
      for (int i = 0; i < m; ++i) {
        for (float& x : q[static_cast<size_t>(i)]) x = normal(rng);
        qp.push_back(q[static_cast<size_t>(i)].data());
        op.push_back(together[static_cast<size_t>(i)].data());
        n_ctx.push_back(40 + 7 * i);  // different partial last blocks
      }
      for (Isa isa : supported_isas()) {
        AttnScratch scratch;
        attend_group(isa, AttnGroup{qp.data(), n_ctx.data(), op.data(), m}, 1, table, c.view, 0.125f, scratch);
        for (int i = 0; i < m; ++i) {
          std::vector<float> alone(static_cast<size_t>(hd));
          float* ap = alone.data();
          attend_group(isa, AttnGroup{&qp[static_cast<size_t>(i)], &n_ctx[static_cast<size_t>(i)], &ap, 1}, 1, table,
                       c.view, 0.125f, scratch);
          for (int d = 0; d < hd; ++d) {
            ASSERT_EQ(alone[static_cast<size_t>(d)], together[static_cast<size_t>(i)][static_cast<size_t>(d)])
                << dtype_name(type) << "/" << isa_name(isa) << " hd " << hd << " query " << i << " dim " << d;
          }
        }
      }
    }
  }
}

TEST(Attention, RejectsBadContextsAndTypes) {
  std::mt19937 rng(5);
  Cache c = make_cache(DType::F16, 1, 32, 16, 2, rng);
  const std::vector<int32_t> table = {1};
  std::vector<float> q(32, 1.0f), out(32);
  const float* qp[2] = {q.data(), q.data()};
  float* op[2] = {out.data(), out.data()};
  AttnScratch scratch;
  int beyond[1] = {17};  // one block of 16 slots
  EXPECT_THROW(attend_group(AttnGroup{qp, beyond, op, 1}, 0, table, c.view, 1.0f, scratch), Error);
  int zero[1] = {0};
  EXPECT_THROW(attend_group(AttnGroup{qp, zero, op, 1}, 0, table, c.view, 1.0f, scratch), Error);
  int decreasing[2] = {5, 4};
  EXPECT_THROW(attend_group(AttnGroup{qp, decreasing, op, 2}, 0, table, c.view, 1.0f, scratch), Error);
  KVLayerView q4 = c.view;
  q4.type = DType::Q4_0;
  int one[1] = {1};
  EXPECT_THROW(attend_group(AttnGroup{qp, one, op, 1}, 0, table, q4, 1.0f, scratch), Error);
}

}  // namespace
}  // namespace tpinfer::cpu
