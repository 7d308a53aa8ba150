#include "cli/common.h"

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <thread>

#include "comm/mpi_comm.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace tpinfer::cli {

void add_model_options(CLI::App& cmd, ModelOptions& o) {
  cmd.add_option("-m,--model", o.model, "Model: a .gguf file or a Hugging Face folder")->required();
  cmd.add_option("-t,--tp,--tensor-parallel-size", o.tp, "Tensor-parallel size (ranks)")->check(CLI::PositiveNumber);
  cmd.add_option("--tensor-split", o.tensor_split, "Weights per rank for an uneven split, e.g. 3,1");
  cmd.add_option("--pp,--pipeline-parallel-size", o.pp,
                 "Pipeline stages (consecutive layers each, every stage a tensor-parallel group); ranks = tp x pp")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--pipeline-split", o.pipeline_split, "Layers per stage, e.g. 3,5 (default: even)");
  cmd.add_option("--micro-batches", o.micro_batches,
                 "Micro-batches a step is cut into so the stages overlap (default: one per stage)")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--threads-per-rank", o.threads_per_rank,
                 "Threads of each rank (default: cores / (tp x pp); under mpirun, cores / ranks on this host)");
  cmd.add_option("--comm-timeout", o.comm_timeout, "Seconds before a stalled collective is an error")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--kv-cache-dtype", o.kv_type, "KV cache type: f32, f16 (default), bf16, q8_0");
  cmd.add_option("-c,--ctx-size", o.ctx_size, "KV cache capacity in tokens (default: the model's context)");
  cmd.add_flag("--no-pin", o.no_pin, "Do not pin rank threads to cores");
  cmd.add_option("--comm", o.comm, "Communication back end: auto (mpi under mpirun, else local), local, mpi");
  cmd.add_option("--comm-compression", o.compression, "All-reduce payload: none, bf16, fp8, int8");
  cmd.add_flag("--enable-expert-parallel", o.expert_parallel,
               "MoE models: whole experts on ranks (expert parallelism) instead of every expert split over them");
  add_device_options(cmd, o);
}

void add_speculative_options(CLI::App& cmd, SpeculativeCliOptions& o) {
  cmd.add_option("--speculative", o.method,
                 "Speculative decoding: none (default), ngram (guesses copied from earlier text) or draft (a smaller "
                 "model with the same vocabulary, --draft-model); the output is unchanged");
  cmd.add_option("--draft-model", o.draft_model,
                 "The draft model of --speculative draft: a .gguf file or a Hugging Face folder");
  cmd.add_option(
      "--num-speculative-tokens", o.k,
      cat("Tokens guessed per target forward with --speculative (1 to ", kMaxSpeculativeTokens, ", default 4)"));
}

std::unique_ptr<Engine> open_draft(const SpeculativeCliOptions& o, const ModelOptions& target_options, Engine& target) {
  const Speculation method = parse_speculation(o.method);
  if (!o.draft_model.empty() && method != Speculation::Draft) {
    throw ConfigError("--draft-model is for --speculative draft");
  }
  if (method != Speculation::Draft || o.draft_model.empty()) return nullptr;
  EngineOptions d;
  d.comm = CommBackend::Local;
  d.pin_threads = false;
  d.parallel.threads_per_rank = engine_options(target_options).parallel.threads_per_rank;
  d.kv_tokens = static_cast<int64_t>(target.blocks().n_blocks()) * target.blocks().block_size();
  auto draft = std::make_unique<Engine>(o.draft_model, d);
  check_draft_vocabulary(draft->config().vocab, target.config().vocab);
  return draft;
}

SpeculativeOptions speculative_options(const SpeculativeCliOptions& o, Engine* draft) {
  SpeculativeOptions s;
  s.method = parse_speculation(o.method);
  s.k = o.k;
  s.draft = draft;
  check(s);
  return s;
}

void add_device_options(CLI::App& cmd, ModelOptions& o) {
  cmd.add_option("--device", o.device,
                 "Where the ranks compute: cpu (default) or cuda (one GPU per rank when there are enough, else "
                 "ranks as streams of GPU 0)");
  cmd.add_flag("--no-cuda-graphs", o.no_cuda_graphs, "cuda: launch decode steps kernel by kernel (debugging)");
  cmd.add_option("--sampling-gather", o.sampling_gather,
                 "How logits reach the sampler: shard (default: each rank's top candidates wherever that is exact, "
                 "whole rows otherwise) or full (whole rows always)");
}

std::unique_ptr<Engine> open_engine(const ModelOptions& o) {
  auto engine = std::make_unique<Engine>(o.model, engine_options(o));
  if (!engine->is_driver()) {
    engine->run_worker();
    return nullptr;
  }
  return engine;
}

std::vector<int> parse_int_list(const std::string& text, const char* flag) {
  std::vector<int> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      const int v = std::stoi(item, &used);
      if (used != item.size() || v < 1) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      throw ConfigError(cat(flag, ": '", item, "' is not a positive integer"));
    }
  }
  if (out.empty()) throw ConfigError(cat(flag, " is empty"));
  return out;
}

int default_threads_per_rank(int ranks) {
  const int cores = available_cpus();  // the cores this process was given
  const int local = mpi_local_ranks();
  return std::max(1, cores / (local > 0 ? local : std::max(1, ranks)));
}

EngineOptions engine_options(const ModelOptions& o, int replicas) {
  EngineOptions e;
  e.parallel.tp = o.tp;
  e.parallel.pp = o.pp;
  if (!o.pipeline_split.empty()) e.parallel.pipeline_split = parse_int_list(o.pipeline_split, "--pipeline-split");
  e.parallel.micro_batches = o.micro_batches;
  if (!o.tensor_split.empty()) {
    std::stringstream ss(o.tensor_split);
    std::string item;
    while (std::getline(ss, item, ',')) {
      try {
        size_t used = 0;
        const double w = std::stod(item, &used);
        if (used != item.size()) throw std::invalid_argument(item);
        e.parallel.tensor_split.push_back(w);
      } catch (const std::exception&) {
        throw ConfigError(cat("--tensor-split: '", item, "' is not a number"));
      }
    }
  }
  const int ranks = std::max(1, o.tp) * std::max(1, o.pp) * std::max(1, replicas);
  e.parallel.threads_per_rank = o.threads_per_rank > 0 ? o.threads_per_rank : default_threads_per_rank(ranks);
  e.parallel.comm_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.comm_timeout * 1000));
  const auto kv = parse_dtype(o.kv_type);
  if (!kv || (*kv != DType::F32 && *kv != DType::F16 && *kv != DType::BF16 && *kv != DType::Q8_0)) {
    throw ConfigError(cat("--kv-cache-dtype '", o.kv_type, "' is not supported; valid: f32, f16, bf16, q8_0"));
  }
  e.kv_type = *kv;
  e.kv_tokens = o.ctx_size;
  e.pin_threads = !o.no_pin;
  e.comm = parse_comm_backend(o.comm);
  e.compression = parse_compression(o.compression);
  e.parallel.expert_parallel = o.expert_parallel;
  e.device = parse_device(o.device);
  e.cuda_graphs = !o.no_cuda_graphs;
  e.sampling_gather = parse_sampling_gather(o.sampling_gather);
  return e;
}

std::string format_bytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
  return buf;
}

std::string expert_load_line(const std::vector<std::vector<uint64_t>>& load) {
  if (load.empty()) return "";
  std::vector<uint64_t> total(load[0].size(), 0);
  for (const std::vector<uint64_t>& layer : load) {
    for (size_t e = 0; e < layer.size() && e < total.size(); ++e) total[e] += layer[e];
  }
  uint64_t sum = 0, max = 0;
  std::string counts;
  for (uint64_t t : total) {
    sum += t;
    max = std::max(max, t);
    counts += (counts.empty() ? "" : " ") + std::to_string(t);
  }
  const double mean = total.empty() ? 0.0 : static_cast<double>(sum) / static_cast<double>(total.size());
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.2f", mean > 0 ? static_cast<double>(max) / mean : 0.0);
  return "expert load (tokens per expert, all layers): " + counts + " | max/mean " + buf;
}

}  // namespace tpinfer::cli
