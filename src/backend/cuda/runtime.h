// The CUDA runtime as the rest of tpinfer sees it: every CUDA failure becomes
// a tpinfer::Error naming the call, and device memory, streams and events are
// RAII objects (freed on destruction, movable, never copied).
//
// Built only when CMake finds CUDA (TPINFER_HAVE_CUDA). Nothing here needs a GPU
// to be present until it is called: device_count() returns 0 and
// unavailable_reason() says why (no driver, no device) without throwing, which
// is how tests skip visibly and `--device cuda` explains itself.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace tpinfer::cuda {

// Throws Error("CUDA error in <what>: <name>: <description>") unless err is cudaSuccess.
void check(cudaError_t err, const char* what);

// Usable GPUs; 0 when there is no driver or no device. Never throws.
int device_count();
// Why device_count() is 0 ("no CUDA driver (...)", "no CUDA device"); empty otherwise.
std::string unavailable_reason();

struct DeviceInfo {
  int index = 0;
  std::string name;
  int sm_major = 0, sm_minor = 0;
  uint64_t total_bytes = 0;
  int multiprocessors = 0;
};
DeviceInfo device_info(int device);

// Makes `device` current for its lifetime and restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

// `bytes` of memory on the device that was current at construction.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }
  // Makes the buffer at least `bytes` long; the contents are lost when it grows.
  void reserve(size_t bytes);
  // Synchronous copies (tests, loading); offsets and sizes are checked.
  void upload(const void* host, size_t bytes, size_t offset = 0);
  void download(void* host, size_t bytes, size_t offset = 0) const;

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// A non-blocking stream on the current device.
class Stream {
 public:
  Stream();
  ~Stream();
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  cudaStream_t get() const { return stream_; }
  void synchronize() const;

 private:
  cudaStream_t stream_ = nullptr;
};

// An event without timing (cheap) unless `timing` is set.
class Event {
 public:
  explicit Event(bool timing = false);
  ~Event();
  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  cudaEvent_t get() const { return event_; }
  void record(cudaStream_t stream) const;
  // True once the work before the last record() has finished; throws on a device error.
  bool done() const;

 private:
  cudaEvent_t event_ = nullptr;
};

}  // namespace tpinfer::cuda
