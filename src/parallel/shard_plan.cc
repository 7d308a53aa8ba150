#include "parallel/shard_plan.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"

namespace tpinfer {
namespace {

std::string join(const std::vector<int>& v) {
  std::string s;
  for (int x : v) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return s;
}

// Heads per unit so that a rank's attn_output column range is block-aligned.
int64_t heads_per_unit(const ModelConfig& m, const ShardConstraints& c) {
  const int64_t hd = m.head_dim;
  const int64_t g = std::gcd(hd, c.attn_output_block);
  return c.attn_output_block / g;
}

std::vector<Range> ranges_from_counts(const std::vector<int64_t>& counts, int64_t unit, int64_t total) {
  std::vector<Range> out;
  int64_t at = 0;
  for (int64_t c : counts) {
    const int64_t end = std::min(total, at + c * unit);
    out.push_back({at, end});
    at = end;
  }
  return out;
}

// Why an even split into `tp` ranks is impossible, or "" if it is possible.
std::string even_split_problem(const ModelConfig& m, const ShardConstraints& c, int tp, bool expert_parallel) {
  if (tp < 1) return cat("tensor-parallel-size must be at least 1, got ", tp);
  if (m.n_heads % tp != 0) {
    return cat("tensor-parallel-size ", tp, " does not divide ", m.n_heads, " attention heads");
  }
  const int64_t unit = heads_per_unit(m, c);
  if ((m.n_heads / tp) % unit != 0) {
    return cat("tensor-parallel-size ", tp, " gives ", m.n_heads / tp, " heads of ", m.head_dim,
               " values per rank, which does not fall on the ", c.attn_output_block,
               "-value quantization blocks of attn_output");
  }
  if (m.is_moe() && expert_parallel) {
    if (tp > m.n_experts) {
      return cat("expert parallelism over tensor-parallel-size ", tp, " needs at least one of the ", m.n_experts,
                 " experts per rank");
    }
    return "";
  }
  if (m.ffn % c.ffn_down_block != 0 || (m.ffn / c.ffn_down_block) % tp != 0) {
    return cat("tensor-parallel-size ", tp, " does not split the ", m.is_moe() ? "expert " : "", "FFN size ", m.ffn,
               " into whole ", c.ffn_down_block, "-value quantization blocks of ffn_down");
  }
  if (m.shared_expert_ffn > 0 &&
      (m.shared_expert_ffn % c.shared_down_block != 0 || (m.shared_expert_ffn / c.shared_down_block) % tp != 0)) {
    return cat("tensor-parallel-size ", tp, " does not split the shared-expert size ", m.shared_expert_ffn,
               " into whole ", c.shared_down_block, "-value quantization blocks of ffn_down_shexp");
  }
  return "";
}

}  // namespace

std::vector<int64_t> apportion(int64_t units, const std::vector<double>& weights, int64_t min_units) {
  const size_t n = weights.size();
  if (n == 0) throw ConfigError("cannot split over zero ranks");
  double total = 0;
  for (double w : weights) {
    if (!(w > 0)) throw ConfigError(cat("tensor-split weights must be positive, got ", w));
    total += w;
  }
  if (units < min_units * static_cast<int64_t>(n)) {
    throw ConfigError(cat("cannot give ", n, " ranks at least ", min_units, " of ", units, " units each"));
  }
  // Largest remainder over all units, then ranks below the minimum take units
  // from the rank that has the most.
  std::vector<int64_t> counts(n, 0);
  std::vector<std::pair<double, size_t>> remainders;
  int64_t given = 0;
  for (size_t i = 0; i < n; ++i) {
    const double exact = static_cast<double>(units) * weights[i] / total;
    const auto whole = static_cast<int64_t>(exact);
    counts[i] = whole;
    given += whole;
    remainders.push_back({exact - static_cast<double>(whole), i});
  }
  std::stable_sort(remainders.begin(), remainders.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t k = 0; given < units; ++k, ++given) counts[remainders[k % n].second] += 1;
  for (size_t i = 0; i < n; ++i) {
    while (counts[i] < min_units) {
      const auto most = std::max_element(counts.begin(), counts.end());
      *most -= 1;
      counts[i] += 1;
    }
  }
  return counts;
}

std::vector<int> ShardPlan::valid_sizes(const ModelConfig& model, const ShardConstraints& constraints,
                                        int max_size, bool expert_parallel) {
  std::vector<int> sizes;
  for (int tp = 1; tp <= max_size; ++tp) {
    if (even_split_problem(model, constraints, tp, expert_parallel).empty()) sizes.push_back(tp);
  }
  return sizes;
}

ShardPlan ShardPlan::build(const ModelConfig& m, const ParallelConfig& p, const ShardConstraints& c) {
  if (m.n_heads <= 0 || m.n_kv_heads <= 0 || m.n_heads % m.n_kv_heads != 0 || m.head_dim <= 0) {
    throw ConfigError(cat("model has ", m.n_heads, " heads and ", m.n_kv_heads, " KV heads: cannot shard"));
  }
  const int tp = p.tp;
  const bool uneven = !p.tensor_split.empty();
  const bool ep = p.expert_parallel;
  if (ep && !m.is_moe()) {
    throw ConfigError("--enable-expert-parallel needs a mixture-of-experts model; this one has a dense MLP");
  }
  if (uneven && p.tensor_split.size() != static_cast<size_t>(tp)) {
    throw ConfigError(cat("--tensor-split has ", p.tensor_split.size(), " weights for tensor-parallel-size ", tp));
  }
  if (!uneven) {
    const std::string problem = even_split_problem(m, c, tp, ep);
    if (!problem.empty()) {
      throw ConfigError(cat(problem, "; valid", ep ? " with expert parallelism" : "", ": ",
                            join(valid_sizes(m, c, std::max(64, m.n_heads), ep))));
    }
  }
  const std::vector<double> weights = uneven ? p.tensor_split : std::vector<double>(static_cast<size_t>(tp), 1.0);

  ShardPlan plan;
  plan.head_dim_ = m.head_dim;
  plan.heads_per_kv_ = m.n_heads / m.n_kv_heads;
  plan.expert_parallel_ = ep;
  plan.arch_ = m.arch;

  const int64_t head_unit = heads_per_unit(m, c);
  if (m.n_heads % head_unit != 0) {
    throw ConfigError(cat("attention heads of ", m.head_dim, " values cannot be grouped on ", c.attn_output_block,
                          "-value blocks"));
  }
  // Under expert parallelism every rank holds its experts whole: nothing of the
  // FFN (or the shared expert) is split, so block boundaries do not matter.
  const bool split_ffn = !ep;
  if (split_ffn && m.ffn % c.ffn_down_block != 0) {
    throw ConfigError(cat("FFN size ", m.ffn, " is not a multiple of the ", c.ffn_down_block,
                          "-value blocks of ffn_down"));
  }
  if (split_ffn && m.shared_expert_ffn % c.shared_down_block != 0) {
    throw ConfigError(cat("shared-expert size ", m.shared_expert_ffn, " is not a multiple of the ",
                          c.shared_down_block, "-value blocks of ffn_down_shexp"));
  }
  const size_t n = static_cast<size_t>(tp);
  std::vector<int64_t> head_counts;
  std::vector<Range> ffn(n, Range{0, m.ffn}), shared(n, Range{0, m.shared_expert_ffn}), experts(n);
  try {
    head_counts = apportion(m.n_heads / head_unit, weights, 1);
    if (split_ffn) {
      ffn = ranges_from_counts(apportion(m.ffn / c.ffn_down_block, weights, 0), c.ffn_down_block, m.ffn);
      if (m.shared_expert_ffn > 0) {
        shared = ranges_from_counts(apportion(m.shared_expert_ffn / c.shared_down_block, weights, 0),
                                    c.shared_down_block, m.shared_expert_ffn);
      }
    }
    if (ep) {
      experts = ranges_from_counts(apportion(m.n_experts, weights, 1), 1, m.n_experts);
    } else {
      experts.assign(n, Range{0, m.n_experts});
    }
  } catch (const ConfigError& e) {
    throw ConfigError(cat("tensor-parallel-size ", tp, ep ? " with expert parallelism" : "",
                          uneven ? " with --tensor-split" : "", ": ", e.what()));
  }
  const std::vector<Range> q = ranges_from_counts(head_counts, head_unit, m.n_heads);
  std::vector<Range> vocab;
  if (uneven) {
    vocab = ranges_from_counts(apportion(m.vocab, weights, 0), 1, m.vocab);
  } else {
    // Vocabulary padded to a multiple of tp: ceil(V / tp) rows per rank.
    const int64_t per = (static_cast<int64_t>(m.vocab) + tp - 1) / tp;
    vocab = ranges_from_counts(std::vector<int64_t>(static_cast<size_t>(tp), per), 1, m.vocab);
  }
  for (int r = 0; r < tp; ++r) {
    RankShard s;
    s.q_heads = q[static_cast<size_t>(r)];
    // The KV heads read by the rank's query heads; shared ones are replicated.
    s.kv_heads = {s.q_heads.begin / plan.heads_per_kv_, (s.q_heads.end - 1) / plan.heads_per_kv_ + 1};
    s.ffn = ffn[static_cast<size_t>(r)];
    s.vocab = vocab[static_cast<size_t>(r)];
    s.experts = experts[static_cast<size_t>(r)];
    s.shared_ffn = shared[static_cast<size_t>(r)];
    plan.ranks_.push_back(s);
  }
  return plan;
}

TensorSlice ShardPlan::slice(std::string_view name, int r) const {
  int expert = -1;
  const TensorDecl* d = find_tensor_decl(arch_, name, nullptr, &expert);
  if (d == nullptr) {
    throw Error(cat("ShardPlan: tensor '", name, "' is not declared for ", arch_name(arch_),
                    " (formats/tensor_table.h), so it has no split"));
  }
  const RankShard& s = rank(r);
  if (d->scope == TensorScope::Expert) {
    if (expert < s.experts.begin || expert >= s.experts.end) return {SplitKind::Rows, {0, 0}};  // not this rank's
    if (expert_parallel_) return {};                                                            // whole
  }
  if (d->unit == SplitUnit::SharedFfn && expert_parallel_) return {};  // replicated beside whole experts
  const int64_t hd = head_dim_;
  switch (d->unit) {
    case SplitUnit::None:
      return {};
    case SplitUnit::QHeads:
      return {d->split, {s.q_heads.begin * hd, s.q_heads.end * hd}};
    case SplitUnit::KvHeads:
      return {d->split, {s.kv_heads.begin * hd, s.kv_heads.end * hd}};
    case SplitUnit::Ffn:
      return {d->split, s.ffn};
    case SplitUnit::SharedFfn:
      return {d->split, s.shared_ffn};
    case SplitUnit::Vocab:
      return {d->split, s.vocab};
  }
  return {};
}

void ShardConstraints::add(const TensorDecl& d, int64_t block) {
  if (d.split != SplitKind::Cols) return;
  switch (d.unit) {
    case SplitUnit::QHeads:
      attn_output_block = std::max(attn_output_block, block);
      return;
    case SplitUnit::Ffn:
      ffn_down_block = std::max(ffn_down_block, block);
      return;
    case SplitUnit::SharedFfn:
      shared_down_block = std::max(shared_down_block, block);
      return;
    case SplitUnit::None:
    case SplitUnit::KvHeads:
    case SplitUnit::Vocab:
      break;
  }
  throw Error(cat("tensor table: '", d.name, "' is split by columns along a unit that ShardPlan does not constrain"));
}

ShardConstraints shard_constraints_of(const ModelConfig& m,
                                      const std::function<int64_t(const std::string&)>& block_of) {
  ShardConstraints c;
  for (const ModelTensor& t : model_tensors(m)) {
    if (t.decl->split == SplitKind::Cols) c.add(*t.decl, block_of(t.name()));
  }
  return c;
}

}  // namespace tpinfer
