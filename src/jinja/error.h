// Errors of the Jinja template engine (jinja_*.h). A template that does not parse
// is a malformed model file and throws FormatError (with line and column); a
// failure while rendering throws TemplateError. TemplateError::raised() tells the
// template's own raise_exception("...") (a message meant for the user, kept
// verbatim) from an engine-detected error (undefined value, type error, limit).
#pragma once

#include <string>

#include "core/error.h"

namespace tpinfer {

class TemplateError : public Error {
 public:
  // line: the template line the error happened on, 0 when unknown. The line is
  // appended to what() for engine errors, never to a raised message.
  explicit TemplateError(const std::string& message, bool raised = false, int line = 0)
      : Error(raised || line <= 0 ? message : cat(message, " (template line ", line, ")")),
        message_(message),
        raised_(raised),
        line_(line) {}

  const std::string& message() const { return message_; }
  bool raised() const { return raised_; }
  int line() const { return line_; }

 private:
  std::string message_;
  bool raised_;
  int line_;
};

}  // namespace tpinfer
