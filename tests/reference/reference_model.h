// The oracle: a Llama-family forward pass in double precision with plain loops,
// no threads and no parallelism, straight from the model file's tensors
// (dequantized with the scalar reference routines), mixture-of-experts layers
// included (router softmax, top-k, renormalization, shared expert). Slow and
// obviously right.
#pragma once

#include <cstdint>
#include <vector>

#include "formats/model_source.h"

namespace tpinfer::reference {

// Logits at every position of `tokens` (row-major [tokens.size(), vocab]).
std::vector<double> forward(const ModelSource& src, const std::vector<int32_t>& tokens);

// Relative L2 distance ||a - b|| / ||b|| of two equally long vectors.
double rel_l2(const std::vector<float>& a, const std::vector<double>& b);
double rel_l2(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace tpinfer::reference
