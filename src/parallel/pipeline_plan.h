// PipelinePlan: which consecutive layers each pipeline stage holds, and where
// a rank sits in a replica of tp x pp ranks.
//
//   world rank = stage x tp + tp_rank
//
// The ranks of a tensor-parallel group are contiguous, so mpirun's usual
// by-slot mapping keeps a group (two all-reduces per layer) inside one host and
// only the stage-to-stage sends (one hidden state per token per stage) cross
// hosts.
//
// Layers: consecutive; an even split gives every stage floor(L / pp) layers
// and the first L mod pp stages one more (the planner uses the same rule), or
// explicit counts (--pipeline-split 3,5). The first stage also holds the token
// embedding, the last the final norm and the lm_head (with tied embeddings,
// the embedding's rows again); RoPE frequencies every stage.
#pragma once

#include <string_view>
#include <vector>

namespace tpinfer {

struct LayerRange {
  int begin = 0;
  int end = 0;
  int size() const { return end - begin; }
  bool contains(int layer) const { return layer >= begin && layer < end; }
  bool operator==(const LayerRange&) const = default;
};

class PipelinePlan {
 public:
  // Throws ConfigError naming the valid choices: pp between 1 and the layers;
  // `split` empty (even) or pp counts of at least 1 that sum to n_layers.
  static PipelinePlan build(int n_layers, int pp, const std::vector<int>& split = {});

  int stages() const { return static_cast<int>(stages_.size()); }
  int n_layers() const { return n_layers_; }
  const LayerRange& stage(int s) const { return stages_.at(static_cast<size_t>(s)); }
  int stage_of_layer(int layer) const;
  int max_stage_layers() const;
  // Layer counts per stage ("3, 3, 2" in messages and reports).
  std::vector<int> layer_counts() const;

  // Whether stage s holds (a slice of) the tensor `canonical_name`
  // (formats/model_source.h names; `tied`: the lm_head reads token_embd).
  bool holds(std::string_view canonical_name, int s, bool tied) const;

 private:
  int n_layers_ = 0;
  std::vector<LayerRange> stages_;
};

// Where world rank `w` of a replica of tp x pp ranks sits.
struct RankPlace {
  int stage = 0;
  int tp_rank = 0;
};
inline RankPlace rank_place(int world_rank, int tp) { return {world_rank / tp, world_rank % tp}; }
inline int world_rank_of(int stage, int tp_rank, int tp) { return stage * tp + tp_rank; }

}  // namespace tpinfer
