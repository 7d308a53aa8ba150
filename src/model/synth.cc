#include "model/synth.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>
#include <vector>

#include "backend/cpu/quant.h"
#include "core/error.h"
#include "core/half.h"
#include "formats/gguf_writer.h"
#include "formats/safetensors.h"
#include "formats/tensor_table.h"

namespace tpinfer {
namespace {

// splitmix64: a tiny, portable, seedable generator (std distributions differ
// between standard libraries; these bits do not).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double normal() {  // Box-Muller
    const double u1 = uniform() + 0x1.0p-54, u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * 3.14159265358979323846 * u2);
  }

 private:
  uint64_t s_;
};

struct Tensor {
  std::string name;  // canonical; a layer's stacked experts as GGUF names them
  std::vector<int64_t> shape;
  std::vector<float> values;
  const TensorDecl* decl;
  bool is_matrix() const {
    return decl->kind == TensorKind::Embedding || decl->kind == TensorKind::Matrix || decl->kind == TensorKind::Router;
  }
};

// GPT-2's byte-to-unicode map: printable bytes map to themselves, the others to
// code points from 256 up, so every byte is one visible character.
std::vector<std::string> byte_symbols() {
  std::vector<int> cps(256, -1);
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    cps[static_cast<size_t>(b)] = printable ? b : 256 + extra++;
  }
  std::vector<std::string> out;
  for (int cp : cps) {
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    out.push_back(s);
  }
  return out;
}

struct Vocab {
  std::vector<std::string> tokens;
  std::vector<std::string> merges;  // "a b"
  int bos = 0, eos = 0;
};

// A byte-level BPE vocabulary of exactly `size` tokens: 256 byte tokens, merges
// learned greedily from a small English text (then arbitrary valid merges once
// the text has no pair left), and BOS/EOS as the last two ids.
Vocab make_vocab(int size) {
  if (size < 258) throw ConfigError(cat("--vocab must be at least 258 (256 bytes + BOS + EOS), got ", size));
  const std::vector<std::string> sym = byte_symbols();
  Vocab v;
  v.tokens = sym;
  std::set<std::string> have(sym.begin(), sym.end());
  const int n_merges = size - 258;
  static const char* kText =
      "In the beginning the engine split every layer of the model over the ranks, and each rank computed its "
      "share of the heads; then the partial sums were added together over the link between them, and the "
      "tokens came out one after another, the same as on one device, only faster. ";
  // Words of the text as sequences of symbols (space attached to the next word, as GPT-2 does).
  std::vector<std::vector<std::string>> words;
  std::string text = kText;
  std::vector<std::string> cur;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == ' ' && !cur.empty()) {
      words.push_back(cur);
      cur.clear();
    }
    cur.push_back(sym[static_cast<unsigned char>(c)]);
  }
  if (!cur.empty()) words.push_back(cur);
  while (static_cast<int>(v.merges.size()) < n_merges) {
    std::map<std::pair<std::string, std::string>, int> counts;
    for (const auto& w : words) {
      for (size_t i = 0; i + 1 < w.size(); ++i) counts[{w[i], w[i + 1]}] += 1;
    }
    std::pair<std::string, std::string> best;
    int best_n = 0;
    for (const auto& [pair, n] : counts) {
      if (n > best_n && !have.count(pair.first + pair.second)) {
        best = pair;
        best_n = n;
      }
    }
    if (best_n == 0) break;
    v.merges.push_back(best.first + " " + best.second);
    v.tokens.push_back(best.first + best.second);
    have.insert(best.first + best.second);
    for (auto& w : words) {
      std::vector<std::string> merged;
      for (size_t i = 0; i < w.size(); ++i) {
        if (i + 1 < w.size() && w[i] == best.first && w[i + 1] == best.second) {
          merged.push_back(best.first + best.second);
          ++i;
        } else {
          merged.push_back(w[i]);
        }
      }
      w = merged;
    }
  }
  // Fill up with merges of two existing tokens into a new one (valid BPE merges).
  for (size_t a = 0; static_cast<int>(v.merges.size()) < n_merges; ++a) {
    const std::string left = v.tokens[a % v.tokens.size()];
    for (size_t b = 0; b < 95 && static_cast<int>(v.merges.size()) < n_merges; ++b) {
      const std::string right = sym[static_cast<size_t>('!' + b)];
      if (have.count(left + right)) continue;
      v.merges.push_back(left + " " + right);
      v.tokens.push_back(left + right);
      have.insert(left + right);
    }
  }
  v.bos = size - 2;
  v.eos = size - 1;
  v.tokens.push_back("<|begin_of_text|>");
  v.tokens.push_back("<|end_of_text|>");
  return v;
}

// The model's tensors (formats/tensor_table.h) in file order, with random
// values drawn in that order; a layer's routed experts of one matrix stacked
// into one tensor as GGUF stores them.
std::vector<Tensor> make_tensors(const SynthSpec& s, const ModelConfig& c) {
  Rng rng(s.seed);
  std::vector<Tensor> out;
  for (const ModelTensor& m : model_tensors(c)) {
    const TensorDecl& d = *m.decl;
    if (!d.presence.required || m.expert > 0) continue;  // rope_freqs is computed; experts go at expert 0
    std::vector<int64_t> shape = tensor_shape(d, c);
    std::string name = m.name();
    if (m.expert == 0) {
      name = stacked_expert_name(d.id, m.layer);
      shape.insert(shape.begin(), c.n_experts);
    }
    size_t n = 1;
    for (int64_t x : shape) n *= static_cast<size_t>(x);
    Tensor t{std::move(name), shape, std::vector<float>(n), &d};
    // Embedding rows of unit scale so the first norm sees O(1) activations;
    // matrices scaled to keep activations O(1); norms near 1, biases near 0.
    double mean = 0, sd = 1;
    switch (d.kind) {
      case TensorKind::Embedding:
        break;
      case TensorKind::Matrix:
      case TensorKind::Router:
        sd = 1.0 / std::sqrt(static_cast<double>(shape.back()));
        break;
      case TensorKind::Norm:
        mean = 1.0, sd = 0.1;
        break;
      case TensorKind::Bias:
        sd = 0.1;
        break;
      case TensorKind::Gate:
        sd = 1.0 / std::sqrt(c.hidden);
        break;
      case TensorKind::RopeFreqs:
        throw Error("synth: rope_freqs is computed, not drawn");
    }
    for (float& x : t.values) x = static_cast<float>(mean + rng.normal() * sd);
    out.push_back(std::move(t));
  }
  return out;
}

// llama.cpp's converter order for GGUF llama Q/K: per head, rows [2, hd/2] -> [hd/2, 2].
std::vector<float> permute_rows_for_interleaved_rope(const std::vector<float>& v, int64_t rows, int64_t cols,
                                                     int64_t hd) {
  std::vector<float> out(v.size());
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t head = r / hd, within = r % hd;
    const int64_t half = hd / 2;
    // gguf row (head, 2i + j) <- hf row (head, j * half + i)
    const int64_t i = within / 2, j = within % 2;
    const int64_t src = head * hd + j * half + i;
    std::memcpy(&out[static_cast<size_t>(r * cols)], &v[static_cast<size_t>(src * cols)],
                static_cast<size_t>(cols) * sizeof(float));
  }
  return out;
}

std::vector<uint8_t> encode(DType t, const std::vector<float>& values, int64_t cols) {
  const int64_t rows = static_cast<int64_t>(values.size()) / cols;
  const uint64_t rb = row_bytes(t, static_cast<uint64_t>(cols));
  std::vector<uint8_t> bytes(static_cast<size_t>(rb * static_cast<uint64_t>(rows)));
  for (int64_t r = 0; r < rows; ++r) {
    cpu::quantize_row(t, &values[static_cast<size_t>(r * cols)], bytes.data() + static_cast<uint64_t>(r) * rb, cols);
  }
  return bytes;
}

// Hugging Face name of a MoE tensor (the router, a shared-expert tensor, or
// routed expert `expert` of a stacked one); "" for another tensor.
std::string hf_moe_name(Arch arch, const std::string& canonical, int expert) {
  const size_t dot = canonical.find('.', 4);
  const std::string layer = "model.layers." + canonical.substr(4, dot - 4) + ".";
  const std::string rest = canonical.substr(dot + 1);
  const bool mixtral = arch == Arch::Mixtral;
  if (rest == "ffn_gate_inp.weight") return layer + (mixtral ? "block_sparse_moe.gate.weight" : "mlp.gate.weight");
  if (rest == "ffn_gate_inp_shexp.weight") return layer + "mlp.shared_expert_gate.weight";
  static const std::vector<std::pair<std::string, std::string>> kShared = {
      {"ffn_gate_shexp.weight", "gate_proj"}, {"ffn_up_shexp.weight", "up_proj"}, {"ffn_down_shexp.weight", "down_proj"}};
  for (const auto& [from, to] : kShared) {
    if (rest == from) return layer + "mlp.shared_expert." + to + ".weight";
  }
  static const std::vector<std::tuple<std::string, std::string, std::string>> kExperts = {
      {"ffn_gate_exps.weight", "w1", "gate_proj"}, {"ffn_up_exps.weight", "w3", "up_proj"},
      {"ffn_down_exps.weight", "w2", "down_proj"}};
  for (const auto& [from, w, proj] : kExperts) {
    if (rest != from) continue;
    return layer + (mixtral ? cat("block_sparse_moe.experts.", expert, ".", w) : cat("mlp.experts.", expert, ".", proj)) +
           ".weight";
  }
  return "";
}

std::string hf_name(const std::string& canonical) {
  static const std::vector<std::pair<std::string, std::string>> kMap = {
      {"attn_norm.weight", "input_layernorm.weight"},     {"attn_q.weight", "self_attn.q_proj.weight"},
      {"attn_k.weight", "self_attn.k_proj.weight"},       {"attn_v.weight", "self_attn.v_proj.weight"},
      {"attn_q.bias", "self_attn.q_proj.bias"},           {"attn_k.bias", "self_attn.k_proj.bias"},
      {"attn_v.bias", "self_attn.v_proj.bias"},           {"attn_q_norm.weight", "self_attn.q_norm.weight"},
      {"attn_k_norm.weight", "self_attn.k_norm.weight"},  {"attn_output.weight", "self_attn.o_proj.weight"},
      {"ffn_norm.weight", "post_attention_layernorm.weight"}, {"ffn_gate.weight", "mlp.gate_proj.weight"},
      {"ffn_up.weight", "mlp.up_proj.weight"},            {"ffn_down.weight", "mlp.down_proj.weight"},
  };
  if (canonical == "token_embd.weight") return "model.embed_tokens.weight";
  if (canonical == "output_norm.weight") return "model.norm.weight";
  if (canonical == "output.weight") return "lm_head.weight";
  const size_t dot = canonical.find('.', 4);
  const std::string layer = canonical.substr(4, dot - 4), rest = canonical.substr(dot + 1);
  for (const auto& [from, to] : kMap) {
    if (rest == from) return "model.layers." + layer + "." + to;
  }
  throw Error("no Hugging Face name for " + canonical);
}

const char* hf_architecture(Arch a) {
  switch (a) {
    case Arch::Llama: return "LlamaForCausalLM";
    case Arch::Mistral: return "MistralForCausalLM";
    case Arch::Qwen2: return "Qwen2ForCausalLM";
    case Arch::Qwen3: return "Qwen3ForCausalLM";
    case Arch::Mixtral: return "MixtralForCausalLM";
    case Arch::Qwen2Moe: return "Qwen2MoeForCausalLM";
    case Arch::Qwen3Moe: return "Qwen3MoeForCausalLM";
  }
  return "";
}

const char* hf_model_type(Arch a) {
  switch (a) {
    case Arch::Qwen2Moe: return "qwen2_moe";
    case Arch::Qwen3Moe: return "qwen3_moe";
    default: return arch_name(a);
  }
}

void write_text(const std::filesystem::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f << s;
  if (!f) throw Error(cat(p.string(), ": cannot write"));
}

}  // namespace

std::optional<SynthSpec> synth_preset(std::string_view name) {
  SynthSpec s;
  s.layers = 2;
  s.hidden = 256;
  s.heads = 8;
  s.vocab = 1000;
  if (name == "tiny-mixtral") {
    s.arch = Arch::Mixtral;
    s.kv_heads = 2;
    s.ffn = 512;
    s.experts = 8;
    s.experts_used = 2;
  } else if (name == "tiny-qwen2-moe") {
    s.arch = Arch::Qwen2Moe;
    s.kv_heads = 4;
    s.ffn = 256;
    s.experts = 4;
    s.experts_used = 1;
    s.shared_expert_ffn = 512;
  } else if (name == "tiny-qwen3-moe") {
    s.arch = Arch::Qwen3Moe;
    s.kv_heads = 4;
    s.ffn = 256;
    s.experts = 8;
    s.experts_used = 2;
    s.norm_topk_prob = true;
  } else {
    return std::nullopt;
  }
  return s;
}

std::vector<std::string> synth_preset_names() { return {"tiny-mixtral", "tiny-qwen2-moe", "tiny-qwen3-moe"}; }

DType synth_tensor_type(DType wanted, int64_t cols) {
  if (cols % dtype_info(wanted).block_size == 0) return wanted;
  if (cols % 32 == 0 && dtype_info(wanted).quantized) return DType::Q8_0;
  return DType::F16;
}

void write_synth_model(const SynthSpec& s, const std::string& out) {
  ModelConfig c;
  c.arch = s.arch;
  c.n_layers = s.layers;
  c.hidden = s.hidden;
  c.n_heads = s.heads;
  c.n_kv_heads = s.kv_heads;
  c.head_dim = s.head_dim > 0 ? s.head_dim : (s.heads > 0 ? s.hidden / s.heads : 0);
  c.ffn = s.ffn;
  c.vocab = s.vocab;
  c.max_context = s.context;
  c.rope_theta = s.rope_theta;
  c.qkv_bias = s.qkv_bias || s.arch == Arch::Qwen2 || s.arch == Arch::Qwen2Moe;
  c.qk_norm = s.arch == Arch::Qwen3 || s.arch == Arch::Qwen3Moe;
  c.tied_embeddings = s.tied_embeddings;
  const bool moe = s.arch == Arch::Mixtral || s.arch == Arch::Qwen2Moe || s.arch == Arch::Qwen3Moe;
  if (moe) {
    if (s.experts < 1 || s.experts > kMaxExperts || s.experts_used < 1 || s.experts_used > s.experts) {
      throw ConfigError(cat("a mixture-of-experts model needs 1 to ", kMaxExperts, " experts and 1 to that many per ",
                            "token, got --experts ", s.experts, " --experts-used ", s.experts_used));
    }
    if (s.shared_expert_ffn != 0 && s.arch != Arch::Qwen2Moe) {
      throw ConfigError(cat("--shared-expert-ffn: ", arch_name(s.arch), " has no shared expert (qwen2moe has)"));
    }
    c.n_experts = s.experts;
    c.n_experts_used = s.experts_used;
    c.norm_topk_prob = s.arch == Arch::Mixtral || s.norm_topk_prob;
    if (s.arch == Arch::Qwen2Moe) {
      c.shared_expert_ffn = s.shared_expert_ffn > 0 ? s.shared_expert_ffn : s.ffn;
      c.shared_expert_gate = true;
    }
  } else if (s.experts != 0 || s.experts_used != 0 || s.shared_expert_ffn != 0) {
    throw ConfigError(cat("--experts, --experts-used and --shared-expert-ffn need a mixture-of-experts --arch ",
                          "(mixtral, qwen2moe, qwen3moe), not ", arch_name(s.arch)));
  }
  if (s.layers < 1 || s.hidden < 1 || s.heads < 1 || s.kv_heads < 1 || s.ffn < 1 || c.head_dim < 2 ||
      c.head_dim % 2 != 0 || s.heads % s.kv_heads != 0) {
    throw ConfigError(cat("impossible shape: layers ", s.layers, ", hidden ", s.hidden, ", heads ", s.heads,
                          ", kv-heads ", s.kv_heads, ", head_dim ", c.head_dim, ", ffn ", s.ffn,
                          " (heads must be a multiple of kv-heads, head_dim even)"));
  }
  const Vocab vocab = make_vocab(s.vocab);
  c.bos_token = vocab.bos;
  c.eos_token = vocab.eos;
  const std::vector<Tensor> tensors = make_tensors(s, c);
  const bool gguf = out.size() >= 5 && out.substr(out.size() - 5) == ".gguf";

  if (gguf) {
    const std::string a = gguf_arch_name(s.arch);
    GgufWriter w;
    w.set_string("general.architecture", a);
    w.set_string("general.name", cat("synth-", a, "-", s.layers, "x", s.hidden));
    w.set_u32(a + ".block_count", static_cast<uint32_t>(c.n_layers));
    w.set_u32(a + ".context_length", static_cast<uint32_t>(c.max_context));
    w.set_u32(a + ".embedding_length", static_cast<uint32_t>(c.hidden));
    // Qwen-MoE's feed_forward_length is its (dense) intermediate_size, which
    // the published checkpoints set to the shared expert's size.
    const int dense_ffn = s.arch == Arch::Mixtral || !moe ? c.ffn : std::max(c.ffn, c.shared_expert_ffn);
    w.set_u32(a + ".feed_forward_length", static_cast<uint32_t>(dense_ffn));
    if (moe) {
      w.set_u32(a + ".expert_count", static_cast<uint32_t>(c.n_experts));
      w.set_u32(a + ".expert_used_count", static_cast<uint32_t>(c.n_experts_used));
      if (s.arch != Arch::Mixtral) w.set_u32(a + ".expert_feed_forward_length", static_cast<uint32_t>(c.ffn));
      if (c.shared_expert_ffn > 0) {
        w.set_u32(a + ".expert_shared_feed_forward_length", static_cast<uint32_t>(c.shared_expert_ffn));
      }
      // llama.cpp renormalizes Mixtral and Qwen3-MoE and not Qwen2-MoE; the
      // key is written only where the model departs from that.
      if (c.norm_topk_prob != (s.arch != Arch::Qwen2Moe)) w.set_bool(a + ".expert_weights_norm", c.norm_topk_prob);
    }
    w.set_u32(a + ".attention.head_count", static_cast<uint32_t>(c.n_heads));
    w.set_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
    w.set_u32(a + ".attention.key_length", static_cast<uint32_t>(c.head_dim));
    w.set_u32(a + ".attention.value_length", static_cast<uint32_t>(c.head_dim));
    w.set_f32(a + ".attention.layer_norm_rms_epsilon", c.rms_eps);
    w.set_f32(a + ".rope.freq_base", c.rope_theta);
    w.set_u32(a + ".vocab_size", static_cast<uint32_t>(c.vocab));
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string("tokenizer.ggml.pre", "gpt-2");
    w.set_strings("tokenizer.ggml.tokens", vocab.tokens);
    std::vector<int32_t> types(vocab.tokens.size(), 1);
    types[static_cast<size_t>(vocab.bos)] = types[static_cast<size_t>(vocab.eos)] = 3;
    w.set_i32s("tokenizer.ggml.token_type", types);
    w.set_strings("tokenizer.ggml.merges", vocab.merges);
    w.set_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(vocab.bos));
    w.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(vocab.eos));
    w.set_bool("tokenizer.ggml.add_bos_token", true);
    w.set_u32("general.file_type", 0);
    const bool permute = s.arch == Arch::Llama || s.arch == Arch::Mistral || s.arch == Arch::Mixtral;
    for (const Tensor& t : tensors) {
      std::vector<float> values = t.values;
      const TensorId id = t.decl->id;
      const bool qk =
          id == TensorId::AttnQ || id == TensorId::AttnK || id == TensorId::AttnQBias || id == TensorId::AttnKBias;
      if (permute && qk) {
        values = permute_rows_for_interleaved_rope(values, t.shape[0], t.shape.size() > 1 ? t.shape[1] : 1, c.head_dim);
      }
      const int64_t cols = t.shape.back();
      DType type = t.is_matrix() ? synth_tensor_type(s.dtype, cols) : DType::F32;
      if (t.decl->kind == TensorKind::Router && dtype_info(type).quantized) type = DType::F32;
      if (!t.is_matrix() && (s.dtype == DType::F16 || s.dtype == DType::BF16)) {
        // Vectors stay F32 in GGUF, holding the values of the 16-bit checkpoint
        // (as llama.cpp's converter does), so GGUF and safetensors agree.
        std::vector<uint8_t> half(values.size() * 2);
        cpu::quantize_row(s.dtype, values.data(), half.data(), static_cast<int64_t>(values.size()));
        cpu::dequantize_row(s.dtype, half.data(), values.data(), static_cast<int64_t>(values.size()));
      }
      w.add_tensor(t.name, type, t.shape, encode(type, values, cols));
    }
    if (s.rope_llama3) {
      w.set_f32(a + ".rope.scaling.factor", 8.0f);
      const std::vector<float> f = llama3_rope_factors(c.head_dim, c.rope_theta, 8.0f, 1.0f, 4.0f, 8192);
      std::vector<uint8_t> bytes(f.size() * sizeof(float));
      std::memcpy(bytes.data(), f.data(), bytes.size());
      w.add_tensor(tensor_name(TensorId::RopeFreqs), DType::F32, {static_cast<int64_t>(f.size())}, bytes);
    }
    w.write(out);
    return;
  }

  if (s.dtype != DType::F32 && s.dtype != DType::F16 && s.dtype != DType::BF16) {
    throw ConfigError(cat("safetensors holds f32, f16 or bf16 weights, not ", dtype_name(s.dtype),
                          "; write a .gguf file for quantized types"));
  }
  namespace fs = std::filesystem;
  fs::create_directories(out);
  SafetensorsWriter w;
  for (const Tensor& t : tensors) {
    if (t.shape.size() == 3) {  // stacked experts: one tensor each
      const size_t each = t.values.size() / static_cast<size_t>(t.shape[0]);
      for (int64_t e = 0; e < t.shape[0]; ++e) {
        const std::vector<float> one(t.values.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(e) * each),
                                     t.values.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(e + 1) * each));
        w.add_tensor(hf_moe_name(s.arch, t.name, static_cast<int>(e)), s.dtype, {t.shape[1], t.shape[2]},
                     encode(s.dtype, one, t.shape[2]));
      }
      continue;
    }
    const std::string moe_name = hf_moe_name(s.arch, t.name, 0);
    std::vector<int64_t> shape = t.shape;
    if (t.decl->kind == TensorKind::Gate) shape = {1, t.shape[0]};  // a Linear(hidden, 1)
    w.add_tensor(moe_name.empty() ? hf_name(t.name) : moe_name, s.dtype, shape,
                 encode(s.dtype, t.values, shape.back()));
  }
  w.set_metadata("format", "pt");
  w.write((fs::path(out) / "model.safetensors").string());

  nlohmann::ordered_json cfg = {
      {"architectures", {hf_architecture(s.arch)}},
      {"model_type", hf_model_type(s.arch)},
      {"vocab_size", c.vocab},
      {"hidden_size", c.hidden},
      {"intermediate_size", c.ffn},
      {"num_hidden_layers", c.n_layers},
      {"num_attention_heads", c.n_heads},
      {"num_key_value_heads", c.n_kv_heads},
      {"head_dim", c.head_dim},
      {"hidden_act", "silu"},
      {"max_position_embeddings", c.max_context},
      {"rms_norm_eps", c.rms_eps},
      {"rope_theta", c.rope_theta},
      {"attention_bias", c.qkv_bias},
      {"tie_word_embeddings", c.tied_embeddings},
      {"torch_dtype", s.dtype == DType::BF16 ? "bfloat16" : s.dtype == DType::F16 ? "float16" : "float32"},
      {"bos_token_id", vocab.bos},
      {"eos_token_id", vocab.eos},
  };
  if (s.arch == Arch::Mixtral) {
    cfg["num_local_experts"] = c.n_experts;
    cfg["num_experts_per_tok"] = c.n_experts_used;
  } else if (moe) {
    cfg["intermediate_size"] = std::max(c.ffn, c.shared_expert_ffn);
    cfg["num_experts"] = c.n_experts;
    cfg["num_experts_per_tok"] = c.n_experts_used;
    cfg["moe_intermediate_size"] = c.ffn;
    if (c.shared_expert_ffn > 0) cfg["shared_expert_intermediate_size"] = c.shared_expert_ffn;
    cfg["norm_topk_prob"] = c.norm_topk_prob;
    cfg["decoder_sparse_step"] = 1;
    cfg["mlp_only_layers"] = nlohmann::ordered_json::array();
  }
  cfg["rope_scaling"] = nullptr;
  if (s.rope_llama3) {
    cfg["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  }
  write_text(fs::path(out) / "config.json", cfg.dump(2) + "\n");
  write_text(fs::path(out) / "generation_config.json",
             nlohmann::ordered_json{{"bos_token_id", vocab.bos}, {"eos_token_id", vocab.eos}}.dump(2) + "\n");

  nlohmann::ordered_json vocab_json = nlohmann::ordered_json::object();
  for (size_t i = 0; i + 2 < vocab.tokens.size(); ++i) vocab_json[vocab.tokens[i]] = i;
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  for (int id : {vocab.bos, vocab.eos}) {
    added.push_back({{"id", id}, {"content", vocab.tokens[static_cast<size_t>(id)]}, {"single_word", false},
                     {"lstrip", false}, {"rstrip", false}, {"normalized", false}, {"special", true}});
  }
  const std::string bos = vocab.tokens[static_cast<size_t>(vocab.bos)];
  nlohmann::ordered_json tok = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair", nlohmann::ordered_json::array()},
        {"special_tokens", {{bos, {{"id", bos}, {"ids", {vocab.bos}}, {"tokens", {bos}}}}}}}},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false}, {"vocab", vocab_json},
        {"merges", vocab.merges}}},
  };
  for (int id : {vocab.bos, vocab.eos}) tok["model"]["vocab"][vocab.tokens[static_cast<size_t>(id)]] = id;
  write_text(fs::path(out) / "tokenizer.json", tok.dump(2) + "\n");
  write_text(fs::path(out) / "tokenizer_config.json",
             nlohmann::ordered_json{{"add_bos_token", true},
                                    {"add_eos_token", false},
                                    {"bos_token", bos},
                                    {"eos_token", vocab.tokens[static_cast<size_t>(vocab.eos)]},
                                    {"model_max_length", c.max_context},
                                    {"tokenizer_class", "PreTrainedTokenizerFast"}}
                     .dump(2) + "\n");
}

}  // namespace tpinfer
