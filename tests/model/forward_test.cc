// The engine against the double-precision reference, for every architecture
// and weight format: logits at every position of a 32-token prompt.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/cpu/quant.h"
#include "core/error.h"
#include "formats/model_source.h"
#include "reference_model.h"
#include "test_util.h"

namespace tpinfer {
namespace {

using testing::TempDir;

struct Case {
  Arch arch;
  const char* dtype;
  bool gguf;
  bool tied = false;  // lm_head is the token embedding (no output.weight)
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return std::string(arch_name(info.param.arch)) + "_" + info.param.dtype + (info.param.gguf ? "_gguf" : "_safetensors") +
         (info.param.tied ? "_tied" : "");
}

class ForwardVsReference : public ::testing::TestWithParam<Case> {};

TEST_P(ForwardVsReference, LogitsWithin1e4) {
  const Case c = GetParam();
  TempDir dir;
  SynthSpec spec = testing::small_spec(c.arch);
  spec.dtype = *parse_dtype(c.dtype);
  spec.seed = 11;
  spec.tied_embeddings = c.tied;
  const std::string path = c.gguf ? dir.file("m.gguf") : dir.file("m");
  write_synth_model(spec, path);
  const std::vector<int32_t> tokens = testing::random_tokens(32, spec.vocab, 5);
  const std::vector<float> got = testing::engine_logits(path, tokens, testing::f32_options());
  const auto src = ModelSource::open(path);
  ASSERT_EQ(src->config().tied_embeddings, c.tied);
  const std::vector<double> want = reference::forward(*src, tokens);
  ASSERT_EQ(got.size(), want.size());
  // Every position, not only the last.
  const size_t vocab = static_cast<size_t>(spec.vocab);
  for (size_t t = 0; t < tokens.size(); ++t) {
    std::vector<float> g(got.begin() + static_cast<std::ptrdiff_t>(t * vocab), got.begin() + static_cast<std::ptrdiff_t>((t + 1) * vocab));
    std::vector<double> w(want.begin() + static_cast<std::ptrdiff_t>(t * vocab), want.begin() + static_cast<std::ptrdiff_t>((t + 1) * vocab));
    EXPECT_LT(reference::rel_l2(g, w), 1e-4) << "position " << t;
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllArchitectures, ForwardVsReference,
    ::testing::Values(Case{Arch::Llama, "f32", true}, Case{Arch::Llama, "f16", true}, Case{Arch::Llama, "bf16", false},
                      Case{Arch::Mistral, "f32", true}, Case{Arch::Mistral, "f16", true},
                      Case{Arch::Mistral, "bf16", false}, Case{Arch::Qwen2, "f32", true},
                      Case{Arch::Qwen2, "f16", true}, Case{Arch::Qwen2, "bf16", false}, Case{Arch::Qwen3, "f32", true},
                      Case{Arch::Qwen3, "f16", true}, Case{Arch::Qwen3, "bf16", false},
                      // Tied embeddings (Qwen2/2.5's small models tie them): the
                      // lm_head reads token_embd.weight, in every weight format.
                      Case{Arch::Qwen2, "f32", true, true}, Case{Arch::Qwen2, "f16", true, true},
                      Case{Arch::Qwen2, "bf16", false, true}, Case{Arch::Llama, "f32", false, true}),
    case_name);

// The same synth weights as GGUF and as safetensors give the same logits (the
// GGUF Q/K rows are permuted for interleaved RoPE; the results must not move),
// for every dense architecture (Llama, Mistral, Qwen2, Qwen3).
TEST(Forward, GgufAndSafetensorsAgree) {
  for (Arch arch : {Arch::Llama, Arch::Mistral, Arch::Qwen2, Arch::Qwen3}) {
    for (const char* dtype : {"f32", "bf16"}) {
      TempDir dir;
      SynthSpec spec = testing::small_spec(arch);
      spec.dtype = *parse_dtype(dtype);
      spec.tied_embeddings = arch == Arch::Qwen2;
      write_synth_model(spec, dir.file("m.gguf"));
      write_synth_model(spec, dir.file("m"));
      const auto tokens = testing::random_tokens(32, spec.vocab, 9);
      const auto a = testing::engine_logits(dir.file("m.gguf"), tokens, testing::f32_options());
      const auto b = testing::engine_logits(dir.file("m"), tokens, testing::f32_options());
      EXPECT_LT(reference::rel_l2(a, b), 1e-5) << arch_name(arch) << " " << dtype;
    }
  }
}

// Llama 3.1 rope scaling, from GGUF (rope_freqs tensor) and from config.json,
// against the reference in F32 (both formats), F16 (GGUF) and BF16 (safetensors).
TEST(Forward, Llama3RopeScaling) {
  TempDir dir;
  SynthSpec spec = testing::small_spec(Arch::Llama);
  spec.rope_llama3 = true;
  spec.rope_theta = 500000.0f;
  const auto tokens = testing::random_tokens(32, spec.vocab, 3);
  struct Variant {
    const char* dtype;
    const char* file;
  };
  for (const Variant v : {Variant{"f32", "m.gguf"}, Variant{"f32", "m"}, Variant{"f16", "f16.gguf"},
                          Variant{"bf16", "bf16"}}) {
    SynthSpec s = spec;
    s.dtype = *parse_dtype(v.dtype);
    const std::string path = dir.file(v.file);
    write_synth_model(s, path);
    const auto src = ModelSource::open(path);
    ASSERT_EQ(src->config().rope_freq_factors.size(), static_cast<size_t>(spec.hidden / spec.heads / 2)) << path;
    EXPECT_LT(reference::rel_l2(testing::engine_logits(path, tokens, testing::f32_options()),
                                reference::forward(*src, tokens)),
              1e-4)
        << v.dtype << " " << v.file;
  }
  // The scaling matters: without it the logits differ.
  SynthSpec plain = spec;
  plain.rope_llama3 = false;
  write_synth_model(plain, dir.file("plain.gguf"));
  EXPECT_GT(reference::rel_l2(testing::engine_logits(dir.file("plain.gguf"), tokens, testing::f32_options()),
                              testing::engine_logits(dir.file("m.gguf"), tokens, testing::f32_options())),
            1e-3);
}

// A quantized model's logits stay within the quantization error of its F32
// original (same seed, same weights before quantization). The expected error is
// measured, not guessed: the relative L2 error the format makes on the model's
// own weight matrices; logits may amplify it by a small factor through the layers.
double weight_error(const ModelSource& f32, const ModelSource& q) {
  double num = 0, den = 0;
  for (const TensorInfo& t : q.tensors()) {
    if (t.shape.size() != 2) continue;
    const TensorInfo& base = f32.get(t.name);
    std::vector<float> a(static_cast<size_t>(t.cols())), b(a.size());
    for (int64_t r = 0; r < t.rows(); ++r) {
      cpu::dequantize_row_ref(t.type, t.data + static_cast<uint64_t>(r) * row_bytes(t.type, static_cast<uint64_t>(t.cols())),
                              a.data(), t.cols());
      cpu::dequantize_row_ref(base.type, base.data + static_cast<uint64_t>(r) * row_bytes(base.type, static_cast<uint64_t>(t.cols())),
                              b.data(), t.cols());
      for (size_t i = 0; i < a.size(); ++i) {
        num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
        den += static_cast<double>(b[i]) * b[i];
      }
    }
  }
  return std::sqrt(num / den);
}

TEST(Forward, QuantizedCloseToF32) {
  TempDir dir;
  SynthSpec spec = testing::small_spec(Arch::Llama);
  spec.hidden = 256;
  spec.heads = 4;
  spec.ffn = 512;
  write_synth_model(spec, dir.file("f32.gguf"));
  const auto f32_src = ModelSource::open(dir.file("f32.gguf"));
  const auto tokens = testing::random_tokens(16, spec.vocab, 4);
  const auto base = testing::engine_logits(dir.file("f32.gguf"), tokens, testing::f32_options());
  double previous_weight_error = 0;
  for (const char* dtype : {"f16", "bf16", "q8_0", "q6_k", "q5_k", "q5_1", "q5_0", "q4_k", "q4_1", "q4_0", "q3_k", "q2_k"}) {
    SynthSpec q = spec;
    q.dtype = *parse_dtype(dtype);
    const std::string path = dir.file(std::string(dtype) + ".gguf");
    write_synth_model(q, path);
    const auto src = ModelSource::open(path);
    const double w_err = weight_error(*f32_src, *src);
    const double err = reference::rel_l2(testing::engine_logits(path, tokens, testing::f32_options()), base);
    EXPECT_GT(w_err, 0.0) << dtype << " must actually be quantized";
    // Activations quantized to 8 bits add about q8_0's own weight error on top.
    EXPECT_LT(err, 4.0 * w_err + 0.02) << dtype << ": weight error " << w_err;
    EXPECT_GT(err, 0.0) << dtype;
    if (std::string(dtype) != "q5_1" && std::string(dtype) != "q4_1") {
      EXPECT_GE(w_err, previous_weight_error * 0.9) << dtype << " should not beat a finer format";
      previous_weight_error = w_err;
    }
  }
}

// --kv-cache-dtype: every cache type gives logits close to an f32 cache (q8_0
// by its 8-bit rounding, f16/bf16 by theirs), and each really rounds; q8_0
// needs a head size that is a multiple of its 32-value blocks.
TEST(Forward, KvCacheTypesCloseToF32Cache) {
  TempDir dir;
  SynthSpec spec = testing::small_spec(Arch::Llama);
  spec.hidden = 128;
  spec.heads = 4;  // head size 32
  spec.kv_heads = 2;
  write_synth_model(spec, dir.file("m.gguf"));
  const auto tokens = testing::random_tokens(40, spec.vocab, 9);
  EngineOptions o = testing::f32_options();
  o.kv_type = DType::F32;
  const auto base = testing::engine_logits(dir.file("m.gguf"), tokens, o);
  for (DType kv : {DType::F16, DType::BF16, DType::Q8_0}) {
    o.kv_type = kv;
    const double err = reference::rel_l2(testing::engine_logits(dir.file("m.gguf"), tokens, o), base);
    EXPECT_GT(err, 0.0) << dtype_name(kv) << " must actually round the cache";
    EXPECT_LT(err, kv == DType::F16 ? 1e-3 : 2e-2) << dtype_name(kv);
  }
  SynthSpec narrow = testing::small_spec(Arch::Llama);  // head size 16
  write_synth_model(narrow, dir.file("narrow.gguf"));
  o.kv_type = DType::Q8_0;
  try {
    testing::engine_logits(dir.file("narrow.gguf"), tokens, o);
    ADD_FAILURE() << "a q8_0 cache with 16-value heads must be refused";
  } catch (const std::exception& e) {  // raised on the rank, carried to the caller as its message
    EXPECT_NE(std::string(e.what()).find("multiple of 32"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tpinfer
