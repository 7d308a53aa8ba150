#include "formats/model_source.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "core/error.h"

namespace tpinfer {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += cat(i ? ", " : "", s[i]);
  return out + "]";
}

std::optional<Arch> arch_from_gguf(std::string_view a) {
  if (a == "llama") return Arch::Llama;
  if (a == "mistral") return Arch::Mistral;
  if (a == "qwen2") return Arch::Qwen2;
  if (a == "qwen3") return Arch::Qwen3;
  if (a == "qwen2moe") return Arch::Qwen2Moe;
  if (a == "qwen3moe") return Arch::Qwen3Moe;
  return std::nullopt;
}

std::optional<Arch> arch_from_hf(std::string_view a) {
  if (a == "LlamaForCausalLM") return Arch::Llama;
  if (a == "MistralForCausalLM") return Arch::Mistral;
  if (a == "Qwen2ForCausalLM") return Arch::Qwen2;
  if (a == "Qwen3ForCausalLM") return Arch::Qwen3;
  if (a == "MixtralForCausalLM") return Arch::Mixtral;
  if (a == "Qwen2MoeForCausalLM") return Arch::Qwen2Moe;
  if (a == "Qwen3MoeForCausalLM") return Arch::Qwen3Moe;
  return std::nullopt;
}

[[noreturn]] void unsupported_arch(const std::string& path, std::string_view name) {
  throw ConfigError(cat(path, ": unsupported architecture '", name, "'; supported: ", kSupportedArchitectures));
}

// Checks that hold whatever the file format; `path` names the file for errors.
void check_config(const ModelConfig& c, const std::string& path) {
  auto positive = [&](int v, std::string_view what) {
    if (v <= 0) throw FormatError(cat(path, ": expected a positive ", what, ", found ", v));
  };
  positive(c.n_layers, "layer count");
  positive(c.hidden, "hidden size");
  positive(c.n_heads, "attention head count");
  positive(c.n_kv_heads, "KV head count");
  positive(c.head_dim, "head dimension");
  positive(c.ffn, "feed-forward size");
  positive(c.vocab, "vocabulary size");
  positive(c.max_context, "context length");
  if (c.n_heads % c.n_kv_heads != 0) {
    throw FormatError(
        cat(path, ": expected the KV head count to divide the head count ", c.n_heads, ", found ", c.n_kv_heads));
  }
  if (c.head_dim % 2 != 0)
    throw FormatError(cat(path, ": expected an even head dimension (RoPE pairs), found ", c.head_dim));
  if (!(c.rms_eps > 0.0f) || !std::isfinite(c.rms_eps)) {
    throw FormatError(cat(path, ": expected a positive RMS norm epsilon, found ", c.rms_eps));
  }
  if (!(c.rope_theta > 0.0f) || !std::isfinite(c.rope_theta)) {
    throw FormatError(cat(path, ": expected a positive RoPE base frequency, found ", c.rope_theta));
  }
  for (float f : c.rope_freq_factors) {
    if (!(f > 0.0f) || !std::isfinite(f))
      throw FormatError(cat(path, ": expected positive RoPE frequency factors, found ", f));
  }
  if (c.bos_token >= c.vocab) {
    throw FormatError(
        cat(path, ": expected the BOS token id below the vocabulary size ", c.vocab, ", found ", c.bos_token));
  }
  for (int e : c.eos_tokens) {
    if (e >= c.vocab)
      throw FormatError(cat(path, ": expected EOS token ids below the vocabulary size ", c.vocab, ", found ", e));
  }
  const bool moe_arch = c.arch == Arch::Mixtral || c.arch == Arch::Qwen2Moe || c.arch == Arch::Qwen3Moe;
  if (moe_arch != c.is_moe()) {
    throw FormatError(cat(path, ": expected ", moe_arch ? "an expert count" : "no experts", " for architecture ",
                          arch_name(c.arch), ", found ", c.n_experts, " experts"));
  }
  if (c.is_moe()) {
    // Published models have at most a few hundred experts; the cap keeps a
    // hostile count from sizing loops and tables before the tensors are checked.
    if (c.n_experts > kMaxExperts) {
      throw FormatError(cat(path, ": expected at most ", kMaxExperts, " experts, found ", c.n_experts));
    }
    if (c.n_experts_used < 1 || c.n_experts_used > c.n_experts) {
      throw FormatError(cat(path, ": expected 1 to ", c.n_experts, " experts used per token, found ",
                            c.n_experts_used));
    }
    if (c.shared_expert_ffn < 0) throw FormatError(cat(path, ": expected a positive shared-expert size"));
  }
}

void add_eos(ModelConfig& c, int64_t id) {
  if (id < 0 || id > std::numeric_limits<int>::max()) return;
  const int v = static_cast<int>(id);
  if (std::find(c.eos_tokens.begin(), c.eos_tokens.end(), v) == c.eos_tokens.end()) c.eos_tokens.push_back(v);
  if (c.eos_token < 0) c.eos_token = v;
}

// ---------------------------------------------------------------------------
// GGUF

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
  } else if (const TensorInfo* t = g.tensor("blk.0.ffn_gate_exps.weight"); t != nullptr && t->shape.size() == 3) {
    c.ffn = static_cast<int>(std::clamp<int64_t>(t->shape[1], 0, std::numeric_limits<int>::max()));
  }
  if (const TensorInfo* t = g.tensor("blk.0.ffn_gate_shexp.weight")) {
    c.shared_expert_ffn = g.find(a + ".expert_shared_feed_forward_length") != nullptr
                              ? k.integer("expert_shared_feed_forward_length")
                              : static_cast<int>(std::clamp<int64_t>(t->rows(), 0, std::numeric_limits<int>::max()));
  }
  c.shared_expert_gate = g.tensor("blk.0.ffn_gate_inp_shexp.weight") != nullptr;
  c.norm_topk_prob = c.arch != Arch::Qwen2Moe;
  if (const GgufValue* v = g.find(a + ".expert_weights_norm")) {
    if (v->type != GgufType::BOOL) {
      throw FormatError(cat(g.path(), ": metadata '", a, ".expert_weights_norm': expected a bool, found ",
                            GgufKeys::describe(*v)));
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
  } else if (const TensorInfo* embd = g.tensor("token_embd.weight"); embd != nullptr && embd->shape.size() == 2) {
    c.vocab = static_cast<int>(std::min<int64_t>(embd->shape[0], std::numeric_limits<int>::max()));
  }
  if (const auto bos = k.token_id("tokenizer.ggml.bos_token_id")) c.bos_token = static_cast<int>(*bos);
  if (const auto eos = k.token_id("tokenizer.ggml.eos_token_id")) add_eos(c, *eos);
  if (const auto eot = k.token_id("tokenizer.ggml.eot_token_id")) add_eos(c, *eot);
  if (const auto eom = k.token_id("tokenizer.ggml.eom_token_id")) add_eos(c, *eom);

  c.rope_style = (c.arch == Arch::Llama || c.arch == Arch::Mistral) ? RopeStyle::Interleaved : RopeStyle::NeoX;
  gguf_moe_config(g, k, c);
  c.qkv_bias = g.tensor("blk.0.attn_q.bias") != nullptr;
  c.qk_norm = g.tensor("blk.0.attn_q_norm.weight") != nullptr;
  c.tied_embeddings = g.tensor("output.weight") == nullptr;

  if (const TensorInfo* rf = g.tensor("rope_freqs.weight")) {
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

// ---------------------------------------------------------------------------
// Hugging Face

Json read_json(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw FormatError(cat(path, ": cannot open"));
  std::ostringstream text;
  text << f.rdbuf();
  try {
    return Json::parse(text.str());
  } catch (const Json::parse_error& e) {
    throw FormatError(
        cat(path, ": offset ", e.byte > 0 ? e.byte - 1 : 0, ": expected JSON, file is not valid JSON: ", e.what()));
  } catch (const Json::out_of_range& e) {  // a number too large for a double (1e400)
    throw FormatError(cat(path, ": offset 0: expected JSON, file is not valid JSON: ", e.what()));
  }
}

class HfKeys {
 public:
  HfKeys(const Json& j, std::string path) : j_(j), path_(std::move(path)) {}

  bool has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }

  // A positive int; `fallback` when absent or null (0: required).
  int integer(const char* key, int fallback = 0) const {
    if (!has(key)) {
      if (fallback > 0) return fallback;
      throw FormatError(cat(path_, ": expected key \"", key, "\", found none"));
    }
    const Json& v = j_.at(key);
    if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > std::numeric_limits<int>::max()) {
      throw FormatError(cat(path_, ": \"", key, "\": expected a positive integer below 2^31, found ", v.dump()));
    }
    return static_cast<int>(v.get<int64_t>());
  }

  float real(const char* key, float fallback) const {
    if (!has(key)) return fallback;
    const Json& v = j_.at(key);
    if (!v.is_number()) throw FormatError(cat(path_, ": \"", key, "\": expected a number, found ", v.dump()));
    return v.get<float>();
  }

  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const Json& v = j_.at(key);
    if (!v.is_boolean()) throw FormatError(cat(path_, ": \"", key, "\": expected true or false, found ", v.dump()));
    return v.get<bool>();
  }

  // A token id or a list of them (eos_token_id may be either).
  std::vector<int64_t> ids(const char* key) const {
    std::vector<int64_t> out;
    if (!has(key)) return out;
    const Json& v = j_.at(key);
    auto one = [&](const Json& x) {
      if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > std::numeric_limits<int>::max()) {
        throw FormatError(cat(path_, ": \"", key, "\": expected a token id or a list of them, found ", v.dump()));
      }
      out.push_back(x.get<int64_t>());
    };
    if (v.is_array()) {
      for (const Json& x : v) one(x);
    } else {
      one(v);
    }
    return out;
  }

 private:
  const Json& j_;
  std::string path_;
};

// transformers' MoE keys. Mixtral: num_local_experts, num_experts_per_tok,
// intermediate_size per expert, always renormalized. Qwen2-MoE / Qwen3-MoE:
// num_experts, num_experts_per_tok, moe_intermediate_size, norm_topk_prob
// (transformers' default: false), Qwen2-MoE's shared expert of
// shared_expert_intermediate_size with its sigmoid gate; every layer sparse
// (decoder_sparse_step 1, no mlp_only_layers).
void hf_moe_config(const Json& j, const HfKeys& k, const std::string& path, ModelConfig& c) {
  if (c.arch == Arch::Mixtral) {
    c.n_experts = k.integer("num_local_experts");
    c.n_experts_used = k.integer("num_experts_per_tok");
    c.norm_topk_prob = true;
    return;
  }
  if (c.arch != Arch::Qwen2Moe && c.arch != Arch::Qwen3Moe) return;
  c.n_experts = k.integer("num_experts");
  c.n_experts_used = k.integer("num_experts_per_tok");
  c.ffn = k.integer("moe_intermediate_size");
  c.norm_topk_prob = k.boolean("norm_topk_prob", false);
  if (c.arch == Arch::Qwen2Moe) {
    c.shared_expert_ffn = k.integer("shared_expert_intermediate_size");
    c.shared_expert_gate = true;
  }
  const bool every_layer = k.integer("decoder_sparse_step", 1) == 1 &&
                           (!k.has("mlp_only_layers") || (j["mlp_only_layers"].is_array() && j["mlp_only_layers"].empty()));
  if (!every_layer) {
    throw ConfigError(cat(path, ": dense MLP layers between mixture-of-experts layers (decoder_sparse_step, ",
                          "mlp_only_layers) are not supported"));
  }
}

ModelConfig hf_config(const std::string& dir) {
  const std::string path = (fs::path(dir) / "config.json").string();
  if (!fs::exists(path)) throw FormatError(cat(dir, ": expected a Hugging Face folder with config.json, found none"));
  const Json j = read_json(path);
  if (!j.is_object()) throw FormatError(cat(path, ": expected a JSON object, found ", j.type_name()));
  ModelConfig c;
  std::string arch_name;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string()) {
    arch_name = j["architectures"][0].get<std::string>();
  } else if (j.contains("model_type") && j["model_type"].is_string()) {
    // Older exports name only the model type; map it to the class name.
    const std::string t = j["model_type"].get<std::string>();
    static constexpr std::pair<std::string_view, const char*> kTypes[] = {
        {"llama", "LlamaForCausalLM"},       {"mistral", "MistralForCausalLM"},
        {"qwen2", "Qwen2ForCausalLM"},       {"qwen3", "Qwen3ForCausalLM"},
        {"mixtral", "MixtralForCausalLM"},   {"qwen2_moe", "Qwen2MoeForCausalLM"},
        {"qwen3_moe", "Qwen3MoeForCausalLM"},
    };
    for (const auto& [type, cls] : kTypes) {
      if (t == type) arch_name = cls;
    }
    if (arch_name.empty()) unsupported_arch(path, t);
  } else {
    throw FormatError(cat(path, ": expected \"architectures\" (a list naming the model class), found none"));
  }
  const std::optional<Arch> a = arch_from_hf(arch_name);
  if (!a) unsupported_arch(path, arch_name);
  c.arch = *a;
  c.arch_name = arch_name;
  c.name = fs::path(dir).filename().string();
  if (c.name.empty()) c.name = fs::path(dir).parent_path().filename().string();

  const HfKeys k(j, path);
  c.hidden = k.integer("hidden_size");
  c.n_layers = k.integer("num_hidden_layers");
  c.n_heads = k.integer("num_attention_heads");
  c.n_kv_heads = k.integer("num_key_value_heads", c.n_heads);
  const int default_head_dim = c.hidden % c.n_heads == 0 ? c.hidden / c.n_heads : 0;
  c.head_dim = k.integer("head_dim", default_head_dim);
  c.ffn = k.integer("intermediate_size");
  c.vocab = k.integer("vocab_size");
  c.max_context = k.integer("max_position_embeddings");
  c.rms_eps = k.real("rms_norm_eps", 1e-6f);
  c.tied_embeddings = k.boolean("tie_word_embeddings", false);
  c.rope_style = RopeStyle::NeoX;
  c.qkv_bias = c.arch == Arch::Qwen2 || c.arch == Arch::Qwen2Moe || k.boolean("attention_bias", false);
  c.qk_norm = c.arch == Arch::Qwen3 || c.arch == Arch::Qwen3Moe;
  hf_moe_config(j, k, path, c);

  // Sliding-window attention is not implemented: cap the context to the window
  // so that every position attends exactly as the model was trained.
  const bool mistral_window = c.arch == Arch::Mistral || c.arch == Arch::Mixtral;
  const bool sliding = mistral_window ? k.has("sliding_window") : k.boolean("use_sliding_window", false);
  if (sliding) c.max_context = std::min(c.max_context, k.integer("sliding_window"));

  // RoPE: rope_theta and rope_scaling, or (newer transformers) rope_parameters.
  const Json* scaling = nullptr;
  c.rope_theta = k.real("rope_theta", 10000.0f);
  if (k.has("rope_parameters")) {
    const Json& p = j["rope_parameters"];
    if (!p.is_object()) throw FormatError(cat(path, ": \"rope_parameters\": expected an object, found ", p.dump()));
    c.rope_theta = HfKeys(p, path).real("rope_theta", c.rope_theta);
    scaling = &p;
  }
  if (k.has("rope_scaling")) scaling = &j["rope_scaling"];
  if (scaling != nullptr) {
    if (!scaling->is_object())
      throw FormatError(cat(path, ": \"rope_scaling\": expected an object, found ", scaling->dump()));
    const HfKeys s(*scaling, path);
    std::string type = "default";
    for (const char* key : {"rope_type", "type"}) {
      if (s.has(key) && (*scaling)[key].is_string()) {
        type = (*scaling)[key].get<std::string>();
        break;
      }
    }
    if (type == "llama3") {
      c.rope_freq_factors =
          llama3_rope_factors(c.head_dim, c.rope_theta, s.real("factor", 8.0f), s.real("low_freq_factor", 1.0f),
                              s.real("high_freq_factor", 4.0f), s.integer("original_max_position_embeddings", 8192));
    } else if (type == "linear") {
      c.rope_freq_factors.assign(static_cast<size_t>(c.head_dim / 2), s.real("factor", 1.0f));
    } else if (type != "default") {
      throw ConfigError(
          cat(path, ": rope_scaling type '", type, "' is not supported; supported: default, llama3, linear"));
    }
  }

  // Special tokens: config.json first, then generation_config.json (whose eos
  // list is what generation stops on).
  const std::vector<int64_t> bos = k.ids("bos_token_id");
  if (!bos.empty()) c.bos_token = static_cast<int>(bos[0]);
  for (int64_t e : k.ids("eos_token_id")) add_eos(c, e);
  const std::string gen_path = (fs::path(dir) / "generation_config.json").string();
  if (fs::exists(gen_path)) {
    const Json g = read_json(gen_path);
    if (g.is_object()) {
      const HfKeys gk(g, gen_path);
      const std::vector<int64_t> gbos = gk.ids("bos_token_id");
      if (c.bos_token < 0 && !gbos.empty()) c.bos_token = static_cast<int>(gbos[0]);
      for (int64_t e : gk.ids("eos_token_id")) add_eos(c, e);
    }
  }
  check_config(c, path);
  return c;
}

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
  for (std::string_view b : {"ffn_gate", "ffn_up", "ffn_down"}) {
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
  constexpr std::string_view kSuffix = ".ffn_gate_inp_shexp.weight";
  for (TensorInfo& t : tensors) {
    const std::string_view n = t.name;
    if (n.size() > kSuffix.size() && n.substr(n.size() - kSuffix.size()) == kSuffix && t.shape.size() == 2 &&
        t.shape[0] == 1) {
      t.shape = {t.shape[1]};
    }
  }
}

}  // namespace

std::string expert_tensor_name(int layer, std::string_view base, int expert) {
  return cat("blk.", layer, ".", base, ".", expert, ".weight");
}

bool parse_expert_tensor_name(std::string_view name, int* layer, std::string_view* base, int* expert) {
  constexpr std::string_view kBlk = "blk.", kWeight = ".weight";
  if (name.substr(0, kBlk.size()) != kBlk) return false;
  std::string_view rest = name.substr(kBlk.size());
  long n = 0;
  if (!take_index(rest, &n)) return false;
  for (std::string_view b : {"ffn_gate", "ffn_up", "ffn_down"}) {
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

// ---------------------------------------------------------------------------
// ModelSource

std::unique_ptr<ModelSource> ModelSource::open(const std::string& path) {
  auto s = std::unique_ptr<ModelSource>(new ModelSource());
  s->path_ = path;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw ConfigError(cat(path, ": no such model file or folder"));
  if (fs::is_directory(st)) {
    s->open_hf(path);
  } else {
    const fs::path p(path);
    if (p.extension() == ".safetensors" || p.extension() == ".json") {
      throw ConfigError(
          cat(path, ": expected a GGUF file or a Hugging Face folder; for a safetensors model pass its folder (",
              p.parent_path().string(), ")"));
    }
    s->open_gguf(path);
  }
  s->index_tensors();
  s->validate_shapes();
  return s;
}

void ModelSource::open_gguf(const std::string& path) {
  gguf_ = GgufFile::open(path);
  config_ = gguf_config(*gguf_);
  // Stacked experts (blk.N.ffn_{gate,up,down}_exps.weight, [experts, rows,
  // cols]) become one view per expert: expert e's matrix is a contiguous run of
  // whole rows, so nothing is copied.
  for (const TensorInfo& t : gguf_->tensors()) {
    int layer = -1;
    std::string_view base;
    if (!parse_stacked_name(t.name, &layer, &base)) {
      tensors_.push_back(t);
      continue;
    }
    if (!config_.is_moe()) {
      throw FormatError(cat(t.file, ": tensor '", t.name, "' holds experts, but the metadata has no ",
                            config_.arch_name, ".expert_count"));
    }
    if (t.shape.size() != 3 || t.shape[0] != config_.n_experts || t.shape[1] <= 0 || t.shape[2] <= 0) {
      throw FormatError(cat(t.file, ": tensor '", t.name, "': expected shape [", config_.n_experts,
                            " experts, rows, cols], found ", shape_str(t.shape)));
    }
    const uint64_t each = t.nbytes / static_cast<uint64_t>(config_.n_experts);
    for (int e = 0; e < config_.n_experts; ++e) {
      TensorInfo v = t;
      v.name = expert_tensor_name(layer, base, e);
      v.shape = {t.shape[1], t.shape[2]};
      v.nbytes = each;
      v.data = t.data + static_cast<uint64_t>(e) * each;
      v.offset = t.offset + static_cast<uint64_t>(e) * each;
      tensors_.push_back(std::move(v));
    }
  }
  normalize_shared_gate(tensors_);
}

void ModelSource::open_hf(const std::string& dir) {
  hf_dir_ = dir;
  config_ = hf_config(dir);
  const fs::path root(dir);
  const std::string index_path = (root / "model.safetensors.index.json").string();
  const std::string single_path = (root / "model.safetensors").string();
  // HF name -> (shard, its TensorInfo).
  std::vector<std::pair<std::string, const TensorInfo*>> found;
  if (fs::exists(index_path)) {
    const Json index = read_json(index_path);
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      throw FormatError(cat(index_path, ": expected an object with a \"weight_map\" object, found none"));
    }
    std::map<std::string, SafetensorsFile*> opened;
    for (const auto& [name, file] : index["weight_map"].items()) {
      if (!file.is_string())
        throw FormatError(cat(index_path, ": weight_map[\"", name, "\"]: expected a file name, found ", file.dump()));
      const std::string shard = file.get<std::string>();
      // A shard must be a plain file name inside the folder.
      if (shard.empty() || shard.find('/') != std::string::npos || shard.find('\\') != std::string::npos ||
          shard == "." || shard == "..") {
        throw FormatError(
            cat(index_path, ": weight_map[\"", name, "\"]: expected a file name in the folder, found \"", shard, "\""));
      }
      auto it = opened.find(shard);
      if (it == opened.end()) {
        const std::string shard_path = (root / shard).string();
        if (!fs::is_regular_file(shard_path)) {
          throw FormatError(cat(index_path, ": weight_map names shard '", shard, "' (for tensor '", name,
                                "'), which is missing: ", shard_path));
        }
        shards_.push_back(SafetensorsFile::open(shard_path));
        it = opened.emplace(shard, shards_.back().get()).first;
      }
      const TensorInfo* t = it->second->tensor(name);
      if (t == nullptr) {
        throw FormatError(cat(index_path, ": weight_map puts tensor '", name, "' in ", it->second->path(),
                              ", which does not hold it"));
      }
      found.emplace_back(name, t);
    }
  } else if (fs::exists(single_path)) {
    shards_.push_back(SafetensorsFile::open(single_path));
    for (const TensorInfo& t : shards_.back()->tensors()) found.emplace_back(t.name, &t);
  } else {
    throw FormatError(cat(dir, ": expected model.safetensors or model.safetensors.index.json, found neither"));
  }
  for (const auto& [hf_name, t] : found) {
    long layer = -1, expert = -1;
    const std::optional<std::string> canonical = canonical_name(hf_name, &layer, &expert);
    if (!canonical) continue;
    if (*canonical == "output.weight" && config_.tied_embeddings) continue;
    if (layer >= config_.n_layers) {
      throw FormatError(cat(t->file, ": tensor '", hf_name, "' belongs to layer ", layer, ", but config.json has ",
                            config_.n_layers, " layers"));
    }
    if (expert >= config_.n_experts) {
      throw FormatError(cat(t->file, ": tensor '", hf_name, "' belongs to expert ", expert, ", but config.json has ",
                            config_.n_experts, " experts"));
    }
    TensorInfo c = *t;
    c.name = *canonical;
    tensors_.push_back(std::move(c));
  }
  normalize_shared_gate(tensors_);
}

void ModelSource::index_tensors() {
  index_.clear();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (!index_.emplace(tensors_[i].name, i).second) {
      throw FormatError(cat(tensors_[i].file, ": tensor '", tensors_[i].name, "' appears twice"));
    }
  }
}

const TensorInfo* ModelSource::find(std::string_view canonical_name) const {
  const auto it = index_.find(canonical_name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& ModelSource::get(std::string_view canonical_name) const {
  const TensorInfo* t = find(canonical_name);
  if (t == nullptr) throw FormatError(cat(path_, ": missing tensor '", canonical_name, "'"));
  return *t;
}

void ModelSource::validate_shapes() const {
  const ModelConfig& c = config_;
  const int64_t h = c.hidden, q = int64_t{c.n_heads} * c.head_dim, kv = int64_t{c.n_kv_heads} * c.head_dim;
  auto expect = [&](const std::string& name, std::vector<int64_t> shape) {
    const TensorInfo* t = find(name);
    if (t == nullptr)
      throw FormatError(cat(path_, ": missing tensor '", name, "' (expected shape ", shape_str(shape), ")"));
    if (t->shape != shape) {
      throw FormatError(
          cat(t->file, ": tensor '", name, "': expected shape ", shape_str(shape), ", found ", shape_str(t->shape)));
    }
  };
  expect("token_embd.weight", {c.vocab, h});
  expect("output_norm.weight", {h});
  if (!c.tied_embeddings) expect("output.weight", {c.vocab, h});
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = cat("blk.", l, ".");
    expect(p + "attn_norm.weight", {h});
    expect(p + "attn_q.weight", {q, h});
    expect(p + "attn_k.weight", {kv, h});
    expect(p + "attn_v.weight", {kv, h});
    expect(p + "attn_output.weight", {h, q});
    expect(p + "ffn_norm.weight", {h});
    if (c.is_moe()) {
      expect(p + "ffn_gate_inp.weight", {c.n_experts, h});
      for (int e = 0; e < c.n_experts; ++e) {
        expect(expert_tensor_name(l, "ffn_gate", e), {c.ffn, h});
        expect(expert_tensor_name(l, "ffn_up", e), {c.ffn, h});
        expect(expert_tensor_name(l, "ffn_down", e), {h, c.ffn});
      }
      if (c.shared_expert_ffn > 0) {
        expect(p + "ffn_gate_shexp.weight", {c.shared_expert_ffn, h});
        expect(p + "ffn_up_shexp.weight", {c.shared_expert_ffn, h});
        expect(p + "ffn_down_shexp.weight", {h, c.shared_expert_ffn});
      }
      if (c.shared_expert_gate) expect(p + "ffn_gate_inp_shexp.weight", {h});
    } else {
      expect(p + "ffn_gate.weight", {c.ffn, h});
      expect(p + "ffn_up.weight", {c.ffn, h});
      expect(p + "ffn_down.weight", {h, c.ffn});
    }
    if (c.qkv_bias) {
      expect(p + "attn_q.bias", {q});
      expect(p + "attn_k.bias", {kv});
      expect(p + "attn_v.bias", {kv});
    }
    if (c.qk_norm) {
      expect(p + "attn_q_norm.weight", {c.head_dim});
      expect(p + "attn_k_norm.weight", {c.head_dim});
    }
  }
  for (const TensorInfo& t : tensors_) {
    const DTypeInfo& info = dtype_info(t.type);
    if (info.quantized && t.cols() % info.block_size != 0) {
      throw FormatError(cat(t.file, ": tensor '", t.name, "': expected a row length that is a multiple of ",
                            info.block_size, " (the ", info.name, " block size), found ", t.cols()));
    }
  }
}

}  // namespace tpinfer
