// Errors: every failure in tpinfer is an Error carrying enough context (file,
// offset, tensor, rank, operation) for a user to act on it. Libraries throw;
// front ends (cli/, server/) decide how to report and which exit code to use.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace tpinfer {

// Concatenates any streamable values into one string: cat("offset ", 12, ": bad").
template <typename... Args>
std::string cat(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// A model or data file that is malformed, truncated or unsupported.
class FormatError : public Error {
 public:
  using Error::Error;
};

// A user choice that cannot work (bad flag, invalid tensor-parallel size, ...).
class ConfigError : public Error {
 public:
  using Error::Error;
};

// A collective that failed or passed its deadline.
class CommError : public Error {
 public:
  using Error::Error;
};

}  // namespace tpinfer
