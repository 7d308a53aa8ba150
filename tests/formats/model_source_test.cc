#include "formats/model_source.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "core/half.h"
#include "formats/format_test_util.h"
#include "formats/gguf_writer.h"

namespace tpinfer {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;
using testing::expect_error;
using testing::TempDir;

// --- the bible model in its three files --------------------------------------

void expect_bible_config(const ModelConfig& c) {
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_EQ(c.n_layers, 8);
  EXPECT_EQ(c.hidden, 256);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.ffn, 1024);
  EXPECT_EQ(c.vocab, 4096);
  EXPECT_EQ(c.max_context, 512);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_TRUE(c.rope_freq_factors.empty());
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_FALSE(c.tied_embeddings);
  EXPECT_EQ(c.bos_token, 4094);
  EXPECT_EQ(c.eos_token, 4095);
  EXPECT_EQ(c.eos_tokens, std::vector<int>{4095});
}

TEST(ModelSourceBible, ConfigFromAllThreeFiles) {
  const std::string dir = testing::bible_dir();
  for (const char* file : {"bible-q8_0.gguf", "bible-bf16.gguf"}) {
    SCOPED_TRACE(file);
    const auto s = ModelSource::open(dir + "/" + file);
    EXPECT_EQ(s->format(), "gguf");
    ASSERT_NE(s->gguf(), nullptr);
    EXPECT_TRUE(s->hf_dir().empty());
    expect_bible_config(s->config());
    EXPECT_EQ(s->config().arch_name, "llama");
    EXPECT_EQ(s->config().name, "bible");
    EXPECT_EQ(s->config().rope_style, RopeStyle::Interleaved);
    EXPECT_EQ(s->tensors().size(), 75u);
  }
  const auto hf = ModelSource::open(dir + "/bible-bf16");
  EXPECT_EQ(hf->format(), "safetensors");
  EXPECT_EQ(hf->gguf(), nullptr);
  EXPECT_EQ(hf->hf_dir(), dir + "/bible-bf16");
  expect_bible_config(hf->config());
  EXPECT_EQ(hf->config().arch_name, "LlamaForCausalLM");
  EXPECT_EQ(hf->config().name, "bible-bf16");
  EXPECT_EQ(hf->config().rope_style, RopeStyle::NeoX);
  EXPECT_EQ(hf->tensors().size(), 75u);
  EXPECT_EQ(hf->get("blk.5.attn_output.weight").type, DType::BF16);
  expect_error<FormatError>([&] { hf->get("blk.8.attn_q.weight"); }, hf->path(), {"blk.8.attn_q.weight"});
}

std::vector<uint16_t> bf16_values(const TensorInfo& t) {
  EXPECT_EQ(t.type, DType::BF16);
  std::vector<uint16_t> v(t.nbytes / 2);
  std::memcpy(v.data(), t.data, t.nbytes);
  return v;
}

// bible-bf16.gguf and bible-bf16/ hold the same weights: identical bytes for
// ordinary matrices, F32 norms equal to the BF16 ones, and Q/K rows permuted per
// head by llama.cpp's converter (rows of a head viewed as [2, hd/2] and
// transposed to [hd/2, 2]).
TEST(ModelSourceBible, GgufAndHuggingFaceHoldTheSameWeights) {
  const auto g = ModelSource::open(testing::bible_dir() + "/bible-bf16.gguf");
  const auto h = ModelSource::open(testing::bible_dir() + "/bible-bf16");
  const ModelConfig& c = g->config();
  for (const char* name : {"token_embd.weight", "output.weight", "blk.3.ffn_down.weight", "blk.0.ffn_gate.weight",
                           "blk.7.ffn_up.weight", "blk.2.attn_v.weight", "blk.6.attn_output.weight"}) {
    EXPECT_EQ(bf16_values(g->get(name)), bf16_values(h->get(name))) << name;
  }
  for (int l = 0; l < c.n_layers; ++l) {
    for (const char* norm : {"attn_norm.weight", "ffn_norm.weight"}) {
      const TensorInfo& gt = g->get(cat("blk.", l, ".", norm));
      ASSERT_EQ(gt.type, DType::F32);
      const std::vector<uint16_t> hv = bf16_values(h->get(cat("blk.", l, ".", norm)));
      ASSERT_EQ(gt.nbytes, hv.size() * 4);
      for (size_t i = 0; i < hv.size(); ++i) {
        float gf;
        std::memcpy(&gf, gt.data + 4 * i, 4);
        ASSERT_EQ(gf, bf16_to_f32(hv[i])) << norm << " " << i;
      }
    }
    for (const auto& [name, heads] :
         {std::pair{"attn_q.weight", c.n_heads}, std::pair{"attn_k.weight", c.n_kv_heads}}) {
      const std::vector<uint16_t> gv = bf16_values(g->get(cat("blk.", l, ".", name)));
      const std::vector<uint16_t> hv = bf16_values(h->get(cat("blk.", l, ".", name)));
      ASSERT_EQ(gv.size(), hv.size());
      EXPECT_NE(gv, hv);  // the permutation is not the identity
      const size_t cols = static_cast<size_t>(c.hidden), hd = static_cast<size_t>(c.head_dim);
      for (size_t head = 0; head < static_cast<size_t>(heads); ++head) {
        for (size_t i = 0; i < hd / 2; ++i) {
          for (size_t j = 0; j < 2; ++j) {
            const size_t g_row = head * hd + i * 2 + j;
            const size_t h_row = head * hd + j * (hd / 2) + i;
            ASSERT_TRUE(
                std::equal(gv.begin() + g_row * cols, gv.begin() + (g_row + 1) * cols, hv.begin() + h_row * cols))
                << name << " layer " << l << " head " << head << " row " << i * 2 + j;
          }
        }
      }
    }
  }
}

// --- synthetic models, written in both formats --------------------------------

struct Synth {
  Arch arch = Arch::Llama;
  int layers = 2, hidden = 64, heads = 4, kv = 2, head_dim = 16, ffn = 96, vocab = 160, context = 256;
  bool tied = false;
  bool bias = false;  // Llama/Mistral attention_bias (Qwen2 always has biases)
  bool with_lm_head = true;
  bool sharded = true;

  bool has_bias() const { return arch == Arch::Qwen2 || bias; }
  bool has_qk_norm() const { return arch == Arch::Qwen3; }
  const char* hf_class() const {
    switch (arch) {
      case Arch::Llama:
        return "LlamaForCausalLM";
      case Arch::Mistral:
        return "MistralForCausalLM";
      case Arch::Qwen2:
        return "Qwen2ForCausalLM";
      case Arch::Qwen3:
        return "Qwen3ForCausalLM";
      case Arch::Mixtral:
        return "MixtralForCausalLM";
      case Arch::Qwen2Moe:
        return "Qwen2MoeForCausalLM";
      case Arch::Qwen3Moe:
        return "Qwen3MoeForCausalLM";
    }
    return "";
  }
};

struct SynthTensor {
  std::string hf, canonical;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // BF16
};

std::vector<uint8_t> random_bf16(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 0.5f);
  std::vector<uint8_t> b(static_cast<size_t>(n) * 2);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t v = f32_to_bf16(dist(rng));
    std::memcpy(b.data() + 2 * i, &v, 2);
  }
  return b;
}

std::vector<SynthTensor> synth_tensors(const Synth& s, std::mt19937& rng) {
  std::vector<SynthTensor> out;
  auto add = [&](std::string hf, std::string canonical, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    out.push_back({std::move(hf), std::move(canonical), shape, random_bf16(n, rng)});
  };
  const int64_t h = s.hidden, q = int64_t{s.heads} * s.head_dim, kv = int64_t{s.kv} * s.head_dim;
  add("model.embed_tokens.weight", "token_embd.weight", {s.vocab, h});
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = cat("model.layers.", l, "."), b = cat("blk.", l, ".");
    add(p + "input_layernorm.weight", b + "attn_norm.weight", {h});
    add(p + "self_attn.q_proj.weight", b + "attn_q.weight", {q, h});
    add(p + "self_attn.k_proj.weight", b + "attn_k.weight", {kv, h});
    add(p + "self_attn.v_proj.weight", b + "attn_v.weight", {kv, h});
    if (s.has_bias()) {
      add(p + "self_attn.q_proj.bias", b + "attn_q.bias", {q});
      add(p + "self_attn.k_proj.bias", b + "attn_k.bias", {kv});
      add(p + "self_attn.v_proj.bias", b + "attn_v.bias", {kv});
    }
    if (s.has_qk_norm()) {
      add(p + "self_attn.q_norm.weight", b + "attn_q_norm.weight", {s.head_dim});
      add(p + "self_attn.k_norm.weight", b + "attn_k_norm.weight", {s.head_dim});
    }
    add(p + "self_attn.o_proj.weight", b + "attn_output.weight", {h, q});
    add(p + "post_attention_layernorm.weight", b + "ffn_norm.weight", {h});
    add(p + "mlp.gate_proj.weight", b + "ffn_gate.weight", {s.ffn, h});
    add(p + "mlp.up_proj.weight", b + "ffn_up.weight", {s.ffn, h});
    add(p + "mlp.down_proj.weight", b + "ffn_down.weight", {h, s.ffn});
  }
  add("model.norm.weight", "output_norm.weight", {h});
  if (s.with_lm_head) add("lm_head.weight", "output.weight", {s.vocab, h});
  return out;
}

Json hf_config_json(const Synth& s) {
  Json j;
  j["architectures"] = {s.hf_class()};
  j["hidden_size"] = s.hidden;
  j["num_hidden_layers"] = s.layers;
  j["num_attention_heads"] = s.heads;
  j["num_key_value_heads"] = s.kv;
  j["head_dim"] = s.head_dim;
  j["intermediate_size"] = s.ffn;
  j["vocab_size"] = s.vocab;
  j["max_position_embeddings"] = s.context;
  j["rms_norm_eps"] = 1e-6;
  j["rope_theta"] = 500000.0;
  j["tie_word_embeddings"] = s.tied;
  j["attention_bias"] = s.bias;
  j["bos_token_id"] = 1;
  j["eos_token_id"] = 2;
  return j;
}

// Writes the folder: config.json (from `config`), weights in one file or two
// shards with an index. Extra tensors (by HF name) can be appended.
void write_hf(const std::string& dir, const Synth& s, const Json& config, const std::vector<SynthTensor>& tensors) {
  fs::create_directories(dir);
  testing::write_text(dir + "/config.json", config.dump(2));
  if (!s.sharded) {
    SafetensorsWriter w;
    for (const SynthTensor& t : tensors) w.add_tensor(t.hf, DType::BF16, t.shape, t.bytes);
    w.write(dir + "/model.safetensors");
    return;
  }
  SafetensorsWriter a, b;
  Json index;
  index["metadata"] = {{"total_size", 0}};
  Json map = Json::object();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const bool first = i < tensors.size() / 2;
    (first ? a : b).add_tensor(tensors[i].hf, DType::BF16, tensors[i].shape, tensors[i].bytes);
    map[tensors[i].hf] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  index["weight_map"] = map;
  a.write(dir + "/model-00001-of-00002.safetensors");
  b.write(dir + "/model-00002-of-00002.safetensors");
  testing::write_text(dir + "/model.safetensors.index.json", index.dump(2));
}

void write_gguf(const std::string& path, const Synth& s, const std::vector<SynthTensor>& tensors) {
  GgufWriter w;
  const std::string a = arch_name(s.arch);
  w.set_string("general.architecture", a);
  w.set_string("general.name", "synth");
  w.set_u32(a + ".block_count", static_cast<uint32_t>(s.layers));
  w.set_u32(a + ".embedding_length", static_cast<uint32_t>(s.hidden));
  w.set_u32(a + ".attention.head_count", static_cast<uint32_t>(s.heads));
  w.set_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(s.kv));
  w.set_u32(a + ".attention.key_length", static_cast<uint32_t>(s.head_dim));
  w.set_u32(a + ".attention.value_length", static_cast<uint32_t>(s.head_dim));
  w.set_u32(a + ".feed_forward_length", static_cast<uint32_t>(s.ffn));
  w.set_u32(a + ".context_length", static_cast<uint32_t>(s.context));
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", 1e-6f);
  w.set_f32(a + ".rope.freq_base", 500000.0f);
  std::vector<std::string> tokens;
  for (int i = 0; i < s.vocab; ++i) tokens.push_back(cat("t", i));
  w.set_strings("tokenizer.ggml.tokens", tokens);
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  for (const SynthTensor& t : tensors) {
    if (t.canonical == "output.weight" && s.tied) continue;
    w.add_tensor(t.canonical, DType::BF16, t.shape, t.bytes);
  }
  w.write(path);
}

void expect_same_model(const ModelSource& a, const ModelSource& b) {
  const ModelConfig &x = a.config(), &y = b.config();
  EXPECT_EQ(x.arch, y.arch);
  EXPECT_EQ(x.n_layers, y.n_layers);
  EXPECT_EQ(x.hidden, y.hidden);
  EXPECT_EQ(x.n_heads, y.n_heads);
  EXPECT_EQ(x.n_kv_heads, y.n_kv_heads);
  EXPECT_EQ(x.head_dim, y.head_dim);
  EXPECT_EQ(x.ffn, y.ffn);
  EXPECT_EQ(x.vocab, y.vocab);
  EXPECT_EQ(x.max_context, y.max_context);
  EXPECT_FLOAT_EQ(x.rms_eps, y.rms_eps);
  EXPECT_FLOAT_EQ(x.rope_theta, y.rope_theta);
  EXPECT_EQ(x.qkv_bias, y.qkv_bias);
  EXPECT_EQ(x.qk_norm, y.qk_norm);
  EXPECT_EQ(x.tied_embeddings, y.tied_embeddings);
  EXPECT_EQ(x.bos_token, y.bos_token);
  EXPECT_EQ(x.eos_tokens, y.eos_tokens);
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  for (const TensorInfo& t : a.tensors()) {
    const TensorInfo* u = b.find(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    EXPECT_EQ(t.shape, u->shape) << t.name;
    ASSERT_EQ(t.nbytes, u->nbytes) << t.name;
    EXPECT_TRUE(std::equal(t.data, t.data + t.nbytes, u->data)) << t.name;
  }
}

TEST(ModelSourceSynth, EveryArchitectureInBothFormats) {
  std::mt19937 rng(42);
  for (const Arch arch : {Arch::Llama, Arch::Mistral, Arch::Qwen2, Arch::Qwen3}) {
    for (const bool tied : {false, true}) {
      SCOPED_TRACE(cat(arch_name(arch), tied ? " tied" : ""));
      TempDir dir;
      Synth s;
      s.arch = arch;
      s.tied = tied;
      s.sharded = arch != Arch::Mistral;
      if (arch == Arch::Qwen3) s.head_dim = 32;  // head_dim != hidden / heads
      const auto tensors = synth_tensors(s, rng);
      write_hf(dir.file("hf"), s, hf_config_json(s), tensors);
      write_gguf(dir.file("m.gguf"), s, tensors);
      const auto hf = ModelSource::open(dir.file("hf"));
      const auto gg = ModelSource::open(dir.file("m.gguf"));
      expect_same_model(*hf, *gg);
      const ModelConfig& c = hf->config();
      EXPECT_EQ(c.arch, arch);
      EXPECT_EQ(c.head_dim, s.head_dim);
      EXPECT_EQ(c.qkv_bias, arch == Arch::Qwen2);
      EXPECT_EQ(c.qk_norm, arch == Arch::Qwen3);
      EXPECT_EQ(c.tied_embeddings, tied);
      EXPECT_EQ(hf->find("output.weight") == nullptr, tied);  // lm_head ignored when tied
      EXPECT_EQ(c.rope_style, RopeStyle::NeoX);
      const bool qwen = arch == Arch::Qwen2 || arch == Arch::Qwen3;
      EXPECT_EQ(gg->config().rope_style, qwen ? RopeStyle::NeoX : RopeStyle::Interleaved);
      EXPECT_EQ(c.bos_token, 1);
      EXPECT_EQ(c.eos_token, 2);
      for (size_t i = 0; i < tensors.size(); ++i) {  // each tensor points into its own shard
        if (tensors[i].canonical == "output.weight" && tied) continue;
        const char* shard = !s.sharded               ? "model.safetensors"
                            : i < tensors.size() / 2 ? "model-00001-of-00002.safetensors"
                                                     : "model-00002-of-00002.safetensors";
        EXPECT_EQ(hf->get(tensors[i].canonical).file, dir.file("hf") + "/" + shard);
      }
    }
  }
}

TEST(ModelSourceSynth, LlamaWithBiasAndExtras) {
  std::mt19937 rng(3);
  TempDir dir;
  Synth s;
  s.bias = true;
  auto tensors = synth_tensors(s, rng);
  tensors.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", "", {8}, random_bf16(8, rng)});  // ignored
  Json config = hf_config_json(s);
  config["eos_token_id"] = {2, 5};
  write_hf(dir.file("hf"), s, config, tensors);
  testing::write_text(dir.file("hf/generation_config.json"), R"({"bos_token_id": 1, "eos_token_id": [5, 7]})");
  const auto hf = ModelSource::open(dir.file("hf"));
  EXPECT_TRUE(hf->config().qkv_bias);
  EXPECT_EQ(hf->config().eos_token, 2);
  EXPECT_EQ(hf->config().eos_tokens, (std::vector<int>{2, 5, 7}));
  EXPECT_EQ(hf->get("blk.1.attn_v.bias").shape, (std::vector<int64_t>{2 * 16}));
  EXPECT_EQ(hf->tensors().size(), tensors.size() - 1);
}

TEST(ModelSourceSynth, RopeScaling) {
  std::mt19937 rng(11);
  TempDir dir;
  Synth s;
  s.sharded = false;
  s.head_dim = 64;
  s.heads = 2;
  s.kv = 1;
  const auto tensors = synth_tensors(s, rng);
  // llama3 (Llama 3.1's values): high frequencies unscaled, low ones divided by factor.
  Json config = hf_config_json(s);
  config["rope_scaling"] = {{"rope_type", "llama3"},
                            {"factor", 8.0},
                            {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0},
                            {"original_max_position_embeddings", 8192}};
  write_hf(dir.file("a"), s, config, tensors);
  const ModelConfig c = ModelSource::open(dir.file("a"))->config();
  ASSERT_EQ(c.rope_freq_factors.size(), 32u);
  EXPECT_EQ(c.rope_freq_factors, llama3_rope_factors(64, 500000.0f, 8.0f, 1.0f, 4.0f, 8192));
  EXPECT_FLOAT_EQ(c.rope_freq_factors.front(), 1.0f);
  EXPECT_FLOAT_EQ(c.rope_freq_factors.back(), 8.0f);
  // linear
  config["rope_scaling"] = {{"type", "linear"}, {"factor", 2.5}};
  write_hf(dir.file("b"), s, config, tensors);
  EXPECT_EQ(ModelSource::open(dir.file("b"))->config().rope_freq_factors, std::vector<float>(32, 2.5f));
  // unsupported
  config["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  write_hf(dir.file("c"), s, config, tensors);
  expect_error<ConfigError>([&] { ModelSource::open(dir.file("c")); }, dir.file("c/config.json"), {"'yarn'", "llama3"});
  // GGUF: rope_freqs.weight fills the factors.
  GgufWriter w;
  write_gguf(dir.file("m.gguf"), s, tensors);
  const auto base = GgufFile::open(dir.file("m.gguf"));
  for (const auto& [k, v] : base->metadata()) w.set(k, v);
  for (const TensorInfo& t : base->tensors())
    w.add_tensor(t.name, t.type, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes));
  std::vector<float> freqs(32);
  std::uniform_real_distribution<float> dist(1.0f, 8.0f);
  for (float& f : freqs) f = dist(rng);
  std::vector<uint8_t> fb(freqs.size() * 4);
  std::memcpy(fb.data(), freqs.data(), fb.size());
  w.add_tensor("rope_freqs.weight", DType::F32, {32}, fb);
  w.write(dir.file("r.gguf"));
  EXPECT_EQ(ModelSource::open(dir.file("r.gguf"))->config().rope_freq_factors, freqs);
  // ... of the wrong shape.
  GgufWriter w2;
  for (const auto& [k, v] : base->metadata()) w2.set(k, v);
  for (const TensorInfo& t : base->tensors())
    w2.add_tensor(t.name, t.type, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes));
  w2.add_tensor("rope_freqs.weight", DType::F32, {16}, std::vector<uint8_t>(64));
  w2.write(dir.file("r2.gguf"));
  expect_error<FormatError>([&] { ModelSource::open(dir.file("r2.gguf")); }, dir.file("r2.gguf"),
                            {"rope_freqs.weight", "[32]", "[16]"});
  // linear scaling in GGUF metadata
  w.set_string("llama.rope.scaling.type", "linear");
  w.set_f32("llama.rope.scaling.factor", 2.0f);
  w.write(dir.file("l.gguf"));
  const ModelConfig lc = ModelSource::open(dir.file("l.gguf"))->config();
  ASSERT_EQ(lc.rope_freq_factors.size(), 32u);
  for (size_t i = 0; i < 32; ++i) EXPECT_FLOAT_EQ(lc.rope_freq_factors[i], freqs[i] * 2.0f);
  w.set_string("llama.rope.scaling.type", "yarn");
  w.write(dir.file("y.gguf"));
  expect_error<ConfigError>([&] { ModelSource::open(dir.file("y.gguf")); }, dir.file("y.gguf"), {"'yarn'"});
}

// --- hostile folders and files ------------------------------------------------

class ModelSourceHostile : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937 rng(17);
    tensors_ = synth_tensors(s_, rng);
    config_ = hf_config_json(s_);
  }
  std::string folder(const std::string& name) {
    const std::string d = dir_.file(name);
    write_hf(d, s_, config_, tensors_);
    return d;
  }
  TempDir dir_;
  Synth s_;
  std::vector<SynthTensor> tensors_;
  Json config_;
};

TEST_F(ModelSourceHostile, UnsupportedArchitecture) {
  config_["architectures"] = {"GPT2LMHeadModel"};
  const std::string d = folder("hf");
  expect_error<ConfigError>([&] { ModelSource::open(d); }, d + "/config.json",
                            {"unsupported architecture 'GPT2LMHeadModel'", kSupportedArchitectures});
  GgufWriter w;
  w.set_string("general.architecture", "gpt2");
  w.write(dir_.file("g.gguf"));
  expect_error<ConfigError>([&] { ModelSource::open(dir_.file("g.gguf")); }, dir_.file("g.gguf"),
                            {"unsupported architecture 'gpt2'", kSupportedArchitectures});
}

TEST_F(ModelSourceHostile, Shards) {
  const std::string d = folder("hf");
  fs::remove(d + "/model-00002-of-00002.safetensors");
  expect_error<FormatError>([&] { ModelSource::open(d); }, d + "/model.safetensors.index.json",
                            {"model-00002-of-00002.safetensors", "missing"});
  // The index maps a tensor to a shard that does not hold it.
  const std::string e = folder("hf2");
  Json index = Json::parse(testing::read_bytes(e + "/model.safetensors.index.json"));
  index["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors";
  testing::write_text(e + "/model.safetensors.index.json", index.dump());
  expect_error<FormatError>([&] { ModelSource::open(e); }, e + "/model.safetensors.index.json",
                            {"'model.norm.weight'", "does not hold it"});
  // Paths outside the folder.
  index["weight_map"]["model.norm.weight"] = "../hf/model-00001-of-00002.safetensors";
  testing::write_text(e + "/model.safetensors.index.json", index.dump());
  expect_error<FormatError>([&] { ModelSource::open(e); }, e + "/model.safetensors.index.json",
                            {"file name in the folder"});
  testing::write_text(e + "/model.safetensors.index.json", "{\"weight_map\": ");
  expect_error<FormatError>([&] { ModelSource::open(e); }, e + "/model.safetensors.index.json", {"not valid JSON"});
  // No weights at all.
  fs::create_directories(dir_.file("empty"));
  testing::write_text(dir_.file("empty/config.json"), config_.dump());
  expect_error<FormatError>([&] { ModelSource::open(dir_.file("empty")); }, dir_.file("empty"), {"model.safetensors"});
  // A broken shard is reported by the shard's reader.
  const std::string f = folder("hf3");
  testing::write_text(f + "/model-00001-of-00002.safetensors", "garbage");
  expect_error<FormatError>([&] { ModelSource::open(f); }, f + "/model-00001-of-00002.safetensors", {"offset 0"});
}

TEST_F(ModelSourceHostile, ShapesAndMissingTensors) {
  // attn_k with the wrong row count.
  for (SynthTensor& t : tensors_) {
    if (t.hf == "model.layers.1.self_attn.k_proj.weight") {
      t.shape = {16, 64};
      t.bytes.resize(16 * 64 * 2);
    }
  }
  const std::string d = folder("hf");
  expect_error<FormatError>([&] { ModelSource::open(d); }, "model-0000",
                            {"tensor 'blk.1.attn_k.weight'", "expected shape [32, 64]", "found [16, 64]"});
  // The same problem in GGUF.
  write_gguf(dir_.file("m.gguf"), s_, tensors_);
  expect_error<FormatError>([&] { ModelSource::open(dir_.file("m.gguf")); }, dir_.file("m.gguf"),
                            {"'blk.1.attn_k.weight'", "expected shape [32, 64]", "found [16, 64]"});
  // A missing tensor.
  std::mt19937 rng(1);
  tensors_ = synth_tensors(s_, rng);
  tensors_.erase(std::remove_if(tensors_.begin(), tensors_.end(),
                                [](const SynthTensor& t) { return t.hf == "model.layers.0.mlp.up_proj.weight"; }),
                 tensors_.end());
  const std::string e = folder("hf2");
  expect_error<FormatError>([&] { ModelSource::open(e); }, e, {"missing tensor 'blk.0.ffn_up.weight'", "[96, 64]"});
  // Untied without lm_head.
  s_.with_lm_head = false;
  tensors_ = synth_tensors(s_, rng);
  const std::string f = folder("hf3");
  expect_error<FormatError>([&] { ModelSource::open(f); }, f, {"missing tensor 'output.weight'"});
  // A layer beyond the config.
  s_.with_lm_head = true;
  s_.layers = 3;
  tensors_ = synth_tensors(s_, rng);
  const std::string g = folder("hf4");
  expect_error<FormatError>([&] { ModelSource::open(g); }, g, {"layer 2", "2 layers"});
}

// A tensor that formats/tensor_table.h does not declare for the model is an
// error naming it, whatever the format.
TEST_F(ModelSourceHostile, UndeclaredTensorsAreErrors) {
  std::mt19937 rng(3);
  auto with = [&](std::string canonical, std::vector<int64_t> shape) {
    std::vector<SynthTensor> t = tensors_;
    t.push_back({"", std::move(canonical), shape, random_bf16(shape[0], rng)});
    return t;
  };
  // A name no Llama-family model has.
  write_gguf(dir_.file("a.gguf"), s_, with("blk.0.attn_rot_embd.weight", {8}));
  expect_error<FormatError>([&] { ModelSource::open(dir_.file("a.gguf")); }, dir_.file("a.gguf"),
                            {"unexpected tensor 'blk.0.attn_rot_embd.weight'", "no llama model"});
  // A layer beyond the config.
  write_gguf(dir_.file("b.gguf"), s_, with("blk.2.attn_norm.weight", {64}));
  expect_error<FormatError>([&] { ModelSource::open(dir_.file("b.gguf")); }, dir_.file("b.gguf"),
                            {"unexpected tensor 'blk.2.attn_norm.weight'", "layer 2", "2 layers"});
  // A declared tensor this config does not have: Q/K norms in a model whose
  // layer 0 has none (the config reads blk.0's).
  write_gguf(dir_.file("c.gguf"), s_, with("blk.1.attn_q_norm.weight", {16}));
  expect_error<FormatError>([&] { ModelSource::open(dir_.file("c.gguf")); }, dir_.file("c.gguf"),
                            {"unexpected tensor 'blk.1.attn_q_norm.weight'", "only models with Q/K norms have it"});
  // A Hugging Face folder with biases its config.json says it has not.
  s_.bias = true;
  tensors_ = synth_tensors(s_, rng);
  const std::string d = folder("hf");
  expect_error<FormatError>([&] { ModelSource::open(d); }, "model-0000",
                            {"unexpected tensor 'blk.0.attn_", ".bias'", "only models with Q/K/V biases have it"});
}

TEST_F(ModelSourceHostile, BadConfig) {
  auto expect_config_error = [&](const std::string& name, std::vector<std::string> parts) {
    const std::string d = folder(name);
    expect_error<FormatError>([&] { ModelSource::open(d); }, d + "/config.json", parts);
  };
  config_.erase("hidden_size");
  expect_config_error("a", {"\"hidden_size\"", "found none"});
  config_ = hf_config_json(s_);
  config_["num_hidden_layers"] = -2;
  expect_config_error("b", {"\"num_hidden_layers\"", "positive integer", "-2"});
  config_ = hf_config_json(s_);
  config_["num_key_value_heads"] = 3;
  expect_config_error("c", {"KV head count", "3"});
  config_ = hf_config_json(s_);
  config_["rms_norm_eps"] = "small";
  expect_config_error("d", {"\"rms_norm_eps\"", "number"});
  config_ = hf_config_json(s_);
  config_["eos_token_id"] = {2, "x"};
  expect_config_error("e", {"\"eos_token_id\""});
  config_ = hf_config_json(s_);
  config_["bos_token_id"] = 100000;
  expect_config_error("f", {"BOS"});
  const std::string d = folder("g");
  testing::write_text(d + "/config.json", "{\"architectures\": [\"LlamaForCausalLM\"],");
  expect_error<FormatError>([&] { ModelSource::open(d); }, d + "/config.json", {"not valid JSON"});
  expect_error<ConfigError>([&] { ModelSource::open(dir_.file("nowhere")); }, dir_.file("nowhere"));
  expect_error<ConfigError>([&] { ModelSource::open(d + "/config.json"); }, d + "/config.json", {"folder"});
  // GGUF: missing and mistyped keys.
  write_gguf(dir_.file("m.gguf"), s_, tensors_);
  const auto base = GgufFile::open(dir_.file("m.gguf"));
  auto rewrite = [&](const std::string& skip, std::optional<std::pair<std::string, GgufValue>> add) {
    GgufWriter w;
    for (const auto& [k, v] : base->metadata()) {
      if (k != skip) w.set(k, v);
    }
    if (add) w.set(add->first, add->second);
    for (const TensorInfo& t : base->tensors())
      w.add_tensor(t.name, t.type, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes));
    w.write(dir_.file("bad.gguf"));
    return dir_.file("bad.gguf");
  };
  std::string p = rewrite("llama.feed_forward_length", std::nullopt);
  expect_error<FormatError>([&] { ModelSource::open(p); }, p, {"'llama.feed_forward_length'", "found none"});
  p = rewrite("", std::pair{std::string("llama.block_count"), GgufValue{GgufType::STRING, std::string("8")}});
  expect_error<FormatError>([&] { ModelSource::open(p); }, p, {"'llama.block_count'", "positive integer", "string"});
  p = rewrite("", std::pair{std::string("llama.attention.head_count_kv"), GgufValue{GgufType::I32, int64_t{0}}});
  expect_error<FormatError>([&] { ModelSource::open(p); }, p, {"head_count_kv", "positive integer"});
  p = rewrite("general.architecture", std::nullopt);
  expect_error<FormatError>([&] { ModelSource::open(p); }, p, {"general.architecture"});
  p = rewrite("", std::pair{std::string("llama.attention.value_length"), GgufValue{GgufType::U32, uint64_t{8}}});
  expect_error<ConfigError>([&] { ModelSource::open(p); }, p, {"value_length"});
}

}  // namespace
}  // namespace tpinfer
