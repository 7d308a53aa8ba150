// tpinfer synth: write a random-weight model of any shape (model/synth.h).
#include <cstdio>

#include "cli/common.h"
#include "core/error.h"
#include "model/synth.h"

namespace tpinfer::cli {
namespace {

struct SynthOptions {
  SynthSpec spec;
  std::string arch = "llama";
  std::string dtype = "f32";
  std::string out;
};

void run(SynthOptions& o) {
  if (o.arch == "llama") o.spec.arch = Arch::Llama;
  else if (o.arch == "mistral") o.spec.arch = Arch::Mistral;
  else if (o.arch == "qwen2") o.spec.arch = Arch::Qwen2;
  else if (o.arch == "qwen3") o.spec.arch = Arch::Qwen3;
  else throw ConfigError(cat("--arch '", o.arch, "' is not supported; valid: llama, mistral, qwen2, qwen3"));
  const auto t = parse_dtype(o.dtype);
  if (!t) throw ConfigError(cat("--dtype '", o.dtype, "' is not a tensor type (f32, f16, bf16, q8_0, q4_0, q4_k, ...)"));
  o.spec.dtype = *t;
  write_synth_model(o.spec, o.out);
  std::fprintf(stderr, "wrote %s\n", o.out.c_str());
}

}  // namespace

void register_synth(CLI::App& app) {
  auto o = std::make_shared<SynthOptions>();
  CLI::App* cmd = app.add_subcommand("synth", "Write a random-weight model of any shape (GGUF or safetensors)");
  cmd->add_option("--arch", o->arch, "llama, mistral, qwen2, qwen3");
  cmd->add_option("--layers", o->spec.layers);
  cmd->add_option("--hidden", o->spec.hidden);
  cmd->add_option("--heads", o->spec.heads);
  cmd->add_option("--kv-heads", o->spec.kv_heads);
  cmd->add_option("--head-dim", o->spec.head_dim, "Default: hidden / heads");
  cmd->add_option("--ffn", o->spec.ffn);
  cmd->add_option("--vocab", o->spec.vocab);
  cmd->add_option("--context", o->spec.context);
  cmd->add_option("--dtype", o->dtype, "Weight type: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k..q6_k");
  cmd->add_option("--rope-theta", o->spec.rope_theta);
  cmd->add_flag("--rope-llama3", o->spec.rope_llama3, "Llama 3.1 rope scaling (factor 8)");
  cmd->add_flag("--qkv-bias", o->spec.qkv_bias);
  cmd->add_flag("--tied-embeddings", o->spec.tied_embeddings);
  cmd->add_option("--seed", o->spec.seed);
  cmd->add_option("-o,--out", o->out, "Output: NAME.gguf, or a folder for safetensors")->required();
  cmd->callback([o] { run(*o); });
}

}  // namespace tpinfer::cli
