// The tensors of an architecture family, declared once. Each row says a
// tensor's canonical name, its shape as a function of the ModelConfig, how
// tensor parallelism splits it, and when a model has it. Everything that lists
// tensors walks this table: ModelSource's validation (every required tensor
// present with its shape, and no tensor the table does not declare),
// ShardPlan::slice, its block-size constraints, the loaders (model/), the
// planner's model shapes and synth. A new tensor is one new row.
//
// Names are canonical and GGUF-style (the same in every architecture, as
// llama.cpp names them): a global tensor ("token_embd.weight"), a layer's
// ("blk.N.attn_q.weight", the row holding "attn_q.weight") or one routed
// expert's matrix ("blk.N.ffn_gate.E.weight", the row holding "ffn_gate"; GGUF
// stores a layer's experts stacked, ModelSource shows them one by one).
//
// Split (docs/DESIGN.md, "Sharding one decoder layer"): Rows, column-parallel:
// a rank holds a range of rows (the outermost dimension); Cols, row-parallel:
// a range of columns (the innermost), so the matrix's quantization block must
// divide the unit where the range is cut; Replicated: all of it. The unit says
// which range of the rank's shard (parallel/shard_plan.h) the split follows.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/model_config.h"

namespace tpinfer {

// Every tensor any family declares, in file order (the order of the Llama
// family's table).
enum class TensorId : uint8_t {
  TokenEmbd,
  AttnNorm,
  AttnQ,
  AttnK,
  AttnV,
  AttnQBias,
  AttnKBias,
  AttnVBias,
  AttnQNorm,
  AttnKNorm,
  AttnOutput,
  FfnNorm,
  FfnGateInp,  // MoE router
  FfnGateExp,  // routed expert E's gate, up and down
  FfnUpExp,
  FfnDownExp,
  FfnGateShexp,  // shared expert
  FfnUpShexp,
  FfnDownShexp,
  FfnGateInpShexp,  // shared expert's gate
  FfnGate,          // dense MLP
  FfnUp,
  FfnDown,
  OutputNorm,
  Output,
  RopeFreqs,
};

enum class TensorScope : uint8_t { Global, Layer, Expert };

enum class SplitKind : uint8_t { Replicated, Rows, Cols };

// The range of a rank's shard a split follows: its query heads or KV heads (x
// head_dim), FFN features (of each routed expert in a MoE model),
// shared-expert features, vocabulary rows. None for replicated tensors.
enum class SplitUnit : uint8_t { None, QHeads, KvHeads, Ffn, SharedFfn, Vocab };

// What a tensor is, for code that makes or types tensors without naming them
// (synth's random values, llama-quantize's F32 router).
enum class TensorKind : uint8_t { Embedding, Matrix, Router, Norm, Bias, Gate, RopeFreqs };

// One dimension of a shape, from the config.
enum class Dim : uint8_t { None, Hidden, QDim, KvDim, HeadDim, HalfHeadDim, Ffn, SharedFfn, Vocab, Experts };

// When a model has a tensor: `test` on its config, described by `when` for
// errors ("models with Q/K/V biases"). A tensor that is not `required` may be
// missing even when the test holds (rope_freqs: the factors may come from the
// metadata instead); when present its shape is checked all the same.
struct Presence {
  bool (*test)(const ModelConfig&);
  const char* when;
  bool required;
};

struct TensorDecl {
  TensorId id;
  const char* name;  // Global: the name; Layer: after "blk.N."; Expert: the matrix
  TensorScope scope;
  TensorKind kind;
  SplitKind split;
  SplitUnit unit;
  Dim rows, cols;  // a vector has cols == Dim::None
  Presence presence;
};

// The table of `arch`'s family (every supported architecture is of the Llama
// family: dense, MoE with routed experts and an optional shared expert and
// gate, Q/K/V biases, Q/K norms, tied embeddings), in file order.
std::span<const TensorDecl> tensor_table(Arch arch);

// The row of `id` (in the Llama family's table).
const TensorDecl& tensor_decl(TensorId id);

// The canonical name of `id` in `layer` (Layer and Expert scopes) and of
// routed `expert` (Expert scope): tensor_name(TensorId::AttnQ, 3) is
// "blk.3.attn_q.weight".
std::string tensor_name(TensorId id, int layer = -1, int expert = -1);

// GGUF's name for layer `layer`'s routed experts of Expert-scope row `id`,
// stacked in one [experts, rows, cols] tensor: "blk.N.ffn_gate_exps.weight".
std::string stacked_expert_name(TensorId id, int layer);

// The shape of `d` in a model of config `c`, outermost first.
std::vector<int64_t> tensor_shape(const TensorDecl& d, const ModelConfig& c);

// One tensor of a model: its row, layer and expert (-1 where none).
struct ModelTensor {
  const TensorDecl* decl = nullptr;
  int layer = -1;
  int expert = -1;
  std::string name() const;
};

// Every tensor a model of config `c` has (those not `required` included), in
// file order: the globals before the layers, then layer by layer each row in
// table order (a routed expert's row expert by expert), then the globals after.
std::vector<ModelTensor> model_tensors(const ModelConfig& c);

// The row of canonical `name` in `arch`'s family, whatever the config, with
// its layer and expert; nullptr when the family declares no such name.
const TensorDecl* find_tensor_decl(Arch arch, std::string_view name, int* layer = nullptr, int* expert = nullptr);

// Like find_tensor_decl, but only a tensor a model of config `c` may hold
// (layer and expert in range, presence test true); else nullptr, and `*why`
// says why not ("only models with Q/K/V biases have it").
const TensorDecl* find_model_tensor(const ModelConfig& c, std::string_view name, std::string* why);

}  // namespace tpinfer
