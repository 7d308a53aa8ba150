// The Llama family's tensor table and the walks over it.
#include "formats/tensor_table.h"

#include "core/error.h"

namespace tpinfer {
namespace {

bool always(const ModelConfig&) { return true; }
bool dense(const ModelConfig& c) { return !c.is_moe(); }
bool moe(const ModelConfig& c) { return c.is_moe(); }
bool qkv_bias(const ModelConfig& c) { return c.qkv_bias; }
bool qk_norm(const ModelConfig& c) { return c.qk_norm; }
bool untied(const ModelConfig& c) { return !c.tied_embeddings; }
bool shared_expert(const ModelConfig& c) { return c.is_moe() && c.shared_expert_ffn > 0; }
bool shared_gate(const ModelConfig& c) { return c.is_moe() && c.shared_expert_gate; }

constexpr Presence kAlways{always, "every model", true};
constexpr Presence kDense{dense, "models with a dense MLP", true};
constexpr Presence kMoe{moe, "mixture-of-experts models", true};
constexpr Presence kQkvBias{qkv_bias, "models with Q/K/V biases", true};
constexpr Presence kQkNorm{qk_norm, "models with Q/K norms", true};
constexpr Presence kUntied{untied, "models without tied embeddings", true};
constexpr Presence kSharedExpert{shared_expert, "mixture-of-experts models with a shared expert", true};
constexpr Presence kSharedGate{shared_gate, "mixture-of-experts models with a shared-expert gate", true};
constexpr Presence kMayHave{always, "every model", false};

using enum TensorScope;
using enum TensorKind;
using enum SplitKind;
using Id = TensorId;
using U = SplitUnit;
using D = Dim;

// In file order, which is TensorId's order. The rows in Layer and Expert scope
// are one block: model_tensors() walks it once per layer.
// clang-format off
constexpr TensorDecl kLlama[] = {
  // id                   name                         scope   kind       split       unit          rows            cols          presence
    {Id::TokenEmbd,       "token_embd.weight",         Global, Embedding, Rows,       U::Vocab,     D::Vocab,       D::Hidden,    kAlways},
    {Id::AttnNorm,        "attn_norm.weight",          Layer,  Norm,      Replicated, U::None,      D::Hidden,      D::None,      kAlways},
    {Id::AttnQ,           "attn_q.weight",             Layer,  Matrix,    Rows,       U::QHeads,    D::QDim,        D::Hidden,    kAlways},
    {Id::AttnK,           "attn_k.weight",             Layer,  Matrix,    Rows,       U::KvHeads,   D::KvDim,       D::Hidden,    kAlways},
    {Id::AttnV,           "attn_v.weight",             Layer,  Matrix,    Rows,       U::KvHeads,   D::KvDim,       D::Hidden,    kAlways},
    {Id::AttnQBias,       "attn_q.bias",               Layer,  Bias,      Rows,       U::QHeads,    D::QDim,        D::None,      kQkvBias},
    {Id::AttnKBias,       "attn_k.bias",               Layer,  Bias,      Rows,       U::KvHeads,   D::KvDim,       D::None,      kQkvBias},
    {Id::AttnVBias,       "attn_v.bias",               Layer,  Bias,      Rows,       U::KvHeads,   D::KvDim,       D::None,      kQkvBias},
    {Id::AttnQNorm,       "attn_q_norm.weight",        Layer,  Norm,      Replicated, U::None,      D::HeadDim,     D::None,      kQkNorm},
    {Id::AttnKNorm,       "attn_k_norm.weight",        Layer,  Norm,      Replicated, U::None,      D::HeadDim,     D::None,      kQkNorm},
    {Id::AttnOutput,      "attn_output.weight",        Layer,  Matrix,    Cols,       U::QHeads,    D::Hidden,      D::QDim,      kAlways},
    {Id::FfnNorm,         "ffn_norm.weight",           Layer,  Norm,      Replicated, U::None,      D::Hidden,      D::None,      kAlways},
    {Id::FfnGateInp,      "ffn_gate_inp.weight",       Layer,  Router,    Replicated, U::None,      D::Experts,     D::Hidden,    kMoe},
    {Id::FfnGateExp,      "ffn_gate",                  Expert, Matrix,    Rows,       U::Ffn,       D::Ffn,         D::Hidden,    kMoe},
    {Id::FfnUpExp,        "ffn_up",                    Expert, Matrix,    Rows,       U::Ffn,       D::Ffn,         D::Hidden,    kMoe},
    {Id::FfnDownExp,      "ffn_down",                  Expert, Matrix,    Cols,       U::Ffn,       D::Hidden,      D::Ffn,       kMoe},
    {Id::FfnGateShexp,    "ffn_gate_shexp.weight",     Layer,  Matrix,    Rows,       U::SharedFfn, D::SharedFfn,   D::Hidden,    kSharedExpert},
    {Id::FfnUpShexp,      "ffn_up_shexp.weight",       Layer,  Matrix,    Rows,       U::SharedFfn, D::SharedFfn,   D::Hidden,    kSharedExpert},
    {Id::FfnDownShexp,    "ffn_down_shexp.weight",     Layer,  Matrix,    Cols,       U::SharedFfn, D::Hidden,      D::SharedFfn, kSharedExpert},
    {Id::FfnGateInpShexp, "ffn_gate_inp_shexp.weight", Layer,  Gate,      Replicated, U::None,      D::Hidden,      D::None,      kSharedGate},
    {Id::FfnGate,         "ffn_gate.weight",           Layer,  Matrix,    Rows,       U::Ffn,       D::Ffn,         D::Hidden,    kDense},
    {Id::FfnUp,           "ffn_up.weight",             Layer,  Matrix,    Rows,       U::Ffn,       D::Ffn,         D::Hidden,    kDense},
    {Id::FfnDown,         "ffn_down.weight",           Layer,  Matrix,    Cols,       U::Ffn,       D::Hidden,      D::Ffn,       kDense},
    {Id::OutputNorm,      "output_norm.weight",        Global, Norm,      Replicated, U::None,      D::Hidden,      D::None,      kAlways},
    {Id::Output,          "output.weight",             Global, Matrix,    Rows,       U::Vocab,     D::Vocab,       D::Hidden,    kUntied},
    // Llama 3.1's RoPE frequency divisors (gguf_config reads them); optional.
    {Id::RopeFreqs,       "rope_freqs.weight",         Global, RopeFreqs, Replicated, U::None,      D::HalfHeadDim, D::None,      kMayHave},
};
// clang-format on

constexpr bool rows_in_id_order() {
  for (size_t i = 0; i < std::size(kLlama); ++i) {
    if (static_cast<size_t>(kLlama[i].id) != i) return false;
  }
  return true;
}
static_assert(rows_in_id_order() && std::size(kLlama) == static_cast<size_t>(TensorId::RopeFreqs) + 1,
              "kLlama holds every TensorId, in order");

int64_t dim(Dim d, const ModelConfig& c) {
  switch (d) {
    case D::None:
      return 0;
    case D::Hidden:
      return c.hidden;
    case D::QDim:
      return int64_t{c.n_heads} * c.head_dim;
    case D::KvDim:
      return int64_t{c.n_kv_heads} * c.head_dim;
    case D::HeadDim:
      return c.head_dim;
    case D::HalfHeadDim:
      return c.head_dim / 2;
    case D::Ffn:
      return c.ffn;
    case D::SharedFfn:
      return c.shared_expert_ffn;
    case D::Vocab:
      return c.vocab;
    case D::Experts:
      return c.n_experts;
  }
  return 0;
}

// Consumes "N." (decimal, no leading zeros, at most 9 digits) from the front
// of `rest`; -1 when it does not start with one.
int take_index(std::string_view& rest) {
  size_t digits = 0;
  while (digits < rest.size() && digits < 9 && rest[digits] >= '0' && rest[digits] <= '9') ++digits;
  if (digits == 0 || digits >= rest.size() || rest[digits] != '.' || (digits > 1 && rest[0] == '0')) return -1;
  int n = 0;
  for (size_t i = 0; i < digits; ++i) n = n * 10 + (rest[i] - '0');
  rest = rest.substr(digits + 1);
  return n;
}

}  // namespace

std::span<const TensorDecl> tensor_table(Arch arch) {
  switch (arch) {
    case Arch::Llama:
    case Arch::Mistral:
    case Arch::Qwen2:
    case Arch::Qwen3:
    case Arch::Mixtral:
    case Arch::Qwen2Moe:
    case Arch::Qwen3Moe:
      return kLlama;
  }
  throw Error(cat("no tensor table for architecture ", static_cast<int>(arch)));
}

const TensorDecl& tensor_decl(TensorId id) { return kLlama[static_cast<size_t>(id)]; }

std::string tensor_name(TensorId id, int layer, int expert) {
  const TensorDecl& d = tensor_decl(id);
  switch (d.scope) {
    case Global:
      return d.name;
    case Layer:
      return cat("blk.", layer, ".", d.name);
    case Expert:
      return cat("blk.", layer, ".", d.name, ".", expert, ".weight");
  }
  return d.name;
}

std::string stacked_expert_name(TensorId id, int layer) {
  const TensorDecl& d = tensor_decl(id);
  if (d.scope != Expert) throw Error(cat("tensor table: '", d.name, "' is not a routed expert's matrix"));
  return cat("blk.", layer, ".", d.name, "_exps.weight");
}

std::vector<int64_t> tensor_shape(const TensorDecl& d, const ModelConfig& c) {
  if (d.cols == D::None) return {dim(d.rows, c)};
  return {dim(d.rows, c), dim(d.cols, c)};
}

std::string ModelTensor::name() const { return tensor_name(decl->id, layer, expert); }

std::vector<ModelTensor> model_tensors(const ModelConfig& c) {
  const std::span<const TensorDecl> table = tensor_table(c.arch);
  std::vector<ModelTensor> out;
  bool layers_done = false;
  for (size_t i = 0; i < table.size(); ++i) {
    const TensorDecl& d = table[i];
    if (d.scope == Global) {
      if (d.presence.test(c)) out.push_back({&d, -1, -1});
      continue;
    }
    if (layers_done) throw Error(cat("tensor table: layer row '", d.name, "' after the layer block"));
    size_t end = i;
    while (end < table.size() && table[end].scope != Global) ++end;
    for (int l = 0; l < c.n_layers; ++l) {
      for (size_t j = i; j < end; ++j) {
        const TensorDecl& row = table[j];
        if (!row.presence.test(c)) continue;
        if (row.scope == Layer) {
          out.push_back({&row, l, -1});
        } else {
          for (int e = 0; e < c.n_experts; ++e) out.push_back({&row, l, e});
        }
      }
    }
    layers_done = true;
    i = end - 1;
  }
  return out;
}

const TensorDecl* find_tensor_decl(Arch arch, std::string_view name, int* layer, int* expert) {
  int l = -1, e = -1;
  TensorScope scope = Global;
  std::string_view rest = name;
  if (rest.substr(0, 4) == "blk.") {
    rest.remove_prefix(4);
    l = take_index(rest);
    if (l < 0) return nullptr;
    scope = Layer;
    // An expert's matrix: "<matrix>.E.weight".
    const size_t dot = rest.find('.');
    if (dot != std::string_view::npos) {
      std::string_view tail = rest.substr(dot + 1);
      const int x = take_index(tail);
      if (x >= 0 && tail == "weight") {
        scope = Expert;
        e = x;
        rest = rest.substr(0, dot);
      }
    }
  }
  for (const TensorDecl& d : tensor_table(arch)) {
    if (d.scope == scope && rest == d.name) {
      if (layer != nullptr) *layer = l;
      if (expert != nullptr) *expert = e;
      return &d;
    }
  }
  return nullptr;
}

const TensorDecl* find_model_tensor(const ModelConfig& c, std::string_view name, std::string* why) {
  int layer = -1, expert = -1;
  const TensorDecl* d = find_tensor_decl(c.arch, name, &layer, &expert);
  if (d == nullptr) {
    *why = cat("no ", arch_name(c.arch), " model has a tensor of that name");
  } else if (layer >= c.n_layers) {
    *why = cat("it belongs to layer ", layer, ", but the model has ", c.n_layers, " layers");
  } else if (!d->presence.test(c)) {
    *why = cat("only ", d->presence.when, " have it");
  } else if (expert >= c.n_experts) {
    *why = cat("it belongs to expert ", expert, ", but the model has ", c.n_experts, " experts");
  } else {
    return d;
  }
  return nullptr;
}

}  // namespace tpinfer
