// A parsed Jinja2 template, rendered as Python's jinja2 renders it in the
// environment Hugging Face transformers uses for chat templates: an immutable
// sandbox with trim_blocks and lstrip_blocks, the loopcontrols extension, a
// tojson filter that keeps non-ASCII text (json.dumps(ensure_ascii=False)),
// and the globals raise_exception(message) and strftime_now(format) (plus
// Jinja's range, dict, namespace, joiner and cycler).
//
//   jinja::Template t(source);                      // FormatError if malformed, or if it
//                                                   // uses an unknown filter or test
//                                                   // outside an if (as Jinja compiles)
//   std::string text = t.render(context_json, cfg);  // TemplateError if it fails
//
// A Template is immutable and may be rendered from several threads at once.
// Rendering is bounded by RenderConfig::limits (see jinja/interpreter.h).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "jinja/interpreter.h"
#include "jinja/parser.h"

namespace tpinfer::jinja {

class Template {
 public:
  explicit Template(std::string_view source, const ParseOptions& options = {});

  // context: a JSON object whose members become the template's variables
  // (key order is kept: dicts iterate and serialize as given).
  std::string render(const nlohmann::ordered_json& context, const RenderConfig& config = {}) const;
  std::string render(const Dict& vars, const RenderConfig& config = {}) const;

 private:
  std::shared_ptr<const Body> body_;
};

}  // namespace tpinfer::jinja
