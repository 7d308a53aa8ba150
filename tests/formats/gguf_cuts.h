// The 50 offsets at which the hostile-input tests cut a GGUF file short (the
// library test in gguf_hostile_test.cc and the CLI test in
// tests/cli/truncated_gguf_cli_test.cc cut the same places): 25 through the
// header, metadata and tensor index, quadratically spaced so they are dense at
// the start where the fields are small, and 25 through the tensor data, the last
// one a single byte short of the data's end.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "formats/gguf.h"

namespace tpinfer::testing {

struct GgufCuts {
  uint64_t first_data = UINT64_MAX;  // offset of the first tensor's data
  uint64_t data_end = 0;             // end of the last tensor's data
  std::vector<uint64_t> cuts;
};

inline GgufCuts gguf_truncation_offsets(const std::string& path) {
  GgufCuts c;
  const auto f = GgufFile::open(path);
  for (const TensorInfo& t : f->tensors()) {
    c.data_end = std::max(c.data_end, t.offset + t.nbytes);
    c.first_data = std::min(c.first_data, t.offset);
  }
  for (uint64_t i = 0; i < 25; ++i) c.cuts.push_back(i * i * c.first_data / (25 * 25) + i);
  for (uint64_t i = 0; i < 25; ++i) {
    c.cuts.push_back(c.first_data + (c.data_end - c.first_data) * i / 24 - (i == 24 ? 1 : 0));
  }
  return c;
}

}  // namespace tpinfer::testing
