// Mixture-of-experts models from both formats: the config keys of llama.cpp
// and transformers, GGUF's stacked experts exposed one view per expert, the
// Hugging Face per-expert names, and clean errors for inconsistent files.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/gguf_writer.h"
#include "formats/model_source.h"
#include "model/synth.h"
#include "test_util.h"

namespace tpinfer {
namespace {

using testing::TempDir;

nlohmann::json read_config(const std::string& dir) {
  std::ifstream f(dir + "/config.json");
  return nlohmann::json::parse(f);
}

void write_config(const std::string& dir, const nlohmann::json& j) { std::ofstream(dir + "/config.json") << j.dump(2); }

TEST(MoeSource, PresetsReadTheSameFromGgufAndSafetensors) {
  struct Want {
    const char* preset;
    Arch arch;
    const char* gguf_arch;
    int experts, used, ffn, shared;
    bool gate, norm;
  };
  for (const Want& w : {Want{"tiny-mixtral", Arch::Mixtral, "llama", 8, 2, 512, 0, false, true},
                        Want{"tiny-qwen2-moe", Arch::Qwen2Moe, "qwen2moe", 4, 1, 256, 512, true, false},
                        Want{"tiny-qwen3-moe", Arch::Qwen3Moe, "qwen3moe", 8, 2, 256, 0, false, true}}) {
    SCOPED_TRACE(w.preset);
    TempDir dir;
    SynthSpec spec = *synth_preset(w.preset);
    spec.dtype = DType::BF16;
    spec.layers = 1;
    write_synth_model(spec, dir.file("m.gguf"));
    write_synth_model(spec, dir.file("hf"));
    const auto gg = ModelSource::open(dir.file("m.gguf"));
    const auto hf = ModelSource::open(dir.file("hf"));
    EXPECT_EQ(gg->config().arch_name, w.gguf_arch);
    for (const ModelSource* src : {gg.get(), hf.get()}) {
      const ModelConfig& c = src->config();
      EXPECT_EQ(c.arch, w.arch) << src->format();
      EXPECT_EQ(c.n_experts, w.experts);
      EXPECT_EQ(c.n_experts_used, w.used);
      EXPECT_EQ(c.ffn, w.ffn);
      EXPECT_EQ(c.shared_expert_ffn, w.shared);
      EXPECT_EQ(c.shared_expert_gate, w.gate);
      EXPECT_EQ(c.norm_topk_prob, w.norm);
      EXPECT_EQ(c.qkv_bias, w.arch == Arch::Qwen2Moe);
      EXPECT_EQ(c.qk_norm, w.arch == Arch::Qwen3Moe);
      EXPECT_EQ(src->get("blk.0.ffn_gate_inp.weight").shape, (std::vector<int64_t>{w.experts, spec.hidden}));
      EXPECT_EQ(src->find("blk.0.ffn_gate_exps.weight"), nullptr);
      EXPECT_EQ(src->find("blk.0.ffn_gate.weight"), nullptr);
      if (w.gate) {
        EXPECT_EQ(src->get("blk.0.ffn_gate_inp_shexp.weight").shape, (std::vector<int64_t>{spec.hidden}));
      }
    }
    // Every expert's matrices hold the same bytes in both files (BF16 both).
    for (int e = 0; e < w.experts; ++e) {
      for (const char* base : {"ffn_gate", "ffn_up", "ffn_down"}) {
        const std::string name = expert_tensor_name(0, base, e);
        const TensorInfo& a = gg->get(name);
        const TensorInfo& b = hf->get(name);
        EXPECT_EQ(a.shape, b.shape) << name;
        ASSERT_EQ(a.nbytes, b.nbytes) << name;
        EXPECT_TRUE(std::equal(a.data, a.data + a.nbytes, b.data)) << name;
      }
    }
    EXPECT_EQ(gg->get(expert_tensor_name(0, "ffn_down", 1)).shape, (std::vector<int64_t>{spec.hidden, w.ffn}));
  }
}

TEST(MoeSource, ExpertNamesRoundTrip) {
  int layer = 0, expert = 0;
  std::string_view base;
  EXPECT_EQ(expert_tensor_name(12, "ffn_down", 7), "blk.12.ffn_down.7.weight");
  ASSERT_TRUE(parse_expert_tensor_name("blk.12.ffn_down.7.weight", &layer, &base, &expert));
  EXPECT_EQ(layer, 12);
  EXPECT_EQ(base, "ffn_down");
  EXPECT_EQ(expert, 7);
  for (const char* other : {"blk.1.ffn_down.weight", "blk.1.ffn_down_exps.weight", "blk.1.ffn_gate_inp.weight",
                            "blk.1.ffn_up.07.weight", "blk.1.ffn_up.7.bias", "blk.x.ffn_up.7.weight", "ffn_up.7.weight"}) {
    EXPECT_FALSE(parse_expert_tensor_name(other, &layer, &base, &expert)) << other;
  }
}

// transformers reads a missing norm_topk_prob as false; so does tpinfer.
TEST(MoeSource, HfNormTopkProbDefaultsToFalse) {
  TempDir dir;
  SynthSpec spec = *synth_preset("tiny-qwen3-moe");
  spec.layers = 1;
  write_synth_model(spec, dir.file("hf"));
  EXPECT_TRUE(ModelSource::open(dir.file("hf"))->config().norm_topk_prob);
  nlohmann::json j = read_config(dir.file("hf"));
  j.erase("norm_topk_prob");
  write_config(dir.file("hf"), j);
  EXPECT_FALSE(ModelSource::open(dir.file("hf"))->config().norm_topk_prob);
}

TEST(MoeSource, InconsistentFilesAreCleanErrors) {
  TempDir dir;
  SynthSpec spec = *synth_preset("tiny-mixtral");
  spec.layers = 1;
  write_synth_model(spec, dir.file("hf"));
  const nlohmann::json good = read_config(dir.file("hf"));
  auto expect_error = [&](const nlohmann::json& j, const std::string& what) {
    write_config(dir.file("hf"), j);
    try {
      ModelSource::open(dir.file("hf"));
      ADD_FAILURE() << "expected an error containing: " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  nlohmann::json j = good;
  j["num_local_experts"] = 4;  // the folder holds 8
  expect_error(j, "belongs to expert 4, but config.json has 4 experts");
  j = good;
  j["num_local_experts"] = 16;
  expect_error(j, "expected shape [16, 256], found [8, 256]");
  j = good;
  j["num_experts_per_tok"] = 9;
  expect_error(j, "expected 1 to 8 experts used per token, found 9");
  j = good;
  j.erase("num_local_experts");
  expect_error(j, "expected key \"num_local_experts\"");

  SynthSpec q = *synth_preset("tiny-qwen2-moe");
  q.layers = 1;
  write_synth_model(q, dir.file("hf"));
  j = read_config(dir.file("hf"));
  j["mlp_only_layers"] = {0};
  expect_error(j, "mlp_only_layers) are not supported");
}

// A GGUF whose stacked experts disagree with expert_count, or that has stacked
// experts but no expert_count, names the file and the tensor.
TEST(MoeSource, GgufStackedExpertsMustMatchTheCount) {
  TempDir dir;
  SynthSpec spec = *synth_preset("tiny-mixtral");
  spec.layers = 1;
  spec.hidden = 64;
  spec.heads = 2;
  spec.kv_heads = 2;
  spec.ffn = 32;
  spec.vocab = 300;
  write_synth_model(spec, dir.file("m.gguf"));
  const auto good = GgufFile::open(dir.file("m.gguf"));
  auto rewrite = [&](const std::string& path, uint32_t expert_count, bool with_count) {
    GgufWriter w;
    for (const auto& [key, value] : good->metadata()) {
      if (key == "llama.expert_count") {
        if (with_count) w.set_u32(key, expert_count);
      } else {
        w.set(key, value);
      }
    }
    for (const TensorInfo& t : good->tensors()) {
      w.add_tensor(t.name, t.type, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes));
    }
    w.write(path);
  };
  rewrite(dir.file("count.gguf"), 4, true);
  try {
    ModelSource::open(dir.file("count.gguf"));
    ADD_FAILURE() << "4 experts in the metadata, 8 in the tensor";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("count.gguf: tensor 'blk.0.ffn_"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("expected shape [4 experts, rows, cols], found [8, "), std::string::npos)
        << e.what();
  }
  rewrite(dir.file("none.gguf"), 0, false);
  try {
    ModelSource::open(dir.file("none.gguf"));
    ADD_FAILURE() << "stacked experts without expert_count";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("holds experts, but the metadata has no llama.expert_count"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace tpinfer
