// Options shared by the commands that run a model (run, perplexity, bench,
// serve): the model path and how it is split over ranks (tensor and pipeline
// parallel).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/speculative.h"

namespace tpinfer::cli {

struct ModelOptions {
  std::string model;
  int tp = 1;
  std::string tensor_split;  // "3,1"
  int pp = 1;
  std::string pipeline_split;  // "3,5": layers per stage
  int micro_batches = 0;       // 0: one per stage
  int threads_per_rank = 0;    // 0: cores / (tp x pp) (at least 1)
  double comm_timeout = 60.0;
  std::string kv_type = "f16";
  int64_t ctx_size = 0;
  bool no_pin = false;
  std::string comm = "auto";
  std::string compression = "none";
  bool expert_parallel = false;
  std::string device = "cpu";  // cpu, cuda
  bool no_cuda_graphs = false;
  std::string sampling_gather = "shard";  // shard, full
};

// --speculative, --draft-model, --num-speculative-tokens (run, bench, serve).
struct SpeculativeCliOptions {
  std::string method = "none";
  int k = 4;
  std::string draft_model;
};

void add_model_options(CLI::App& cmd, ModelOptions& o);
void add_speculative_options(CLI::App& cmd, SpeculativeCliOptions& o);
// The draft model of --speculative draft for `target`: one local rank on the
// driver, threads of this process beside the target's ranks (unpinned), a
// cache as long as the target's; null for the other methods. ConfigError for
// a draft model without --speculative draft, or one with another vocabulary.
std::unique_ptr<Engine> open_draft(const SpeculativeCliOptions& o, const ModelOptions& target_options, Engine& target);
// The options the generator and scheduler take; checked (k in range, a
// draft there when the method needs one).
SpeculativeOptions speculative_options(const SpeculativeCliOptions& o, Engine* draft);
// --device, --no-cuda-graphs and --sampling-gather (part of add_model_options;
// bench adds them alone).
void add_device_options(CLI::App& cmd, ModelOptions& o);
// `replicas`: engines of this process sharing its cores (serve's
// --data-parallel-size), for the default threads per rank.
EngineOptions engine_options(const ModelOptions& o, int replicas = 1);
// The default threads per rank: this process's cores over the ranks that
// share them, `ranks` on one machine; under mpirun each process is one rank
// and shares the host with the launcher's ranks on this host (not the whole
// job: with a rank per host, each takes every core of its host).
int default_threads_per_rank(int ranks);

// "3,1" -> {3, 1}; throws ConfigError naming `flag` on anything but positive integers.
std::vector<int> parse_int_list(const std::string& text, const char* flag);

// Opens the engine. On the worker processes of an mpi job it runs the worker
// loop until the driver stops and returns null: the command then just returns.
std::unique_ptr<Engine> open_engine(const ModelOptions& o);

// Human-readable byte counts: "10.2 MiB".
std::string format_bytes(uint64_t bytes);

// MoE models: "expert load (tokens per expert, all layers): 12 9 ... | max/mean
// 1.31", from Engine::expert_load(); "" for a dense model.
std::string expert_load_line(const std::vector<std::vector<uint64_t>>& load);

void register_run(CLI::App& app);
void register_perplexity(CLI::App& app);
void register_inspect(CLI::App& app);
void register_synth(CLI::App& app);
void register_cut(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_serve(CLI::App& app);
void register_bench(CLI::App& app);
void register_plan(CLI::App& app);
void register_devices(CLI::App& app);

}  // namespace tpinfer::cli
