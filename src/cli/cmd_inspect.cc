// tpinfer inspect: architecture, hyper-parameters and tensors of a model file,
// and the tensor-parallel sizes it can take.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "core/error.h"
#include "formats/model_source.h"

namespace tpinfer::cli {
namespace {

struct InspectOptions {
  std::string model;
  bool json = false;
};

void run(const InspectOptions& o) {
  const auto src = ModelSource::open(o.model);
  const ModelConfig& c = src->config();
  uint64_t params = 0, bytes = 0;
  nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
  for (const TensorInfo& t : src->tensors()) {
    params += static_cast<uint64_t>(t.numel());
    bytes += t.nbytes;
    tensors.push_back({{"name", t.name}, {"type", dtype_name(t.type)}, {"shape", t.shape}, {"bytes", t.nbytes}});
  }
  std::vector<int> valid, valid_ep;
  try {
    valid = ShardPlan::valid_sizes(c, shard_constraints(*src), std::max(8, c.n_heads));
    if (c.is_moe()) valid_ep = ShardPlan::valid_sizes(c, shard_constraints(*src), std::max(8, c.n_heads), true);
  } catch (const Error&) {
  }
  nlohmann::ordered_json j = {
      {"path", src->path()},
      {"format", src->format()},
      {"architecture", arch_name(c.arch)},
      {"name", c.name},
      {"layers", c.n_layers},
      {"hidden", c.hidden},
      {"heads", c.n_heads},
      {"kv_heads", c.n_kv_heads},
      {"head_dim", c.head_dim},
      {"ffn", c.ffn},
      {"vocab", c.vocab},
      {"context", c.max_context},
      {"rms_eps", c.rms_eps},
      {"rope_theta", c.rope_theta},
      {"rope_style", c.rope_style == RopeStyle::NeoX ? "neox" : "interleaved"},
      {"rope_scaled", !c.rope_freq_factors.empty()},
      {"qkv_bias", c.qkv_bias},
      {"qk_norm", c.qk_norm},
      {"tied_embeddings", c.tied_embeddings},
      {"bos", c.bos_token},
      {"eos", c.eos_token},
      {"parameters", params},
      {"bytes", bytes},
      {"valid_tensor_parallel_sizes", valid},
      {"max_pipeline_parallel_size", c.n_layers},
  };
  if (c.is_moe()) {
    j["experts"] = c.n_experts;
    j["experts_used"] = c.n_experts_used;
    j["shared_expert_ffn"] = c.shared_expert_ffn;
    j["norm_topk_prob"] = c.norm_topk_prob;
    j["valid_expert_parallel_sizes"] = valid_ep;
  }
  j["tensors"] = tensors;
  if (o.json) {
    std::cout << j.dump(2) << std::endl;
    return;
  }
  std::printf("%s (%s)\n", src->path().c_str(), std::string(src->format()).c_str());
  std::printf("architecture %s, %d layers, hidden %d, heads %d, kv heads %d, head dim %d, ffn %d, vocab %d, "
              "context %d\n",
              arch_name(c.arch), c.n_layers, c.hidden, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn, c.vocab,
              c.max_context);
  std::printf("rms eps %g, rope theta %g (%s%s), qkv bias %s, qk norm %s, tied embeddings %s, bos %d, eos %d\n",
              static_cast<double>(c.rms_eps), static_cast<double>(c.rope_theta),
              c.rope_style == RopeStyle::NeoX ? "neox" : "interleaved", c.rope_freq_factors.empty() ? "" : ", scaled",
              c.qkv_bias ? "yes" : "no", c.qk_norm ? "yes" : "no", c.tied_embeddings ? "yes" : "no", c.bos_token,
              c.eos_token);
  std::string v;
  for (int x : valid) v += (v.empty() ? "" : ", ") + std::to_string(x);
  std::printf("parameters %.2f M, %s; valid tensor-parallel sizes: %s; pipeline-parallel sizes: 1 to %d\n",
              static_cast<double>(params) / 1e6, format_bytes(bytes).c_str(), v.c_str(), c.n_layers);
  if (c.is_moe()) {
    std::string ve;
    for (int x : valid_ep) ve += (ve.empty() ? "" : ", ") + std::to_string(x);
    std::printf("experts %d, %d per token (%s), shared expert %d; valid with --enable-expert-parallel: %s\n",
                c.n_experts, c.n_experts_used, c.norm_topk_prob ? "renormalized" : "softmax weights",
                c.shared_expert_ffn, ve.c_str());
  }
  for (const TensorInfo& t : src->tensors()) {
    std::string shape;
    for (int64_t d : t.shape) shape += (shape.empty() ? "" : " x ") + std::to_string(d);
    std::printf("  %-32s %-5s %-16s %s\n", t.name.c_str(), std::string(dtype_name(t.type)).c_str(), shape.c_str(),
                format_bytes(t.nbytes).c_str());
  }
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto o = std::make_shared<InspectOptions>();
  CLI::App* cmd = app.add_subcommand("inspect", "Show a model's architecture, hyper-parameters and tensors");
  cmd->add_option("-m,--model", o->model, "Model: a .gguf file or a Hugging Face folder")->required();
  cmd->add_flag("--json", o->json, "Print JSON");
  cmd->callback([o] { run(*o); });
}

}  // namespace tpinfer::cli
