// Where the benchmarks find ../shared/models: $TPINFER_SHARED_DIR/models, else
// the shared folder beside the source tree.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace tpinfer::bench {

inline std::string models_dir() {
  if (const char* env = std::getenv("TPINFER_SHARED_DIR")) return std::string(env) + "/models";
  const std::filesystem::path src = std::filesystem::path(__FILE__).parent_path().parent_path();
  return (src / ".." / "shared" / "models").string();
}

}  // namespace tpinfer::bench
