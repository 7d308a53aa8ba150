#include "model/cuda/cuda_llama.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include "backend/cuda/kernels.h"
#include "backend/cuda/runtime.h"
#include "comm/cuda/device_comm.h"
#include "core/error.h"
#include "formats/tensor_table.h"
#include "parallel/sharded_tensor.h"

namespace tpinfer {
namespace {

constexpr int64_t kMaxGraphBatch = 128;

// Page-locked host memory, so the per-step copies are truly asynchronous.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer() {
    if (ptr_) cudaFreeHost(ptr_);
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  // Grows to at least `bytes` (contents lost). Only called between steps,
  // when no copy from or to it is pending.
  void reserve(size_t bytes) {
    if (bytes <= bytes_) return;
    if (ptr_) cudaFreeHost(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
    cuda::check(cudaMallocHost(&ptr_, bytes), "cudaMallocHost");
    bytes_ = bytes;
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// A weight matrix in device memory, and its view for the kernels.
struct DeviceWeight {
  cuda::DeviceBuffer buf;
  cuda::DeviceMatrix m;
};

void check_weight_type(const TensorInfo& t) {
  if (!cuda::supported_weight_type(t.type)) {
    throw ConfigError(cat("--device cuda: tensor ", t.name, " is ", dtype_name(t.type),
                          ", which the CUDA kernels do not support; supported: f32, f16, bf16, q8_0, q4_0, q4_k"));
  }
}

DeviceWeight upload_matrix(const ShardedTensor& t) {
  DeviceWeight w;
  w.m = cuda::DeviceMatrix{t.type(), t.rows(), t.cols(), nullptr};
  const uint64_t bytes = t.bytes();
  if (bytes > 0) {
    // ShardedTensor rows are packed (row_stride == row_bytes), so its slice is one run of bytes.
    w.buf = cuda::DeviceBuffer(bytes);
    w.buf.upload(t.row(0), bytes);
    w.m.data = w.buf.data();
  }
  return w;
}

// The rank's slice of `names` fused row-wise (as ColumnParallelLinear and
// RowParallelLinear load them), uploaded; the host copy dies here.
DeviceWeight load_matrix(const ModelSource& src, const ShardPlan& plan, int rank, const std::vector<std::string>& names) {
  std::vector<ShardedTensor> parts;
  for (const std::string& name : names) {
    const TensorInfo& t = src.get(name);
    check_weight_type(t);
    parts.push_back(ShardedTensor::load(t, plan.slice(name, rank)));
  }
  if (parts.size() == 1) return upload_matrix(parts[0]);
  return upload_matrix(ShardedTensor::concat_rows(parts));
}

cuda::DeviceBuffer upload_floats(const std::vector<float>& v) {
  cuda::DeviceBuffer b;
  if (v.empty()) return b;
  b = cuda::DeviceBuffer(v.size() * sizeof(float));
  b.upload(v.data(), v.size() * sizeof(float));
  return b;
}

int64_t next_pow2(int64_t n) {
  int64_t p = 1;
  while (p < n) p *= 2;
  return p;
}

// Grows `b` to at least `bytes`; true when it moved (its old address is gone).
bool grow(cuda::DeviceBuffer& b, size_t bytes) {
  if (bytes == 0 || b.bytes() >= bytes) return false;
  b.reserve(bytes);
  return true;
}

}  // namespace

struct CudaLlamaModel::Impl {
  struct Layer {
    cuda::DeviceBuffer attn_norm, ffn_norm, q_norm, k_norm, qkv_bias;
    DeviceWeight qkv, o, gate_up, down;
  };

  // Where this step's metadata lives in `meta` (int32 offsets), a function of
  // (tokens, sequences + 1, max blocks) only, so a graph captured for one
  // layout replays with any batch of the same layout.
  struct Layout {
    int64_t n = 0;       // tokens run (padded in a graph step)
    int64_t n_out = 0;   // rows through the lm_head
    int64_t seqs = 0;    // block-table rows (the batch's sequences + the padding one)
    int64_t max_blocks = 0;
    int64_t tokens() const { return 0; }
    int64_t positions() const { return n; }
    int64_t seq() const { return 2 * n; }
    int64_t slots() const { return 3 * n; }
    int64_t logit_rows() const { return 4 * n; }
    int64_t tables() const { return 5 * n; }
    int64_t words() const { return 5 * n + seqs * max_blocks; }
  };

  struct Graph {
    cudaGraphExec_t exec = nullptr;
    ~Graph() {
      if (exec) cudaGraphExecDestroy(exec);
    }
  };

  ModelConfig cfg;
  LayerRange range;
  CudaModelOptions opt;
  cuda::DeviceCommunicator* comm = nullptr;
  int tp = 1;
  int n_q = 0, n_kv = 0, q_begin = 0, kv_begin = 0, heads_per_kv = 1;
  int64_t ffn_local = 0;
  int64_t qkv_rows = 0;
  int64_t embed_row_begin = 0;
  std::vector<Range> vocab_ranges;  // every rank's lm_head rows
  int64_t vocab_pad = 0;            // the largest range
  std::string device_name;

  cuda::DeviceBuffer inv_freq, output_norm;
  DeviceWeight embed, lm_head;  // lm_head.buf empty when tied to embed on this stage
  const cuda::DeviceMatrix* lm_head_m = nullptr;
  std::vector<Layer> layers;
  uint64_t weight_bytes = 0;

  cuda::DeviceBuffer k_cache, v_cache;
  uint64_t kv_layer_bytes = 0;
  int trash_block = 0;  // the spare block padding tokens use

  std::unique_ptr<cuda::Stream> stream;
  std::unique_ptr<cuda::MatmulContext> mm;

  // Activations and metadata, grown as needed.
  cuda::DeviceBuffer x, h, qkv, attn, tmp, gu, act, out_rows, local_logits, gathered, meta;
  PinnedBuffer meta_host, logits_host, stage_host;
  size_t logits_host_bytes = 0, stage_host_bytes = 0;
  std::vector<float> stage_in, stage_out;

  std::map<std::pair<int64_t, int64_t>, std::unique_ptr<Graph>> graphs;  // (tokens, max blocks)
  const void* graph_scratch = nullptr;
  const void* graph_workspace = nullptr;
  bool graphs_on = true;
  std::string graph_error;
  uint64_t replays = 0, captures = 0;

  bool first_stage() const { return range.begin == 0; }
  bool last_stage() const { return range.end == cfg.n_layers; }
  cudaStream_t s() const { return stream->get(); }

  cuda::PagedKV kv(int l) const {
    cuda::PagedKV p;
    p.k = static_cast<uint8_t*>(k_cache.data()) + kv_layer_bytes * static_cast<uint64_t>(l);
    p.v = static_cast<uint8_t*>(v_cache.data()) + kv_layer_bytes * static_cast<uint64_t>(l);
    p.type = opt.kv_type;
    p.block_size = opt.kv_block_size;
    p.n_kv_heads = n_kv;
    p.head_dim = cfg.head_dim;
    return p;
  }

  void all_reduce(float* data, int64_t n) {
    if (comm && tp > 1) comm->all_reduce_sum(data, static_cast<size_t>(n), s());
  }

  // y[n, w.rows] = x W^T; a matrix with no columns (a rank with no share of
  // a row-parallel input) contributes zeros.
  void linear(const cuda::DeviceMatrix& w, const float* in, int64_t n, float* y) {
    if (w.rows == 0) return;
    if (w.cols == 0) {
      cuda::check(cudaMemsetAsync(y, 0, static_cast<size_t>(n * w.rows) * sizeof(float), s()), "cudaMemsetAsync");
      return;
    }
    cuda::matmul(*mm, w, in, n, y);
  }

  bool ensure_buffers(const Layout& lay);
  void fill_meta(const Batch& batch, const Layout& lay);
  void run(const Layout& lay);
  void forward(const Batch& batch, float* logits);
};

void CudaLlamaModel::check_supported(const ModelSource& src, DType kv_type) {
  using enum TensorId;
  const ModelConfig& c = src.config();
  if (c.is_moe()) throw ConfigError("mixture-of-experts models are not supported on --device cuda yet");
  if (kv_type != DType::F16 && kv_type != DType::BF16) {
    throw ConfigError(cat("--device cuda: --kv-cache-dtype ", dtype_name(kv_type),
                          " is not supported on the GPU; valid: f16, bf16"));
  }
  check_weight_type(src.get(tensor_name(TokenEmbd)));
  if (!c.tied_embeddings) check_weight_type(src.get(tensor_name(Output)));
  for (int l = 0; l < c.n_layers; ++l) {
    for (TensorId id : {AttnQ, AttnK, AttnV, AttnOutput, FfnGate, FfnUp, FfnDown}) {
      check_weight_type(src.get(tensor_name(id, l)));
    }
  }
}

CudaLlamaModel::CudaLlamaModel(const ModelSource& src, const ShardPlan& plan, int rank, LayerRange layers,
                               const CudaModelOptions& options, cuda::DeviceCommunicator* comm)
    : impl_(std::make_unique<Impl>()) {
  using enum TensorId;
  Impl& m = *impl_;
  m.cfg = src.config();
  m.range = layers;
  m.opt = options;
  m.comm = comm;
  m.tp = plan.tp();
  const ModelConfig& cfg = m.cfg;
  if (m.range.begin < 0 || m.range.end > cfg.n_layers || m.range.size() < 1) {
    throw ConfigError(cat("layers [", m.range.begin, ", ", m.range.end, ") are not a stage of a model of ",
                          cfg.n_layers, " layers"));
  }
  check_supported(src, options.kv_type);
  if (m.tp > 1 && comm == nullptr) throw Error("CudaLlamaModel: tensor-parallel size > 1 needs a device communicator");
  if (options.kv_blocks < 1 || options.kv_block_size < 1) {
    throw ConfigError(cat("--device cuda: a KV cache of ", options.kv_blocks, " blocks of ", options.kv_block_size,
                          " tokens"));
  }

  cuda::DeviceGuard guard(options.device);
  const cuda::DeviceInfo info = cuda::device_info(options.device);
  m.device_name = cat("cuda:", options.device, " (", info.name, ")");
  m.stream = std::make_unique<cuda::Stream>();
  m.mm = std::make_unique<cuda::MatmulContext>(m.stream->get());

  const RankShard& shard = plan.rank(rank);
  m.n_q = static_cast<int>(shard.q_heads.size());
  m.q_begin = static_cast<int>(shard.q_heads.begin);
  m.n_kv = static_cast<int>(shard.kv_heads.size());
  m.kv_begin = static_cast<int>(shard.kv_heads.begin);
  m.heads_per_kv = plan.heads_per_kv();
  m.ffn_local = shard.ffn.size();

  auto vec_bytes = [](const cuda::DeviceBuffer& b) { return static_cast<uint64_t>(b.bytes()); };
  if (m.first_stage()) {
    m.embed = load_matrix(src, plan, rank, {tensor_name(TokenEmbd)});
    m.embed_row_begin = plan.slice(tensor_name(TokenEmbd), rank).range.begin;
    m.weight_bytes += m.embed.buf.bytes();
  }
  for (int l = m.range.begin; l < m.range.end; ++l) {
    Impl::Layer L;
    L.attn_norm = upload_floats(load_vector_f32(src.get(tensor_name(AttnNorm, l))));
    L.ffn_norm = upload_floats(load_vector_f32(src.get(tensor_name(FfnNorm, l))));
    if (cfg.qk_norm) {
      L.q_norm = upload_floats(load_vector_f32(src.get(tensor_name(AttnQNorm, l))));
      L.k_norm = upload_floats(load_vector_f32(src.get(tensor_name(AttnKNorm, l))));
    }
    L.qkv = load_matrix(src, plan, rank, {tensor_name(AttnQ, l), tensor_name(AttnK, l), tensor_name(AttnV, l)});
    if (cfg.qkv_bias) {
      std::vector<float> bias;
      for (TensorId id : {AttnQBias, AttnKBias, AttnVBias}) {
        const std::string full = tensor_name(id, l);
        const std::vector<float> b = load_vector_f32(src.get(full), plan.slice(full, rank).range);
        bias.insert(bias.end(), b.begin(), b.end());
      }
      L.qkv_bias = upload_floats(bias);
    }
    L.o = load_matrix(src, plan, rank, {tensor_name(AttnOutput, l)});
    L.gate_up = load_matrix(src, plan, rank, {tensor_name(FfnGate, l), tensor_name(FfnUp, l)});
    L.down = load_matrix(src, plan, rank, {tensor_name(FfnDown, l)});
    m.weight_bytes += vec_bytes(L.attn_norm) + vec_bytes(L.ffn_norm) + vec_bytes(L.q_norm) + vec_bytes(L.k_norm) +
                      vec_bytes(L.qkv_bias) + L.qkv.buf.bytes() + L.o.buf.bytes() + L.gate_up.buf.bytes() +
                      L.down.buf.bytes();
    m.layers.push_back(std::move(L));
  }
  m.qkv_rows = static_cast<int64_t>(m.n_q + 2 * m.n_kv) * cfg.head_dim;
  if (!m.layers.empty() && m.layers[0].qkv.m.rows != m.qkv_rows) {
    throw Error(cat("CudaLlamaModel: fused QKV has ", m.layers[0].qkv.m.rows, " rows, expected ", m.qkv_rows));
  }
  if (m.last_stage()) {
    m.output_norm = upload_floats(load_vector_f32(src.get(tensor_name(OutputNorm))));
    m.weight_bytes += m.output_norm.bytes();
    const std::string head = cfg.tied_embeddings ? tensor_name(TokenEmbd) : tensor_name(Output);
    if (cfg.tied_embeddings && m.first_stage()) {
      m.lm_head_m = &m.embed.m;  // the same rows: plan.slice() splits both by vocabulary
    } else {
      m.lm_head = load_matrix(src, plan, rank, {head});
      m.lm_head_m = &m.lm_head.m;
      m.weight_bytes += m.lm_head.buf.bytes();
    }
    for (int r = 0; r < m.tp; ++r) m.vocab_ranges.push_back(plan.slice(head, r).range);
    if (m.tp == 1) m.vocab_ranges[0] = Range{0, cfg.vocab};
    for (const Range& vr : m.vocab_ranges) m.vocab_pad = std::max(m.vocab_pad, vr.size());
    if (m.lm_head_m->rows != m.vocab_ranges[static_cast<size_t>(rank)].size()) {
      throw Error(cat("CudaLlamaModel: lm_head shard has ", m.lm_head_m->rows, " rows, expected ",
                      m.vocab_ranges[static_cast<size_t>(rank)].size()));
    }
  }

  std::vector<float> inv_freq;
  const int half = cfg.head_dim / 2;
  for (int i = 0; i < half; ++i) {
    double f = 1.0 / std::pow(static_cast<double>(cfg.rope_theta), 2.0 * i / cfg.head_dim);
    if (!cfg.rope_freq_factors.empty()) f /= cfg.rope_freq_factors.at(static_cast<size_t>(i));
    inv_freq.push_back(static_cast<float>(f));
  }
  m.inv_freq = upload_floats(inv_freq);

  // The cache: the engine's blocks plus one spare that only padding tokens touch.
  m.trash_block = options.kv_blocks;
  const uint64_t slots = static_cast<uint64_t>(options.kv_blocks + 1) * static_cast<uint64_t>(options.kv_block_size);
  m.kv_layer_bytes = slots * static_cast<uint64_t>(m.n_kv) * static_cast<uint64_t>(cfg.head_dim) * 2;  // f16 / bf16
  const uint64_t kv_total = m.kv_layer_bytes * static_cast<uint64_t>(m.range.size());
  if (kv_total > 0) {
    m.k_cache = cuda::DeviceBuffer(kv_total);
    m.v_cache = cuda::DeviceBuffer(kv_total);
    // Zeros, so a padding token's attention over the spare block reads finite values.
    cuda::check(cudaMemsetAsync(m.k_cache.data(), 0, kv_total, m.s()), "cudaMemsetAsync");
    cuda::check(cudaMemsetAsync(m.v_cache.data(), 0, kv_total, m.s()), "cudaMemsetAsync");
    m.stream->synchronize();
  }
}

CudaLlamaModel::~CudaLlamaModel() {
  if (!impl_) return;
  // Free on the model's device, after its stream is idle.
  try {
    cuda::DeviceGuard guard(impl_->opt.device);
    if (impl_->stream) cudaStreamSynchronize(impl_->stream->get());
    impl_.reset();
  } catch (...) {
  }
}

// Grows every activation and metadata buffer to the layout; true when one moved.
bool CudaLlamaModel::Impl::ensure_buffers(const Layout& lay) {
  const size_t f = sizeof(float);
  const auto n = static_cast<size_t>(lay.n);
  const auto hidden = static_cast<size_t>(cfg.hidden);
  bool moved = false;
  moved |= grow(x, n * hidden * f);
  moved |= grow(h, n * hidden * f);
  moved |= grow(tmp, n * hidden * f);
  moved |= grow(qkv, n * static_cast<size_t>(qkv_rows) * f);
  moved |= grow(attn, n * static_cast<size_t>(n_q) * static_cast<size_t>(cfg.head_dim) * f);
  moved |= grow(gu, n * 2 * static_cast<size_t>(ffn_local) * f);
  moved |= grow(act, n * static_cast<size_t>(ffn_local) * f);
  moved |= grow(meta, static_cast<size_t>(lay.words()) * sizeof(int32_t));
  if (last_stage()) {
    const auto n_out = static_cast<size_t>(lay.n_out);
    moved |= grow(out_rows, n_out * hidden * f);
    moved |= grow(local_logits, n_out * static_cast<size_t>(vocab_pad) * f);
    if (tp > 1) moved |= grow(gathered, static_cast<size_t>(tp) * n_out * static_cast<size_t>(vocab_pad) * f);
  }
  meta_host.reserve(static_cast<size_t>(lay.words()) * sizeof(int32_t));
  return moved;
}

// The batch's metadata into the pinned staging buffer; tokens past the batch
// (padding) are token 0 at position 0 of the padding sequence, whose block
// table is the spare block.
void CudaLlamaModel::Impl::fill_meta(const Batch& batch, const Layout& lay) {
  int32_t* w = meta_host.as<int32_t>();
  const int64_t n = batch.size();
  const int bs = opt.kv_block_size;
  const auto pad_seq = static_cast<int32_t>(lay.seqs - 1);
  int64_t o = 0;
  for (int64_t t = 0; t < lay.n; ++t) {
    const bool real = t < n;
    const auto i = static_cast<size_t>(t);
    const int32_t pos = real ? batch.positions[i] : 0;
    w[lay.tokens() + t] = real ? batch.tokens[i] : 0;
    w[lay.positions() + t] = pos;
    w[lay.seq() + t] = real ? batch.seq[i] : pad_seq;
    int32_t slot = trash_block * bs;
    if (real) {
      const auto& table = batch.sequences.at(static_cast<size_t>(batch.seq[i])).block_table;
      if (pos < 0 || pos / bs >= static_cast<int32_t>(table.size())) {
        throw Error(cat("position ", pos, " has no KV block (", table.size(), " blocks of ", bs, ")"));
      }
      const int32_t block = table[static_cast<size_t>(pos / bs)];
      if (block < 0 || block >= opt.kv_blocks) throw Error(cat("KV block ", block, " outside the cache of ", opt.kv_blocks));
      slot = block * bs + pos % bs;
      if (batch.want_logits[i]) w[lay.logit_rows() + o++] = static_cast<int32_t>(t);
    }
    w[lay.slots() + t] = slot;
  }
  for (; o < lay.n; ++o) w[lay.logit_rows() + o] = 0;  // rows past n_logits: computed, never read
  for (int64_t sq = 0; sq < lay.seqs; ++sq) {
    int32_t* row = w + lay.tables() + sq * lay.max_blocks;
    const std::vector<int32_t>* table =
        sq < static_cast<int64_t>(batch.sequences.size()) ? &batch.sequences[static_cast<size_t>(sq)].block_table : nullptr;
    for (int64_t b = 0; b < lay.max_blocks; ++b) {
      row[b] = table && b < static_cast<int64_t>(table->size()) ? (*table)[static_cast<size_t>(b)] : trash_block;
    }
  }
}

// Everything between the metadata upload and the logits download, for one
// layout: the part a graph captures.
void CudaLlamaModel::Impl::run(const Layout& lay) {
  const int64_t n = lay.n;
  const int64_t hidden = cfg.hidden;
  const int hd = cfg.head_dim;
  const int32_t* md = meta.as<int32_t>();
  float* xp = x.as<float>();
  float* hp = h.as<float>();
  float* tp_ = tmp.as<float>();
  float* qp = qkv.as<float>();
  const bool neox = cfg.rope_style != RopeStyle::Interleaved;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  cuda::AttnBatch ab;
  ab.positions = md + lay.positions();
  ab.seq = md + lay.seq();
  ab.block_tables = md + lay.tables();
  ab.max_blocks = static_cast<int>(lay.max_blocks);
  ab.n_tokens = n;

  if (first_stage()) {
    cuda::embed(embed.m, md + lay.tokens(), n, embed_row_begin, xp, s());
    all_reduce(xp, n * hidden);
  }
  for (size_t l = 0; l < layers.size(); ++l) {
    Layer& L = layers[l];
    cuda::rms_norm(xp, hidden, L.attn_norm.as<float>(), n, hidden, cfg.rms_eps, hp, hidden, s());
    linear(L.qkv.m, hp, n, qp);
    if (L.qkv_bias.data()) cuda::add_bias(qp, L.qkv_bias.as<float>(), n, qkv_rows, s());
    float* kp = qp + static_cast<int64_t>(n_q) * hd;
    if (cfg.qk_norm) {
      for (int head = 0; head < n_q; ++head) {
        float* p = qp + static_cast<int64_t>(head) * hd;
        cuda::rms_norm(p, qkv_rows, L.q_norm.as<float>(), n, hd, cfg.rms_eps, p, qkv_rows, s());
      }
      for (int head = 0; head < n_kv; ++head) {
        float* p = kp + static_cast<int64_t>(head) * hd;
        cuda::rms_norm(p, qkv_rows, L.k_norm.as<float>(), n, hd, cfg.rms_eps, p, qkv_rows, s());
      }
    }
    if (n_q > 0) cuda::rope(qp, n, qkv_rows, n_q, hd, md + lay.positions(), inv_freq.as<float>(), neox, s());
    if (n_kv > 0) {
      cuda::rope(kp, n, qkv_rows, n_kv, hd, md + lay.positions(), inv_freq.as<float>(), neox, s());
      const cuda::PagedKV cache = kv(static_cast<int>(l));
      cuda::kv_store(cache, qp, qkv_rows, static_cast<int64_t>(n_q) * hd, static_cast<int64_t>(n_q + n_kv) * hd,
                     md + lay.slots(), n, s());
      if (n_q > 0) {
        cuda::paged_attention(qp, qkv_rows, cache, ab, n_q, q_begin, heads_per_kv, kv_begin, scale, attn.as<float>(),
                              static_cast<int64_t>(n_q) * hd, s());
      }
    }
    linear(L.o.m, attn.as<float>(), n, tp_);
    all_reduce(tp_, n * hidden);
    cuda::add(xp, tp_, n * hidden, s());

    cuda::rms_norm(xp, hidden, L.ffn_norm.as<float>(), n, hidden, cfg.rms_eps, hp, hidden, s());
    if (ffn_local > 0) {
      linear(L.gate_up.m, hp, n, gu.as<float>());
      cuda::swiglu(gu.as<float>(), n, ffn_local, act.as<float>(), s());
      linear(L.down.m, act.as<float>(), n, tp_);
    } else {
      cuda::check(cudaMemsetAsync(tp_, 0, static_cast<size_t>(n * hidden) * sizeof(float), s()), "cudaMemsetAsync");
    }
    all_reduce(tp_, n * hidden);
    cuda::add(xp, tp_, n * hidden, s());
  }

  if (!last_stage() || lay.n_out == 0) return;
  float* rows = out_rows.as<float>();
  cuda::gather_rows(xp, md + lay.logit_rows(), lay.n_out, hidden, rows, s());
  cuda::rms_norm(rows, hidden, output_norm.as<float>(), lay.n_out, hidden, cfg.rms_eps, rows, hidden, s());
  linear(*lm_head_m, rows, lay.n_out, local_logits.as<float>());
  if (tp > 1) {
    // Every rank sends n_out x vocab_pad floats; its first n_out x (its range) are its [n_out, range] logits.
    comm->all_gather(local_logits.as<float>(), static_cast<size_t>(lay.n_out * vocab_pad), gathered.as<float>(), s());
  }
}

void CudaLlamaModel::Impl::forward(const Batch& batch, float* logits) {
  const int64_t n = batch.size();
  const int64_t hidden = cfg.hidden;
  if (!first_stage() && stage_in.size() != static_cast<size_t>(n * hidden)) {
    throw Error(cat("stage input holds ", stage_in.size(), " values for a batch of ", n, " tokens x ", hidden));
  }
  if (n == 0) return;
  cuda::DeviceGuard guard(opt.device);

  // A decode step: every sequence contributes exactly one token.
  bool decode = static_cast<int64_t>(batch.sequences.size()) == n;
  if (decode) {
    std::vector<uint8_t> seen(batch.sequences.size(), 0);
    for (int32_t sq : batch.seq) {
      if (sq < 0 || static_cast<size_t>(sq) >= seen.size() || seen[static_cast<size_t>(sq)]) {
        decode = false;
        break;
      }
      seen[static_cast<size_t>(sq)] = 1;
    }
  }
  const bool use_graph = graphs_on && opt.cuda_graphs && first_stage() && last_stage() && decode &&
                         n <= kMaxGraphBatch && (tp == 1 || (comm && comm->capturable()));

  int64_t max_blocks = 1;
  for (const BatchSequence& sq : batch.sequences) max_blocks = std::max<int64_t>(max_blocks, sq.block_table.size());
  Layout lay;
  const int64_t n_logits = batch.n_logits();
  if (use_graph) {
    lay.n = next_pow2(n);
    lay.n_out = lay.n;
    lay.seqs = lay.n + 1;
    lay.max_blocks = next_pow2(max_blocks);
  } else {
    lay.n = n;
    lay.n_out = n_logits;
    lay.seqs = static_cast<int64_t>(batch.sequences.size()) + 1;
    lay.max_blocks = max_blocks;
  }

  if (ensure_buffers(lay)) graphs.clear();
  fill_meta(batch, lay);
  cuda::check(cudaMemcpyAsync(meta.data(), meta_host.as<int32_t>(), static_cast<size_t>(lay.words()) * sizeof(int32_t),
                              cudaMemcpyHostToDevice, s()),
              "cudaMemcpyAsync (batch metadata)");
  if (!first_stage()) {
    cuda::check(cudaMemcpyAsync(x.data(), stage_in.data(), stage_in.size() * sizeof(float), cudaMemcpyHostToDevice, s()),
                "cudaMemcpyAsync (stage input)");
  }

  if (use_graph) {
    // The matmul scratch grows inside run() on a bigger batch; graphs captured
    // before point at the old one.
    if (mm->scratch().data() != graph_scratch || mm->workspace().data() != graph_workspace) graphs.clear();
    const auto key = std::make_pair(lay.n, lay.max_blocks);
    auto it = graphs.find(key);
    if (it != graphs.end()) {
      cuda::check(cudaGraphLaunch(it->second->exec, s()), "cudaGraphLaunch");
      ++replays;
    } else {
      // Run it once for real (grows the scratch, gives this step's result),
      // then record the same work; capturing does not execute it.
      run(lay);
      if (mm->scratch().data() != graph_scratch || mm->workspace().data() != graph_workspace) {
        graphs.clear();
        graph_scratch = mm->scratch().data();
        graph_workspace = mm->workspace().data();
      }
      cudaGraph_t g = nullptr;
      try {
        cuda::check(cudaStreamBeginCapture(s(), cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
        try {
          run(lay);
        } catch (...) {
          cudaStreamEndCapture(s(), &g);
          throw;
        }
        cuda::check(cudaStreamEndCapture(s(), &g), "cudaStreamEndCapture");
        auto graph = std::make_unique<Graph>();
        cuda::check(cudaGraphInstantiate(&graph->exec, g, 0), "cudaGraphInstantiate");
        cudaGraphDestroy(g);
        g = nullptr;
        graphs[key] = std::move(graph);
        ++captures;
      } catch (const std::exception& e) {
        // The eager run above already computed this step; carry on without graphs.
        if (g) cudaGraphDestroy(g);
        cudaGetLastError();
        graphs.clear();
        graphs_on = false;
        graph_error = e.what();
      }
    }
  } else {
    run(lay);
  }

  // Results back to the host.
  if (last_stage() && n_logits > 0) {
    const int64_t vocab = cfg.vocab;
    const size_t bytes = static_cast<size_t>(n_logits * vocab) * sizeof(float);
    if (bytes > logits_host_bytes) {
      logits_host.reserve(bytes);
      logits_host_bytes = bytes;
    }
    float* host = logits_host.as<float>();
    const float* src = tp > 1 ? gathered.as<float>() : local_logits.as<float>();
    for (int r = 0; r < tp; ++r) {
      const Range vr = vocab_ranges[static_cast<size_t>(r)];
      if (vr.size() == 0) continue;
      const float* block = src + static_cast<int64_t>(r) * lay.n_out * vocab_pad;
      cuda::check(cudaMemcpy2DAsync(host + vr.begin, static_cast<size_t>(vocab) * sizeof(float), block,
                                    static_cast<size_t>(vr.size()) * sizeof(float),
                                    static_cast<size_t>(vr.size()) * sizeof(float), static_cast<size_t>(n_logits),
                                    cudaMemcpyDeviceToHost, s()),
                  "cudaMemcpy2DAsync (logits)");
    }
  }
  if (!last_stage()) {
    const size_t bytes = static_cast<size_t>(n * hidden) * sizeof(float);
    if (bytes > stage_host_bytes) {
      stage_host.reserve(bytes);
      stage_host_bytes = bytes;
    }
    cuda::check(cudaMemcpyAsync(stage_host.as<float>(), x.data(), bytes, cudaMemcpyDeviceToHost, s()),
                "cudaMemcpyAsync (stage output)");
  }
  if (comm && tp > 1) {
    comm->wait(s());
  } else {
    stream->synchronize();
  }
  if (last_stage() && n_logits > 0) {
    std::memcpy(logits, logits_host.as<float>(), static_cast<size_t>(n_logits * cfg.vocab) * sizeof(float));
  }
  if (!last_stage()) {
    stage_out.resize(static_cast<size_t>(n * hidden));
    std::memcpy(stage_out.data(), stage_host.as<float>(), stage_out.size() * sizeof(float));
  }
}

void CudaLlamaModel::forward(const Batch& batch, float* logits) { impl_->forward(batch, logits); }

float* CudaLlamaModel::stage_input(int64_t n_tokens) {
  impl_->stage_in.resize(static_cast<size_t>(n_tokens * impl_->cfg.hidden));
  return impl_->stage_in.data();
}
const float* CudaLlamaModel::stage_output() const { return impl_->stage_out.data(); }
bool CudaLlamaModel::last_stage() const { return impl_->last_stage(); }
uint64_t CudaLlamaModel::weight_bytes() const { return impl_->weight_bytes; }
uint64_t CudaLlamaModel::kv_bytes() const { return 2 * impl_->kv_layer_bytes * static_cast<uint64_t>(impl_->range.size()); }
std::string CudaLlamaModel::device_name() const { return impl_->device_name; }
uint64_t CudaLlamaModel::graph_replays() const { return impl_->replays; }
uint64_t CudaLlamaModel::graph_captures() const { return impl_->captures; }
const std::string& CudaLlamaModel::graph_error() const { return impl_->graph_error; }

}  // namespace tpinfer
