#include "parallel/pipeline_plan.h"

#include <algorithm>
#include <charconv>
#include <string>

#include "core/error.h"
#include "formats/tensor_table.h"

namespace tpinfer {

PipelinePlan PipelinePlan::build(int n_layers, int pp, const std::vector<int>& split) {
  if (n_layers < 1) throw ConfigError(cat("the model has ", n_layers, " layers: nothing to split into stages"));
  if (pp < 1 || pp > n_layers) {
    throw ConfigError(cat("pipeline-parallel-size ", pp, " does not fit the model's ", n_layers,
                          " layers (each stage needs at least one); valid: 1 to ", n_layers));
  }
  std::vector<int> counts;
  if (split.empty()) {
    for (int s = 0; s < pp; ++s) counts.push_back(n_layers / pp + (s < n_layers % pp ? 1 : 0));
  } else {
    std::string given;
    int sum = 0;
    for (int c : split) {
      if (!given.empty()) given += ',';
      given += std::to_string(c);
      sum += c;
    }
    if (split.size() != static_cast<size_t>(pp)) {
      throw ConfigError(cat("--pipeline-split ", given, " has ", split.size(), " layer counts for pipeline-parallel-size ",
                            pp, "; give one count per stage"));
    }
    if (*std::min_element(split.begin(), split.end()) < 1 || sum != n_layers) {
      throw ConfigError(cat("--pipeline-split ", given, " must give every stage at least one layer and sum to the model's ",
                            n_layers, " layers (it sums to ", sum, ")"));
    }
    counts = split;
  }
  PipelinePlan plan;
  plan.n_layers_ = n_layers;
  int at = 0;
  for (int c : counts) {
    plan.stages_.push_back({at, at + c});
    at += c;
  }
  return plan;
}

int PipelinePlan::stage_of_layer(int layer) const {
  for (int s = 0; s < stages(); ++s) {
    if (stages_[static_cast<size_t>(s)].contains(layer)) return s;
  }
  throw ConfigError(cat("layer ", layer, " is outside the model's ", n_layers_, " layers"));
}

int PipelinePlan::max_stage_layers() const {
  int m = 0;
  for (const LayerRange& r : stages_) m = std::max(m, r.size());
  return m;
}

std::vector<int> PipelinePlan::layer_counts() const {
  std::vector<int> c;
  for (const LayerRange& r : stages_) c.push_back(r.size());
  return c;
}

bool PipelinePlan::holds(std::string_view name, int s, bool tied) const {
  const bool first = s == 0, last = s == stages() - 1;
  if (name.substr(0, 4) == "blk.") {
    const std::string_view rest = name.substr(4);
    int layer = -1;
    const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), layer);
    if (ec != std::errc() || end == rest.data() + rest.size() || *end != '.') return false;
    return stage(s).contains(layer);
  }
  if (name == tensor_name(TensorId::TokenEmbd)) return first || (last && tied);
  if (name == tensor_name(TensorId::OutputNorm) || name == tensor_name(TensorId::Output)) return last;
  return true;  // rope_freqs and anything global
}

}  // namespace tpinfer
