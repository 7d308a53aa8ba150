// What one pipeline stage sends the next, and the last stage the driver: a
// fixed header, then a payload whose layout this file alone knows.
//
//   header   command, words, rows, stages                      (four int32)
//   payload  batch words        int32 [words]                  (Run only)
//            rows               f32   [rows, width]            Run: the residual
//                                                              stream (width hidden);
//                                                              Logits: [n_logits, vocab]
//                                                              or the ranks' summaries
//                                                              (width tp x summary_floats)
//            forward nanos      int64 [stages]                 one per stage so far
//            expert loads       int64 [loads]                  MoE routing counts of
//                                                              those stages (engine/stats.h)
//
// The header travels first so the receiver can size the payload; Stop is a
// header alone. The driver's broadcast to stage 0 is not a stage message: it
// is two int32 (the command, the number of batch words), then the words.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tpinfer {

enum class StageCommand : int32_t { Run = 1, Stop = 2, Logits = 3, Report = 4 };

struct StageHeader {
  int32_t command = 0;  // a StageCommand
  int32_t words = 0;    // batch words (Run)
  int32_t rows = 0;     // rows of the f32 block: tokens (Run) or logits rows (Logits)
  int32_t stages = 0;   // forward times carried: the stages that ran so far
};

class StageMessage {
 public:
  // Writes a whole message; `width` is the f32 row length (hidden, vocab, or
  // the width of a step's summarised logits rows).
  void encode(StageCommand command, const std::vector<int32_t>& words, const float* rows, int64_t n_rows, int64_t width,
              const std::vector<int64_t>& nanos, const std::vector<int64_t>& loads);

  // The receiving side: checks a header received from world rank `from`
  // against what must come (the command, the number of stages), throws Error
  // naming the sender when it is malformed, and sizes the payload to receive.
  // `loads` is the number of expert-load words `stages` stages carry.
  void expect(const StageHeader& header, StageCommand command, int stages, int64_t width, size_t loads, int from);

  const StageHeader& header() const { return header_; }
  uint8_t* payload() { return payload_.data(); }
  const uint8_t* payload() const { return payload_.data(); }
  size_t payload_size() const { return payload_.size(); }

  // The payload's parts, after encode() or once expect()'s payload arrived.
  void words(std::vector<int32_t>& out) const;
  const float* rows() const { return reinterpret_cast<const float*>(payload_.data() + rows_at_); }
  size_t row_bytes() const { return nanos_at_ - rows_at_; }
  void nanos(std::vector<int64_t>& out) const;
  void loads(std::vector<int64_t>& out) const;

 private:
  void layout(const StageHeader& header, int64_t width, size_t loads);

  StageHeader header_;
  std::vector<uint8_t> payload_;
  size_t rows_at_ = 0, nanos_at_ = 0, loads_at_ = 0;
};

}  // namespace tpinfer
