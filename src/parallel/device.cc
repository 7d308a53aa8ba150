#include "parallel/device.h"

#include <vector>

namespace tpinfer {

DeviceMemory Device::upload(std::span<const float> values) {
  DeviceMemory m = alloc(values.size_bytes());
  if (!values.empty()) upload(values.data(), values.size_bytes(), m.data());
  return m;
}

void Device::summarize_logits(const float* logits, int64_t rows, int64_t cols, int64_t stride, int64_t first_id,
                              int top, bool lse, std::span<const PenaltyInputs> penalties, float* out) {
  if (rows <= 0) return;
  std::vector<float> host(static_cast<size_t>((rows - 1) * stride + cols)), summaries, scratch;
  read_to_host(logits, host.size(), host.data());
  summaries.resize(static_cast<size_t>(rows * summary_floats(top)));
  summarize_shard(host.data(), rows, cols, stride, first_id, top, lse, penalties, summaries.data(), scratch);
  upload(summaries.data(), summaries.size() * sizeof(float), out);
}

float* reserve_f32(Device& dev, DeviceMemory& m, size_t floats) {
  if (m.bytes() < floats * sizeof(float)) m = dev.alloc(floats * sizeof(float));
  return m.f32();
}

}  // namespace tpinfer
