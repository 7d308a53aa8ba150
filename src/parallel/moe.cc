#include "parallel/moe.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "formats/tensor_table.h"

namespace tpinfer {
namespace {

// act[i] = silu(gate[i]) * up[i] for m rows of [gate | up], each `f` wide.
void swiglu(const float* gu, int64_t m, int64_t f, float* act) {
  for (int64_t t = 0; t < m; ++t) {
    const float* g = gu + t * 2 * f;
    const float* u = g + f;
    float* a = act + t * f;
    for (int64_t i = 0; i < f; ++i) a[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  }
}

}  // namespace

void route_top_k(const float* logits, int64_t n, int n_experts, int k, bool normalize, int32_t* experts,
                 float* weights) {
  for (int64_t t = 0; t < n; ++t) {
    const float* l = logits + t * n_experts;
    int32_t* e = experts + t * k;
    float* w = weights + t * k;
    // Selection by logit (softmax is monotonic): k passes, each taking the
    // largest logit not yet taken, the lower index on ties.
    for (int j = 0; j < k; ++j) {
      int best = -1;
      for (int x = 0; x < n_experts; ++x) {
        if (std::find(e, e + j, x) != e + j) continue;
        if (best < 0 || l[x] > l[best]) best = x;
      }
      e[j] = best;
    }
    double max = l[e[0]], sum = 0;
    for (int x = 0; x < n_experts; ++x) sum += std::exp(static_cast<double>(l[x]) - max);
    double chosen = 0;
    for (int j = 0; j < k; ++j) chosen += std::exp(static_cast<double>(l[e[j]]) - max);
    const double denom = normalize ? chosen : sum;
    for (int j = 0; j < k; ++j) w[j] = static_cast<float>(std::exp(static_cast<double>(l[e[j]]) - max) / denom);
  }
}

ParallelMoE::ParallelMoE(const ModelSource& src, const ShardPlan& plan, int rank, int layer) {
  using enum TensorId;
  const ModelConfig& c = src.config();
  const RankShard& s = plan.rank(rank);
  n_experts_ = c.n_experts;
  k_ = c.n_experts_used;
  normalize_ = c.norm_topk_prob;
  expert_parallel_ = plan.expert_parallel();
  hidden_ = c.hidden;
  ffn_local_ = s.ffn.size();
  shared_local_ = s.shared_ffn.size();
  const std::string router = tensor_name(FfnGateInp, layer);
  router_ = ShardedTensor::load(src.get(router), plan.slice(router, rank));
  mine_ = s.experts;
  for (int64_t e = mine_.begin; e < mine_.end; ++e) {
    const int x = static_cast<int>(e);
    Expert ex;
    ex.gate_up =
        ColumnParallelLinear(src, plan, rank, {tensor_name(FfnGateExp, layer, x), tensor_name(FfnUpExp, layer, x)});
    const std::string down = tensor_name(FfnDownExp, layer, x);
    ex.down = ShardedTensor::load(src.get(down), plan.slice(down, rank));
    experts_.push_back(std::move(ex));
  }
  owner_.assign(static_cast<size_t>(n_experts_), 0);
  for (int r = 0; r < plan.tp(); ++r) {
    const Range& er = plan.rank(r).experts;
    // Under tensor parallelism every rank holds every expert; owner_ is only
    // read under expert parallelism, where the ranges are disjoint.
    for (int64_t e = er.begin; e < er.end && expert_parallel_; ++e) owner_[static_cast<size_t>(e)] = r;
  }
  if (c.shared_expert_ffn > 0) {
    shared_gate_up_ =
        ColumnParallelLinear(src, plan, rank, {tensor_name(FfnGateShexp, layer), tensor_name(FfnUpShexp, layer)});
    const std::string down = tensor_name(FfnDownShexp, layer);
    shared_down_ = ShardedTensor::load(src.get(down), plan.slice(down, rank));
    if (c.shared_expert_gate) shared_gate_ = load_vector_f32(src.get(tensor_name(FfnGateInpShexp, layer)));
  }
  load_.assign(static_cast<size_t>(n_experts_), 0);
  touched_.resize(static_cast<size_t>(plan.tp()));
}

uint64_t ParallelMoE::weight_bytes() const {
  uint64_t b = router_.bytes() + shared_gate_up_.weight_bytes() + shared_down_.bytes() +
               shared_gate_.size() * sizeof(float);
  for (const Expert& e : experts_) b += e.gate_up.weight_bytes() + e.down.bytes();
  return b;
}

void ParallelMoE::reset_load() { std::fill(load_.begin(), load_.end(), 0); }

void ParallelMoE::forward(RankContext& ctx, const float* h, int64_t n, float* out) {
  const size_t nk = static_cast<size_t>(n * k_);
  logits_.resize(static_cast<size_t>(n * n_experts_));
  cpu::matmul(router_.view(), h, n, logits_.data(), ctx.pool, ctx.scratch);
  chosen_.resize(nk);
  weights_.resize(nk);
  route_top_k(logits_.data(), n, n_experts_, k_, normalize_, chosen_.data(), weights_.data());
  for (int32_t e : chosen_) load_[static_cast<size_t>(e)] += 1;

  std::fill(out, out + n * hidden_, 0.0f);
  run_experts(ctx, h, n, out);
  if (!expert_parallel_) {
    add_shared(ctx, h, n, out);  // this rank's share of it, summed with the rest below
    ctx.comm.all_reduce_sum(out, static_cast<size_t>(n * hidden_));  // as a dense MLP's down projection
    return;
  }
  if (ctx.size() > 1) combine_expert_parallel(ctx, n, out);
  add_shared(ctx, h, n, out);  // replicated: the whole shared expert, after the sum
}

// out[t] += weight x expert(h[t]) for each of the rank's experts that token t
// was routed to (the rank's features of it under tensor parallelism), experts
// in ascending order.
void ParallelMoE::run_experts(RankContext& ctx, const float* h, int64_t n, float* out) {
  if (ffn_local_ == 0) return;  // an uneven split can leave a rank no features
  for (int64_t e = mine_.begin; e < mine_.end; ++e) {
    rows_.clear();
    row_weights_.clear();
    for (int64_t t = 0; t < n; ++t) {
      for (int j = 0; j < k_; ++j) {
        if (chosen_[static_cast<size_t>(t * k_ + j)] != e) continue;
        rows_.push_back(t);
        row_weights_.push_back(weights_[static_cast<size_t>(t * k_ + j)]);
      }
    }
    const int64_t m = static_cast<int64_t>(rows_.size());
    if (m == 0) continue;
    const Expert& ex = experts_[static_cast<size_t>(e - mine_.begin)];
    xs_.resize(static_cast<size_t>(m * hidden_));
    for (int64_t i = 0; i < m; ++i) {
      std::copy(h + rows_[static_cast<size_t>(i)] * hidden_, h + (rows_[static_cast<size_t>(i)] + 1) * hidden_,
                xs_.begin() + i * hidden_);
    }
    gu_.resize(static_cast<size_t>(m * 2 * ffn_local_));
    act_.resize(static_cast<size_t>(m * ffn_local_));
    ys_.resize(static_cast<size_t>(m * hidden_));
    ex.gate_up.forward(ctx, xs_.data(), m, gu_.data());
    swiglu(gu_.data(), m, ffn_local_, act_.data());
    cpu::matmul(ex.down.view(), act_.data(), m, ys_.data(), ctx.pool, ctx.scratch);
    for (int64_t i = 0; i < m; ++i) {
      const float w = row_weights_[static_cast<size_t>(i)];
      float* o = out + rows_[static_cast<size_t>(i)] * hidden_;
      const float* y = &ys_[static_cast<size_t>(i * hidden_)];
      for (int64_t x = 0; x < hidden_; ++x) o[x] += w * y[x];
    }
  }
}

// out[t] += gate(h[t]) x shared_expert(h[t]), gate = sigmoid(h[t] . w) or 1.
void ParallelMoE::add_shared(RankContext& ctx, const float* h, int64_t n, float* out) {
  if (shared_local_ == 0) return;
  gu_.resize(static_cast<size_t>(n * 2 * shared_local_));
  act_.resize(static_cast<size_t>(n * shared_local_));
  ys_.resize(static_cast<size_t>(n * hidden_));
  shared_gate_up_.forward(ctx, h, n, gu_.data());
  swiglu(gu_.data(), n, shared_local_, act_.data());
  cpu::matmul(shared_down_.view(), act_.data(), n, ys_.data(), ctx.pool, ctx.scratch);
  for (int64_t t = 0; t < n; ++t) {
    float g = 1.0f;
    if (!shared_gate_.empty()) {
      double d = 0;
      for (int64_t x = 0; x < hidden_; ++x) d += static_cast<double>(h[t * hidden_ + x]) * shared_gate_[static_cast<size_t>(x)];
      g = static_cast<float>(1.0 / (1.0 + std::exp(-d)));
    }
    float* o = out + t * hidden_;
    const float* y = &ys_[static_cast<size_t>(t * hidden_)];
    for (int64_t x = 0; x < hidden_; ++x) o[x] += g * y[x];
  }
}

// Expert parallel: out holds this rank's weighted experts. Rank s computed
// rows only for T_s, the tokens routed to one of its experts, and every rank
// knows every T_s. An all-gather of just those rows moves (p-1) sum|T_s| rows
// over all ranks; a reduce-scatter + all-gather all-reduce moves 2(p-1) n.
// Each token reaches at most k ranks, so with k <= 2 the gather never moves
// more; past two ranks per token on average the all-reduce is used.
void ParallelMoE::combine_expert_parallel(RankContext& ctx, int64_t n, float* out) {
  const int p = ctx.size();
  int64_t total = 0;
  for (int s = 0; s < p; ++s) {
    std::vector<int64_t>& rows = touched_[static_cast<size_t>(s)];
    rows.clear();
    for (int64_t t = 0; t < n; ++t) {
      for (int j = 0; j < k_; ++j) {
        if (owner_[static_cast<size_t>(chosen_[static_cast<size_t>(t * k_ + j)])] == s) {
          rows.push_back(t);
          break;
        }
      }
    }
    total += static_cast<int64_t>(rows.size());
  }
  if (total > 2 * n) {
    ctx.comm.all_reduce_sum(out, static_cast<size_t>(n * hidden_));
    return;
  }
  const std::vector<int64_t>& own = touched_[static_cast<size_t>(ctx.rank())];
  send_.resize(own.size() * static_cast<size_t>(hidden_));
  for (size_t i = 0; i < own.size(); ++i) {
    std::copy(out + own[i] * hidden_, out + (own[i] + 1) * hidden_, send_.begin() + static_cast<int64_t>(i) * hidden_);
  }
  std::vector<size_t> counts;
  for (const std::vector<int64_t>& rows : touched_) counts.push_back(rows.size() * static_cast<size_t>(hidden_));
  recv_.resize(static_cast<size_t>(total * hidden_));
  ctx.comm.all_gather(send_.data(), counts, recv_.data());
  // Every rank sums the gathered rows in rank order (its own included, as
  // received), so every rank ends with the same bits.
  std::fill(out, out + n * hidden_, 0.0f);
  const float* row = recv_.data();
  for (const std::vector<int64_t>& rows : touched_) {
    for (int64_t t : rows) {
      float* o = out + t * hidden_;
      for (int64_t x = 0; x < hidden_; ++x) o[x] += row[x];
      row += hidden_;
    }
  }
}

}  // namespace tpinfer
