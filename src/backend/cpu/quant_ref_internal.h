// The scalar reference routines of each block format, shared by the files that
// define them (quant_ref_float.cc, quant_ref_legacy.cc, quant_ref_kquant.cc) and
// the table in quant_ref.cc that dispatches on the type. Internal to
// backend/cpu: callers use quant.h.
//
// Every format has three routines: deq_<fmt> (row of blocks -> floats), q_<fmt>
// (floats -> row of blocks, GGML's reference rounding) and dot_<fmt> (weight row
// . activation row of vec_dot_type, accumulated in double: the test oracle).
#pragma once

#include <cmath>
#include <cstdint>

#include "backend/cpu/quant.h"
#include "core/half.h"

namespace tpinfer::cpu::ref {

inline float h2f(uint16_t h) { return f16_to_f32(h); }
inline uint16_t f2h(float f) { return f32_to_f16(f); }

// Signed value of largest magnitude (first one on ties) and that magnitude.
inline void signed_absmax(const float* x, int n, float* vmax, float* amax) {
  *vmax = 0.0f;
  *amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > *amax) {
      *amax = ax;
      *vmax = x[i];
    }
  }
}

// ---- F32, F16, BF16 (quant_ref_float.cc)
void deq_f32(const void* src, float* dst, int64_t n);
void deq_f16(const void* src, float* dst, int64_t n);
void deq_bf16(const void* src, float* dst, int64_t n);
void q_f32(const float* src, void* dst, int64_t n);
void q_f16(const float* src, void* dst, int64_t n);
void q_bf16(const float* src, void* dst, int64_t n);
double dot_f32(int64_t n, const void* w, const void* a);
double dot_f16(int64_t n, const void* w, const void* a);
double dot_bf16(int64_t n, const void* w, const void* a);

// ---- 32-value blocks, dotted with Q8_0 (quant_ref_legacy.cc): instantiated
// for BlockQ4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q8_1.
template <typename Block>
void deq_legacy(const void* src, float* dst, int64_t n);
template <typename Block>
double dot_legacy(int64_t n, const void* w, const void* a);
void q_q4_0(const float* x, void* dst, int64_t n);
void q_q4_1(const float* x, void* dst, int64_t n);
void q_q5_0(const float* x, void* dst, int64_t n);
void q_q5_1(const float* x, void* dst, int64_t n);
void q_q8_0(const float* x, void* dst, int64_t n);
void q_q8_1(const float* x, void* dst, int64_t n);

// ---- K-quants: 256-value super-blocks, dotted with Q8_K (quant_ref_kquant.cc)
void deq_q2_k(const void* src, float* dst, int64_t n);
void deq_q3_k(const void* src, float* dst, int64_t n);
void deq_q4_k(const void* src, float* dst, int64_t n);
void deq_q5_k(const void* src, float* dst, int64_t n);
void deq_q6_k(const void* src, float* dst, int64_t n);
void deq_q8_k(const void* src, float* dst, int64_t n);
void q_q2_k(const float* x, void* dst, int64_t n);
void q_q3_k(const float* x, void* dst, int64_t n);
void q_q4_k(const float* x, void* dst, int64_t n);
void q_q5_k(const float* x, void* dst, int64_t n);
void q_q6_k(const float* x, void* dst, int64_t n);
void q_q8_k(const float* x, void* dst, int64_t n);
double dot_q2_k(int64_t n, const void* w, const void* a);
double dot_q3_k(int64_t n, const void* w, const void* a);
// Q4_K (false) and Q5_K (true), instantiated for both.
template <bool kFiveBit>
double dot_q45_k(int64_t n, const void* w, const void* a);
double dot_q6_k(int64_t n, const void* w, const void* a);
double dot_q8_k(int64_t n, const void* w, const void* a);

}  // namespace tpinfer::cpu::ref
