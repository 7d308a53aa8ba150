#include "planner/model_shape.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "model/synth.h"

namespace tpinfer::planner {
namespace {

struct Published {
  const char* name;
  const char* display;
  Arch arch;
  int layers, hidden, heads, kv_heads, head_dim, ffn, vocab, context;
  bool qkv_bias, tied;
  int experts, experts_per_token;
  const char* source;
};

// Hyper-parameters as published in each model's config.json on the Hugging Face
// Hub (num_hidden_layers, hidden_size, num_attention_heads, num_key_value_heads,
// head_dim, intermediate_size, vocab_size, max_position_embeddings,
// tie_word_embeddings; Mixtral: num_local_experts, num_experts_per_tok).
const Published kPublished[] = {
    {"llama-3.1-8b", "Llama-3.1-8B", Arch::Llama, 32, 4096, 32, 8, 128, 14336, 128256, 131072, false, false, 0, 0,
     "meta-llama/Llama-3.1-8B config.json"},
    {"llama-3.1-70b", "Llama-3.1-70B", Arch::Llama, 80, 8192, 64, 8, 128, 28672, 128256, 131072, false, false, 0, 0,
     "meta-llama/Llama-3.1-70B config.json"},
    {"llama-3.1-405b", "Llama-3.1-405B", Arch::Llama, 126, 16384, 128, 8, 128, 53248, 128256, 131072, false, false, 0,
     0, "meta-llama/Llama-3.1-405B config.json"},
    {"llama-3.2-1b", "Llama-3.2-1B", Arch::Llama, 16, 2048, 32, 8, 64, 8192, 128256, 131072, false, true, 0, 0,
     "meta-llama/Llama-3.2-1B config.json"},
    {"llama-3.2-3b", "Llama-3.2-3B", Arch::Llama, 28, 3072, 24, 8, 128, 8192, 128256, 131072, false, true, 0, 0,
     "meta-llama/Llama-3.2-3B config.json"},
    {"qwen2.5-7b", "Qwen2.5-7B", Arch::Qwen2, 28, 3584, 28, 4, 128, 18944, 152064, 131072, true, false, 0, 0,
     "Qwen/Qwen2.5-7B config.json (131072 with YaRN per its model card)"},
    {"qwen2.5-72b", "Qwen2.5-72B", Arch::Qwen2, 80, 8192, 64, 8, 128, 29568, 152064, 131072, true, false, 0, 0,
     "Qwen/Qwen2.5-72B config.json (131072 with YaRN per its model card)"},
    {"mistral-7b", "Mistral-7B-v0.3", Arch::Mistral, 32, 4096, 32, 8, 128, 14336, 32768, 32768, false, false, 0, 0,
     "mistralai/Mistral-7B-v0.3 config.json"},
    {"mixtral-8x7b", "Mixtral-8x7B-v0.1", Arch::Mistral, 32, 4096, 32, 8, 128, 14336, 32000, 32768, false, false, 8, 2,
     "mistralai/Mixtral-8x7B-v0.1 config.json (8 local experts, 2 per token)"},
};

std::string blk(int l, const char* name) { return "blk." + std::to_string(l) + "." + name; }

// The tensors tpinfer holds for a model of config `c`, all typed `matrix_type`
// (vectors f32).
std::vector<PlanTensor> canonical_tensors(const ModelConfig& c, int experts, DType matrix_type) {
  const int64_t h = c.hidden, hd = c.head_dim, q = int64_t{c.n_heads} * hd, kv = int64_t{c.n_kv_heads} * hd;
  std::vector<PlanTensor> t;
  auto add = [&](std::string name, std::vector<int64_t> shape, int layer, int copies = 1, bool expert = false) {
    const DType type = shape.size() == 2 ? matrix_type : DType::F32;
    t.push_back({std::move(name), type, std::move(shape), copies, expert, layer});
  };
  add("token_embd.weight", {c.vocab, h}, -1);
  for (int l = 0; l < c.n_layers; ++l) {
    add(blk(l, "attn_norm.weight"), {h}, l);
    add(blk(l, "ffn_norm.weight"), {h}, l);
    if (c.qk_norm) {
      add(blk(l, "attn_q_norm.weight"), {hd}, l);
      add(blk(l, "attn_k_norm.weight"), {hd}, l);
    }
    add(blk(l, "attn_q.weight"), {q, h}, l);
    add(blk(l, "attn_k.weight"), {kv, h}, l);
    add(blk(l, "attn_v.weight"), {kv, h}, l);
    if (c.qkv_bias) {
      add(blk(l, "attn_q.bias"), {q}, l);
      add(blk(l, "attn_k.bias"), {kv}, l);
      add(blk(l, "attn_v.bias"), {kv}, l);
    }
    add(blk(l, "attn_output.weight"), {h, q}, l);
    const int copies = experts > 0 ? experts : 1;
    if (experts > 0) add(blk(l, "ffn_gate_inp.weight"), {experts, h}, l);
    add(blk(l, "ffn_gate.weight"), {c.ffn, h}, l, copies, experts > 0);
    add(blk(l, "ffn_up.weight"), {c.ffn, h}, l, copies, experts > 0);
    add(blk(l, "ffn_down.weight"), {h, c.ffn}, l, copies, experts > 0);
    if (c.shared_expert_ffn > 0) {
      add(blk(l, "ffn_gate_shexp.weight"), {c.shared_expert_ffn, h}, l);
      add(blk(l, "ffn_up_shexp.weight"), {c.shared_expert_ffn, h}, l);
      add(blk(l, "ffn_down_shexp.weight"), {h, c.shared_expert_ffn}, l);
    }
    if (c.shared_expert_gate) add(blk(l, "ffn_gate_inp_shexp.weight"), {h}, l);
  }
  add("output_norm.weight", {h}, -1);
  if (!c.tied_embeddings) add("output.weight", {c.vocab, h}, -1);
  return t;
}

}  // namespace

std::vector<std::string> named_shape_names() {
  std::vector<std::string> out;
  for (const Published& p : kPublished) out.push_back(p.name);
  return out;
}

std::optional<ModelShape> named_shape(std::string_view name) {
  std::string n(name);
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  for (const Published& p : kPublished) {
    if (n != p.name) continue;
    ModelShape s;
    ModelConfig& c = s.config;
    c.arch = p.arch;
    c.arch_name = arch_name(p.arch);
    c.name = p.display;
    c.n_layers = p.layers;
    c.hidden = p.hidden;
    c.n_heads = p.heads;
    c.n_kv_heads = p.kv_heads;
    c.head_dim = p.head_dim;
    c.ffn = p.ffn;
    c.vocab = p.vocab;
    c.max_context = p.context;
    c.qkv_bias = p.qkv_bias;
    c.tied_embeddings = p.tied;
    s.n_experts = p.experts;
    s.experts_per_token = p.experts_per_token;
    s.tensors = canonical_tensors(c, p.experts, DType::BF16);
    s.source = p.source;
    s.weight_label = "bf16";
    return s;
  }
  return std::nullopt;
}

ModelShape shape_from_source(const ModelSource& src) {
  ModelShape s;
  s.config = src.config();
  s.n_experts = s.config.n_experts;
  s.experts_per_token = s.config.n_experts_used;
  s.tensors = canonical_tensors(s.config, s.n_experts, DType::F32);
  std::vector<DType> seen;
  for (PlanTensor& t : s.tensors) {
    // A MoE model's experts are listed once under the dense name; expert 0
    // stands for all of them (files type every expert alike).
    // (blk.N.ffn_gate.weight -> blk.N.ffn_gate.0.weight).
    const std::string name = t.expert ? t.name.substr(0, t.name.size() - 7) + ".0.weight" : t.name;
    const TensorInfo& info = src.get(name);
    t.type = info.type;
    t.shape = info.shape;
    if (t.shape.size() == 2 && std::find(seen.begin(), seen.end(), t.type) == seen.end()) seen.push_back(t.type);
  }
  s.source = src.path();
  for (DType d : seen) {
    if (!s.weight_label.empty()) s.weight_label.push_back('+');
    s.weight_label.append(dtype_name(d));
  }
  return s;
}

ModelShape load_shape(const std::string& name_or_path) {
  if (std::optional<ModelShape> s = named_shape(name_or_path)) return *s;
  if (std::filesystem::exists(name_or_path)) return shape_from_source(*ModelSource::open(name_or_path));
  std::string names;
  for (const std::string& n : named_shape_names()) names += (names.empty() ? "" : ", ") + n;
  throw ConfigError(
      cat("-m '", name_or_path, "' is neither a model file or folder nor a known shape; shapes: ", names));
}

ModelShape with_weight_type(const ModelShape& shape, DType type) {
  ModelShape s = shape;
  for (PlanTensor& t : s.tensors) {
    if (t.shape.size() == 2) t.type = synth_tensor_type(type, t.shape.back());
  }
  s.weight_label = std::string(dtype_name(type));
  return s;
}

int64_t total_parameters(const ModelShape& shape) {
  int64_t n = 0;
  for (const PlanTensor& t : shape.tensors) {
    int64_t e = 1;
    for (int64_t d : t.shape) e *= d;
    n += e * t.copies;
  }
  return n;
}

int64_t active_parameters(const ModelShape& shape) {
  int64_t n = 0;
  for (const PlanTensor& t : shape.tensors) {
    int64_t e = 1;
    for (int64_t d : t.shape) e *= d;
    n += t.expert ? e * shape.experts_per_token : e * t.copies;
  }
  return n;
}

ShardConstraints shape_constraints(const ModelShape& shape) {
  ShardConstraints c;
  auto ends_with = [](const std::string& s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  for (const PlanTensor& t : shape.tensors) {
    const int64_t block = dtype_info(t.type).block_size;
    if (ends_with(t.name, ".attn_output.weight")) c.attn_output_block = std::max(c.attn_output_block, block);
    if (ends_with(t.name, ".ffn_down.weight")) c.ffn_down_block = std::max(c.ffn_down_block, block);
    if (ends_with(t.name, ".ffn_down_shexp.weight")) c.shared_down_block = std::max(c.shared_down_block, block);
  }
  return c;
}

}  // namespace tpinfer::planner
