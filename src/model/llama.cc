#include "model/llama.h"

#include <cmath>
#include <string>

#include "core/error.h"
#include "formats/tensor_table.h"

namespace tpinfer {
LlamaModel::LlamaModel(Device& dev, const ModelSource& src, const ShardPlan& plan, int rank, LayerRange layers,
                       KvCacheShape kv)
    : dev_(dev), cfg_(src.config()), range_(layers) {
  using enum TensorId;
  if (range_.begin < 0 || range_.end > cfg_.n_layers || range_.size() < 1) {
    throw ConfigError(
        cat("layers [", range_.begin, ", ", range_.end, ") are not a stage of a model of ", cfg_.n_layers, " layers"));
  }
  const RankShard& shard = plan.rank(rank);
  heads_.n_q = static_cast<int>(shard.q_heads.size());
  heads_.q_begin = static_cast<int>(shard.q_heads.begin);
  heads_.n_kv = static_cast<int>(shard.kv_heads.size());
  heads_.kv_begin = static_cast<int>(shard.kv_heads.begin);
  heads_.heads_per_kv = plan.heads_per_kv();
  heads_.head_dim = cfg_.head_dim;
  ffn_local_ = shard.ffn.size();

  auto norm = [&](const std::string& name) {
    DeviceMemory m = dev.upload(load_vector_f32(src.get(name)));
    weight_bytes_ += m.bytes();
    return m;
  };

  // A tied lm_head on the stage that also embeds is the embedding's own rows
  // (plan.slice() splits both by vocabulary), held once.
  const std::string head_name = cfg_.tied_embeddings ? tensor_name(TokenEmbd) : tensor_name(Output);
  std::shared_ptr<const DeviceWeight> table, head;
  if (first_stage()) {
    const WeightUse use = cfg_.tied_embeddings && last_stage() ? WeightUse::RowsAndMatmul : WeightUse::Rows;
    table = load_weight(dev, src, plan, rank, {tensor_name(TokenEmbd)}, use);
    embed_ = VocabParallelEmbedding(table, plan.slice(tensor_name(TokenEmbd), rank).range, cfg_.vocab);
    weight_bytes_ += table->bytes();
  }
  for (int l = range_.begin; l < range_.end; ++l) {
    Layer L;
    L.attn_norm = norm(tensor_name(AttnNorm, l));
    L.ffn_norm = norm(tensor_name(FfnNorm, l));
    if (cfg_.qk_norm) {
      L.q_norm = norm(tensor_name(AttnQNorm, l));
      L.k_norm = norm(tensor_name(AttnKNorm, l));
    }
    std::vector<std::string> biases;
    if (cfg_.qkv_bias) biases = {tensor_name(AttnQBias, l), tensor_name(AttnKBias, l), tensor_name(AttnVBias, l)};
    L.qkv = ColumnParallelLinear(dev, src, plan, rank,
                                 {tensor_name(AttnQ, l), tensor_name(AttnK, l), tensor_name(AttnV, l)}, biases);
    L.o = RowParallelLinear(dev, src, plan, rank, tensor_name(AttnOutput, l));
    if (cfg_.is_moe()) {
      L.moe = ParallelMoE(dev, src, plan, rank, l);
    } else {
      L.gate_up = ColumnParallelLinear(dev, src, plan, rank, {tensor_name(FfnGate, l), tensor_name(FfnUp, l)});
      L.down = RowParallelLinear(dev, src, plan, rank, tensor_name(FfnDown, l));
    }
    weight_bytes_ += L.qkv.weight_bytes() + L.o.weight_bytes() + L.gate_up.weight_bytes() + L.down.weight_bytes() +
                     L.moe.weight_bytes();
    layers_.push_back(std::move(L));
  }
  if (last_stage()) {
    output_norm_ = norm(tensor_name(OutputNorm));
    if (cfg_.tied_embeddings && first_stage()) {
      head = table;
    } else {
      head = load_weight(dev, src, plan, rank, {head_name});
      weight_bytes_ += head->bytes();
    }
    std::vector<Range> ranges;
    for (int r = 0; r < plan.tp(); ++r)
      ranges.push_back(plan.tp() == 1 ? Range{0, cfg_.vocab} : plan.slice(head_name, r).range);
    lm_head_ = ParallelLMHead(head, ranges, cfg_.vocab);
  }

  std::vector<float> inv_freq;
  const int half = cfg_.head_dim / 2;
  for (int i = 0; i < half; ++i) {
    double f = 1.0 / std::pow(static_cast<double>(cfg_.rope_theta), 2.0 * i / cfg_.head_dim);
    if (!cfg_.rope_freq_factors.empty()) f /= cfg_.rope_freq_factors.at(static_cast<size_t>(i));
    inv_freq.push_back(static_cast<float>(f));
  }
  inv_freq_ = dev.upload(inv_freq);

  kv.n_layers = range_.size();
  kv.n_kv_heads = heads_.n_kv;
  kv.head_dim = cfg_.head_dim;
  dev.allocate_kv(kv);
}

uint64_t LlamaModel::weight_bytes() const { return weight_bytes_; }

std::vector<std::vector<uint64_t>> LlamaModel::expert_load() const {
  std::vector<std::vector<uint64_t>> out;
  if (!cfg_.is_moe()) return out;
  for (const Layer& L : layers_) out.push_back(L.moe.load());
  return out;
}

void LlamaModel::reset_expert_load() {
  for (Layer& L : layers_) L.moe.reset_load();
}

float* LlamaModel::stage_input(int64_t n_tokens) {
  stage_in_.resize(static_cast<size_t>(n_tokens * cfg_.hidden));
  return stage_in_.data();
}

void LlamaModel::forward(const Batch& batch, float* logits) {
  const int64_t n = batch.size();
  const int64_t hidden = cfg_.hidden;
  if (!first_stage() && stage_in_.size() != static_cast<size_t>(n * hidden)) {
    throw Error(cat("stage input holds ", stage_in_.size(), " values for a batch of ", n, " tokens x ", hidden));
  }
  if (n == 0) return;
  // A MoE layer reads its routing back to the host, which a graph cannot hold.
  const StepShape s = dev_.begin_step(batch, first_stage() && last_stage() && !cfg_.is_moe());
  reserve(s);
  if (!first_stage()) dev_.upload(stage_in_.data(), stage_in_.size() * sizeof(float), x_.data());
  dev_.run_step([&] { run(s); });
  if (last_stage()) {
    // Outside run_step: a summary may be reduced on the host.
    lm_head_.gather(dev_, batch.n_logits(), batch.logit_top, batch.logit_lse, batch.penalties);
    lm_head_.download(dev_, logits);
  } else {
    stage_out_.resize(static_cast<size_t>(n * hidden));
    dev_.download(x_.f32(), n, hidden, stage_out_.data(), hidden);
  }
  dev_.end_step();
}

// Every activation grown for the step before the layers run, so a captured
// graph never sees a buffer move.
void LlamaModel::reserve(const StepShape& s) {
  const auto n = static_cast<size_t>(s.n);
  const auto hidden = static_cast<size_t>(cfg_.hidden);
  const auto hd = static_cast<size_t>(cfg_.head_dim);
  reserve_f32(dev_, x_, n * hidden);
  reserve_f32(dev_, h_, n * hidden);
  reserve_f32(dev_, tmp_, n * hidden);
  reserve_f32(dev_, qkv_, n * static_cast<size_t>(heads_.n_q + 2 * heads_.n_kv) * hd);
  reserve_f32(dev_, attn_, n * static_cast<size_t>(heads_.n_q) * hd);
  reserve_f32(dev_, gu_, n * 2 * static_cast<size_t>(ffn_local_));
  reserve_f32(dev_, act_, n * static_cast<size_t>(ffn_local_));
  if (last_stage()) reserve_f32(dev_, out_rows_, static_cast<size_t>(s.n_out) * hidden);
}

void LlamaModel::run(const StepShape& s) {
  const int64_t n = s.n;
  const int64_t hidden = cfg_.hidden;
  float* x = x_.f32();
  float* h = h_.f32();
  float* tmp = tmp_.f32();
  if (first_stage()) embed_.forward(dev_, n, x);
  // l indexes this stage's layers (and its KV cache): global layer range_.begin + l.
  for (int l = 0; l < range_.size(); ++l) {
    Layer& L = layers_[static_cast<size_t>(l)];
    dev_.rms_norm(x, hidden, L.attn_norm.f32(), n, hidden, cfg_.rms_eps, h, hidden);
    attention(s, L, l);
    L.o.forward(dev_, attn_.f32(), n, tmp);
    dev_.add(x, tmp, n * hidden);

    dev_.rms_norm(x, hidden, L.ffn_norm.f32(), n, hidden, cfg_.rms_eps, h, hidden);
    if (cfg_.is_moe()) {
      L.moe.forward(dev_, h, n, tmp);
    } else {
      L.gate_up.forward(dev_, h, n, gu_.f32());
      dev_.swiglu(gu_.f32(), n, ffn_local_, act_.f32());
      L.down.forward(dev_, act_.f32(), n, tmp);
    }
    dev_.add(x, tmp, n * hidden);
  }

  if (!last_stage() || s.n_out == 0) return;  // stage_output() holds the residual stream
  float* rows = out_rows_.f32();
  dev_.gather_logit_rows(x, hidden, rows);
  dev_.rms_norm(rows, hidden, output_norm_.f32(), s.n_out, hidden, cfg_.rms_eps, rows, hidden);
  lm_head_.forward(dev_, rows, s.n_out);
}

// Q/K/V for the rank's heads; Q/K norm and RoPE; the new keys and values into
// the cache, and each query head's attention over its sequence.
void LlamaModel::attention(const StepShape& s, Layer& L, int l) {
  const int64_t n = s.n;
  const int hd = cfg_.head_dim;
  const int64_t row = L.qkv.out_features();  // (n_q + 2 n_kv) * hd
  float* q = qkv_.f32();
  float* k = q + static_cast<int64_t>(heads_.n_q) * hd;
  L.qkv.forward(dev_, h_.f32(), n, q);
  if (cfg_.qk_norm) {
    for (int i = 0; i < heads_.n_q; ++i) {
      dev_.rms_norm(q + i * hd, row, L.q_norm.f32(), n, hd, cfg_.rms_eps, q + i * hd, row);
    }
    for (int i = 0; i < heads_.n_kv; ++i) {
      dev_.rms_norm(k + i * hd, row, L.k_norm.f32(), n, hd, cfg_.rms_eps, k + i * hd, row);
    }
  }
  dev_.rope(q, row, heads_.n_q, hd, inv_freq_.f32(), cfg_.rope_style);
  dev_.rope(k, row, heads_.n_kv, hd, inv_freq_.f32(), cfg_.rope_style);
  dev_.attention(l, q, row, heads_, 1.0f / std::sqrt(static_cast<float>(hd)), attn_.f32());
}

}  // namespace tpinfer
