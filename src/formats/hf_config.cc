// The ModelConfig of a Hugging Face folder: config.json (architectures or
// model_type, the size keys, rope_scaling / rope_parameters, transformers' MoE
// keys) and the special tokens of generation_config.json.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/error.h"
#include "formats/model_source_internal.h"

namespace tpinfer {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

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
  const bool every_layer =
      k.integer("decoder_sparse_step", 1) == 1 &&
      (!k.has("mlp_only_layers") || (j["mlp_only_layers"].is_array() && j["mlp_only_layers"].empty()));
  if (!every_layer) {
    throw ConfigError(cat(path, ": dense MLP layers between mixture-of-experts layers (decoder_sparse_step, ",
                          "mlp_only_layers) are not supported"));
  }
}

}  // namespace

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
        {"llama", "LlamaForCausalLM"},        {"mistral", "MistralForCausalLM"}, {"qwen2", "Qwen2ForCausalLM"},
        {"qwen3", "Qwen3ForCausalLM"},        {"mixtral", "MixtralForCausalLM"}, {"qwen2_moe", "Qwen2MoeForCausalLM"},
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

}  // namespace tpinfer
