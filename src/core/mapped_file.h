// A read-only memory mapping of a whole file (RAII). Model weights are read
// straight from the mapping: a rank touches only the pages of its own shard.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace tpinfer {

class MappedFile {
 public:
  // Maps `path` read-only. Throws Error naming the file if it cannot be opened.
  explicit MappedFile(std::string path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, static_cast<size_t>(size_)}; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace tpinfer
