// A smaller model cut from a GGUF model: its first layers with its own
// embedding, final norm and lm_head, everything else as it is (tokenizer,
// hyper-parameters, tensor types). The cut shares the model's vocabulary, so
// it can draft for it (`tpinfer run --speculative draft`) where the model
// family has no small sibling.
#pragma once

#include <string>

namespace tpinfer {

// Writes the first `layers` layers of the GGUF model at `in` to `out`: every
// metadata key unchanged but `<arch>.block_count`, every global tensor, and
// the tensors of blk.0 .. blk.(layers - 1). Throws ConfigError when `layers`
// is outside [1, the model's layers], naming the range.
void cut_gguf_layers(const std::string& in, int layers, const std::string& out);

}  // namespace tpinfer
