// What filters.cc and string_filters.cc share: the filters on strings and
// numbers, which the table of every filter in filters.cc names, and text_of.
// Internal to the jinja layer (find_filter, in builtins.h, is the interface).
#pragma once

#include <string>

#include "jinja/builtins.h"

namespace tpinfer::jinja {

// str() of a value as Jinja's soft_str does it: undefined is "".
inline std::string text_of(const Value& v) { return to_str(v); }

// Filters on strings and numbers.
Value f_abs(Interpreter& in, const Value& v, CallArgs& args);
Value f_capitalize(Interpreter& in, const Value& v, CallArgs& args);
Value f_center(Interpreter& in, const Value& v, CallArgs& args);
Value f_escape(Interpreter& in, const Value& v, CallArgs& args);
Value f_float(Interpreter& in, const Value& v, CallArgs& args);
Value f_format(Interpreter& in, const Value& v, CallArgs& args);
Value f_indent(Interpreter& in, const Value& v, CallArgs& args);
Value f_int(Interpreter& in, const Value& v, CallArgs& args);
Value f_lower(Interpreter& in, const Value& v, CallArgs& args);
Value f_upper(Interpreter& in, const Value& v, CallArgs& args);
Value f_replace(Interpreter& in, const Value& v, CallArgs& args);
Value f_round(Interpreter& in, const Value& v, CallArgs& args);
Value f_safe(Interpreter& in, const Value& v, CallArgs& args);
Value f_string(Interpreter& in, const Value& v, CallArgs& args);
Value f_title(Interpreter& in, const Value& v, CallArgs& args);
Value f_tojson(Interpreter& in, const Value& v, CallArgs& args);
Value f_trim(Interpreter& in, const Value& v, CallArgs& args);
Value f_truncate(Interpreter& in, const Value& v, CallArgs& args);
Value f_wordcount(Interpreter& in, const Value& v, CallArgs& args);

}  // namespace tpinfer::jinja
