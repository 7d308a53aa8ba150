#include "planner/model_shape.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "formats/tensor_table.h"
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

// The tensors tpinfer holds for a model of config `c` (formats/tensor_table.h),
// all typed `matrix_type` (vectors f32). Routed experts are listed once per
// layer and matrix, as expert 0 with `copies` = the number of experts.
std::vector<PlanTensor> canonical_tensors(const ModelConfig& c, DType matrix_type) {
  std::vector<PlanTensor> t;
  for (const ModelTensor& m : model_tensors(c)) {
    if (!m.decl->presence.required || m.expert > 0) continue;
    const bool expert = m.expert == 0;
    std::vector<int64_t> shape = tensor_shape(*m.decl, c);
    const DType type = shape.size() == 2 ? matrix_type : DType::F32;
    t.push_back({m.name(), type, std::move(shape), expert ? c.n_experts : 1, expert, m.layer});
  }
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
    c.n_experts = p.experts;
    c.n_experts_used = p.experts_per_token;
    s.n_experts = p.experts;
    s.experts_per_token = p.experts_per_token;
    s.tensors = canonical_tensors(c, DType::BF16);
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
  s.tensors = canonical_tensors(s.config, DType::F32);
  std::vector<DType> seen;
  for (PlanTensor& t : s.tensors) {
    // Expert 0 stands for all of a layer's experts (files type every expert alike).
    const TensorInfo& info = src.get(t.name);
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
  for (const PlanTensor& t : shape.tensors) {
    const TensorDecl* d = find_tensor_decl(shape.config.arch, t.name);
    if (d == nullptr) throw Error(cat("model shape: tensor '", t.name, "' is not in the tensor table"));
    c.add(*d, dtype_info(t.type).block_size);
  }
  return c;
}

}  // namespace tpinfer::planner
