// The scalar references of every block format behind one table: the public
// *_ref routines of quant.h (dequantize, quantize with GGML's reference
// rounding and, for the K-quants, its scale/min search, and the dot product with
// the activation format) and the scalar kernels of the dispatch table, which
// are these same routines. The routines themselves are by format family:
// quant_ref_float.cc (F32, F16, BF16), quant_ref_legacy.cc (the 32-value
// blocks), quant_ref_kquant.cc (the K-quants).
//
// Float expressions in the quantizers keep the evaluation order of GGML's
// reference quantizers (left to right, float accumulation in element order), so
// that rounding decisions and hence the bytes written agree with files made by
// GGML tools. Dot products accumulate in double: they are the test oracle.

#include <array>
#include <iterator>
#include <string_view>
#include <utility>

#include "backend/cpu/kernels.h"
#include "backend/cpu/quant.h"
#include "backend/cpu/quant_ref_internal.h"
#include "core/error.h"

namespace tpinfer::cpu {
namespace {

using namespace ref;  // the routines the table names

using DotRef = double (*)(int64_t, const void*, const void*);

struct RefEntry {
  DType type;
  DequantizeFn dequantize;
  QuantizeFn quantize;
  DotRef dot;
};

constexpr RefEntry kRefs[] = {
    {DType::F32, deq_f32, q_f32, dot_f32},
    {DType::F16, deq_f16, q_f16, dot_f16},
    {DType::BF16, deq_bf16, q_bf16, dot_bf16},
    {DType::Q4_0, deq_legacy<BlockQ4_0>, q_q4_0, dot_legacy<BlockQ4_0>},
    {DType::Q4_1, deq_legacy<BlockQ4_1>, q_q4_1, dot_legacy<BlockQ4_1>},
    {DType::Q5_0, deq_legacy<BlockQ5_0>, q_q5_0, dot_legacy<BlockQ5_0>},
    {DType::Q5_1, deq_legacy<BlockQ5_1>, q_q5_1, dot_legacy<BlockQ5_1>},
    {DType::Q8_0, deq_legacy<BlockQ8_0>, q_q8_0, dot_legacy<BlockQ8_0>},
    {DType::Q8_1, deq_legacy<BlockQ8_1>, q_q8_1, dot_legacy<BlockQ8_1>},
    {DType::Q2_K, deq_q2_k, q_q2_k, dot_q2_k},
    {DType::Q3_K, deq_q3_k, q_q3_k, dot_q3_k},
    {DType::Q4_K, deq_q4_k, q_q4_k, dot_q45_k<false>},
    {DType::Q5_K, deq_q5_k, q_q5_k, dot_q45_k<true>},
    {DType::Q6_K, deq_q6_k, q_q6_k, dot_q6_k},
    {DType::Q8_K, deq_q8_k, q_q8_k, dot_q8_k},
};

const RefEntry* find_ref(DType t) {
  for (const RefEntry& e : kRefs) {
    if (e.type == t) return &e;
  }
  return nullptr;
}

const RefEntry& ref_or_throw(DType t, const char* what) {
  const RefEntry* e = find_ref(t);
  if (e == nullptr) {
    throw Error(cat(what, ": tensor type ", static_cast<uint32_t>(t), " (",
                    dtype_info(static_cast<uint32_t>(t)) ? dtype_name(t) : std::string_view("unknown"),
                    ") is not supported"));
  }
  return *e;
}

template <DotRef kDot>
void gemm_scalar(int64_t n, const uint8_t* w, uint64_t w_stride, int64_t nr, const uint8_t* a, uint64_t a_stride,
                 int64_t nt, float* y, int64_t y_stride) {
  for (int64_t r = 0; r < nr; ++r) {
    for (int64_t t = 0; t < nt; ++t) {
      y[t * y_stride + r] = static_cast<float>(kDot(n, w + r * w_stride, a + t * a_stride));
    }
  }
}

template <size_t... I>
constexpr std::array<GemmFn, sizeof...(I)> make_scalar_gemms(std::index_sequence<I...>) {
  return {gemm_scalar<kRefs[I].dot>...};
}

}  // namespace

bool quant_supported(DType t) { return find_ref(t) != nullptr; }

DType vec_dot_type(DType w) {
  switch (w) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
      return DType::F32;
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q8_0:
    case DType::Q8_1:
      return DType::Q8_0;
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
    case DType::Q8_K:
      return DType::Q8_K;
    default:
      break;
  }
  ref_or_throw(w, "vec_dot_type");
  return DType::F32;  // unreachable: ref_or_throw threw
}

void dequantize_row_ref(DType t, const void* src, float* dst, int64_t n) {
  const RefEntry& e = ref_or_throw(t, "dequantize_row_ref");
  check_row_length(t, n, "dequantize_row_ref");
  e.dequantize(src, dst, n);
}

void quantize_row_ref(DType t, const float* src, void* dst, int64_t n) {
  const RefEntry& e = ref_or_throw(t, "quantize_row_ref");
  check_row_length(t, n, "quantize_row_ref");
  e.quantize(src, dst, n);
}

float vec_dot_ref(DType w_type, int64_t n, const void* w, const void* a) {
  const RefEntry& e = ref_or_throw(w_type, "vec_dot_ref");
  check_row_length(w_type, n, "vec_dot_ref");
  check_row_length(vec_dot_type(w_type), n, "vec_dot_ref");
  return static_cast<float>(e.dot(n, w, a));
}

void check_row_length(DType t, int64_t n, const char* what) {
  const uint32_t bs = dtype_info(t).block_size;
  if (n < 0 || n % bs != 0) {
    throw Error(cat(what, ": row length ", n, " is not a multiple of the ", dtype_name(t), " block size ", bs));
  }
}

void fill_scalar_kernels(KernelTable& table) {
  static constexpr auto gemms = make_scalar_gemms(std::make_index_sequence<std::size(kRefs)>());
  for (size_t i = 0; i < std::size(kRefs); ++i) {
    TypeKernels& k = table.at(kRefs[i].type);
    k.dequantize = kRefs[i].dequantize;
    k.quantize = kRefs[i].quantize;
    k.gemm = gemms[i];
  }
}

}  // namespace tpinfer::cpu
