// What the files of the Interpreter share: interpreter.cc (rendering,
// accounting, statements, macros and loops), interpreter_expressions.cc
// (expressions, attribute and item access) and operators.cc (Python's
// operators). Internal to the jinja layer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "jinja/interpreter.h"

namespace tpinfer::jinja {

// a - b, or TemplateError("OverflowError: ...") past 64 bits (operators.cc).
int64_t sub_checked(int64_t a, int64_t b);

// RAII guards of the interpreter's state: the runtime nesting depth (bounded by
// Limits::max_depth), the current scope, and where output goes.
class Interpreter::DepthGuard {
 public:
  explicit DepthGuard(Interpreter* in) : in_(in) {
    if (++in_->depth_ > in_->config_.limits.max_depth) {
      --in_->depth_;
      throw TemplateError(cat("template nesting exceeds ", in_->config_.limits.max_depth, " levels"));
    }
  }
  ~DepthGuard() { --in_->depth_; }
  DepthGuard(const DepthGuard&) = delete;
  DepthGuard& operator=(const DepthGuard&) = delete;

 private:
  Interpreter* in_;
};

class Interpreter::ScopeGuard {
 public:
  ScopeGuard(Interpreter* in, std::shared_ptr<Scope> s) : in_(in), saved_(std::move(in->scope_)) {
    in_->scope_ = std::move(s);
  }
  ~ScopeGuard() { in_->scope_ = std::move(saved_); }
  ScopeGuard(const ScopeGuard&) = delete;
  ScopeGuard& operator=(const ScopeGuard&) = delete;

 private:
  Interpreter* in_;
  std::shared_ptr<Scope> saved_;
};

class Interpreter::OutputGuard {
 public:
  OutputGuard(Interpreter* in, std::string* out) : in_(in), saved_(in->out_) { in_->out_ = out; }
  ~OutputGuard() { in_->out_ = saved_; }
  OutputGuard(const OutputGuard&) = delete;
  OutputGuard& operator=(const OutputGuard&) = delete;

 private:
  Interpreter* in_;
  std::string* saved_;
};

}  // namespace tpinfer::jinja
