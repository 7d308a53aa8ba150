// Dispatch of the row routines of quant.h through the per-level kernel tables.

#include "backend/cpu/quant.h"

#include <array>

#include "backend/cpu/kernels.h"
#include "core/error.h"

namespace tpinfer::cpu {
namespace {

// Entries of `own` that are set replace those of `base`.
KernelTable overlay(const KernelTable& base, const KernelTable& own) {
  KernelTable out = base;
  for (int i = 0; i < kMaxTypeId; ++i) {
    if (own.types[i].dequantize) out.types[i].dequantize = own.types[i].dequantize;
    if (own.types[i].quantize) out.types[i].quantize = own.types[i].quantize;
    if (own.types[i].gemm) out.types[i].gemm = own.types[i].gemm;
    if (own.types[i].gemm8) out.types[i].gemm8 = own.types[i].gemm8;
  }
  return out;
}

std::array<KernelTable, 3> build_tables() {
  // Filling a table only stores function pointers; nothing runs yet, so the
  // tables of levels this CPU lacks can be built (kernel_table refuses them).
  std::array<KernelTable, 3> tables;
  fill_scalar_kernels(tables[0]);
  fill_scalar_x8_kernels(tables[0]);
  KernelTable avx2;
  fill_avx2_kernels(avx2);
  tables[1] = overlay(tables[0], avx2);
  KernelTable avx512;
  fill_avx512_kernels(avx512);
  tables[2] = overlay(tables[1], avx512);
  return tables;
}

const TypeKernels& kernels_for(Isa isa, DType t, const char* what) {
  if (!quant_supported(t)) {
    throw Error(cat(what, ": tensor type ", static_cast<uint32_t>(t), " is not supported"));
  }
  return kernel_table(isa).at(t);
}

}  // namespace

const KernelTable& kernel_table(Isa isa) {
  if (!isa_supported(isa)) {
    throw Error(
        cat("instruction set ", isa_name(isa), " is not supported by this CPU (best: ", isa_name(cpu_isa()), ")"));
  }
  static const std::array<KernelTable, 3> tables = build_tables();
  return tables[static_cast<size_t>(isa)];
}

const char* active_isa() { return isa_name(dispatch_isa()); }

void dequantize_row(Isa isa, DType t, const void* src, float* dst, int64_t n) {
  const TypeKernels& k = kernels_for(isa, t, "dequantize_row");
  check_row_length(t, n, "dequantize_row");
  k.dequantize(src, dst, n);
}

void dequantize_row(DType t, const void* src, float* dst, int64_t n) { dequantize_row(dispatch_isa(), t, src, dst, n); }

void quantize_row(Isa isa, DType t, const float* src, void* dst, int64_t n) {
  const TypeKernels& k = kernels_for(isa, t, "quantize_row");
  check_row_length(t, n, "quantize_row");
  k.quantize(src, dst, n);
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) { quantize_row(dispatch_isa(), t, src, dst, n); }

float vec_dot(Isa isa, DType w_type, int64_t n, const void* w, const void* a) {
  const TypeKernels& k = kernels_for(isa, w_type, "vec_dot");
  check_row_length(w_type, n, "vec_dot");
  check_row_length(vec_dot_type(w_type), n, "vec_dot");
  float y = 0.0f;
  k.gemm(n, static_cast<const uint8_t*>(w), 0, 1, static_cast<const uint8_t*>(a), 0, 1, &y, 1);
  return y;
}

float vec_dot(DType w_type, int64_t n, const void* w, const void* a) {
  return vec_dot(dispatch_isa(), w_type, n, w, a);
}

}  // namespace tpinfer::cpu
