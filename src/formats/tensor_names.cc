// Tensor names: Hugging Face names to the canonical GGUF-style ones
// (formats/tensor_table.h declares them), GGUF's stacked experts, and the
// canonical name of one routed expert's matrix.

#include "core/error.h"
#include "formats/model_source.h"
#include "formats/model_source_internal.h"
#include "formats/tensor_table.h"

namespace tpinfer {
namespace {

// Consumes "N." (a decimal index without leading zeros, at most 9 digits) from
// the front of `rest`; false when `rest` does not start with one.
bool take_index(std::string_view& rest, long* n) {
  size_t digits = 0;
  while (digits < rest.size() && digits < 9 && rest[digits] >= '0' && rest[digits] <= '9') ++digits;
  if (digits == 0 || digits >= rest.size() || rest[digits] != '.' || (digits > 1 && rest[0] == '0')) return false;
  *n = 0;
  for (size_t i = 0; i < digits; ++i) *n = *n * 10 + (rest[i] - '0');
  rest = rest.substr(digits + 1);
  return true;
}

// The routed experts' matrices ("ffn_gate", "ffn_up", "ffn_down"): the
// Expert-scope rows of the tensor table (every family shares them).
std::vector<std::string_view> expert_matrices() {
  std::vector<std::string_view> out;
  for (const TensorDecl& d : tensor_table(Arch::Llama)) {
    if (d.scope == TensorScope::Expert) out.push_back(d.name);
  }
  return out;
}

}  // namespace

// Hugging Face tensor name -> canonical name; nullopt for names tpinfer does not
// use (rotary inv_freq buffers and the like). `layer` receives N of
// model.layers.N, `expert` E of a routed expert's ...experts.E... (else -1).
std::optional<std::string> canonical_name(std::string_view hf, long* layer, long* expert) {
  *layer = -1;
  *expert = -1;
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  constexpr std::string_view kLayers = "model.layers.";
  if (hf.substr(0, kLayers.size()) != kLayers) return std::nullopt;
  std::string_view rest = hf.substr(kLayers.size());
  long n = 0;
  if (!take_index(rest, &n)) return std::nullopt;
  static constexpr std::pair<std::string_view, std::string_view> kMap[] = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},
      {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.bias", "attn_v.bias"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"},
      {"self_attn.k_norm.weight", "attn_k_norm.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
      // Mixture of experts: the router, Qwen2-MoE's shared expert and its gate.
      {"block_sparse_moe.gate.weight", "ffn_gate_inp.weight"},
      {"mlp.gate.weight", "ffn_gate_inp.weight"},
      {"mlp.shared_expert.gate_proj.weight", "ffn_gate_shexp.weight"},
      {"mlp.shared_expert.up_proj.weight", "ffn_up_shexp.weight"},
      {"mlp.shared_expert.down_proj.weight", "ffn_down_shexp.weight"},
      {"mlp.shared_expert_gate.weight", "ffn_gate_inp_shexp.weight"},
  };
  for (const auto& [from, to] : kMap) {
    if (rest == from) {
      *layer = n;
      return cat("blk.", n, ".", to);
    }
  }
  // Routed experts: Mixtral's block_sparse_moe.experts.E.w1 (gate), w3 (up),
  // w2 (down); Qwen-MoE's mlp.experts.E.{gate,up,down}_proj.
  static constexpr std::pair<std::string_view, std::string_view> kExpertMap[] = {
      {"w1.weight", "ffn_gate"},        {"w3.weight", "ffn_up"},      {"w2.weight", "ffn_down"},
      {"gate_proj.weight", "ffn_gate"}, {"up_proj.weight", "ffn_up"}, {"down_proj.weight", "ffn_down"},
  };
  for (std::string_view prefix : {std::string_view("block_sparse_moe.experts."), std::string_view("mlp.experts.")}) {
    if (rest.substr(0, prefix.size()) != prefix) continue;
    std::string_view tail = rest.substr(prefix.size());
    long e = 0;
    if (!take_index(tail, &e)) return std::nullopt;
    const bool mixtral = prefix.front() == 'b';
    for (size_t i = mixtral ? 0 : 3; i < (mixtral ? 3u : 6u); ++i) {
      if (tail == kExpertMap[i].first) {
        *layer = n;
        *expert = e;
        return expert_tensor_name(static_cast<int>(n), kExpertMap[i].second, static_cast<int>(e));
      }
    }
  }
  return std::nullopt;
}

// "blk.N.ffn_gate_exps.weight" (up, down) -> N and "ffn_gate" (up, down).
bool parse_stacked_name(std::string_view name, int* layer, std::string_view* base) {
  constexpr std::string_view kBlk = "blk.";
  if (name.substr(0, kBlk.size()) != kBlk) return false;
  std::string_view rest = name.substr(kBlk.size());
  long n = 0;
  if (!take_index(rest, &n)) return false;
  for (std::string_view b : expert_matrices()) {
    if (rest.size() == b.size() + 12 && rest.substr(0, b.size()) == b && rest.substr(b.size()) == "_exps.weight") {
      *layer = static_cast<int>(n);
      *base = b;
      return true;
    }
  }
  return false;
}

// Qwen2-MoE's shared-expert gate is a [1, hidden] linear in Hugging Face files
// (and may be [1, hidden] in GGUF); canonically it is the vector [hidden].
void normalize_shared_gate(std::vector<TensorInfo>& tensors) {
  const std::string suffix = cat(".", tensor_decl(TensorId::FfnGateInpShexp).name);
  for (TensorInfo& t : tensors) {
    const std::string_view n = t.name;
    if (n.size() > suffix.size() && n.substr(n.size() - suffix.size()) == suffix && t.shape.size() == 2 &&
        t.shape[0] == 1) {
      t.shape = {t.shape[1]};
    }
  }
}

std::string expert_tensor_name(int layer, std::string_view base, int expert) {
  return cat("blk.", layer, ".", base, ".", expert, ".weight");
}

bool parse_expert_tensor_name(std::string_view name, int* layer, std::string_view* base, int* expert) {
  constexpr std::string_view kBlk = "blk.", kWeight = ".weight";
  if (name.substr(0, kBlk.size()) != kBlk) return false;
  std::string_view rest = name.substr(kBlk.size());
  long n = 0;
  if (!take_index(rest, &n)) return false;
  for (std::string_view b : expert_matrices()) {
    if (rest.size() <= b.size() + 1 || rest.substr(0, b.size()) != b || rest[b.size()] != '.') continue;
    std::string_view tail = rest.substr(b.size() + 1);
    long e = 0;
    if (!take_index(tail, &e) || tail != kWeight.substr(1)) return false;
    *layer = static_cast<int>(n);
    *base = b;
    *expert = static_cast<int>(e);
    return true;
  }
  return false;
}

}  // namespace tpinfer
