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
  return std::nullopt;
}

std::optional<Arch> arch_from_hf(std::string_view a) {
  if (a == "LlamaForCausalLM") return Arch::Llama;
  if (a == "MistralForCausalLM") return Arch::Mistral;
  if (a == "Qwen2ForCausalLM") return Arch::Qwen2;
  if (a == "Qwen3ForCausalLM") return Arch::Qwen3;
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

  c.rope_style = (c.arch == Arch::Qwen2 || c.arch == Arch::Qwen3) ? RopeStyle::NeoX : RopeStyle::Interleaved;
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
    const std::optional<Arch> a = arch_from_gguf(t);
    if (!a) unsupported_arch(path, t);
    arch_name = t == "llama"     ? "LlamaForCausalLM"
                : t == "mistral" ? "MistralForCausalLM"
                : t == "qwen2"   ? "Qwen2ForCausalLM"
                                 : "Qwen3ForCausalLM";
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
  c.qkv_bias = c.arch == Arch::Qwen2 || k.boolean("attention_bias", false);
  c.qk_norm = c.arch == Arch::Qwen3;

  // Sliding-window attention is not implemented: cap the context to the window
  // so that every position attends exactly as the model was trained.
  const bool sliding = c.arch == Arch::Mistral ? k.has("sliding_window") : k.boolean("use_sliding_window", false);
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

// Hugging Face tensor name -> canonical name; nullopt for names tpinfer does not
// use (rotary inv_freq buffers and the like). `layer` receives N of model.layers.N.
std::optional<std::string> canonical_name(std::string_view hf, long* layer) {
  *layer = -1;
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  constexpr std::string_view kLayers = "model.layers.";
  if (hf.substr(0, kLayers.size()) != kLayers) return std::nullopt;
  std::string_view rest = hf.substr(kLayers.size());
  size_t digits = 0;
  while (digits < rest.size() && digits < 9 && rest[digits] >= '0' && rest[digits] <= '9') ++digits;
  if (digits == 0 || digits >= rest.size() || rest[digits] != '.' || (digits > 1 && rest[0] == '0'))
    return std::nullopt;
  long n = 0;
  for (size_t i = 0; i < digits; ++i) n = n * 10 + (rest[i] - '0');
  rest = rest.substr(digits + 1);
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
  };
  for (const auto& [from, to] : kMap) {
    if (rest == from) {
      *layer = n;
      return cat("blk.", n, ".", to);
    }
  }
  return std::nullopt;
}

}  // namespace

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
  tensors_ = gguf_->tensors();
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
    long layer = -1;
    const std::optional<std::string> canonical = canonical_name(hf_name, &layer);
    if (!canonical) continue;
    if (*canonical == "output.weight" && config_.tied_embeddings) continue;
    if (layer >= config_.n_layers) {
      throw FormatError(cat(t->file, ": tensor '", hf_name, "' belongs to layer ", layer, ", but config.json has ",
                            config_.n_layers, " layers"));
    }
    TensorInfo c = *t;
    c.name = *canonical;
    tensors_.push_back(std::move(c));
  }
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
    expect(p + "ffn_gate.weight", {c.ffn, h});
    expect(p + "ffn_up.weight", {c.ffn, h});
    expect(p + "ffn_down.weight", {h, c.ffn});
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
