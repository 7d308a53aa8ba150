#include "planner/planner.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "core/error.h"
#include "formats/tensor_table.h"
#include "parallel/pipeline_plan.h"
#include "parallel/shard_plan.h"

namespace tpinfer::planner {
namespace {

// Bytes and elements of the slice of `t` that rank r holds, as tpinfer loads it
// (parallel/sharded_tensor.h): vectors widened to f32.
void slice_size(const PlanTensor& t, const TensorSlice& s, uint64_t* bytes, double* elements) {
  if (t.shape.size() == 1) {
    const int64_t n = s.kind == SplitKind::Replicated ? t.shape[0] : s.range.size();
    *bytes = static_cast<uint64_t>(n) * sizeof(float) * static_cast<uint64_t>(t.copies);
    *elements = static_cast<double>(n) * t.copies;
    return;
  }
  int64_t rows = t.shape[0], cols = t.shape[1];
  if (s.kind == SplitKind::Rows) rows = s.range.size();
  if (s.kind == SplitKind::Cols) cols = s.range.size();
  *bytes =
      static_cast<uint64_t>(rows) * row_bytes(t.type, static_cast<uint64_t>(cols)) * static_cast<uint64_t>(t.copies);
  *elements = static_cast<double>(rows) * static_cast<double>(cols) * t.copies;
}

// The engine's stages (parallel/pipeline_plan.h), so the plan describes what runs.
std::vector<int> stage_layers(int layers, int pp) { return PipelinePlan::build(layers, pp).layer_counts(); }

// Tokens of one decode micro-batch touching MoE experts: the expected share of
// experts at least one of b tokens routes to (k of E each, independent).
double expert_fraction(const ModelShape& m, double b) {
  if (m.n_experts <= 0) return 1.0;
  return 1.0 - std::pow(1.0 - static_cast<double>(m.experts_per_token) / m.n_experts, b);
}

double kv_bytes_per_token(const PlanRequest& q, const RankLoad& r) {
  return static_cast<double>(r.layers) * 2.0 *
         static_cast<double>(row_bytes(q.kv_type, static_cast<uint64_t>(r.kv_heads * q.model.config.head_dim)));
}

struct StageTime {
  double compute = 0;
  double comm = 0;
  bool memory_bound = false;
  double total() const { return compute + comm; }
};

// One stage's step on its slowest rank: b tokens, each attending to `ctx`
// positions (decode), or one prompt of b tokens (prefill, ctx = b).
StageTime stage_time(const PlanRequest& q, const std::vector<RankLoad>& stage, const LinkSpec& tp_link, double b,
                     double ctx, bool prefill) {
  const ModelShape& m = q.model;
  const int tp = static_cast<int>(stage.size());
  StageTime out;
  for (const RankLoad& r : stage) {
    const double hd = m.config.head_dim;
    double bytes, flops;
    const double streamed = static_cast<double>(r.weight_bytes - r.lookup_bytes - r.expert_bytes);
    const double logits = prefill ? 1.0 : b;
    if (prefill) {
      bytes = streamed + static_cast<double>(r.expert_bytes) + b * kv_bytes_per_token(q, r);
      flops = 2.0 * b * r.layer_params + 2.0 * b * b * static_cast<double>(r.q_heads) * hd * r.layers;
    } else {
      bytes =
          streamed + static_cast<double>(r.expert_bytes) * expert_fraction(m, b) + b * ctx * kv_bytes_per_token(q, r);
      flops = 2.0 * b * r.layer_params + 4.0 * b * ctx * static_cast<double>(r.q_heads) * hd * r.layers;
    }
    if (r.last_stage) flops += 2.0 * logits * r.lm_head_params;
    const double t_mem = bytes / q.device.bandwidth;
    const double t_flop = flops / q.device.flops;
    if (std::max(t_mem, t_flop) > out.compute) {
      out.compute = std::max(t_mem, t_flop);
      out.memory_bound = t_mem >= t_flop;
    }
  }
  if (tp > 1) {
    const RankLoad& r = stage.front();
    const int n_ar = 2 * r.layers + (r.first_stage ? 1 : 0);
    out.comm += n_ar * all_reduce_seconds(b * m.config.hidden * q.activation_bytes, tp, tp_link);
    const double logit_bytes = (prefill ? 1.0 : b) * m.config.vocab * 4.0;
    if (r.last_stage) out.comm += all_gather_seconds(logit_bytes, tp, tp_link);
    if (r.first_stage) out.comm += 2 * tp_link.latency;
    if (tp_link.sustained_bandwidth > 0) {
      // The link drains its queue while the ranks compute, but over a step it
      // moves no more than its sustained rate: step >= bytes / that rate.
      const double p = tp;
      const double bus = n_ar * 2 * (p - 1) / p * b * m.config.hidden * q.activation_bytes +
                         (r.last_stage ? (p - 1) / p * logit_bytes : 0.0);
      out.comm = std::max(out.comm, bus / tp_link.sustained_bandwidth - out.compute);
    }
  }
  return out;
}

int node_of(int device, int per_node) { return device / per_node; }

std::string layout_name(const LayoutPlan& l) {
  std::string s = cat("tp=", l.tp);
  if (l.pp > 1) s += cat(" pp=", l.pp);
  return s;
}

std::string pct(double x) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.0f%%", 100 * x);
  return buf;
}

}  // namespace

namespace {

// The measured all-reduce time of `bytes` when the link has a curve over p
// ranks: linear between the neighbouring points; below the first point its
// time (latency-bound); past the last, its time plus the extra bytes at the
// fitted bandwidth. Negative when there is no curve for p.
double curve_seconds(double bytes, int p, const LinkSpec& link) {
  const std::vector<LinkPoint>& c = link.curve;
  if (c.empty() || link.curve_ranks != p) return -1;
  if (bytes <= c.front().bytes) return c.front().seconds;
  for (size_t i = 1; i < c.size(); ++i) {
    if (bytes <= c[i].bytes) {
      const double f = (bytes - c[i - 1].bytes) / (c[i].bytes - c[i - 1].bytes);
      return c[i - 1].seconds + f * (c[i].seconds - c[i - 1].seconds);
    }
  }
  return c.back().seconds + 2.0 * (p - 1) / p * (bytes - c.back().bytes) / link.bandwidth;
}

}  // namespace

double all_reduce_seconds(double bytes, int p, const LinkSpec& link) {
  if (p <= 1) return 0;
  const double measured = curve_seconds(bytes, p, link);
  if (measured >= 0) return measured;
  return 2.0 * (p - 1) / p * bytes / link.bandwidth + 2.0 * (p - 1) * link.latency;
}

double all_gather_seconds(double bytes, int p, const LinkSpec& link) {
  if (p <= 1) return 0;
  // An all-gather of m moves what an all-reduce of m/2 does ((p-1)/p x m per
  // rank) in half the steps: read off the curve at m/2, less the (p-1)
  // latencies it does not take.
  const double measured = curve_seconds(bytes / 2, p, link);
  if (measured >= 0) return std::max(measured - (p - 1) * link.latency, 0.5 * measured);
  return static_cast<double>(p - 1) / p * bytes / link.bandwidth + (p - 1) * link.latency;
}

std::vector<std::vector<RankLoad>> rank_loads(const ModelShape& model, int tp, int pp) {
  const ModelConfig& c = model.config;
  if (pp < 1 || pp > c.n_layers) {
    throw ConfigError(cat("pipeline-parallel size ", pp, " must be between 1 and the ", c.n_layers, " layers"));
  }
  ParallelConfig pc;
  pc.tp = tp;
  const ShardPlan plan = ShardPlan::build(c, pc, shape_constraints(model));
  const std::vector<int> layers = stage_layers(c.n_layers, pp);
  std::vector<int> stage_of_layer;
  for (int s = 0; s < pp; ++s)
    stage_of_layer.insert(stage_of_layer.end(), static_cast<size_t>(layers[static_cast<size_t>(s)]), s);

  std::vector<std::vector<RankLoad>> loads(static_cast<size_t>(pp), std::vector<RankLoad>(static_cast<size_t>(tp)));
  for (int s = 0; s < pp; ++s) {
    for (int r = 0; r < tp; ++r) {
      RankLoad& L = loads[static_cast<size_t>(s)][static_cast<size_t>(r)];
      const RankShard& sh = plan.rank(r);
      L.q_heads = sh.q_heads.size();
      L.kv_heads = sh.kv_heads.size();
      L.ffn = sh.ffn.size();
      L.layers = layers[static_cast<size_t>(s)];
      L.first_stage = s == 0;
      L.last_stage = s == pp - 1;
    }
  }
  const double k_over_e = model.n_experts > 0 ? static_cast<double>(model.experts_per_token) / model.n_experts : 1.0;
  for (const PlanTensor& t : model.tensors) {
    const bool embed = t.name == tensor_name(TensorId::TokenEmbd);
    const bool head = t.name == tensor_name(TensorId::Output) || (embed && c.tied_embeddings);
    std::vector<int> stages;
    if (t.layer >= 0)
      stages = {stage_of_layer.at(static_cast<size_t>(t.layer))};
    else if (embed)
      stages = head && pp > 1 ? std::vector<int>{0, pp - 1} : std::vector<int>{0};
    else
      stages = {pp - 1};  // output norm, lm_head
    for (int r = 0; r < tp; ++r) {
      uint64_t bytes = 0;
      double elements = 0;
      slice_size(t, plan.slice(t.name, r), &bytes, &elements);
      for (int s : stages) {
        RankLoad& L = loads[static_cast<size_t>(s)][static_cast<size_t>(r)];
        L.weight_bytes += bytes;
        if (t.expert) L.expert_bytes += bytes;
        if (embed) {
          // On the first stage the embedding is a lookup table (a few rows read
          // per token); tied, it is also the lm_head of the last stage, streamed.
          const bool is_head_here = head && s == pp - 1;
          if (is_head_here)
            L.lm_head_params += elements;
          else
            L.lookup_bytes += bytes;
        } else if (head) {
          L.lm_head_params += elements;
        } else if (t.shape.size() == 2) {
          L.layer_params += t.expert ? elements * k_over_e : elements;
        }
      }
    }
  }
  return loads;
}

LayoutPlan plan_layout(const PlanRequest& q, int tp, int pp) {
  const ModelShape& m = q.model;
  LayoutPlan out;
  out.tp = tp;
  out.pp = pp;
  out.replicas = std::max(1, q.devices / (tp * pp));
  out.stage_layers = stage_layers(m.config.n_layers, pp);
  const std::vector<std::vector<RankLoad>> loads = rank_loads(m, tp, pp);
  const int per_node = std::max(1, q.devices / std::max(1, q.nodes));
  out.tp_inter_node = q.nodes > 1 && tp > per_node;
  const LinkSpec& tp_link = out.tp_inter_node ? q.inter_node : q.link;

  // Memory: the fullest device.
  const double tokens = static_cast<double>(q.context) * q.batch;
  const double chunk = std::min(static_cast<double>(q.prefill_chunk), tokens);
  for (const auto& stage : loads) {
    std::vector<uint64_t> w;
    for (const RankLoad& r : stage) {
      w.push_back(r.weight_bytes);
      MemoryEstimate e;
      e.weights = r.weight_bytes;
      const double kv_token = kv_bytes_per_token(q, r);
      e.kv = static_cast<uint64_t>(kv_token * tokens);
      const double hd = m.config.head_dim;
      const double per_token_values = 2.0 * m.config.hidden + static_cast<double>(r.q_heads) * hd +
                                      2.0 * static_cast<double>(r.kv_heads) * hd +
                                      3.0 * static_cast<double>(r.ffn) * std::max(1, m.experts_per_token);
      e.activations =
          static_cast<uint64_t>(chunk * per_token_values * 4.0 + static_cast<double>(q.batch) * m.config.vocab * 4.0);
      e.overhead = static_cast<uint64_t>(q.overhead_fraction * static_cast<double>(q.device.memory)) + q.overhead_bytes;
      e.total = e.weights + e.kv + e.activations + e.overhead;
      e.fits = e.total <= q.device.memory;
      e.kv_room = static_cast<int64_t>(q.device.memory) - static_cast<int64_t>(e.weights + e.activations + e.overhead);
      e.kv_tokens_max =
          kv_token > 0 ? static_cast<int64_t>(std::max<double>(0, static_cast<double>(e.kv_room)) / kv_token) : 0;
      if (e.total > out.memory.total) out.memory = e;
    }
    out.weight_bytes.push_back(w);
  }

  // Pipeline hops: stage s on devices [s*tp, (s+1)*tp) of the replica.
  std::vector<bool> hop_inter;
  for (int s = 0; s + 1 < pp; ++s) {
    const bool inter = q.nodes > 1 && node_of(s * tp, per_node) != node_of((s + 1) * tp, per_node);
    hop_inter.push_back(inter);
    out.pp_inter_node_hops += inter ? 1 : 0;
  }
  // Seconds of the send out of stage s (none out of the last).
  auto hop_seconds = [&](size_t s, double b) {
    if (s >= hop_inter.size()) return 0.0;
    const LinkSpec& l = hop_inter[s] ? q.inter_node : q.link;
    return l.latency + b * m.config.hidden * q.activation_bytes / l.bandwidth;
  };

  // Decode: micro-batches over the stages.
  {
    const int mb = std::max(1, std::min(pp, q.batch));
    const double b = std::ceil(static_cast<double>(q.batch) / mb);
    double chain = 0, cycle = 0, compute = 0, comm = 0;
    bool mem_bound = true;
    for (size_t s = 0; s < loads.size(); ++s) {
      const StageTime t = stage_time(q, loads[s], tp_link, b, static_cast<double>(q.context), false);
      const double hop = hop_seconds(s, b);
      chain += t.total() + hop;
      cycle = std::max(cycle, t.total() + hop);
      compute += t.compute;
      comm += t.comm + hop;
      mem_bound = mem_bound && t.memory_bound;
    }
    const double period = std::max(mb * cycle, chain);
    out.decode.latency = period;
    out.decode.tokens_per_second = q.batch / period;
    out.decode.compute = compute;
    out.decode.comm = comm;
    out.decode.comm_share = comm / (compute + comm);
    out.decode.memory_bound = mem_bound;
  }
  // Prefill: one prompt of `context` tokens through the stages in turn.
  {
    const double p = static_cast<double>(q.context);
    double compute = 0, comm = 0;
    bool mem_bound = true;
    for (const auto& stage : loads) {
      const StageTime t = stage_time(q, stage, tp_link, p, p, true);
      compute += t.compute;
      comm += t.comm;
      mem_bound = mem_bound && t.memory_bound;
    }
    for (size_t s = 0; s < hop_inter.size(); ++s) comm += hop_seconds(s, p);
    out.prefill.latency = compute + comm;
    out.prefill.tokens_per_second = p / out.prefill.latency;
    out.prefill.compute = compute;
    out.prefill.comm = comm;
    out.prefill.comm_share = comm / (compute + comm);
    out.prefill.memory_bound = mem_bound;
  }
  out.decode_per_device = out.decode.tokens_per_second / (tp * pp);
  out.decode_total = out.decode.tokens_per_second * out.replicas;
  return out;
}

Plan make_plan(const PlanRequest& q) {
  if (q.devices < 1) throw ConfigError(cat("--devices must be at least 1, got ", q.devices));
  if (q.nodes < 1 || q.devices % q.nodes != 0) {
    throw ConfigError(cat("--nodes ", q.nodes, " must divide --devices ", q.devices));
  }
  if (q.context < 1 || q.batch < 1) throw ConfigError("--context and --batch must be at least 1");
  if (q.device.memory == 0 || !(q.device.bandwidth > 0) || !(q.device.flops > 0)) {
    throw ConfigError("the device needs memory, bandwidth and FLOP/s above zero");
  }
  Plan plan;
  plan.request = q;
  const std::vector<int> sizes = ShardPlan::valid_sizes(q.model.config, shape_constraints(q.model), q.devices);
  for (int tp : sizes) {
    for (int pp = 1; tp * pp <= q.devices && pp <= q.model.config.n_layers; ++pp) {
      plan.layouts.push_back(plan_layout(q, tp, pp));
    }
  }
  if (plan.layouts.empty()) {
    throw ConfigError(cat(q.model.config.name, " cannot be split over ", q.devices, " devices in any layout"));
  }
  std::stable_sort(plan.layouts.begin(), plan.layouts.end(), [](const LayoutPlan& a, const LayoutPlan& b) {
    if (a.memory.fits != b.memory.fits) return a.memory.fits;
    if (!a.memory.fits) return a.memory.total < b.memory.total;  // closest to fitting first
    if (a.decode_per_device != b.decode_per_device) return a.decode_per_device > b.decode_per_device;
    return a.decode.latency < b.decode.latency;
  });
  const LayoutPlan& best = plan.layouts.front();
  plan.any_fits = best.memory.fits;
  const std::string model_desc =
      cat(q.model.config.name, " (", q.model.weight_label, ", ",
          format_gib(static_cast<double>(rank_loads(q.model, 1, 1)[0][0].weight_bytes)), " of weights)");
  if (!plan.any_fits) {
    const double missing = static_cast<double>(best.memory.total) - static_cast<double>(q.device.memory);
    plan.error =
        cat(model_desc, " does not fit on ", q.devices, " x ", format_gib(static_cast<double>(q.device.memory)),
            " in any layout at context ", q.context, " x batch ", q.batch, ": the closest, ", layout_name(best),
            ", needs ", format_gib(static_cast<double>(best.memory.total)), " per device (weights ",
            format_gib(static_cast<double>(best.memory.weights)), ", KV cache ",
            format_gib(static_cast<double>(best.memory.kv)), ", activations and overhead ",
            format_gib(static_cast<double>(best.memory.activations + best.memory.overhead)), "), ", format_gib(missing),
            " more than a device has");
    if (best.memory.kv_room > 0) {
      plan.error += cat("; its room for KV holds ", best.memory.kv_tokens_max, " tokens (context x batch)");
    }
    return plan;
  }
  // The lowest-latency layout that fits, to say what the choice gives up.
  const LayoutPlan* fastest = &best;
  for (const LayoutPlan& l : plan.layouts) {
    if (l.memory.fits && l.decode.latency < fastest->decode.latency) fastest = &l;
  }
  plan.why =
      cat(layout_name(best), best.replicas > 1 ? cat(" (x", best.replicas, " replicas)") : std::string(),
          ": fits with ", format_gib(static_cast<double>(best.memory.kv_room)), " for KV cache (",
          format_gib(static_cast<double>(best.memory.kv)), " needed at context ", q.context, " x batch ", q.batch, ")");
  if (fastest != &best) {
    plan.why += cat("; ", layout_name(*fastest), " is ", pct(best.decode.latency / fastest->decode.latency - 1),
                    " faster per token at batch ", q.batch, " but gives ",
                    pct(1 - fastest->decode_per_device / best.decode_per_device), " less throughput per device");
  } else {
    plan.why += "; it is also the lowest-latency layout that fits";
  }
  return plan;
}

nlohmann::ordered_json plan_json(const Plan& p) {
  const PlanRequest& q = p.request;
  nlohmann::ordered_json j;
  j["model"] = {{"name", q.model.config.name},
                {"source", q.model.source},
                {"weights", q.model.weight_label},
                {"layers", q.model.config.n_layers},
                {"hidden", q.model.config.hidden},
                {"heads", q.model.config.n_heads},
                {"kv_heads", q.model.config.n_kv_heads},
                {"head_dim", q.model.config.head_dim},
                {"ffn", q.model.config.ffn},
                {"vocab", q.model.config.vocab},
                {"experts", q.model.n_experts},
                {"experts_per_token", q.model.experts_per_token},
                {"total_parameters", total_parameters(q.model)},
                {"active_parameters", active_parameters(q.model)}};
  j["hardware"] = {
      {"device", q.device.name},
      {"devices", q.devices},
      {"nodes", q.nodes},
      {"device_memory", q.device.memory},
      {"device_bandwidth", q.device.bandwidth},
      {"device_flops", q.device.flops},
      {"device_source", q.device.source},
      {"link",
       {{"name", q.link.name},
        {"bandwidth", q.link.bandwidth},
        {"latency", q.link.latency},
        {"source", q.link.source}}},
      {"inter_node_link",
       {{"name", q.inter_node.name}, {"bandwidth", q.inter_node.bandwidth}, {"latency", q.inter_node.latency}}}};
  j["workload"] = {{"context", q.context},
                   {"batch", q.batch},
                   {"kv_dtype", std::string(dtype_name(q.kv_type))},
                   {"activation_bytes", q.activation_bytes},
                   {"overhead_fraction", q.overhead_fraction},
                   {"overhead_bytes", q.overhead_bytes},
                   {"prefill_chunk", q.prefill_chunk}};
  nlohmann::ordered_json layouts = nlohmann::ordered_json::array();
  for (const LayoutPlan& l : p.layouts) {
    auto phase = [](const PhaseTime& t) {
      return nlohmann::ordered_json{{"latency_s", t.latency},     {"tokens_per_second", t.tokens_per_second},
                                    {"compute_s", t.compute},     {"comm_s", t.comm},
                                    {"comm_share", t.comm_share}, {"memory_bound", t.memory_bound}};
    };
    layouts.push_back({{"tp", l.tp},
                       {"pp", l.pp},
                       {"replicas", l.replicas},
                       {"stage_layers", l.stage_layers},
                       {"weight_bytes_per_rank", l.weight_bytes},
                       {"memory",
                        {{"weights", l.memory.weights},
                         {"kv", l.memory.kv},
                         {"activations", l.memory.activations},
                         {"overhead", l.memory.overhead},
                         {"total", l.memory.total},
                         {"fits", l.memory.fits},
                         {"kv_room", l.memory.kv_room},
                         {"kv_tokens_max", l.memory.kv_tokens_max}}},
                       {"decode", phase(l.decode)},
                       {"prefill", phase(l.prefill)},
                       {"decode_tokens_per_second_per_device", l.decode_per_device},
                       {"decode_tokens_per_second_all_replicas", l.decode_total},
                       {"tp_inter_node", l.tp_inter_node},
                       {"pp_inter_node_hops", l.pp_inter_node_hops}});
  }
  j["layouts"] = layouts;
  if (p.any_fits) {
    j["recommended"] = {{"tp", p.layouts.front().tp}, {"pp", p.layouts.front().pp}, {"why", p.why}};
  } else {
    j["recommended"] = nullptr;
    j["error"] = p.error;
  }
  return j;
}

std::string plan_text(const Plan& p) {
  const PlanRequest& q = p.request;
  std::ostringstream s;
  char buf[512];
  const double total_p = static_cast<double>(total_parameters(q.model)) / 1e9;
  const double active_p = static_cast<double>(active_parameters(q.model)) / 1e9;
  s << "model: " << q.model.config.name << " (" << q.model.weight_label << "), " << q.model.config.n_layers
    << " layers, hidden " << q.model.config.hidden << ", " << q.model.config.n_heads << "/" << q.model.config.n_kv_heads
    << " heads";
  std::snprintf(buf, sizeof(buf), ", %.2fB parameters", total_p);
  s << buf;
  if (q.model.n_experts > 0) {
    std::snprintf(buf, sizeof(buf), " (%.2fB active: %d of %d experts)", active_p, q.model.experts_per_token,
                  q.model.n_experts);
    s << buf;
  }
  s << "\nhardware: " << q.devices << " x " << q.device.name << " (" << format_gib(static_cast<double>(q.device.memory))
    << ", " << format_rate(q.device.bandwidth) << ", " << format_flops(q.device.flops) << ")";
  if (q.nodes > 1) s << " on " << q.nodes << " nodes";
  s << ", link " << q.link.name << " (" << format_rate(q.link.bandwidth) << ", " << format_seconds(q.link.latency)
    << ")";
  if (q.nodes > 1) {
    s << ", between nodes " << q.inter_node.name << " (" << format_rate(q.inter_node.bandwidth) << ", "
      << format_seconds(q.inter_node.latency) << ")";
  }
  s << "\nworkload: context " << q.context << " x batch " << q.batch << ", KV " << dtype_name(q.kv_type) << "\n\n";
  s << "| layout | replicas | weights/dev | KV/dev | total/dev | fits | KV room | decode ms/token | decode tok/s | "
       "tok/s/device | "
       "comm (decode) | prefill s | comm (prefill) |\n";
  s << "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const LayoutPlan& l : p.layouts) {
    std::snprintf(buf, sizeof(buf), "| %s | %d | %s | %s | %s | %s | %s | %.2f | %.0f | %.1f | %s | %.3f | %s |\n",
                  layout_name(l).c_str(), l.replicas, format_gib(static_cast<double>(l.memory.weights)).c_str(),
                  format_gib(static_cast<double>(l.memory.kv)).c_str(),
                  format_gib(static_cast<double>(l.memory.total)).c_str(), l.memory.fits ? "yes" : "no",
                  format_gib(static_cast<double>(l.memory.kv_room)).c_str(), l.decode.latency * 1e3,
                  l.decode.tokens_per_second, l.decode_per_device, pct(l.decode.comm_share).c_str(), l.prefill.latency,
                  pct(l.prefill.comm_share).c_str());
    s << buf;
  }
  s << "\n";
  if (p.any_fits) {
    s << "recommended: " << p.why << "\n";
  }
  return s.str();
}

}  // namespace tpinfer::planner
