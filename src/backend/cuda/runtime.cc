#include "backend/cuda/runtime.h"

#include <utility>

#include "core/error.h"

namespace tpinfer::cuda {

void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  throw Error(cat("CUDA error in ", what, ": ", cudaGetErrorName(err), ": ", cudaGetErrorString(err)));
}

namespace {

// cudaGetDeviceCount's answer, with the error that explains a zero.
struct Probe {
  int count = 0;
  std::string reason;
};

Probe probe() {
  Probe p;
  const cudaError_t err = cudaGetDeviceCount(&p.count);
  if (err != cudaSuccess) {
    p.count = 0;
    p.reason = err == cudaErrorInsufficientDriver || err == cudaErrorNoDevice
                   ? cat(err == cudaErrorNoDevice ? "no CUDA device" : "no CUDA driver", " (", cudaGetErrorString(err),
                         ")")
                   : cat("CUDA unavailable: ", cudaGetErrorName(err), ": ", cudaGetErrorString(err));
    cudaGetLastError();  // clear the sticky error of a failed probe
  } else if (p.count == 0) {
    p.reason = "no CUDA device";
  }
  return p;
}

const Probe& cached_probe() {
  static const Probe p = probe();
  return p;
}

}  // namespace

int device_count() { return cached_probe().count; }
std::string unavailable_reason() { return cached_probe().reason; }

DeviceInfo device_info(int device) {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  DeviceInfo info;
  info.index = device;
  info.name = prop.name;
  info.sm_major = prop.major;
  info.sm_minor = prop.minor;
  info.total_bytes = prop.totalGlobalMem;
  info.multiprocessors = prop.multiProcessorCount;
  return info;
}

DeviceGuard::DeviceGuard(int device) {
  check(cudaGetDevice(&previous_), "cudaGetDevice");
  check(cudaSetDevice(device), "cudaSetDevice");
}

DeviceGuard::~DeviceGuard() { cudaSetDevice(previous_); }

DeviceBuffer::DeviceBuffer(size_t bytes) { reserve(bytes); }

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void DeviceBuffer::reserve(size_t bytes) {
  if (bytes <= bytes_) return;
  if (ptr_) {
    check(cudaFree(ptr_), "cudaFree");
    ptr_ = nullptr;
    bytes_ = 0;
  }
  const cudaError_t err = cudaMalloc(&ptr_, bytes);
  if (err != cudaSuccess) {
    ptr_ = nullptr;
    cudaGetLastError();
    throw Error(cat("CUDA out of memory: cudaMalloc of ", bytes, " bytes failed: ", cudaGetErrorString(err)));
  }
  bytes_ = bytes;
}

void DeviceBuffer::upload(const void* host, size_t bytes, size_t offset) {
  if (offset > bytes_ || bytes > bytes_ - offset) {
    throw Error(cat("upload of ", bytes, " bytes at offset ", offset, " into a device buffer of ", bytes_));
  }
  if (bytes == 0) return;
  check(cudaMemcpy(static_cast<char*>(ptr_) + offset, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy (upload)");
}

void DeviceBuffer::download(void* host, size_t bytes, size_t offset) const {
  if (offset > bytes_ || bytes > bytes_ - offset) {
    throw Error(cat("download of ", bytes, " bytes at offset ", offset, " from a device buffer of ", bytes_));
  }
  if (bytes == 0) return;
  check(cudaMemcpy(host, static_cast<const char*>(ptr_) + offset, bytes, cudaMemcpyDeviceToHost),
        "cudaMemcpy (download)");
}

Stream::Stream() { check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate"); }

Stream::~Stream() {
  if (stream_) cudaStreamDestroy(stream_);
}

Stream::Stream(Stream&& other) noexcept : stream_(std::exchange(other.stream_, nullptr)) {}

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    if (stream_) cudaStreamDestroy(stream_);
    stream_ = std::exchange(other.stream_, nullptr);
  }
  return *this;
}

void Stream::synchronize() const { check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

Event::Event(bool timing) {
  check(cudaEventCreateWithFlags(&event_, timing ? cudaEventDefault : cudaEventDisableTiming), "cudaEventCreate");
}

Event::~Event() {
  if (event_) cudaEventDestroy(event_);
}

Event::Event(Event&& other) noexcept : event_(std::exchange(other.event_, nullptr)) {}

Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    if (event_) cudaEventDestroy(event_);
    event_ = std::exchange(other.event_, nullptr);
  }
  return *this;
}

void Event::record(cudaStream_t stream) const { check(cudaEventRecord(event_, stream), "cudaEventRecord"); }

bool Event::done() const {
  const cudaError_t err = cudaEventQuery(event_);
  if (err == cudaErrorNotReady) return false;
  check(err, "cudaEventQuery");
  return true;
}

}  // namespace tpinfer::cuda
