#include "engine/stage_message.h"

#include <cstring>

#include "core/error.h"

namespace tpinfer {

void StageMessage::layout(const StageHeader& header, int64_t width, size_t loads) {
  header_ = header;
  rows_at_ = static_cast<size_t>(header.words) * sizeof(int32_t);
  nanos_at_ = rows_at_ + static_cast<size_t>(header.rows) * static_cast<size_t>(width) * sizeof(float);
  loads_at_ = nanos_at_ + static_cast<size_t>(header.stages) * sizeof(int64_t);
  payload_.resize(loads_at_ + loads * sizeof(int64_t));
}

void StageMessage::encode(StageCommand command, const std::vector<int32_t>& words, const float* rows, int64_t n_rows,
                          int64_t width, const std::vector<int64_t>& nanos, const std::vector<int64_t>& loads) {
  layout(StageHeader{static_cast<int32_t>(command), static_cast<int32_t>(words.size()), static_cast<int32_t>(n_rows),
                     static_cast<int32_t>(nanos.size())},
         width, loads.size());
  if (!words.empty()) std::memcpy(payload_.data(), words.data(), rows_at_);
  if (nanos_at_ > rows_at_) std::memcpy(payload_.data() + rows_at_, rows, nanos_at_ - rows_at_);
  if (!nanos.empty()) std::memcpy(payload_.data() + nanos_at_, nanos.data(), loads_at_ - nanos_at_);
  if (!loads.empty()) std::memcpy(payload_.data() + loads_at_, loads.data(), payload_.size() - loads_at_);
}

void StageMessage::expect(const StageHeader& header, StageCommand command, int stages, int64_t width, size_t loads,
                          int from) {
  if (header.command != static_cast<int32_t>(command) || header.words < 0 || header.rows < 0 ||
      header.stages != stages || (command == StageCommand::Logits && header.words != 0)) {
    throw Error(cat("malformed stage message from rank ", from, " (command ", header.command, ", ", header.words,
                    " words, ", header.rows, " rows, ", header.stages, " stages; expected command ",
                    static_cast<int32_t>(command), " after ", stages, " stages)"));
  }
  layout(header, width, loads);
}

void StageMessage::words(std::vector<int32_t>& out) const {
  out.resize(static_cast<size_t>(header_.words));
  if (!out.empty()) std::memcpy(out.data(), payload_.data(), rows_at_);
}

void StageMessage::nanos(std::vector<int64_t>& out) const {
  out.resize(static_cast<size_t>(header_.stages));
  if (!out.empty()) std::memcpy(out.data(), payload_.data() + nanos_at_, loads_at_ - nanos_at_);
}

void StageMessage::loads(std::vector<int64_t>& out) const {
  out.resize((payload_.size() - loads_at_) / sizeof(int64_t));
  if (!out.empty()) std::memcpy(out.data(), payload_.data() + loads_at_, payload_.size() - loads_at_);
}

}  // namespace tpinfer
