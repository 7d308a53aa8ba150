// tpinfer plan: which parallel layout (tensor x pipeline parallel) for this
// model on this hardware, and why. The model is a file / folder or a named
// published shape; the hardware is N devices (a preset, or memory, bandwidth
// and FLOP/s given) joined by a link from the table, or measured (--probe,
// --device cpu). Prints a ranked table and the recommendation (or --json);
// exits 1 when the model fits in no layout for any requested weight type,
// saying how much memory is missing.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "backend/cpu/memory_bandwidth.h"
#include "cli/common.h"
#include "comm/mpi_comm.h"
#include "core/error.h"
#include "formats/tensor_table.h"
#include "planner/planner.h"
#include "planner/probe.h"

namespace tpinfer::cli {
namespace {

struct PlanOptions {
  std::string model;
  int devices = 0;  // 0: 1, or the mpi world size
  std::string device;
  std::string memory, bandwidth, flops;
  std::string link;
  std::string inter_node_link = "ib-200";
  int nodes = 1;
  int64_t context = 8192;
  int batch = 1;
  std::vector<std::string> weights;
  std::string kv_dtype = "f16";
  double overhead = 0.05;
  std::string overhead_fixed = "1GiB";
  int64_t prefill_chunk = 2048;
  bool probe = false;
  int probe_reps = 20;
  bool json = false;
};

std::vector<std::string> split_list(const std::vector<std::string>& items) {
  std::vector<std::string> out;
  for (const std::string& item : items) {
    std::stringstream ss(item);
    std::string part;
    while (std::getline(ss, part, ',')) {
      if (!part.empty()) out.push_back(part);
    }
  }
  return out;
}

void run(const PlanOptions& o) {
  using namespace planner;
  // Under mpirun the probe runs over the mpi communicator; every process
  // takes part and rank 0 prints.
  std::unique_ptr<Communicator> mpi;
#if defined(TPINFER_HAVE_MPI)
  if (o.probe && launched_by_mpirun()) mpi = make_mpi_communicator(std::chrono::milliseconds(60000));
#else
  if (o.probe && launched_by_mpirun()) throw ConfigError("--probe under mpirun needs tpinfer built with MPI");
#endif
  const bool printer = !mpi || mpi->rank() == 0;
  int devices = o.devices > 0 ? o.devices : (mpi ? mpi->size() : 1);

  const ModelShape base = load_shape(o.model);
  std::vector<ModelShape> shapes;
  for (const std::string& w : split_list(o.weights)) {
    const std::optional<DType> t = parse_dtype(w);
    if (!t) throw ConfigError(cat("--weights '", w, "' is not a tensor type; e.g. bf16, f16, q8_0, q4_k"));
    shapes.push_back(with_weight_type(base, *t));
  }
  if (shapes.empty()) shapes.push_back(base);
  const std::optional<DType> kv = parse_dtype(o.kv_dtype);
  if (!kv || dtype_info(*kv).quantized) throw ConfigError(cat("--kv-dtype '", o.kv_dtype, "': valid: f32, f16, bf16"));

  PlanRequest base_request;
  base_request.devices = devices;
  base_request.nodes = o.nodes;
  base_request.context = o.context;
  base_request.batch = o.batch;
  base_request.kv_type = *kv;
  base_request.overhead_fraction = o.overhead;
  base_request.overhead_bytes = parse_bytes(o.overhead_fixed, "--overhead-fixed");
  base_request.prefill_chunk = o.prefill_chunk;
  base_request.inter_node = parse_link(o.inter_node_link);
  const bool cpu = o.device == "cpu";
  if (cpu) base_request.activation_bytes = 4;  // tpinfer's cpu back end reduces f32
  nlohmann::ordered_json probe_json;
  if (!o.link.empty()) {
    base_request.link = parse_link(o.link);
  } else if (!(o.probe || (cpu && devices > 1))) {
    base_request.link = parse_link("pcie4");
    base_request.link.source += " (the default; pass --link)";
  }
  if (o.probe || (cpu && devices > 1 && o.link.empty())) {
    LinkProbe p;
    // cpu ranks: each collective timed after a compute phase as long as the
    // model's between two collectives (the ranks then arrive as far apart as
    // they do in a step).
    const uint64_t compute = cpu ? compute_bytes_between_collectives(shapes.front(), devices) : 0;
    if (mpi) {
      p = probe_link(*mpi, default_probe_sizes(), o.probe_reps, compute);
    } else if (devices > 1) {
      p = probe_local_link(devices, default_probe_sizes(), o.probe_reps, compute);
    }
    if (p.ranks > 1) {
      base_request.link = p.link;
      probe_json["link"] = {
          {"backend", p.backend}, {"ranks", p.ranks}, {"bandwidth", p.link.bandwidth}, {"latency", p.link.latency},
          {"compute_bytes_between", compute}};
      for (const LinkSample& s : p.samples)
        probe_json["link"]["samples"].push_back({{"bytes", s.bytes}, {"seconds", s.seconds}});
    } else if (base_request.link.name.empty()) {
      base_request.link = parse_link("pcie4");
    }
  }

  if (o.probe && !cpu) {
    // The host's memory is not the device's: measured and shown, not used.
    probe_json["host_memory_bandwidth"] = cpu::measure_read_bandwidth(cpu_threads_per_rank(1));
  }
  bool any_fits = false;
  std::vector<std::string> errors;
  nlohmann::ordered_json plans = nlohmann::ordered_json::array();
  std::string text;
  for (const ModelShape& shape : shapes) {
    PlanRequest q = base_request;
    q.model = shape;
    if (cpu) {
      DType wt = DType::F32;
      for (const PlanTensor& t : shape.tensors) {
        const TensorDecl* d = find_tensor_decl(shape.config.arch, t.name);
        if (d != nullptr && (d->id == TensorId::FfnDown || d->id == TensorId::FfnDownExp)) wt = t.type;
      }
      if (mpi) {
        // Every rank measures the cores it was given, all at once, as the
        // ranks will run (on one machine they share its memory system).
        q.device = cpu_device(1, wt, [&] { mpi->barrier(); });
        q.device.memory /= static_cast<uint64_t>(devices);
        // A step goes at the slowest rank's pace: every rank plans with it.
        std::vector<float> all(static_cast<size_t>(mpi->size()));
        const float mine = static_cast<float>(q.device.bandwidth);
        const std::vector<size_t> ones(static_cast<size_t>(mpi->size()), 1);
        mpi->all_gather(&mine, ones, all.data());
        q.device.bandwidth = *std::min_element(all.begin(), all.end());
        q.device.source += cat(" (each of ", mpi->size(), " mpi ranks, measured together)");
      } else {
        q.device = cpu_device(devices, wt);
      }
      if (o.probe) probe_json["memory_bandwidth"] = q.device.bandwidth * devices;
    } else if (!o.device.empty()) {
      const std::optional<DeviceSpec> d = find_device(o.device);
      if (!d) {
        std::string names = "cpu";
        for (const DeviceSpec& s : device_table()) names += ", " + s.name;
        throw ConfigError(cat("--device '", o.device, "' is not a preset; valid: ", names));
      }
      q.device = *d;
    } else {
      // No preset: memory must be given; bandwidth and FLOP/s default to H100 SXM.
      if (o.memory.empty()) throw ConfigError("give --device PRESET or --device-memory (e.g. 80GiB)");
      q.device = *find_device("h100-sxm");
      q.device.name = "device";
      q.device.source = "memory given; bandwidth and FLOP/s of an H100 SXM unless given";
    }
    if (!o.memory.empty()) q.device.memory = parse_bytes(o.memory, "--device-memory");
    if (!o.bandwidth.empty()) q.device.bandwidth = parse_rate(o.bandwidth, "--device-bandwidth");
    if (!o.flops.empty()) q.device.flops = parse_flops(o.flops, "--device-flops");
    const Plan plan = make_plan(q);
    any_fits = any_fits || plan.any_fits;
    if (!plan.any_fits) errors.push_back(plan.error);
    plans.push_back(plan_json(plan));
    text += plan_text(plan);
    if (!plan.any_fits) text += "does not fit: " + plan.error + "\n";
    text += "\n";
  }
  if (printer) {
    if (o.json) {
      nlohmann::ordered_json out = {{"plans", plans}};
      if (!probe_json.is_null()) out["probe"] = probe_json;
      std::cout << out.dump(2) << std::endl;
    } else {
      if (!probe_json.is_null() && probe_json.contains("link")) {
        std::printf("probed link: %s over %d ranks: %s, %s per step\n",
                    probe_json["link"]["backend"].get<std::string>().c_str(), probe_json["link"]["ranks"].get<int>(),
                    format_rate(base_request.link.bandwidth).c_str(),
                    format_seconds(base_request.link.latency).c_str());
      }
      std::fputs(text.c_str(), stdout);
    }
  }
  if (!any_fits) {
    std::string msg;
    for (const std::string& e : errors) msg += (msg.empty() ? "" : "; ") + e;
    throw ConfigError(msg);
  }
}

}  // namespace

void register_plan(CLI::App& app) {
  auto o = std::make_shared<PlanOptions>();
  CLI::App* cmd = app.add_subcommand("plan", "Which parallel layout for this model on this hardware, and why");
  cmd->add_option("-m,--model", o->model,
                  "A .gguf file, a Hugging Face folder, or a shape: llama-3.1-8b, llama-3.1-70b, "
                  "llama-3.1-405b, llama-3.2-1b, llama-3.2-3b, qwen2.5-7b, qwen2.5-72b, mistral-7b, "
                  "mixtral-8x7b")
      ->required();
  cmd->add_option("--devices", o->devices, "Devices (default 1, or the mpirun world size)")->check(CLI::PositiveNumber);
  cmd->add_option("--device", o->device,
                  "Preset: h100-sxm, h200, a100-80gb, l40s, rtx4090, or cpu (this machine, measured)");
  cmd->add_option("--device-memory", o->memory, "Memory per device, e.g. 80GiB");
  cmd->add_option("--device-bandwidth", o->bandwidth, "Memory bandwidth per device, e.g. 2.0TB/s");
  cmd->add_option("--device-flops", o->flops, "Dense FLOP/s per device at the weight precision, e.g. 990T");
  cmd->add_option("--link", o->link, "nvlink, nvswitch, pcie4, pcie5, ib-200, eth-10g, eth-100g, custom:BW,LATENCY");
  cmd->add_option("--inter-node-link", o->inter_node_link, "Link between nodes (default ib-200)");
  cmd->add_option("--nodes", o->nodes, "Nodes the devices are spread over (evenly)")->check(CLI::PositiveNumber);
  cmd->add_option("--context", o->context, "Tokens of context per sequence (default 8192)")->check(CLI::PositiveNumber);
  cmd->add_option("--batch", o->batch, "Concurrent sequences (default 1)")->check(CLI::PositiveNumber);
  cmd->add_option("--weights", o->weights, "Weight types to plan for, e.g. bf16,q8_0,q4_k (default: the model's)");
  cmd->add_option("--kv-dtype", o->kv_dtype, "KV cache type: f32, f16, bf16 (default f16)");
  cmd->add_option("--overhead", o->overhead, "Share of device memory kept back (default 0.05)")
      ->check(CLI::Range(0.0, 0.9));
  cmd->add_option("--overhead-fixed", o->overhead_fixed, "Fixed runtime memory per device (default 1GiB)");
  cmd->add_option("--prefill-chunk", o->prefill_chunk, "Tokens per prefill chunk, for activations (default 2048)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--probe", o->probe,
                "Measure the link (all-reduce over local threads, or mpi under mpirun) and memory bandwidth");
  cmd->add_option("--probe-reps", o->probe_reps, "Repetitions per probed size (default 20)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--json", o->json, "Print everything as JSON");
  cmd->callback([o] { run(*o); });
}

}  // namespace tpinfer::cli
