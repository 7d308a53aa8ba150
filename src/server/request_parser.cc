#include "server/request_parser.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <sstream>
#include <unordered_map>

#include "engine/speculative.h"

namespace tpinfer::server {

// Ordered: a body keeps its key order (tools' schemas reach the template as sent).
using json = nlohmann::ordered_json;

nlohmann::ordered_json ApiError::to_json() const {
  nlohmann::ordered_json e;
  e["message"] = message;
  e["type"] = type;
  e["param"] = param.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(param);
  e["code"] = code.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(code);
  return {{"error", e}};
}

ApiError ApiError::invalid(std::string message, std::string param, std::string code) {
  ApiError e;
  e.status = 400;
  e.message = std::move(message);
  e.param = std::move(param);
  e.code = std::move(code);
  return e;
}

ApiError ApiError::model_not_found(const std::string& model) {
  ApiError e;
  e.status = 404;
  e.message = "The model `" + model + "` does not exist.";
  e.param = "model";
  e.code = "model_not_found";
  return e;
}

namespace {

// Parsing throws ApiError internally; the public functions turn it into a value.
[[noreturn]] void fail(const std::string& message, const std::string& param, const std::string& code = "") {
  throw ApiError::invalid(message, param, code);
}

std::string format_number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// Builds an ordered_json from SAX events. nlohmann's own ordered parse looks
// each key up in a list (quadratic in an object's keys); this one keeps a hash
// of each open object's keys, so a body of any shape costs linear time. A
// repeated key keeps its first position and its last value, as Python's
// json.loads does. It also bounds the nesting depth before a deep body can
// cost stack or time anywhere downstream (copies and dumps recurse).
class OrderedBuilder : public nlohmann::json_sax<json> {
 public:
  explicit OrderedBuilder(int max_depth) : max_depth_(max_depth) {}

  bool null() override { return place(json(nullptr)); }
  bool boolean(bool v) override { return place(json(v)); }
  bool number_integer(number_integer_t v) override { return place(json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return place(json(v)); }
  bool number_float(number_float_t v, const string_t&) override { return place(json(v)); }
  bool string(string_t& v) override { return place(json(std::move(v))); }
  bool binary(binary_t&) override { return false; }
  bool start_object(std::size_t) override { return open(json::object()); }
  bool start_array(std::size_t) override { return open(json::array()); }
  bool end_object() override { return close(); }
  bool end_array() override { return close(); }
  bool key(string_t& k) override {
    Open& top = stack_.back();
    auto& obj = top.value->get_ref<json::object_t&>();
    const auto [it, inserted] = top.keys.try_emplace(k, obj.size());
    if (inserted) obj.emplace_back(k, nullptr);
    top.slot = it->second;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    error_ = e.what();
    return false;
  }

  json& root() { return root_; }
  const std::string& error() const { return error_; }
  bool too_deep() const { return too_deep_; }

 private:
  struct Open {
    json* value;
    std::unordered_map<std::string, size_t> keys;  // objects: key -> position
    size_t slot = 0;                               // objects: where the next value goes
  };

  json* put(json&& v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Open& top = stack_.back();
    if (top.value->is_array()) {
      auto& arr = top.value->get_ref<json::array_t&>();
      arr.push_back(std::move(v));
      return &arr.back();
    }
    auto& obj = top.value->get_ref<json::object_t&>();
    json& slot = (obj.begin() + static_cast<std::ptrdiff_t>(top.slot))->second;
    slot = std::move(v);
    return &slot;
  }
  bool place(json&& v) {
    put(std::move(v));
    return true;
  }
  bool open(json&& v) {
    if (static_cast<int>(stack_.size()) >= max_depth_) {
      too_deep_ = true;
      return false;
    }
    json* p = put(std::move(v));
    stack_.push_back({p, {}, 0});
    return true;
  }
  bool close() {
    stack_.pop_back();
    return true;
  }

  int max_depth_;
  std::vector<Open> stack_;
  json root_;
  std::string error_;
  bool too_deep_ = false;
};

// Parses JSON text keeping key order; nullopt (with `error`) when it is not JSON.
std::optional<json> parse_ordered(std::string_view text, std::string* error, bool* too_deep = nullptr) {
  OrderedBuilder builder(kMaxJsonDepth);
  const bool ok = json::sax_parse(text.begin(), text.end(), &builder);
  if (too_deep) *too_deep = builder.too_deep();
  if (!ok) {
    if (error) *error = builder.error();
    return std::nullopt;
  }
  return std::move(builder.root());
}

json parse_body(std::string_view body) {
  std::string error;
  bool too_deep = false;
  std::optional<json> root = parse_ordered(body, &error, &too_deep);
  if (too_deep) fail("The JSON body nests deeper than " + std::to_string(kMaxJsonDepth) + " levels.", "");
  if (!root) {
    fail("We could not parse the JSON body of your request: " + error +
             ". The API expects a JSON object as the request body.",
         "");
  }
  if (!root->is_object()) fail("The request body must be a JSON object.", "");
  return std::move(*root);
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a number";
    default:
      return "an unsupported value";
  }
}

// An integer, from a JSON integer or a float with no fraction. Empty when `v` is
// not one or does not fit in int64.
std::optional<int64_t> as_int64(const json& v) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || d < -9.2e18 || d > 9.2e18) return std::nullopt;
    return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

// Typed, range-checked access to the fields of one JSON object. `prefix` names
// the object in messages ("stream_options.").
class Fields {
 public:
  Fields(const json& obj, std::string prefix = "") : obj_(obj), prefix_(std::move(prefix)) {}

  // The field, or null when absent or JSON null.
  const json* get(const char* name) const {
    const auto it = obj_.find(name);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  std::string param(const char* name) const { return prefix_ + name; }

  std::optional<bool> boolean(const char* name) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) fail(quote(name) + " must be a boolean, got " + type_name(*v) + ".", param(name));
    return v->get<bool>();
  }

  std::optional<int64_t> integer(const char* name, int64_t lo, int64_t hi) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    const std::optional<int64_t> i = as_int64(*v);
    if (!i) fail(quote(name) + " must be an integer, got " + type_name(*v) + ".", param(name));
    if (*i < lo || *i > hi) {
      fail(quote(name) + " must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " +
               std::to_string(*i) + ".",
           param(name));
    }
    return i;
  }

  // A number in [lo, hi] (or (lo, hi] with open_lo).
  std::optional<double> number(const char* name, double lo, double hi, bool open_lo = false) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_number()) fail(quote(name) + " must be a number, got " + type_name(*v) + ".", param(name));
    const double d = v->get<double>();
    if (!std::isfinite(d) || (open_lo ? d <= lo : d < lo) || d > hi) {
      fail(quote(name) + " must be " + (open_lo ? "greater than " : "at least ") + format_number(lo) + " and at most " +
               format_number(hi) + ", got " + format_number(d) + ".",
           param(name));
    }
    return d;
  }

  std::optional<std::string> string(const char* name) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_string()) fail(quote(name) + " must be a string, got " + type_name(*v) + ".", param(name));
    return v->get<std::string>();
  }

  const json* object(const char* name) const {
    const json* v = get(name);
    if (v && !v->is_object()) fail(quote(name) + " must be an object, got " + type_name(*v) + ".", param(name));
    return v;
  }

  std::string quote(const char* name) const { return "'" + prefix_ + name + "'"; }

 private:
  const json& obj_;
  std::string prefix_;
};

int32_t token_id(const json& v, const ParserLimits& limits, const std::string& param) {
  const std::optional<int64_t> id = as_int64(v);
  if (!id) fail("'" + param + "' must hold integer token ids, got " + type_name(v) + ".", param);
  const int64_t hi = limits.vocab_size > 0 ? limits.vocab_size : std::numeric_limits<int32_t>::max();
  if (*id < 0 || *id >= hi) {
    fail("Token id " + std::to_string(*id) + " is outside the vocabulary (0.." + std::to_string(hi - 1) + ").", param);
  }
  return static_cast<int32_t>(*id);
}

std::vector<int32_t> token_list(const json& arr, const ParserLimits& limits, const std::string& param) {
  std::vector<int32_t> ids;
  ids.reserve(arr.size());
  for (const json& v : arr) ids.push_back(token_id(v, limits, param));
  return ids;
}

// prompt: "text" | ["text", ...] | [id, ...] | [[id, ...], ...]
std::vector<Prompt> parse_prompts(const Fields& f, const ParserLimits& limits) {
  const json* p = f.get("prompt");
  if (!p) fail("'prompt' is required.", "prompt");
  std::vector<Prompt> out;
  auto add_text = [&](const json& s) {
    if (s.get_ref<const std::string&>().empty()) fail("'prompt' must not be empty.", "prompt");
    Prompt pr;
    pr.text = s.get<std::string>();
    out.push_back(std::move(pr));
  };
  auto add_tokens = [&](const json& arr) {
    if (arr.empty()) fail("'prompt' must not be empty.", "prompt");
    Prompt pr;
    pr.is_tokens = true;
    pr.tokens = token_list(arr, limits, "prompt");
    out.push_back(std::move(pr));
  };
  if (p->is_string()) {
    add_text(*p);
  } else if (p->is_array()) {
    if (p->empty()) fail("'prompt' must not be empty.", "prompt");
    const json& first = p->front();
    if (first.is_number()) {
      add_tokens(*p);
    } else {
      if (static_cast<int64_t>(p->size()) > limits.max_prompts) {
        fail("'prompt' holds " + std::to_string(p->size()) + " prompts; at most " + std::to_string(limits.max_prompts) +
                 " are allowed.",
             "prompt");
      }
      for (const json& item : *p) {
        if (item.is_string()) {
          add_text(item);
        } else if (item.is_array()) {
          add_tokens(item);
        } else {
          fail(
              "'prompt' must be a string, an array of strings, an array of token ids or an array of arrays of "
              "token ids.",
              "prompt");
        }
      }
    }
  } else {
    fail(std::string("'prompt' must be a string or an array, got ") + type_name(*p) + ".", "prompt");
  }
  return out;
}

// A tool or function name as OpenAI allows it: [A-Za-z0-9_-]{1,64}.
bool valid_function_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

// An assistant message's tool_calls: [{id, type: "function", function: {name,
// arguments}}]. Each arguments JSON string becomes the object it holds, for
// the templates (they write it with tojson); other text stays a string.
json parse_tool_calls_of_message(const json& tc, const std::string& where) {
  if (!tc.is_array()) fail("'" + where + "' must be an array, got " + type_name(tc) + ".", where);
  json out = json::array();
  for (size_t k = 0; k < tc.size(); ++k) {
    const json& call = tc[k];
    const std::string cw = where + "[" + std::to_string(k) + "]";
    if (!call.is_object()) fail("'" + cw + "' must be an object, got " + type_name(call) + ".", cw);
    const Fields cf(call, cw + ".");
    const std::optional<std::string> id = cf.string("id");
    if (const std::optional<std::string> type = cf.string("type"); type && *type != "function") {
      fail("'" + cw + ".type' must be 'function', got '" + *type + "'.", cw + ".type");
    }
    const json* fn = cf.object("function");
    if (!fn) fail("'" + cw + ".function' is required.", cw + ".function");
    const Fields ff(*fn, cw + ".function.");
    const std::optional<std::string> name = ff.string("name");
    if (!name || name->empty()) fail("'" + cw + ".function.name' is required.", cw + ".function.name");
    json arguments = json::object();
    if (const json* a = ff.get("arguments")) {
      if (a->is_string()) {
        std::optional<json> parsed = parse_ordered(a->get_ref<const std::string&>(), nullptr);
        arguments = parsed && parsed->is_object() ? std::move(*parsed) : *a;
      } else if (a->is_object()) {
        arguments = *a;
      } else {
        fail("'" + cw + ".function.arguments' must be a string (JSON) or an object, got " + type_name(*a) + ".",
             cw + ".function.arguments");
      }
    }
    json item = json::object();
    if (id) item["id"] = *id;
    item["type"] = "function";
    item["function"] = {{"name", *name}, {"arguments", std::move(arguments)}};
    out.push_back(std::move(item));
  }
  return out;
}

// tools: [{"type": "function", "function": {"name", "description"?, "parameters"?, "strict"?}}],
// kept as sent. Returns null for an empty array.
json parse_tools(const json& tools, const ParserLimits& limits) {
  if (!tools.is_array()) fail(std::string("'tools' must be an array, got ") + type_name(tools) + ".", "tools");
  if (tools.size() > limits.max_tools) {
    fail("'tools' holds " + std::to_string(tools.size()) + " tools; at most " + std::to_string(limits.max_tools) +
             " are allowed.",
         "tools");
  }
  if (tools.empty()) return nullptr;
  std::vector<std::string> names;
  for (size_t i = 0; i < tools.size(); ++i) {
    const json& t = tools[i];
    const std::string w = "tools[" + std::to_string(i) + "]";
    if (!t.is_object()) fail("'" + w + "' must be an object, got " + type_name(t) + ".", w);
    const Fields tf(t, w + ".");
    const std::optional<std::string> type = tf.string("type");
    if (!type) fail("'" + w + ".type' is required.", w + ".type");
    if (*type != "function") fail("'" + w + ".type' must be 'function', got '" + *type + "'.", w + ".type");
    const json* fn = tf.object("function");
    if (!fn) fail("'" + w + ".function' is required.", w + ".function");
    const Fields ff(*fn, w + ".function.");
    const std::optional<std::string> name = ff.string("name");
    if (!name) fail("'" + w + ".function.name' is required.", w + ".function.name");
    if (!valid_function_name(*name)) {
      fail("'" + w + ".function.name' must be 1 to 64 of a-z, A-Z, 0-9, '_' and '-', got '" + *name + "'.",
           w + ".function.name");
    }
    if (std::find(names.begin(), names.end(), *name) != names.end()) {
      fail("'" + w + ".function.name': the tool '" + *name + "' is defined twice.", w + ".function.name");
    }
    names.push_back(*name);
    ff.string("description");
    ff.object("parameters");
    ff.boolean("strict");
  }
  return tools;
}

// tool_choice: "none" | "auto" | "required" | {"type": "function", "function": {"name"}}.
ToolChoice parse_tool_choice(const Fields& f, const json& tools) {
  const json* c = f.get("tool_choice");
  const bool has_tools = tools.is_array();
  if (!c) return ToolChoice{has_tools ? ToolChoice::Auto : ToolChoice::None, ""};
  ToolChoice out;
  if (c->is_string()) {
    const std::string& s = c->get_ref<const std::string&>();
    if (s == "none") return ToolChoice{ToolChoice::None, ""};
    if (s == "auto") {
      out.kind = ToolChoice::Auto;
    } else if (s == "required") {
      out.kind = ToolChoice::Required;
    } else {
      fail(
          "'tool_choice' must be 'none', 'auto', 'required' or {\"type\": \"function\", \"function\": {\"name\": "
          "...}}, got '" +
              s + "'.",
          "tool_choice");
    }
  } else if (c->is_object()) {
    const Fields cf(*c, "tool_choice.");
    const std::optional<std::string> type = cf.string("type");
    if (!type || *type != "function") fail("'tool_choice.type' must be 'function'.", "tool_choice.type");
    const json* fn = cf.object("function");
    if (!fn) fail("'tool_choice.function' is required.", "tool_choice.function");
    const std::optional<std::string> name = Fields(*fn, "tool_choice.function.").string("name");
    if (!name) fail("'tool_choice.function.name' is required.", "tool_choice.function.name");
    out.kind = ToolChoice::Named;
    out.name = *name;
  } else {
    fail(std::string("'tool_choice' must be a string or an object, got ") + type_name(*c) + ".", "tool_choice");
  }
  if (!has_tools) fail("'tool_choice' is only allowed when 'tools' are given.", "tool_choice");
  if (out.kind == ToolChoice::Named) {
    const bool known = std::any_of(tools.begin(), tools.end(), [&](const json& t) {
      return t["function"]["name"].get_ref<const std::string&>() == out.name;
    });
    if (!known) {
      fail("'tool_choice' names the function '" + out.name + "', which is not among the tools.",
           "tool_choice.function.name");
    }
  }
  return out;
}

// messages: [{role, content: string | [{type: "text", text}] | null, ...}]
nlohmann::ordered_json parse_messages(const json* messages, const ParserLimits& limits) {
  if (!messages) fail("'messages' is required.", "messages");
  if (!messages->is_array())
    fail(std::string("'messages' must be an array, got ") + type_name(*messages) + ".", "messages");
  if (messages->empty()) fail("'messages' must hold at least one message.", "messages");
  if (messages->size() > limits.max_messages) {
    fail("'messages' holds " + std::to_string(messages->size()) + " messages; at most " +
             std::to_string(limits.max_messages) + " are allowed.",
         "messages");
  }
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) fail("'" + where + "' must be an object, got " + std::string(type_name(m)) + ".", where);
    const Fields mf(m, where + ".");
    const std::optional<std::string> role = mf.string("role");
    if (!role || role->empty()) fail("'" + where + ".role' is required.", where + ".role");
    nlohmann::ordered_json content;  // null stays null (an assistant turn with only tool calls)
    const json* c = mf.get("content");
    if (!c) {
      if (*role != "assistant") fail("'" + where + ".content' is required.", where + ".content");
    } else if (c->is_string()) {
      content = c->get<std::string>();
    } else if (c->is_array()) {
      std::string joined;
      for (size_t j = 0; j < c->size(); ++j) {
        const json& part = (*c)[j];
        const std::string pw = where + ".content[" + std::to_string(j) + "]";
        if (!part.is_object()) fail("'" + pw + "' must be an object.", pw);
        const Fields pf(part, pw + ".");
        const std::optional<std::string> type = pf.string("type");
        if (!type) fail("'" + pw + ".type' is required.", pw + ".type");
        if (*type != "text") {
          fail("'" + pw + ".type' is '" + *type + "'; this server supports only text content.", pw + ".type");
        }
        const std::optional<std::string> text = pf.string("text");
        if (!text) fail("'" + pw + ".text' is required.", pw + ".text");
        if (j > 0) joined += "\n";
        joined += *text;
      }
      content = joined;
    } else {
      fail("'" + where + ".content' must be a string or an array of content parts, got " + type_name(*c) + ".",
           where + ".content");
    }
    json tool_calls;  // null: none
    if (const json* tc = mf.get("tool_calls")) {
      if (*role != "assistant")
        fail("'" + where + ".tool_calls' is allowed only in assistant messages.", where + ".tool_calls");
      tool_calls = parse_tool_calls_of_message(*tc, where + ".tool_calls");
      if (!tool_calls.empty() && content.is_null()) content = "";
    }
    if (*role == "tool") {
      const std::optional<std::string> id = mf.string("tool_call_id");
      if (!id) fail("'" + where + ".tool_call_id' is required in tool messages.", where + ".tool_call_id");
    }
    // role, content, the other members as sent, tool_calls last (keys are
    // unique: appended without a lookup each).
    json msg = json::object();
    auto& members = msg.get_ref<json::object_t&>();
    members.emplace_back("role", *role);
    members.emplace_back("content", std::move(content));
    for (auto it = m.begin(); it != m.end(); ++it) {
      if (it.key() == "role" || it.key() == "content" || it.key() == "tool_calls") continue;
      members.emplace_back(it.key(), it.value());
    }
    if (tool_calls.is_array() && !tool_calls.empty()) members.emplace_back("tool_calls", std::move(tool_calls));
    out.push_back(std::move(msg));
  }
  return out;
}

std::vector<std::string> parse_stop(const Fields& f, const ParserLimits& limits) {
  const json* s = f.get("stop");
  std::vector<std::string> out;
  if (!s) return out;
  auto add = [&](const json& v) {
    if (!v.is_string()) fail("'stop' must be a string or an array of strings.", "stop");
    const std::string& str = v.get_ref<const std::string&>();
    if (str.empty()) fail("'stop' sequences must not be empty.", "stop");
    if (str.size() > limits.max_stop_bytes) {
      fail("'stop' sequences may be at most " + std::to_string(limits.max_stop_bytes) + " bytes long.", "stop");
    }
    out.push_back(str);
  };
  if (s->is_string()) {
    add(*s);
  } else if (s->is_array()) {
    if (static_cast<int64_t>(s->size()) > limits.max_stop) {
      fail("'stop' may hold at most " + std::to_string(limits.max_stop) + " sequences, got " +
               std::to_string(s->size()) + ".",
           "stop");
    }
    for (const json& v : *s) add(v);
  } else {
    fail(std::string("'stop' must be a string or an array of strings, got ") + type_name(*s) + ".", "stop");
  }
  return out;
}

void parse_common(const Fields& f, GenerationRequest& r, const ParserLimits& limits) {
  if (auto m = f.string("model")) r.model = *m;
  r.n = static_cast<int>(f.integer("n", 1, limits.max_n).value_or(1));
  r.stream = f.boolean("stream").value_or(false);
  if (const json* so = f.object("stream_options")) {
    if (!r.stream) {
      fail("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options");
    }
    r.include_usage = Fields(*so, "stream_options.").boolean("include_usage").value_or(false);
  }
  r.stop = parse_stop(f, limits);
  r.temperature = f.number("temperature", 0, 2).value_or(1.0);
  r.top_p = f.number("top_p", 0, 1, /*open_lo=*/true).value_or(1.0);
  r.top_k = static_cast<int>(f.integer("top_k", -1, 1 << 30).value_or(0));
  if (r.top_k < 0) r.top_k = 0;
  r.min_p = f.number("min_p", 0, 1).value_or(0.0);
  r.repetition_penalty = f.number("repetition_penalty", 0, 10, /*open_lo=*/true).value_or(1.0);
  r.presence_penalty = f.number("presence_penalty", -2, 2).value_or(0.0);
  r.frequency_penalty = f.number("frequency_penalty", -2, 2).value_or(0.0);
  r.seed = f.integer("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
  r.ignore_eos = f.boolean("ignore_eos").value_or(false);
  r.num_speculative_tokens =
      static_cast<int>(f.integer("num_speculative_tokens", 0, kMaxSpeculativeTokens).value_or(-1));
  r.skip_special_tokens = f.boolean("skip_special_tokens").value_or(true);
  if (auto u = f.string("user")) r.user = *u;

  if (const json* lb = f.object("logit_bias"); lb && !lb->empty()) {
    fail("'logit_bias' is not supported by this server.", "logit_bias");
  }
  if (const json* rf = f.object("response_format")) {
    const Fields format(*rf, "response_format.");
    const std::string type = format.string("type").value_or("text");
    if (type == "json_object") {
      r.output.kind = OutputFormat::Kind::JsonObject;
    } else if (type == "json_schema") {
      const json* js = format.object("json_schema");
      if (!js) fail("'response_format.json_schema' is required when the type is 'json_schema'.", "response_format");
      const Fields schema(*js, "response_format.json_schema.");
      if (!schema.string("name")) fail("'response_format.json_schema.name' is required.", "response_format");
      r.output.strict = schema.boolean("strict").value_or(false);
      // The schema itself is taken from the body again, keys in order
      // (parse_generation_request); here only its presence and type.
      r.output.kind = schema.object("schema") ? OutputFormat::Kind::JsonSchema : OutputFormat::Kind::JsonObject;
    } else if (type != "text") {
      fail("'response_format.type' must be 'text', 'json_object' or 'json_schema', got '" + type + "'.",
           "response_format");
    }
  }
  if (auto grammar = f.string("grammar")) {
    if (r.output.kind != OutputFormat::Kind::Text) {
      fail("Give either 'grammar' or a 'response_format' other than text, not both.", "grammar");
    }
    if (grammar->empty()) fail("'grammar' is empty.", "grammar");
    r.output.kind = OutputFormat::Kind::Grammar;
    r.output.grammar = *grammar;
  }
}

template <typename T>
std::variant<T, ApiError> guarded(const std::function<T()>& body) {
  try {
    return body();
  } catch (const ApiError& e) {
    return e;
  } catch (const std::exception& e) {
    // A bug, not the client's fault; still a value, never an escape.
    ApiError err;
    err.status = 500;
    err.type = "server_error";
    err.message = std::string("internal error while parsing the request: ") + e.what();
    return err;
  }
}

}  // namespace

GenerationParse parse_generation_request(Endpoint endpoint, std::string_view body, const ParserLimits& limits) {
  return guarded<GenerationRequest>([&] {
    const json root = parse_body(body);
    const Fields f(root);
    GenerationRequest r;
    r.endpoint = endpoint;
    parse_common(f, r, limits);
    if (r.output.kind == OutputFormat::Kind::JsonSchema) {
      // A json object sorts its keys; the schema's properties come out in the
      // order the request gives them, so it is read again, in order.
      r.output.schema = nlohmann::ordered_json::parse(body)["response_format"]["json_schema"]["schema"];
    }

    std::optional<int64_t> max_tokens;
    if (endpoint == Endpoint::Completions) {
      r.prompts = parse_prompts(f, limits);
      max_tokens = f.integer("max_tokens", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
      if (auto lp = f.integer("logprobs", 0, limits.max_logprobs)) r.logprobs = static_cast<int>(*lp);
      if (f.boolean("echo").value_or(false)) fail("'echo' is not supported by this server.", "echo");
      if (auto best_of = f.integer("best_of", 1, limits.max_n); best_of && *best_of != r.n && *best_of != 1) {
        fail("'best_of' other than n is not supported by this server.", "best_of");
      }
      if (auto suffix = f.string("suffix"); suffix && !suffix->empty()) {
        fail("'suffix' is not supported by this server.", "suffix");
      }
      if (const json* tools = f.get("tools")) {
        if (!tools->is_array()) fail("'tools' must be an array.", "tools");
        if (!tools->empty()) fail("'tools' is supported only by /v1/chat/completions.", "tools");
      }
    } else {
      r.messages = parse_messages(f.get("messages"), limits);
      r.add_generation_prompt = f.boolean("add_generation_prompt").value_or(true);
      if (const json* kw = f.object("chat_template_kwargs")) r.chat_template_kwargs = *kw;
      if (const json* tools = f.get("tools")) r.tools = parse_tools(*tools, limits);
      r.tool_choice = parse_tool_choice(f, r.tools);
      r.parallel_tool_calls = f.boolean("parallel_tool_calls").value_or(true);
      // max_completion_tokens replaces the deprecated max_tokens; it wins when both are given.
      max_tokens =
          f.integer("max_completion_tokens", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
      if (!max_tokens) {
        max_tokens = f.integer("max_tokens", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
      }
      const bool logprobs = f.boolean("logprobs").value_or(false);
      const std::optional<int64_t> top = f.integer("top_logprobs", 0, limits.max_logprobs);
      if (top && !logprobs) fail("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs");
      if (logprobs) r.logprobs = static_cast<int>(top.value_or(0));
    }
    if (max_tokens) {
      const char* name = endpoint == Endpoint::ChatCompletions && f.get("max_completion_tokens")
                             ? "max_completion_tokens"
                             : "max_tokens";
      if (*max_tokens < 1)
        fail("'" + std::string(name) + "' must be at least 1, got " + std::to_string(*max_tokens) + ".", name);
      if (*max_tokens > limits.max_model_len) {
        fail("'" + std::string(name) + "' is " + std::to_string(*max_tokens) +
                 ", more than this model's maximum context length of " + std::to_string(limits.max_model_len) +
                 " tokens.",
             name);
      }
      r.max_tokens = max_tokens;
    }
    const int64_t sequences = static_cast<int64_t>(std::max<size_t>(r.prompts.size(), 1)) * r.n;
    if (sequences > limits.max_sequences) {
      fail("The request asks for " + std::to_string(sequences) + " sequences (prompts x n); at most " +
               std::to_string(limits.max_sequences) + " are allowed.",
           "n");
    }
    return r;
  });
}

TokenizeParse parse_tokenize_request(std::string_view body, const ParserLimits& limits) {
  return guarded<TokenizeRequest>([&] {
    const json root = parse_body(body);
    const Fields f(root);
    TokenizeRequest r;
    if (auto m = f.string("model")) r.model = *m;
    if (f.get("messages")) {
      r.is_chat = true;
      r.messages = parse_messages(f.get("messages"), limits);
      r.add_generation_prompt = f.boolean("add_generation_prompt").value_or(true);
      f.boolean("add_special_tokens");  // type-checked; chat prompts get BOS as the chat endpoint does
      if (const json* tools = f.get("tools")) r.tools = parse_tools(*tools, limits);
      if (const json* kw = f.object("chat_template_kwargs")) r.chat_template_kwargs = *kw;
    } else {
      const std::optional<std::string> prompt = f.string("prompt");
      if (!prompt) fail("'prompt' (or 'messages') is required.", "prompt");
      r.prompt = *prompt;
      r.add_special_tokens = f.boolean("add_special_tokens").value_or(true);
    }
    return r;
  });
}

DetokenizeParse parse_detokenize_request(std::string_view body, const ParserLimits& limits) {
  return guarded<DetokenizeRequest>([&] {
    const json root = parse_body(body);
    const Fields f(root);
    DetokenizeRequest r;
    if (auto m = f.string("model")) r.model = *m;
    const json* t = f.get("tokens");
    if (!t) fail("'tokens' is required.", "tokens");
    if (!t->is_array())
      fail(std::string("'tokens' must be an array of token ids, got ") + type_name(*t) + ".", "tokens");
    r.tokens = token_list(*t, limits, "tokens");
    return r;
  });
}

std::variant<int64_t, ApiError> check_prompt_length(const GenerationRequest& request, int64_t prompt_tokens,
                                                    int64_t max_model_len) {
  const char* param = request.endpoint == Endpoint::ChatCompletions ? "messages" : "prompt";
  if (prompt_tokens <= 0)
    return ApiError::invalid(
        std::string("The ") + (request.endpoint == Endpoint::ChatCompletions ? "messages render" : "prompt encodes") +
            " to no tokens.",
        param);
  if (request.max_tokens) {
    if (prompt_tokens + *request.max_tokens > max_model_len) {
      return ApiError::invalid(
          "This model's maximum context length is " + std::to_string(max_model_len) +
              " tokens. However, you requested " + std::to_string(prompt_tokens + *request.max_tokens) + " tokens (" +
              std::to_string(prompt_tokens) + " in the " + param + ", " + std::to_string(*request.max_tokens) +
              " in the completion). Please reduce the length of the " + param + " or completion.",
          param, "context_length_exceeded");
    }
    return *request.max_tokens;
  }
  if (prompt_tokens >= max_model_len) {
    return ApiError::invalid("This model's maximum context length is " + std::to_string(max_model_len) +
                                 " tokens. However, your " + param + " resulted in " + std::to_string(prompt_tokens) +
                                 " tokens, which leaves no room for the completion. Please reduce the length of "
                                 "the " +
                                 param + ".",
                             param, "context_length_exceeded");
  }
  const int64_t room = max_model_len - prompt_tokens;
  return request.endpoint == Endpoint::Completions ? std::min<int64_t>(16, room) : room;
}

}  // namespace tpinfer::server
