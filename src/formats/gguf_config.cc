// The ModelConfig of a GGUF file: the architecture's metadata keys
// (<arch>.block_count, ...), llama.cpp's mixture-of-experts keys, special
// tokens, and RoPE scaling from the keys or the rope_freqs tensor.

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>

#include "core/error.h"
#include "formats/model_source_internal.h"
#include "formats/tensor_table.h"

namespace tpinfer {
namespace {

namespace fs = std::filesystem;

std::optional<Arch> arch_from_gguf(std::string_view a) {
  if (a == "llama") return Arch::Llama;
  if (a == "mistral") return Arch::Mistral;
  if (a == "qwen2") return Arch::Qwen2;
  if (a == "qwen3") return Arch::Qwen3;
  if (a == "qwen2moe") return Arch::Qwen2Moe;
  if (a == "qwen3moe") return Arch::Qwen3Moe;
  return std::nullopt;
}

class GgufKeys {
 public:
  GgufKeys(const GgufFile& g, std::string prefix) : g_(g), prefix_(std::move(prefix)) {}

  // <arch>.<key> as a positive int; `fallback` when absent (0: required).
  int integer(std::string_view key, int fallback = 0) const {
    const std::string full = cat(prefix_, key);
    const GgufValue* v = g_.find(full);
    if (v == nullptr) {
      if (fallback > 0) return fallback;
      throw FormatError(cat(g_.path(), ": expected metadata key '", full, "', found none"));
    }
    const std::optional<int64_t> i = v->type == GgufType::BOOL ? std::nullopt : v->as_int();
    if (!i || *i <= 0 || *i > std::numeric_limits<int>::max()) {
      throw FormatError(
          cat(g_.path(), ": metadata '", full, "': expected a positive integer below 2^31, found ", describe(*v)));
    }
    return static_cast<int>(*i);
  }

  std::optional<float> real(std::string_view key, bool required) const {
    const std::string full = cat(prefix_, key);
    const GgufValue* v = g_.find(full);
    if (v == nullptr) {
      if (!required) return std::nullopt;
      throw FormatError(cat(g_.path(), ": expected metadata key '", full, "', found none"));
    }
    const std::optional<double> d = v->type == GgufType::BOOL ? std::nullopt : v->as_float();
    if (!d) throw FormatError(cat(g_.path(), ": metadata '", full, "': expected a number, found ", describe(*v)));
    return static_cast<float>(*d);
  }

  std::optional<int64_t> token_id(std::string_view full) const {
    const GgufValue* v = g_.find(full);
    if (v == nullptr) return std::nullopt;
    const std::optional<int64_t> i = v->type == GgufType::BOOL ? std::nullopt : v->as_int();
    if (!i || *i < 0 || *i > std::numeric_limits<int>::max()) {
      throw FormatError(cat(g_.path(), ": metadata '", full, "': expected a token id, found ", describe(*v)));
    }
    return i;
  }

  static std::string describe(const GgufValue& v) {
    if (v.as_array() != nullptr) return cat("an array of ", v.as_array()->items.size());
    if (const std::string* s = v.as_string()) return cat("the string \"", s->substr(0, 40), "\"");
    if (const auto d = v.as_float()) return cat(gguf_type_name(v.type), " ", *d);
    return std::string(gguf_type_name(v.type));
  }

 private:
  const GgufFile& g_;
  std::string prefix_;
};

// llama.cpp's MoE keys: <arch>.expert_count, .expert_used_count,
// .expert_feed_forward_length (else the stacked experts' rows, else
// feed_forward_length, as Mixtral files have it), .expert_shared_feed_forward_length
// (else the shared expert's rows), .expert_weights_norm (else the architecture's
// rule: Mixtral and Qwen3-MoE renormalize, Qwen2-MoE does not), .expert_gating_func
// (softmax only). A "llama" file with experts is Mixtral.
void gguf_moe_config(const GgufFile& g, const GgufKeys& k, ModelConfig& c) {
  const std::string& a = c.arch_name;
  const GgufValue* count = g.find(a + ".expert_count");
  if (count == nullptr || count->as_int() == std::optional<int64_t>(0)) {  // some dense exports write 0
    if (c.arch == Arch::Qwen2Moe || c.arch == Arch::Qwen3Moe) {
      throw FormatError(cat(g.path(), ": expected metadata key '", a, ".expert_count', found none"));
    }
    return;
  }
  c.n_experts = k.integer("expert_count");
  if (c.arch == Arch::Llama) c.arch = Arch::Mixtral;
  if (c.arch != Arch::Mixtral && c.arch != Arch::Qwen2Moe && c.arch != Arch::Qwen3Moe) {
    throw ConfigError(cat(g.path(), ": architecture '", a, "' with experts is not supported; mixture-of-experts ",
                          "architectures: llama (Mixtral), qwen2moe, qwen3moe"));
  }
  c.n_experts_used = k.integer("expert_used_count");
  if (g.find(a + ".expert_feed_forward_length") != nullptr) {
    c.ffn = k.integer("expert_feed_forward_length");
  } else if (const TensorInfo* t = g.tensor(stacked_expert_name(TensorId::FfnGateExp, 0));
             t != nullptr && t->shape.size() == 3) {
    c.ffn = static_cast<int>(std::clamp<int64_t>(t->shape[1], 0, std::numeric_limits<int>::max()));
  }
  if (const TensorInfo* t = g.tensor(tensor_name(TensorId::FfnGateShexp, 0))) {
    c.shared_expert_ffn = g.find(a + ".expert_shared_feed_forward_length") != nullptr
                              ? k.integer("expert_shared_feed_forward_length")
                              : static_cast<int>(std::clamp<int64_t>(t->rows(), 0, std::numeric_limits<int>::max()));
  }
  c.shared_expert_gate = g.tensor(tensor_name(TensorId::FfnGateInpShexp, 0)) != nullptr;
  c.norm_topk_prob = c.arch != Arch::Qwen2Moe;
  if (const GgufValue* v = g.find(a + ".expert_weights_norm")) {
    if (v->type != GgufType::BOOL) {
      throw FormatError(
          cat(g.path(), ": metadata '", a, ".expert_weights_norm': expected a bool, found ", GgufKeys::describe(*v)));
    }
    c.norm_topk_prob = v->as_int().value_or(0) != 0;
  }
  if (const GgufValue* v = g.find(a + ".expert_gating_func")) {
    if (v->as_int() != std::optional<int64_t>(1)) {  // llama.cpp: 1 softmax, 2 sigmoid
      throw ConfigError(cat(g.path(), ": ", a, ".expert_gating_func ", GgufKeys::describe(*v),
                            " is not supported; supported: 1 (softmax)"));
    }
  }
}

}  // namespace

ModelConfig gguf_config(const GgufFile& g) {
  ModelConfig c;
  const std::optional<std::string> arch = g.get_string("general.architecture");
  if (!arch) throw FormatError(cat(g.path(), ": expected metadata key 'general.architecture' (a string), found none"));
  const std::optional<Arch> a = arch_from_gguf(*arch);
  if (!a) unsupported_arch(g.path(), *arch);
  c.arch = *a;
  c.arch_name = *arch;
  c.name = g.get_string("general.name").value_or(fs::path(g.path()).stem().string());
  const GgufKeys k(g, *arch + ".");
  c.n_layers = k.integer("block_count");
  c.hidden = k.integer("embedding_length");
  c.n_heads = k.integer("attention.head_count");
  c.n_kv_heads = k.integer("attention.head_count_kv", c.n_heads);
  c.ffn = k.integer("feed_forward_length");
  c.max_context = k.integer("context_length");
  c.rms_eps = *k.real("attention.layer_norm_rms_epsilon", true);
  c.rope_theta = k.real("rope.freq_base", false).value_or(10000.0f);
  const int default_head_dim = c.hidden % c.n_heads == 0 ? c.hidden / c.n_heads : 0;
  c.head_dim = k.integer("attention.key_length", default_head_dim);
  if (k.integer("attention.value_length", c.head_dim) != c.head_dim) {
    throw ConfigError(cat(g.path(), ": ", *arch, ".attention.value_length differs from key_length ", c.head_dim,
                          "; only equal key and value head sizes are supported"));
  }
  if (k.integer("rope.dimension_count", c.head_dim) != c.head_dim) {
    throw ConfigError(cat(g.path(), ": ", *arch, ".rope.dimension_count ", k.integer("rope.dimension_count"),
                          " differs from the head dimension ", c.head_dim, "; partial RoPE is not supported"));
  }
  // Vocabulary: explicit, else the token list, else the embedding rows.
  if (g.find(*arch + ".vocab_size") != nullptr) {
    c.vocab = k.integer("vocab_size");
  } else if (const GgufValue* tokens = g.find("tokenizer.ggml.tokens"); tokens != nullptr && tokens->as_array()) {
    c.vocab = static_cast<int>(std::min<size_t>(tokens->as_array()->items.size(), std::numeric_limits<int>::max()));
  } else if (const TensorInfo* embd = g.tensor(tensor_name(TensorId::TokenEmbd));
             embd != nullptr && embd->shape.size() == 2) {
    c.vocab = static_cast<int>(std::min<int64_t>(embd->shape[0], std::numeric_limits<int>::max()));
  }
  if (const auto bos = k.token_id("tokenizer.ggml.bos_token_id")) c.bos_token = static_cast<int>(*bos);
  if (const auto eos = k.token_id("tokenizer.ggml.eos_token_id")) add_eos(c, *eos);
  if (const auto eot = k.token_id("tokenizer.ggml.eot_token_id")) add_eos(c, *eot);
  if (const auto eom = k.token_id("tokenizer.ggml.eom_token_id")) add_eos(c, *eom);

  c.rope_style = (c.arch == Arch::Llama || c.arch == Arch::Mistral) ? RopeStyle::Interleaved : RopeStyle::NeoX;
  gguf_moe_config(g, k, c);
  c.qkv_bias = g.tensor(tensor_name(TensorId::AttnQBias, 0)) != nullptr;
  c.qk_norm = g.tensor(tensor_name(TensorId::AttnQNorm, 0)) != nullptr;
  c.tied_embeddings = g.tensor(tensor_name(TensorId::Output)) == nullptr;

  if (const TensorInfo* rf = g.tensor(tensor_name(TensorId::RopeFreqs))) {
    const std::vector<int64_t> want = {c.head_dim / 2};
    if (rf->type != DType::F32 || rf->shape != want) {
      throw FormatError(cat(rf->file, ": tensor 'rope_freqs.weight': expected f32 ", shape_str(want), ", found ",
                            dtype_name(rf->type), " ", shape_str(rf->shape)));
    }
    c.rope_freq_factors.resize(static_cast<size_t>(c.head_dim / 2));
    std::memcpy(c.rope_freq_factors.data(), rf->data, rf->nbytes);
  }
  if (const std::optional<std::string> type = g.get_string(*arch + ".rope.scaling.type")) {
    if (*type == "linear") {
      const float factor = *k.real("rope.scaling.factor", true);
      if (c.rope_freq_factors.empty()) c.rope_freq_factors.assign(static_cast<size_t>(c.head_dim / 2), 1.0f);
      for (float& f : c.rope_freq_factors) f *= factor;
    } else if (*type != "none") {
      throw ConfigError(cat(g.path(), ": RoPE scaling type '", *type, "' is not supported; supported: none, linear ",
                            "(and llama3 through the rope_freqs tensor)"));
    }
  }
  check_config(c, g.path());
  return c;
}

}  // namespace tpinfer
