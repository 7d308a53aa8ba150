// Mixture-of-experts models against the double-precision reference at TP = 1:
// Mixtral (softmax, top-2, renormalized), Qwen2-MoE (top-1 unnormalized, a
// gated shared expert) and Qwen3-MoE (Q/K norm, renormalized), in both file
// formats; and the routing function on its own.
#include <gtest/gtest.h>

#include <cmath>

#include "formats/model_source.h"
#include "parallel/moe.h"
#include "reference_model.h"
#include "test_util.h"

namespace tpinfer {
namespace {

using testing::TempDir;

struct Case {
  const char* preset;
  const char* dtype;
  bool gguf;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  std::string p = info.param.preset;
  for (char& ch : p) ch = ch == '-' ? '_' : ch;
  return p + "_" + info.param.dtype + (info.param.gguf ? "_gguf" : "_safetensors");
}

// A smaller version of the preset (the reference is slow).
SynthSpec small(const char* preset) {
  SynthSpec s = *synth_preset(preset);
  s.hidden = 64;
  s.heads = 4;
  s.kv_heads = s.arch == Arch::Mixtral ? 2 : 4;
  s.head_dim = s.arch == Arch::Qwen3Moe ? 32 : 0;  // Qwen3: head_dim != hidden / heads
  s.ffn = 64;
  if (s.shared_expert_ffn > 0) s.shared_expert_ffn = 96;
  s.vocab = 300;
  s.context = 256;
  s.seed = 13;
  return s;
}

class MoeForwardVsReference : public ::testing::TestWithParam<Case> {};

TEST_P(MoeForwardVsReference, LogitsWithin1e4) {
  const Case c = GetParam();
  TempDir dir;
  SynthSpec spec = small(c.preset);
  spec.dtype = *parse_dtype(c.dtype);
  const std::string path = c.gguf ? dir.file("m.gguf") : dir.file("m");
  write_synth_model(spec, path);
  const std::vector<int32_t> tokens = testing::random_tokens(24, spec.vocab, 5);
  const std::vector<float> got = testing::engine_logits(path, tokens, testing::f32_options());
  const auto src = ModelSource::open(path);
  ASSERT_TRUE(src->config().is_moe());
  const std::vector<double> want = reference::forward(*src, tokens);
  ASSERT_EQ(got.size(), want.size());
  const size_t vocab = static_cast<size_t>(spec.vocab);
  for (size_t t = 0; t < tokens.size(); ++t) {
    std::vector<float> g(got.begin() + static_cast<std::ptrdiff_t>(t * vocab),
                         got.begin() + static_cast<std::ptrdiff_t>((t + 1) * vocab));
    std::vector<double> w(want.begin() + static_cast<std::ptrdiff_t>(t * vocab),
                          want.begin() + static_cast<std::ptrdiff_t>((t + 1) * vocab));
    EXPECT_LT(reference::rel_l2(g, w), 1e-4) << "position " << t;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Presets, MoeForwardVsReference,
    ::testing::Values(Case{"tiny-mixtral", "f32", true}, Case{"tiny-mixtral", "f16", true},
                      Case{"tiny-mixtral", "bf16", false}, Case{"tiny-qwen2-moe", "f32", true},
                      Case{"tiny-qwen2-moe", "f16", false}, Case{"tiny-qwen2-moe", "bf16", true},
                      Case{"tiny-qwen3-moe", "f32", false}, Case{"tiny-qwen3-moe", "bf16", true}),
    case_name);

// The same weights in both formats give the same logits, and the MoE layers
// matter (a model with its experts' roles changed gives other logits).
TEST(MoeForward, GgufAndSafetensorsAgree) {
  for (const char* preset : {"tiny-mixtral", "tiny-qwen2-moe", "tiny-qwen3-moe"}) {
    TempDir dir;
    SynthSpec spec = small(preset);
    spec.dtype = DType::BF16;
    write_synth_model(spec, dir.file("m.gguf"));
    write_synth_model(spec, dir.file("m"));
    const auto tokens = testing::random_tokens(24, spec.vocab, 9);
    const auto a = testing::engine_logits(dir.file("m.gguf"), tokens, testing::f32_options());
    const auto b = testing::engine_logits(dir.file("m"), tokens, testing::f32_options());
    EXPECT_LT(reference::rel_l2(a, b), 1e-5) << preset;
    SynthSpec other = spec;
    other.experts_used = spec.experts_used == 1 ? 2 : 1;
    write_synth_model(other, dir.file("other.gguf"));
    EXPECT_GT(reference::rel_l2(testing::engine_logits(dir.file("other.gguf"), tokens, testing::f32_options()), a),
              1e-3)
        << preset << ": top-k must change the output";
  }
}

// Quantized MoE models load and stay close to their F32 original (the router
// stays F32, as llama-quantize leaves it).
TEST(MoeForward, QuantizedCloseToF32) {
  TempDir dir;
  SynthSpec spec = small("tiny-mixtral");
  write_synth_model(spec, dir.file("f32.gguf"));
  spec.dtype = DType::Q8_0;
  write_synth_model(spec, dir.file("q8.gguf"));
  const auto src = ModelSource::open(dir.file("q8.gguf"));
  EXPECT_EQ(src->get("blk.0.ffn_gate_inp.weight").type, DType::F32);
  EXPECT_EQ(src->get(expert_tensor_name(0, "ffn_up", 3)).type, DType::Q8_0);
  const auto tokens = testing::random_tokens(16, spec.vocab, 4);
  EXPECT_LT(reference::rel_l2(testing::engine_logits(dir.file("q8.gguf"), tokens, testing::f32_options()),
                              testing::engine_logits(dir.file("f32.gguf"), tokens, testing::f32_options())),
            0.05);
}

TEST(MoeRouting, TopKSoftmaxAndRenormalization) {
  // Two tokens over 4 experts.
  const std::vector<float> logits = {0.0f, 2.0f, 1.0f, 2.0f,  //
                                     -1.0f, -3.0f, 0.5f, 0.0f};
  std::vector<int32_t> e(4);
  std::vector<float> w(4);
  route_top_k(logits.data(), 2, 4, 2, /*normalize=*/false, e.data(), w.data());
  // Token 0: experts 1 and 3 tie; the lower index comes first.
  EXPECT_EQ(e, (std::vector<int32_t>{1, 3, 2, 3}));
  const double z0 = 1 + 2 * std::exp(2.0) + std::exp(1.0);
  EXPECT_NEAR(w[0], std::exp(2.0) / z0, 1e-7);
  EXPECT_NEAR(w[1], std::exp(2.0) / z0, 1e-7);
  const double z1 = std::exp(-1.0) + std::exp(-3.0) + std::exp(0.5) + 1;
  EXPECT_NEAR(w[2], std::exp(0.5) / z1, 1e-7);
  EXPECT_NEAR(w[3], 1 / z1, 1e-7);
  route_top_k(logits.data(), 2, 4, 2, /*normalize=*/true, e.data(), w.data());
  EXPECT_NEAR(w[0], 0.5, 1e-7);
  EXPECT_NEAR(w[2], std::exp(0.5) / (std::exp(0.5) + 1), 1e-7);
  EXPECT_NEAR(w[2] + w[3], 1.0, 1e-7);
  // Top-1 renormalized is weight 1.
  route_top_k(logits.data(), 2, 4, 1, true, e.data(), w.data());
  EXPECT_EQ(e[0], 1);
  EXPECT_EQ(e[1], 2);
  EXPECT_FLOAT_EQ(w[0], 1.0f);
}

}  // namespace
}  // namespace tpinfer
