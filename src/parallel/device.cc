#include "parallel/device.h"

namespace tpinfer {

DeviceMemory Device::upload(std::span<const float> values) {
  DeviceMemory m = alloc(values.size_bytes());
  if (!values.empty()) upload(values.data(), values.size_bytes(), m.data());
  return m;
}

float* reserve_f32(Device& dev, DeviceMemory& m, size_t floats) {
  if (m.bytes() < floats * sizeof(float)) m = dev.alloc(floats * sizeof(float));
  return m.f32();
}

}  // namespace tpinfer
