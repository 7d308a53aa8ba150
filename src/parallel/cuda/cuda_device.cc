#include "parallel/cuda/cuda_device.h"

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

  // Grows to at least `bytes` (contents lost). Only called when no copy from
  // or to it is pending.
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

class CudaWeight final : public DeviceWeight {
 public:
  explicit CudaWeight(const ShardedTensor& t) : DeviceWeight(t.type(), t.rows(), t.cols()) {
    m_ = cuda::DeviceMatrix{t.type(), t.rows(), t.cols(), nullptr};
    if (t.bytes() > 0) {
      // ShardedTensor rows are packed (row_stride == row_bytes), so its slice is one run of bytes.
      buf_ = cuda::DeviceBuffer(t.bytes());
      buf_.upload(t.row(0), t.bytes());
      m_.data = buf_.data();
    }
  }
  const cuda::DeviceMatrix& m() const { return m_; }

 private:
  cuda::DeviceBuffer buf_;
  cuda::DeviceMatrix m_;
};

const cuda::DeviceMatrix& matrix(const DeviceWeight& w) { return static_cast<const CudaWeight&>(w).m(); }

void check_weight_type(const TensorInfo& t) {
  if (!cuda::supported_weight_type(t.type)) {
    throw ConfigError(cat("--device cuda: tensor ", t.name, " is ", dtype_name(t.type),
                          ", which the CUDA kernels do not support; supported: f32, f16, bf16, q8_0, q4_0, q4_k"));
  }
}

void check_kv_type(DType kv_type) {
  if (kv_type != DType::F16 && kv_type != DType::BF16) {
    throw ConfigError(
        cat("--device cuda: --kv-cache-dtype ", dtype_name(kv_type), " is not supported on the GPU; valid: f16, bf16"));
  }
}

int64_t next_pow2(int64_t n) {
  int64_t p = 1;
  while (p < n) p *= 2;
  return p;
}

}  // namespace

struct CudaDevice::Impl {
  // Where this step's metadata lives in `meta` (int32 offsets), a function of
  // (tokens, sequences + 1, max blocks) only, so a graph captured for one
  // layout replays with any batch of the same layout.
  struct Layout {
    int64_t n = 0;      // tokens run (padded in a graph step)
    int64_t n_out = 0;  // rows through the lm_head
    int64_t seqs = 0;   // block-table rows (the batch's sequences + the padding one)
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

  // A download waiting for end_step(): staged at `offset` floats of `staging`.
  struct Download {
    const float* src;
    int64_t rows, cols;
    float* host;
    int64_t host_stride;
    size_t offset;
  };

  CudaDeviceOptions opt;
  cuda::DeviceCommunicator* comm = nullptr;
  int tp = 1, tp_rank = 0;
  std::string name;
  std::unique_ptr<cuda::Stream> stream;
  std::unique_ptr<cuda::MatmulContext> mm;

  KvCacheShape kv_shape;
  cuda::DeviceBuffer k_cache, v_cache;
  uint64_t kv_layer_bytes = 0;
  int trash_block = 0;  // the spare block padding tokens use

  const Batch* batch = nullptr;
  Layout lay;
  bool use_graph = false;
  cuda::DeviceBuffer meta, index, gather_pad, gather_all;
  PinnedBuffer meta_host, staging;
  std::vector<Download> downloads;
  size_t staged = 0;  // floats of the downloads so far

  // Any device allocation moves `generation`; graphs captured at an older one
  // may point at freed memory.
  uint64_t generation = 0, graph_generation = 0;
  std::map<std::pair<int64_t, int64_t>, std::unique_ptr<Graph>> graphs;  // (tokens, max blocks)
  const void* graph_scratch = nullptr;
  const void* graph_workspace = nullptr;
  bool graphs_on = true;
  std::string graph_error;
  uint64_t replays = 0, captures = 0;

  cudaStream_t s() const { return stream->get(); }
  const int32_t* md() const { return meta.as<int32_t>(); }

  void grow(cuda::DeviceBuffer& b, size_t bytes) {
    if (bytes == 0 || b.bytes() >= bytes) return;
    b.reserve(bytes);
    ++generation;
  }
  // Graphs are valid while no memory they read moved since they were captured.
  bool graphs_stale() const {
    return generation != graph_generation || mm->scratch().data() != graph_scratch ||
           mm->workspace().data() != graph_workspace;
  }
  void drop_stale_graphs() {
    if (!graphs_stale()) return;
    graphs.clear();
    graph_generation = generation;
    graph_scratch = mm->scratch().data();
    graph_workspace = mm->workspace().data();
  }

  cuda::PagedKV kv(int l) const {
    cuda::PagedKV p;
    p.k = static_cast<uint8_t*>(k_cache.data()) + kv_layer_bytes * static_cast<uint64_t>(l);
    p.v = static_cast<uint8_t*>(v_cache.data()) + kv_layer_bytes * static_cast<uint64_t>(l);
    p.type = kv_shape.type;
    p.block_size = kv_shape.block_size;
    p.n_kv_heads = kv_shape.n_kv_heads;
    p.head_dim = kv_shape.head_dim;
    return p;
  }

  // Blocks until the stream is idle, within the collectives' deadline.
  void wait() {
    if (comm && tp > 1) {
      comm->wait(s());
    } else {
      stream->synchronize();
    }
  }

  // Host row indices (and their weights, when given) to the device, stream-
  // ordered after the work before: [rows as int32 | weights as f32].
  const int32_t* upload_rows(std::span<const int64_t> rows, std::span<const float> weights = {}) {
    std::vector<int32_t> w(rows.begin(), rows.end());
    grow(index, (w.size() + weights.size()) * sizeof(int32_t));
    int32_t* dst = index.as<int32_t>();
    cuda::check(cudaMemcpyAsync(dst, w.data(), w.size() * sizeof(int32_t), cudaMemcpyHostToDevice, s()),
                "cudaMemcpyAsync (row indices)");
    if (!weights.empty()) {
      cuda::check(cudaMemcpyAsync(dst + w.size(), weights.data(), weights.size_bytes(), cudaMemcpyHostToDevice, s()),
                  "cudaMemcpyAsync (row weights)");
    }
    return dst;
  }

  void fill_meta(const Batch& b);
};

void CudaDevice::check_supported(const ModelSource& src, DType kv_type) {
  check_kv_type(kv_type);
  // Matrices are uploaded in their file type; vectors are widened to f32 on the host.
  for (const TensorInfo& t : src.tensors()) {
    if (t.shape.size() >= 2) check_weight_type(t);
  }
}

CudaDevice::CudaDevice(const CudaDeviceOptions& options, cuda::DeviceCommunicator* comm)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.opt = options;
  m.comm = comm;
  if (comm) {
    m.tp = comm->size();
    m.tp_rank = comm->rank();
  }
  cuda::DeviceGuard guard(options.device);
  const cuda::DeviceInfo info = cuda::device_info(options.device);
  m.name = cat("cuda:", options.device, " (", info.name, ")");
  m.stream = std::make_unique<cuda::Stream>();
  m.mm = std::make_unique<cuda::MatmulContext>(m.stream->get());
}

CudaDevice::~CudaDevice() {
  if (!impl_) return;
  // Free on the device, after its stream is idle.
  try {
    cuda::DeviceGuard guard(impl_->opt.device);
    if (impl_->stream) cudaStreamSynchronize(impl_->stream->get());
    impl_.reset();
  } catch (...) {
  }
}

std::string CudaDevice::name() const { return impl_->name; }
int CudaDevice::rank() const { return impl_->tp_rank; }
int CudaDevice::size() const { return impl_->tp; }
const Batch& CudaDevice::batch() const { return *impl_->batch; }
uint64_t CudaDevice::graph_replays() const { return impl_->replays; }
uint64_t CudaDevice::graph_captures() const { return impl_->captures; }
const std::string& CudaDevice::graph_error() const { return impl_->graph_error; }

DeviceMemory CudaDevice::alloc(size_t bytes) {
  if (bytes == 0) return {};
  cuda::DeviceGuard guard(impl_->opt.device);
  void* p = nullptr;
  cuda::check(cudaMalloc(&p, bytes), "cudaMalloc");
  ++impl_->generation;
  return DeviceMemory(p, bytes, [](void* q) { cudaFree(q); });
}

std::unique_ptr<DeviceWeight> CudaDevice::upload_weight(ShardedTensor t, WeightUse /*use: one layout serves both*/) {
  if (!cuda::supported_weight_type(t.type())) {
    throw ConfigError(cat("--device cuda: a weight of type ", dtype_name(t.type()),
                          ", which the CUDA kernels do not support; supported: f32, f16, bf16, q8_0, q4_0, q4_k"));
  }
  cuda::DeviceGuard guard(impl_->opt.device);
  return std::make_unique<CudaWeight>(t);
}

void CudaDevice::upload(const void* host, size_t bytes, void* dst) {
  if (bytes == 0) return;
  cuda::DeviceGuard guard(impl_->opt.device);
  // From pageable memory: staged before the call returns, written in stream order.
  cuda::check(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, impl_->s()), "cudaMemcpyAsync (upload)");
}

void CudaDevice::download(const float* src, int64_t rows, int64_t cols, float* host, int64_t host_stride) {
  if (rows <= 0 || cols <= 0) return;
  Impl& m = *impl_;
  m.downloads.push_back({src, rows, cols, host, host_stride, m.staged});
  m.staged += static_cast<size_t>(rows * cols);
}

void CudaDevice::read_to_host(const float* src, size_t n, float* host) {
  if (n == 0) return;
  impl_->wait();
  cuda::check(cudaMemcpy(host, src, n * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy (read to host)");
}

void CudaDevice::allocate_kv(const KvCacheShape& shape) {
  Impl& m = *impl_;
  check_kv_type(shape.type);
  if (shape.n_blocks < 1 || shape.block_size < 1) {
    throw ConfigError(cat("--device cuda: a KV cache of ", shape.n_blocks, " blocks of ", shape.block_size, " tokens"));
  }
  cuda::DeviceGuard guard(m.opt.device);
  m.kv_shape = shape;
  // The engine's blocks plus one spare that only padding tokens touch.
  m.trash_block = shape.n_blocks;
  const uint64_t slots = static_cast<uint64_t>(shape.n_blocks + 1) * static_cast<uint64_t>(shape.block_size);
  m.kv_layer_bytes = slots * static_cast<uint64_t>(shape.n_kv_heads) * static_cast<uint64_t>(shape.head_dim) * 2;
  const uint64_t total = m.kv_layer_bytes * static_cast<uint64_t>(shape.n_layers);
  m.k_cache = cuda::DeviceBuffer();
  m.v_cache = cuda::DeviceBuffer();
  ++m.generation;
  if (total == 0) return;
  m.k_cache = cuda::DeviceBuffer(total);
  m.v_cache = cuda::DeviceBuffer(total);
  // Zeros, so a padding token's attention over the spare block reads finite values.
  cuda::check(cudaMemsetAsync(m.k_cache.data(), 0, total, m.s()), "cudaMemsetAsync");
  cuda::check(cudaMemsetAsync(m.v_cache.data(), 0, total, m.s()), "cudaMemsetAsync");
  m.stream->synchronize();
}

uint64_t CudaDevice::kv_bytes() const {
  return 2 * impl_->kv_layer_bytes * static_cast<uint64_t>(impl_->kv_shape.n_layers);
}

// The batch's metadata into the pinned staging buffer; tokens past the batch
// (padding) are token 0 at position 0 of the padding sequence, whose block
// table is the spare block.
void CudaDevice::Impl::fill_meta(const Batch& b) {
  int32_t* w = meta_host.as<int32_t>();
  const int64_t n = b.size();
  const int bs = kv_shape.block_size;
  const auto pad_seq = static_cast<int32_t>(lay.seqs - 1);
  int64_t o = 0;
  for (int64_t t = 0; t < lay.n; ++t) {
    const bool real = t < n;
    const auto i = static_cast<size_t>(t);
    const int32_t pos = real ? b.positions[i] : 0;
    w[lay.tokens() + t] = real ? b.tokens[i] : 0;
    w[lay.positions() + t] = pos;
    w[lay.seq() + t] = real ? b.seq[i] : pad_seq;
    int32_t slot = trash_block * bs;
    if (real) {
      const auto& table = b.sequences.at(static_cast<size_t>(b.seq[i])).block_table;
      if (pos < 0 || pos / bs >= static_cast<int32_t>(table.size())) {
        throw Error(cat("position ", pos, " has no KV block (", table.size(), " blocks of ", bs, ")"));
      }
      const int32_t block = table[static_cast<size_t>(pos / bs)];
      if (block < 0 || block >= kv_shape.n_blocks) {
        throw Error(cat("KV block ", block, " outside the cache of ", kv_shape.n_blocks));
      }
      slot = block * bs + pos % bs;
      if (b.want_logits[i]) w[lay.logit_rows() + o++] = static_cast<int32_t>(t);
    }
    w[lay.slots() + t] = slot;
  }
  for (; o < lay.n; ++o) w[lay.logit_rows() + o] = 0;  // rows past n_logits: computed, never read
  for (int64_t sq = 0; sq < lay.seqs; ++sq) {
    int32_t* row = w + lay.tables() + sq * lay.max_blocks;
    const std::vector<int32_t>* table =
        sq < static_cast<int64_t>(b.sequences.size()) ? &b.sequences[static_cast<size_t>(sq)].block_table : nullptr;
    for (int64_t k = 0; k < lay.max_blocks; ++k) {
      row[k] = table && k < static_cast<int64_t>(table->size()) ? (*table)[static_cast<size_t>(k)] : trash_block;
    }
  }
}

StepShape CudaDevice::begin_step(const Batch& batch, bool graphable) {
  Impl& m = *impl_;
  cuda::check(cudaSetDevice(m.opt.device), "cudaSetDevice");
  m.batch = &batch;
  m.downloads.clear();
  m.staged = 0;
  const int64_t n = batch.size();
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
  m.use_graph = graphable && m.graphs_on && m.opt.cuda_graphs && decode && n <= kMaxGraphBatch &&
                (m.tp == 1 || (m.comm && m.comm->capturable()));

  int64_t max_blocks = 1;
  for (const BatchSequence& sq : batch.sequences) max_blocks = std::max<int64_t>(max_blocks, sq.block_table.size());
  if (m.use_graph) {
    m.lay.n = next_pow2(n);
    m.lay.n_out = m.lay.n;
    m.lay.seqs = m.lay.n + 1;
    m.lay.max_blocks = next_pow2(max_blocks);
  } else {
    m.lay.n = n;
    m.lay.n_out = batch.n_logits();
    m.lay.seqs = static_cast<int64_t>(batch.sequences.size()) + 1;
    m.lay.max_blocks = max_blocks;
  }
  const size_t meta_bytes = static_cast<size_t>(m.lay.words()) * sizeof(int32_t);
  m.grow(m.meta, meta_bytes);
  m.meta_host.reserve(meta_bytes);
  m.fill_meta(batch);
  cuda::check(cudaMemcpyAsync(m.meta.data(), m.meta_host.as<int32_t>(), meta_bytes, cudaMemcpyHostToDevice, m.s()),
              "cudaMemcpyAsync (batch metadata)");
  return StepShape{m.lay.n, m.lay.n_out};
}

void CudaDevice::run_step(const std::function<void()>& layers) {
  Impl& m = *impl_;
  if (!m.use_graph) {
    layers();
    return;
  }
  m.drop_stale_graphs();
  const auto key = std::make_pair(m.lay.n, m.lay.max_blocks);
  auto it = m.graphs.find(key);
  if (it != m.graphs.end()) {
    cuda::check(cudaGraphLaunch(it->second->exec, m.s()), "cudaGraphLaunch");
    ++m.replays;
    return;
  }
  // Run it once for real (grows any scratch, gives this step's result), then
  // record the same work; capturing does not execute it.
  layers();
  m.drop_stale_graphs();
  cudaGraph_t g = nullptr;
  try {
    cuda::check(cudaStreamBeginCapture(m.s(), cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    try {
      layers();
    } catch (...) {
      cudaStreamEndCapture(m.s(), &g);
      throw;
    }
    cuda::check(cudaStreamEndCapture(m.s(), &g), "cudaStreamEndCapture");
    if (m.graphs_stale()) throw Error("device memory was allocated during graph capture");
    auto graph = std::make_unique<Impl::Graph>();
    cuda::check(cudaGraphInstantiate(&graph->exec, g, 0), "cudaGraphInstantiate");
    cudaGraphDestroy(g);
    g = nullptr;
    m.graphs[key] = std::move(graph);
    ++m.captures;
  } catch (const std::exception& e) {
    // The eager run above already computed this step; carry on without graphs.
    if (g) cudaGraphDestroy(g);
    cudaGetLastError();
    m.graphs.clear();
    m.graphs_on = false;
    m.graph_error = e.what();
  }
}

void CudaDevice::end_step() {
  Impl& m = *impl_;
  if (m.staged > 0) {
    m.staging.reserve(m.staged * sizeof(float));
    for (const Impl::Download& d : m.downloads) {
      const size_t row = static_cast<size_t>(d.cols) * sizeof(float);
      cuda::check(cudaMemcpyAsync(m.staging.as<float>() + d.offset, d.src, row * static_cast<size_t>(d.rows),
                                  cudaMemcpyDeviceToHost, m.s()),
                  "cudaMemcpyAsync (download)");
    }
  }
  m.wait();
  for (const Impl::Download& d : m.downloads) {
    const float* from = m.staging.as<float>() + d.offset;
    for (int64_t r = 0; r < d.rows; ++r) {
      std::memcpy(d.host + r * d.host_stride, from + r * d.cols, static_cast<size_t>(d.cols) * sizeof(float));
    }
  }
  m.downloads.clear();
  m.staged = 0;
}

void CudaDevice::matmul(const DeviceWeight& w, const float* x, int64_t n, float* y) {
  if (w.rows() == 0 || n == 0) return;
  if (w.cols() == 0) {
    zero(y, n * w.rows());
    return;
  }
  cuda::matmul(*impl_->mm, matrix(w), x, n, y);
}

void CudaDevice::embed(const DeviceWeight& table, int64_t row_begin, float* out) {
  const Impl& m = *impl_;
  cuda::embed(matrix(table), m.md() + m.lay.tokens(), m.lay.n, row_begin, out, m.s());
}

void CudaDevice::rms_norm(const float* x, int64_t x_stride, const float* w, int64_t rows, int64_t dim, float eps,
                          float* y, int64_t y_stride) {
  cuda::rms_norm(x, x_stride, w, rows, dim, eps, y, y_stride, impl_->s());
}

void CudaDevice::rope(float* x, int64_t row_stride, int n_heads, int head_dim, const float* inv_freq, RopeStyle style) {
  const Impl& m = *impl_;
  if (n_heads == 0) return;
  cuda::rope(x, m.lay.n, row_stride, n_heads, head_dim, m.md() + m.lay.positions(), inv_freq,
             style != RopeStyle::Interleaved, m.s());
}

void CudaDevice::attention(int layer, const float* qkv, int64_t row, const AttnHeads& h, float scale, float* out) {
  const Impl& m = *impl_;
  if (h.n_kv == 0) return;
  const cuda::PagedKV cache = m.kv(layer);
  const int64_t hd = h.head_dim;
  cuda::kv_store(cache, qkv, row, h.n_q * hd, (h.n_q + h.n_kv) * hd, m.md() + m.lay.slots(), m.lay.n, m.s());
  if (h.n_q == 0) return;
  cuda::AttnBatch ab;
  ab.positions = m.md() + m.lay.positions();
  ab.seq = m.md() + m.lay.seq();
  ab.block_tables = m.md() + m.lay.tables();
  ab.max_blocks = static_cast<int>(m.lay.max_blocks);
  ab.n_tokens = m.lay.n;
  cuda::paged_attention(qkv, row, cache, ab, h.n_q, h.q_begin, h.heads_per_kv, h.kv_begin, scale, out, h.n_q * hd,
                        m.s());
}

void CudaDevice::swiglu(const float* gu, int64_t n, int64_t ffn, float* out) {
  cuda::swiglu(gu, n, ffn, out, impl_->s());
}

void CudaDevice::add(float* y, const float* x, int64_t n) { cuda::add(y, x, n, impl_->s()); }

void CudaDevice::add_bias(float* y, const float* bias, int64_t n, int64_t dim) {
  cuda::add_bias(y, bias, n, dim, impl_->s());
}

void CudaDevice::zero(float* y, int64_t n) {
  if (n <= 0) return;
  cuda::check(cudaMemsetAsync(y, 0, static_cast<size_t>(n) * sizeof(float), impl_->s()), "cudaMemsetAsync");
}

void CudaDevice::gather_logit_rows(const float* src, int64_t dim, float* dst) {
  const Impl& m = *impl_;
  cuda::gather_rows(src, m.md() + m.lay.logit_rows(), m.lay.n_out, dim, dst, m.s());
}

void CudaDevice::gather_rows(const float* src, std::span<const int64_t> rows, int64_t dim, float* dst) {
  if (rows.empty()) return;
  const int32_t* idx = impl_->upload_rows(rows);
  cuda::gather_rows(src, idx, static_cast<int64_t>(rows.size()), dim, dst, impl_->s());
}

void CudaDevice::add_rows_scaled(float* out, std::span<const int64_t> rows, std::span<const float> weights,
                                 const float* ys, int64_t dim) {
  if (rows.empty()) return;
  Impl& m = *impl_;
  const int32_t* idx = m.upload_rows(rows, weights);
  const auto* w = reinterpret_cast<const float*>(idx + rows.size());
  cuda::add_rows_scaled(out, idx, w, ys, static_cast<int64_t>(rows.size()), dim, m.s());
}

void CudaDevice::add_sigmoid_gated(float* out, const float* h, const float* w, const float* ys, int64_t n,
                                   int64_t dim) {
  cuda::add_sigmoid_gated(out, h, w, ys, n, dim, impl_->s());
}

void CudaDevice::all_reduce_sum(float* data, size_t n) {
  Impl& m = *impl_;
  if (m.comm && m.tp > 1) m.comm->all_reduce_sum(data, n, m.s());
}

// The device communicator gathers equal counts: unequal ones go through a
// buffer padded to the largest, then each rank's part is moved into place.
void CudaDevice::all_gather(const float* send, std::span<const size_t> counts, float* recv) {
  Impl& m = *impl_;
  if (!m.comm || m.tp == 1) {
    if (counts[0] > 0 && recv != send) {
      cuda::check(cudaMemcpyAsync(recv, send, counts[0] * sizeof(float), cudaMemcpyDeviceToDevice, m.s()),
                  "cudaMemcpyAsync (gather)");
    }
    return;
  }
  const size_t most = *std::max_element(counts.begin(), counts.end());
  if (std::all_of(counts.begin(), counts.end(), [&](size_t c) { return c == most; })) {
    m.comm->all_gather(send, most, recv, m.s());
    return;
  }
  if (most == 0) return;
  const size_t mine = counts[static_cast<size_t>(m.tp_rank)];
  m.grow(m.gather_pad, most * sizeof(float));
  m.grow(m.gather_all, most * counts.size() * sizeof(float));
  if (mine > 0) {
    cuda::check(cudaMemcpyAsync(m.gather_pad.data(), send, mine * sizeof(float), cudaMemcpyDeviceToDevice, m.s()),
                "cudaMemcpyAsync (gather)");
  }
  m.comm->all_gather(m.gather_pad.as<float>(), most, m.gather_all.as<float>(), m.s());
  size_t at = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    if (counts[r] > 0) {
      cuda::check(cudaMemcpyAsync(recv + at, m.gather_all.as<float>() + r * most, counts[r] * sizeof(float),
                                  cudaMemcpyDeviceToDevice, m.s()),
                  "cudaMemcpyAsync (gather)");
    }
    at += counts[r];
  }
}

}  // namespace tpinfer
