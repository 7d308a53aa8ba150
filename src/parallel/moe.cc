#include "parallel/moe.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "formats/tensor_table.h"

namespace tpinfer {
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

ParallelMoE::ParallelMoE(Device& dev, const ModelSource& src, const ShardPlan& plan, int rank, int layer) {
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
  router_ = load_weight(dev, src, plan, rank, {tensor_name(FfnGateInp, layer)});
  mine_ = s.experts;
  for (int64_t e = mine_.begin; e < mine_.end; ++e) {
    const int x = static_cast<int>(e);
    Expert ex;
    ex.gate_up = ColumnParallelLinear(dev, src, plan, rank,
                                      {tensor_name(FfnGateExp, layer, x), tensor_name(FfnUpExp, layer, x)});
    ex.down = load_weight(dev, src, plan, rank, {tensor_name(FfnDownExp, layer, x)});
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
        ColumnParallelLinear(dev, src, plan, rank, {tensor_name(FfnGateShexp, layer), tensor_name(FfnUpShexp, layer)});
    shared_down_ = load_weight(dev, src, plan, rank, {tensor_name(FfnDownShexp, layer)});
    if (c.shared_expert_gate) shared_gate_ = dev.upload(load_vector_f32(src.get(tensor_name(FfnGateInpShexp, layer))));
  }
  load_.assign(static_cast<size_t>(n_experts_), 0);
  touched_.resize(static_cast<size_t>(plan.tp()));
}

uint64_t ParallelMoE::weight_bytes() const {
  if (!router_) return 0;  // not a MoE layer
  uint64_t b = router_->bytes() + shared_gate_up_.weight_bytes() + (shared_down_ ? shared_down_->bytes() : 0) +
               shared_gate_.bytes();
  for (const Expert& e : experts_) b += e.gate_up.weight_bytes() + e.down->bytes();
  return b;
}

void ParallelMoE::reset_load() { std::fill(load_.begin(), load_.end(), 0); }

void ParallelMoE::forward(Device& dev, const float* h, int64_t n, float* out) {
  const size_t nk = static_cast<size_t>(n * k_);
  logits_.resize(static_cast<size_t>(n * n_experts_));
  float* logits = reserve_f32(dev, logits_dev_, logits_.size());
  dev.matmul(*router_, h, n, logits);
  dev.read_to_host(logits, logits_.size(), logits_.data());
  chosen_.resize(nk);
  weights_.resize(nk);
  route_top_k(logits_.data(), n, n_experts_, k_, normalize_, chosen_.data(), weights_.data());
  for (int32_t e : chosen_) load_[static_cast<size_t>(e)] += 1;

  dev.zero(out, n * hidden_);
  run_experts(dev, h, n, out);
  if (!expert_parallel_) {
    add_shared(dev, h, n, out);                                 // this rank's share of it, summed with the rest below
    dev.all_reduce_sum(out, static_cast<size_t>(n * hidden_));  // as a dense MLP's down projection
    return;
  }
  if (dev.size() > 1) combine_expert_parallel(dev, n, out);
  add_shared(dev, h, n, out);  // replicated: the whole shared expert, after the sum
}

// out[t] += weight x expert(h[t]) for each of the rank's experts that token t
// was routed to (the rank's features of it under tensor parallelism), experts
// in ascending order.
void ParallelMoE::run_experts(Device& dev, const float* h, int64_t n, float* out) {
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
    const auto m = static_cast<size_t>(rows_.size());
    if (m == 0) continue;
    const Expert& ex = experts_[static_cast<size_t>(e - mine_.begin)];
    float* xs = reserve_f32(dev, xs_, m * static_cast<size_t>(hidden_));
    float* gu = reserve_f32(dev, gu_, m * 2 * static_cast<size_t>(ffn_local_));
    float* act = reserve_f32(dev, act_, m * static_cast<size_t>(ffn_local_));
    float* ys = reserve_f32(dev, ys_, m * static_cast<size_t>(hidden_));
    dev.gather_rows(h, rows_, hidden_, xs);
    ex.gate_up.forward(dev, xs, static_cast<int64_t>(m), gu);
    dev.swiglu(gu, static_cast<int64_t>(m), ffn_local_, act);
    dev.matmul(*ex.down, act, static_cast<int64_t>(m), ys);
    dev.add_rows_scaled(out, rows_, row_weights_, ys, hidden_);
  }
}

// out[t] += gate(h[t]) x shared_expert(h[t]), gate = sigmoid(h[t] . w) or 1.
void ParallelMoE::add_shared(Device& dev, const float* h, int64_t n, float* out) {
  if (shared_local_ == 0) return;
  float* gu = reserve_f32(dev, gu_, static_cast<size_t>(n * 2 * shared_local_));
  float* act = reserve_f32(dev, act_, static_cast<size_t>(n * shared_local_));
  float* ys = reserve_f32(dev, ys_, static_cast<size_t>(n * hidden_));
  shared_gate_up_.forward(dev, h, n, gu);
  dev.swiglu(gu, n, shared_local_, act);
  dev.matmul(*shared_down_, act, n, ys);
  if (shared_gate_.empty()) {
    dev.add(out, ys, n * hidden_);
  } else {
    dev.add_sigmoid_gated(out, h, shared_gate_.f32(), ys, n, hidden_);
  }
}

// Expert parallel: out holds this rank's weighted experts. Rank s computed
// rows only for T_s, the tokens routed to one of its experts, and every rank
// knows every T_s. An all-gather of just those rows moves (p-1) sum|T_s| rows
// over all ranks; a reduce-scatter + all-gather all-reduce moves 2(p-1) n.
// Each token reaches at most k ranks, so with k <= 2 the gather never moves
// more; past two ranks per token on average the all-reduce is used.
void ParallelMoE::combine_expert_parallel(Device& dev, int64_t n, float* out) {
  const int p = dev.size();
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
    dev.all_reduce_sum(out, static_cast<size_t>(n * hidden_));
    return;
  }
  const std::vector<int64_t>& own = touched_[static_cast<size_t>(dev.rank())];
  float* send = reserve_f32(dev, send_, std::max<size_t>(own.size(), 1) * static_cast<size_t>(hidden_));
  dev.gather_rows(out, own, hidden_, send);
  std::vector<size_t> counts;
  for (const std::vector<int64_t>& rows : touched_) counts.push_back(rows.size() * static_cast<size_t>(hidden_));
  float* recv = reserve_f32(dev, recv_, static_cast<size_t>(std::max<int64_t>(total, 1) * hidden_));
  dev.all_gather(send, counts, recv);
  // Every rank sums the gathered rows in rank order (its own included, as
  // received), so every rank ends with the same bits.
  dev.zero(out, n * hidden_);
  const float* row = recv;
  for (const std::vector<int64_t>& rows : touched_) {
    unit_weights_.assign(rows.size(), 1.0f);
    dev.add_rows_scaled(out, rows, unit_weights_, row, hidden_);
    row += static_cast<int64_t>(rows.size()) * hidden_;
  }
}

}  // namespace tpinfer
