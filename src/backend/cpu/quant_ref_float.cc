// Scalar references for the plain float formats F32, F16 and BF16: widen to
// f32, narrow from f32 (round to nearest even), and the dot product with an
// f32 activation row in double.

#include <cstring>

#include "backend/cpu/quant_ref_internal.h"

namespace tpinfer::cpu::ref {
namespace {

// Plain-type rows may start at any address (a strided view of a row shard):
// elements are read and written through memcpy.
template <typename T>
inline T elem(const void* p, int64_t i) {
  T v;
  std::memcpy(&v, static_cast<const uint8_t*>(p) + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
  return v;
}
template <typename T>
inline void put_elem(void* p, int64_t i, T v) {
  std::memcpy(static_cast<uint8_t*>(p) + i * static_cast<int64_t>(sizeof(T)), &v, sizeof(T));
}

}  // namespace

void deq_f32(const void* src, float* dst, int64_t n) { std::memcpy(dst, src, static_cast<size_t>(n) * 4); }

void deq_f16(const void* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = h2f(elem<uint16_t>(src, i));
}

void deq_bf16(const void* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(elem<uint16_t>(src, i));
}

void q_f32(const float* src, void* dst, int64_t n) { std::memcpy(dst, src, static_cast<size_t>(n) * 4); }

void q_f16(const float* src, void* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) put_elem<uint16_t>(dst, i, f2h(src[i]));
}

void q_bf16(const float* src, void* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) put_elem<uint16_t>(dst, i, f32_to_bf16(src[i]));
}

double dot_f32(int64_t n, const void* w, const void* a) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(elem<float>(w, i)) * elem<float>(a, i);
  return s;
}

double dot_f16(int64_t n, const void* w, const void* a) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(h2f(elem<uint16_t>(w, i))) * elem<float>(a, i);
  return s;
}

double dot_bf16(int64_t n, const void* w, const void* a) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(bf16_to_f32(elem<uint16_t>(w, i))) * elem<float>(a, i);
  return s;
}

}  // namespace tpinfer::cpu::ref
