// tpinfer synth: write a random-weight model of any shape (model/synth.h).
#include <cstdio>
#include <functional>
#include <type_traits>
#include <utility>
#include <vector>

#include "cli/common.h"
#include "core/error.h"
#include "model/synth.h"

namespace tpinfer::cli {
namespace {

struct SynthOptions {
  SynthSpec spec;
  std::string arch = "llama";
  std::string dtype = "f32";
  std::string preset;
  std::string out;
  // Each shape option with the field it sets: a --preset fills the fields
  // whose option was not given.
  std::vector<std::pair<CLI::Option*, std::function<void(SynthSpec&, const SynthSpec&)>>> fields;
  CLI::Option* arch_option = nullptr;
};

// An option bound to a SynthSpec field, which a --preset fills when the
// option is not given.
template <class T>
void bind(CLI::App& cmd, SynthOptions& o, const char* name, T SynthSpec::*member, const char* help = "") {
  CLI::Option* opt;
  if constexpr (std::is_same_v<T, bool>) {
    opt = cmd.add_flag(name, o.spec.*member, help);
  } else {
    opt = cmd.add_option(name, o.spec.*member, help);
  }
  o.fields.emplace_back(opt, [member](SynthSpec& to, const SynthSpec& from) { to.*member = from.*member; });
}

void run(SynthOptions& o) {
  if (!o.preset.empty()) {
    const std::optional<SynthSpec> p = synth_preset(o.preset);
    if (!p) {
      std::string names;
      for (const std::string& n : synth_preset_names()) names += (names.empty() ? "" : ", ") + n;
      throw ConfigError(cat("--preset '", o.preset, "' is not a preset; valid: ", names));
    }
    for (auto& [option, copy] : o.fields) {
      if (option->count() == 0) copy(o.spec, *p);
    }
    if (o.arch_option->count() == 0) o.arch = arch_name(p->arch);
  }
  static constexpr std::pair<const char*, Arch> kArchs[] = {
      {"llama", Arch::Llama},     {"mistral", Arch::Mistral},   {"qwen2", Arch::Qwen2},       {"qwen3", Arch::Qwen3},
      {"mixtral", Arch::Mixtral}, {"qwen2moe", Arch::Qwen2Moe}, {"qwen3moe", Arch::Qwen3Moe},
  };
  bool known = false;
  for (const auto& [name, arch] : kArchs) {
    if (o.arch == name) {
      o.spec.arch = arch;
      known = true;
    }
  }
  if (!known) {
    throw ConfigError(cat("--arch '", o.arch,
                          "' is not supported; valid: llama, mistral, qwen2, qwen3, mixtral, qwen2moe, qwen3moe"));
  }
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
  auto field = [&](const char* name, auto member, const char* help = "") { bind(*cmd, *o, name, member, help); };
  cmd->add_option("--preset", o->preset,
                  "A named shape (tiny-mixtral, tiny-qwen2-moe, tiny-qwen3-moe); other options override it");
  o->arch_option = cmd->add_option("--arch", o->arch, "llama, mistral, qwen2, qwen3, mixtral, qwen2moe, qwen3moe");
  field("--layers", &SynthSpec::layers);
  field("--hidden", &SynthSpec::hidden);
  field("--heads", &SynthSpec::heads);
  field("--kv-heads", &SynthSpec::kv_heads);
  field("--head-dim", &SynthSpec::head_dim, "Default: hidden / heads");
  field("--ffn", &SynthSpec::ffn, "Intermediate size (of each expert in a MoE model)");
  field("--vocab", &SynthSpec::vocab);
  field("--context", &SynthSpec::context);
  cmd->add_option("--dtype", o->dtype, "Weight type: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k..q6_k");
  field("--rope-theta", &SynthSpec::rope_theta);
  field("--rope-llama3", &SynthSpec::rope_llama3, "Llama 3.1 rope scaling (factor 8)");
  field("--qkv-bias", &SynthSpec::qkv_bias);
  field("--tied-embeddings", &SynthSpec::tied_embeddings);
  field("--experts", &SynthSpec::experts, "MoE: routed experts per layer");
  field("--experts-used", &SynthSpec::experts_used, "MoE: experts per token (top-k)");
  field("--shared-expert-ffn", &SynthSpec::shared_expert_ffn, "qwen2moe: size of the shared expert (default: --ffn)");
  field("--norm-topk-prob", &SynthSpec::norm_topk_prob, "qwen2moe/qwen3moe: renormalize the top-k routing weights");
  cmd->add_option("--seed", o->spec.seed);
  cmd->add_option("-o,--out", o->out, "Output: NAME.gguf, or a folder for safetensors")->required();
  cmd->callback([o] { run(*o); });
}

}  // namespace tpinfer::cli
