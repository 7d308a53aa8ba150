#include "tokenizer/jinja_template.h"

namespace tpinfer::jinja {

Template::Template(std::string_view source, const ParseOptions& options)
    : body_(std::make_shared<const Body>(parse(source, options))) {}

std::string Template::render(const nlohmann::ordered_json& context, const RenderConfig& config) const {
  if (!context.is_object() && !context.is_null()) {
    throw TemplateError("the template context must be a JSON object");
  }
  Dict vars;
  if (context.is_object()) {
    for (const auto& [k, v] : context.items()) vars.set(Value(k), Value::from_json(v));
  }
  return render(vars, config);
}

std::string Template::render(const Dict& vars, const RenderConfig& config) const {
  Interpreter interpreter(config);
  return interpreter.render(*body_, vars);
}

}  // namespace tpinfer::jinja
