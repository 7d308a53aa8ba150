#include "parallel/shard_plan.h"

#include <gtest/gtest.h>

#include <numeric>

#include "core/error.h"
#include "formats/model_source.h"

namespace tpinfer {
namespace {

ModelConfig shape(int heads, int kv, int head_dim, int ffn, int vocab) {
  ModelConfig m;
  m.n_heads = heads;
  m.n_kv_heads = kv;
  m.head_dim = head_dim;
  m.hidden = heads * head_dim;
  m.ffn = ffn;
  m.vocab = vocab;
  m.n_layers = 1;
  return m;
}

// The invariants every plan must hold, whatever the shape and split.
void check_invariants(const ModelConfig& m, const ShardPlan& plan, const ShardConstraints& c) {
  const int tp = plan.tp();
  int64_t q_at = 0, ffn_at = 0, vocab_at = 0;
  for (int r = 0; r < tp; ++r) {
    const RankShard& s = plan.rank(r);
    // Query heads, FFN features and vocabulary rows partition their ranges in rank order.
    EXPECT_EQ(s.q_heads.begin, q_at);
    EXPECT_GT(s.q_heads.size(), 0);
    q_at = s.q_heads.end;
    EXPECT_EQ(s.ffn.begin, ffn_at);
    ffn_at = s.ffn.end;
    EXPECT_EQ(s.vocab.begin, vocab_at);
    vocab_at = s.vocab.end;
    // Row-parallel column ranges fall on quantization blocks.
    EXPECT_EQ(s.q_heads.begin * m.head_dim % c.attn_output_block, 0);
    EXPECT_EQ(s.q_heads.size() * m.head_dim % c.attn_output_block, 0);
    EXPECT_EQ(s.ffn.begin % c.ffn_down_block, 0);
    EXPECT_EQ(s.ffn.size() % c.ffn_down_block, 0);
    // The rank holds exactly the KV heads its query heads read.
    const int group = m.n_heads / m.n_kv_heads;
    for (int64_t h = s.q_heads.begin; h < s.q_heads.end; ++h) {
      EXPECT_GE(h / group, s.kv_heads.begin);
      EXPECT_LT(h / group, s.kv_heads.end);
    }
    EXPECT_EQ(s.kv_heads.begin, s.q_heads.begin / group);
    EXPECT_EQ(s.kv_heads.end - 1, (s.q_heads.end - 1) / group);
    // Slices of the canonical tensors follow the ranges.
    EXPECT_EQ(plan.slice("blk.3.attn_q.weight", r).range, (Range{s.q_heads.begin * m.head_dim, s.q_heads.end * m.head_dim}));
    EXPECT_EQ(plan.slice("blk.3.attn_output.weight", r).kind, SplitKind::Cols);
    EXPECT_EQ(plan.slice("blk.0.attn_v.bias", r).range, (Range{s.kv_heads.begin * m.head_dim, s.kv_heads.end * m.head_dim}));
    EXPECT_EQ(plan.slice("blk.0.ffn_down.weight", r).range, s.ffn);
    EXPECT_EQ(plan.slice("blk.0.ffn_up.weight", r).kind, SplitKind::Rows);
    EXPECT_EQ(plan.slice("output.weight", r).range, s.vocab);
    EXPECT_EQ(plan.slice("blk.0.attn_norm.weight", r).kind, SplitKind::Replicated);
    EXPECT_EQ(plan.slice("blk.0.attn_k_norm.weight", r).kind, SplitKind::Replicated);
  }
  EXPECT_EQ(q_at, m.n_heads);
  EXPECT_EQ(ffn_at, m.ffn);
  EXPECT_EQ(vocab_at, m.vocab);
}

// Every shape with up to 32 heads, every KV count dividing the heads, every tp
// up to 16 and three block constraints: valid sizes build and hold the
// invariants; every other size throws an error that lists the valid ones.
TEST(ShardPlan, ExhaustiveEvenSplits) {
  const std::vector<ShardConstraints> constraints = {{1, 1}, {32, 32}, {256, 256}};
  for (int heads = 1; heads <= 32; ++heads) {
    for (int kv = 1; kv <= heads; ++kv) {
      if (heads % kv != 0) continue;
      for (int head_dim : {32, 64, 128}) {
        for (const ShardConstraints& c : constraints) {
          const ModelConfig m = shape(heads, kv, head_dim, 256 * 24, 1000 + heads);
          const std::vector<int> valid = ShardPlan::valid_sizes(m, c, 16);
          for (int tp = 1; tp <= 16; ++tp) {
            ParallelConfig p;
            p.tp = tp;
            const bool ok = std::find(valid.begin(), valid.end(), tp) != valid.end();
            if (ok) {
              const ShardPlan plan = ShardPlan::build(m, p, c);
              check_invariants(m, plan, c);
              for (int r = 0; r < tp; ++r) {
                EXPECT_EQ(plan.rank(r).q_heads.size(), heads / tp);
                EXPECT_EQ(plan.rank(r).ffn.size(), m.ffn / tp);
                EXPECT_LE(plan.rank(r).vocab.size(), (m.vocab + tp - 1) / tp);
              }
            } else {
              EXPECT_THROW(ShardPlan::build(m, p, c), ConfigError) << heads << " " << kv << " " << tp;
            }
          }
        }
      }
    }
  }
}

TEST(ShardPlan, GqaReplicationWhenKvBelowTp) {
  // 8 heads, 2 KV heads, tp 8: ranks 0-3 share KV head 0, ranks 4-7 KV head 1.
  const ModelConfig m = shape(8, 2, 32, 1024, 4096);
  ParallelConfig p;
  p.tp = 8;
  const ShardPlan plan = ShardPlan::build(m, p);
  for (int r = 0; r < 8; ++r) {
    EXPECT_EQ(plan.rank(r).q_heads, (Range{r, r + 1}));
    EXPECT_EQ(plan.rank(r).kv_heads, (Range{r / 4, r / 4 + 1}));
  }
}

TEST(ShardPlan, ErrorListsValidSizes) {
  const ModelConfig m = shape(8, 4, 32, 1024, 4096);
  ParallelConfig p;
  p.tp = 3;
  try {
    ShardPlan::build(m, p, {32, 32});
    FAIL() << "tp=3 must be rejected";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "tensor-parallel-size 3 does not divide 8 attention heads; valid: 1, 2, 4, 8");
  }
  // Q4_K blocks (256 values) cannot split 8 heads of 32 values: only tp=1 is valid.
  EXPECT_EQ(ShardPlan::valid_sizes(m, {256, 256}, 16), std::vector<int>{1});
}

TEST(ShardPlan, VocabNotDivisible) {
  const ModelConfig m = shape(8, 8, 32, 1024, 1001);
  ParallelConfig p;
  p.tp = 4;
  const ShardPlan plan = ShardPlan::build(m, p);
  EXPECT_EQ(plan.rank(0).vocab, (Range{0, 251}));
  EXPECT_EQ(plan.rank(3).vocab, (Range{753, 1001}));
}

TEST(ShardPlan, UnevenSplit) {
  const ModelConfig m = shape(32, 8, 128, 11008 + 256 * 5 - 11008 % 256, 32000);
  ParallelConfig p;
  p.tp = 2;
  p.tensor_split = {3, 1};
  const ShardConstraints c{32, 256};
  const ShardPlan plan = ShardPlan::build(m, p, c);
  check_invariants(m, plan, c);
  EXPECT_EQ(plan.rank(0).q_heads, (Range{0, 24}));
  EXPECT_EQ(plan.rank(1).q_heads, (Range{24, 32}));
  EXPECT_EQ(plan.rank(0).kv_heads, (Range{0, 6}));
  EXPECT_EQ(plan.rank(0).vocab.size(), 24000);
  // Three ranks, odd weights: every rank holds whole heads, and shares follow the weights.
  p.tp = 3;
  p.tensor_split = {1, 2, 5};
  const ShardPlan plan3 = ShardPlan::build(m, p, c);
  check_invariants(m, plan3, c);
  EXPECT_EQ(plan3.rank(0).q_heads.size() + plan3.rank(1).q_heads.size() + plan3.rank(2).q_heads.size(), 32);
  EXPECT_EQ(plan3.rank(2).q_heads.size(), 20);
  // Weights count must match tp; weights must be positive.
  p.tensor_split = {1, 1};
  EXPECT_THROW(ShardPlan::build(m, p, c), ConfigError);
  p.tensor_split = {1, 0, 1};
  EXPECT_THROW(ShardPlan::build(m, p, c), ConfigError);
}

// slice() reads formats/tensor_table.h: a name the table does not declare is
// an error naming it, not a silent replication.
TEST(ShardPlan, UndeclaredTensorIsAnErrorNamingIt) {
  const ModelConfig m = shape(8, 4, 16, 64, 100);
  ParallelConfig p;
  p.tp = 2;
  const ShardPlan plan = ShardPlan::build(m, p);
  for (const char* name : {"blk.0.attn_rot_embd.weight", "blk.0.ffn_gate_exps.weight", "output"}) {
    try {
      plan.slice(name, 1);
      ADD_FAILURE() << "no error for " << name;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(cat("'", name, "'")), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(plan.slice("rope_freqs.weight", 1).kind, SplitKind::Replicated);
}

TEST(ShardPlan, ApportionLargestRemainder) {
  EXPECT_EQ(apportion(10, {1, 1, 1}, 1), (std::vector<int64_t>{4, 3, 3}));
  EXPECT_EQ(apportion(8, {3, 1}, 1), (std::vector<int64_t>{6, 2}));
  EXPECT_EQ(apportion(2, {100, 1}, 1), (std::vector<int64_t>{1, 1}));
  EXPECT_THROW(apportion(2, {1, 1, 1}, 1), ConfigError);
}


ModelConfig moe_shape(int heads, int experts, int ffn, int shared) {
  ModelConfig m = shape(heads, heads, 32, ffn, 1000);
  m.n_experts = experts;
  m.n_experts_used = 2;
  m.shared_expert_ffn = shared;
  m.shared_expert_gate = shared > 0;
  return m;
}

// Tensor-parallel MoE: every rank holds every expert, each split over the
// expert FFN like a dense FFN; the shared expert split by its own size and blocks.
TEST(ShardPlanMoe, TensorParallelSplitsEveryExpert) {
  const ModelConfig m = moe_shape(8, 8, 512, 1024);
  ParallelConfig p;
  p.tp = 4;
  const ShardConstraints c{32, 32, 256};
  const ShardPlan plan = ShardPlan::build(m, p, c);
  check_invariants(m, plan, c);
  int64_t shared_at = 0;
  for (int r = 0; r < 4; ++r) {
    const RankShard& s = plan.rank(r);
    EXPECT_EQ(s.experts, (Range{0, 8}));
    EXPECT_EQ(s.ffn, (Range{128 * r, 128 * (r + 1)}));
    EXPECT_EQ(s.shared_ffn.begin, shared_at);
    EXPECT_EQ(s.shared_ffn.size(), 256);
    shared_at = s.shared_ffn.end;
    for (int e : {0, 7}) {
      EXPECT_EQ(plan.slice(expert_tensor_name(1, "ffn_gate", e), r).range, s.ffn);
      EXPECT_EQ(plan.slice(expert_tensor_name(1, "ffn_up", e), r).kind, SplitKind::Rows);
      const TensorSlice down = plan.slice(expert_tensor_name(1, "ffn_down", e), r);
      EXPECT_EQ(down.kind, SplitKind::Cols);
      EXPECT_EQ(down.range, s.ffn);
    }
    EXPECT_EQ(plan.slice("blk.1.ffn_gate_inp.weight", r).kind, SplitKind::Replicated);
    EXPECT_EQ(plan.slice("blk.1.ffn_gate_inp_shexp.weight", r).kind, SplitKind::Replicated);
    EXPECT_EQ(plan.slice("blk.1.ffn_up_shexp.weight", r).range, s.shared_ffn);
    EXPECT_EQ(plan.slice("blk.1.ffn_down_shexp.weight", r).kind, SplitKind::Cols);
  }
  EXPECT_EQ(shared_at, 1024);
  // The shared expert's blocks constrain tp: 1024 / 256 = 4 blocks.
  EXPECT_EQ(ShardPlan::valid_sizes(m, c, 16), (std::vector<int>{1, 2, 4}));
}

// Expert-parallel: whole experts apportioned to ranks, nothing of the others;
// the FFN is not split, so its blocks do not constrain tp, but every rank
// needs an expert.
TEST(ShardPlanMoe, ExpertParallelGivesWholeExperts) {
  const ModelConfig m = moe_shape(12, 8, 512, 1024);
  ParallelConfig p;
  p.tp = 3;
  p.expert_parallel = true;
  const ShardConstraints c{32, 256, 256};
  const ShardPlan plan = ShardPlan::build(m, p, c);
  EXPECT_TRUE(plan.expert_parallel());
  const std::vector<Range> want = {{0, 3}, {3, 6}, {6, 8}};  // 8 over 3: largest remainder
  for (int r = 0; r < 3; ++r) {
    const RankShard& s = plan.rank(r);
    EXPECT_EQ(s.experts, want[static_cast<size_t>(r)]);
    EXPECT_EQ(s.ffn, (Range{0, 512}));
    EXPECT_EQ(s.shared_ffn, (Range{0, 1024}));
    for (int e = 0; e < 8; ++e) {
      const bool mine = e >= s.experts.begin && e < s.experts.end;
      for (const char* base : {"ffn_gate", "ffn_up", "ffn_down"}) {
        const TensorSlice sl = plan.slice(expert_tensor_name(0, base, e), r);
        EXPECT_EQ(sl.kind, mine ? SplitKind::Replicated : SplitKind::Rows) << base << e << " rank " << r;
        if (!mine) {
          EXPECT_EQ(sl.range.size(), 0);
        }
      }
    }
    EXPECT_EQ(plan.slice("blk.0.ffn_down_shexp.weight", r).kind, SplitKind::Replicated);
    EXPECT_EQ(plan.rank(r).q_heads.size(), 4);  // attention stays tensor-parallel
  }
  // Uneven weights apportion experts too (at least one each).
  p.tp = 2;
  p.tensor_split = {3, 1};
  const ShardPlan uneven = ShardPlan::build(m, p, c);
  EXPECT_EQ(uneven.rank(0).experts, (Range{0, 6}));
  EXPECT_EQ(uneven.rank(1).experts, (Range{6, 8}));
  EXPECT_EQ(ShardPlan::valid_sizes(m, c, 16, true), (std::vector<int>{1, 2, 3, 4, 6}));
}

TEST(ShardPlanMoe, ErrorsNameTheValidChoices) {
  ModelConfig m = moe_shape(8, 4, 512, 0);
  ParallelConfig p;
  p.tp = 8;
  p.expert_parallel = true;
  try {
    ShardPlan::build(m, p);
    FAIL() << "8 ranks, 4 experts";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "expert parallelism over tensor-parallel-size 8 needs at least one of the 4 experts per rank; valid "
                 "with expert parallelism: 1, 2, 4");
  }
  p.tp = 2;
  EXPECT_NO_THROW(ShardPlan::build(m, p));
  const ModelConfig dense = shape(8, 8, 32, 512, 1000);
  try {
    ShardPlan::build(dense, p);
    FAIL() << "a dense model has no experts";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("needs a mixture-of-experts model"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tpinfer
