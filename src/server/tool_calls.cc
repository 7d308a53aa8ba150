#include "server/tool_calls.h"

#include <utility>

#include "core/error.h"

namespace tpinfer::server {

using ojson = nlohmann::ordered_json;

namespace {

constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";
constexpr std::string_view kMistralCalls = "[TOOL_CALLS]";

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

size_t skip_blanks(std::string_view s, size_t i) {
  while (i < s.size() && is_blank(s[i])) ++i;
  return i;
}

std::string_view rstrip(std::string_view s) {
  size_t n = s.size();
  while (n > 0 && is_blank(s[n - 1])) --n;
  return s.substr(0, n);
}

// Whether `s` is a proper prefix of `whole` (shorter, and equal so far).
bool proper_prefix_of(std::string_view s, std::string_view whole) {
  return s.size() < whole.size() && whole.substr(0, s.size()) == s;
}

// The length of the longest tail of `s` that is a proper prefix of `marker`.
size_t partial_marker_tail(std::string_view s, std::string_view marker) {
  const size_t longest = std::min(s.size(), marker.size() - 1);
  for (size_t k = longest; k > 0; --k) {
    if (s.substr(s.size() - k) == marker.substr(0, k)) return k;
  }
  return 0;
}

enum class Scan { Complete, Incomplete, Invalid };

// The end of the JSON string that starts at s[i] ('"'), past its closing quote.
Scan scan_string(std::string_view s, size_t i, size_t* end) {
  for (size_t j = i + 1; j < s.size(); ++j) {
    if (s[j] == '\\') {
      ++j;
    } else if (s[j] == '"') {
      *end = j + 1;
      return Scan::Complete;
    }
  }
  return Scan::Incomplete;
}

// The end of the JSON object or array that starts at s[i] ('{' or '['), by
// its brackets and strings only: Invalid when a bracket closes the wrong
// opener. Whether the text in between is JSON is checked on the whole value.
Scan scan_container(std::string_view s, size_t i, size_t* end) {
  std::string open;
  for (size_t j = i; j < s.size(); ++j) {
    const char c = s[j];
    if (c == '"') {
      size_t e = 0;
      if (scan_string(s, j, &e) == Scan::Incomplete) return Scan::Incomplete;
      j = e - 1;
    } else if (c == '{' || c == '[') {
      open.push_back(c == '{' ? '}' : ']');
    } else if (c == '}' || c == ']') {
      if (open.empty() || open.back() != c) return Scan::Invalid;
      open.pop_back();
      if (open.empty()) {
        *end = j + 1;
        return Scan::Complete;
      }
    }
  }
  return Scan::Incomplete;
}

// The end of the (valid) JSON value at s[i].
size_t value_end(std::string_view s, size_t i) {
  size_t e = s.size();
  if (s[i] == '{' || s[i] == '[') {
    scan_container(s, i, &e);
  } else if (s[i] == '"') {
    scan_string(s, i, &e);
  } else {
    e = i;
    while (e < s.size() && s[e] != ',' && s[e] != '}' && s[e] != ']' && !is_blank(s[e])) ++e;
  }
  return e;
}

// The members of a valid JSON object's text, as spans of their value texts
// (a repeated key: the last, as Python's json.loads keeps).
std::vector<std::pair<std::string, std::string_view>> object_members(std::string_view s) {
  std::vector<std::pair<std::string, std::string_view>> out;
  size_t i = skip_blanks(s, 0) + 1;  // past '{'
  while (true) {
    i = skip_blanks(s, i);
    if (i >= s.size() || s[i] == '}') break;
    size_t key_end = 0;
    scan_string(s, i, &key_end);
    std::string key = nlohmann::json::parse(s.substr(i, key_end - i)).get<std::string>();
    i = skip_blanks(s, key_end) + 1;  // past ':'
    i = skip_blanks(s, i);
    const size_t v_end = value_end(s, i);
    std::string_view value = s.substr(i, v_end - i);
    bool replaced = false;
    for (auto& m : out) {
      if (m.first == key) {
        m.second = value;
        replaced = true;
      }
    }
    if (!replaced) out.emplace_back(std::move(key), value);
    i = skip_blanks(s, v_end);
    if (i < s.size() && s[i] == ',') ++i;
  }
  return out;
}

// The elements of a valid JSON array's text, as spans.
std::vector<std::string_view> array_elements(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = skip_blanks(s, 0) + 1;  // past '['
  while (true) {
    i = skip_blanks(s, i);
    if (i >= s.size() || s[i] == ']') break;
    const size_t e = value_end(s, i);
    out.push_back(s.substr(i, e - i));
    i = skip_blanks(s, e);
    if (i < s.size() && s[i] == ',') ++i;
  }
  return out;
}

// One call from the text of a complete JSON object: a non-empty string "name"
// and an object under `args_key` (or `alt_key`; absent: {}).
std::optional<ToolCall> call_from_object(std::string_view text, std::string_view args_key, std::string_view alt_key) {
  ToolCall call;
  bool has_name = false;
  std::optional<std::string_view> args, alt;
  for (const auto& [key, value] : object_members(text)) {
    if (key == "name") {
      const nlohmann::json name = nlohmann::json::parse(value);
      if (!name.is_string()) return std::nullopt;
      call.name = name.get<std::string>();
      has_name = !call.name.empty();
    } else if (key == args_key) {
      args = value;
    } else if (!alt_key.empty() && key == alt_key) {
      alt = value;
    }
  }
  if (!has_name) return std::nullopt;
  if (!args) args = alt;
  if (args && (args->empty() || args->front() != '{')) return std::nullopt;
  call.arguments = args ? std::string(*args) : "{}";
  return call;
}

// What parsing a call's body at some position found.
struct BodyScan {
  Scan scan = Scan::Invalid;
  size_t end = 0;  // Complete: the first byte after the call(s)
  std::vector<ToolCall> calls;
};

// The JSON container at s[i] (after blanks), if it is complete and valid.
// Incomplete turns Invalid at the end of the output.
Scan json_container_at(std::string_view s, size_t i, bool end_of_text, size_t* start, size_t* stop) {
  i = skip_blanks(s, i);
  if (i >= s.size()) return end_of_text ? Scan::Invalid : Scan::Incomplete;
  if (s[i] != '{' && s[i] != '[') return Scan::Invalid;
  size_t e = 0;
  const Scan scan = scan_container(s, i, &e);
  if (scan == Scan::Incomplete) return end_of_text ? Scan::Invalid : Scan::Incomplete;
  if (scan == Scan::Invalid || !nlohmann::json::accept(s.substr(i, e - i))) return Scan::Invalid;
  *start = i;
  *stop = e;
  return Scan::Complete;
}

// Hermes: after "<tool_call>" at i, one call object and an optional
// "</tool_call>" (when the text after the object can still become it, wait).
BodyScan hermes_body(std::string_view s, size_t i, bool end_of_text) {
  BodyScan out;
  size_t start = 0, stop = 0;
  out.scan = json_container_at(s, i, end_of_text, &start, &stop);
  if (out.scan != Scan::Complete) return out;
  std::optional<ToolCall> call;
  if (s[start] == '{') call = call_from_object(s.substr(start, stop - start), "arguments", "");
  if (!call) {
    out.scan = Scan::Invalid;
    return out;
  }
  const size_t j = skip_blanks(s, stop);
  const std::string_view rest = s.substr(j);
  if (rest.substr(0, kHermesClose.size()) == kHermesClose) {
    out.end = j + kHermesClose.size();
  } else if (!end_of_text && proper_prefix_of(rest, kHermesClose)) {
    out.scan = Scan::Incomplete;
    return out;
  } else {
    out.end = stop;  // no closing tag: the call ends with its object
  }
  out.calls.push_back(std::move(*call));
  return out;
}

// Mistral: after "[TOOL_CALLS]" at i, an array of call objects (or one object).
BodyScan mistral_body(std::string_view s, size_t i, bool end_of_text) {
  BodyScan out;
  size_t start = 0, stop = 0;
  out.scan = json_container_at(s, i, end_of_text, &start, &stop);
  if (out.scan != Scan::Complete) return out;
  const std::string_view text = s.substr(start, stop - start);
  std::vector<std::string_view> objects;
  if (text.front() == '{') {
    objects.push_back(text);
  } else {
    objects = array_elements(text);
  }
  for (std::string_view o : objects) {
    std::optional<ToolCall> call;
    if (!o.empty() && o.front() == '{') call = call_from_object(o, "arguments", "");
    if (!call) {
      out.scan = Scan::Invalid;
      out.calls.clear();
      return out;
    }
    out.calls.push_back(std::move(*call));
  }
  if (out.calls.empty()) out.scan = Scan::Invalid;
  out.end = stop;
  return out;
}

void emit_content(std::vector<ToolCallPiece>& out, std::string_view text) {
  if (text.empty()) return;
  if (!out.empty() && !out.back().is_call) {
    out.back().content.append(text);
    return;
  }
  ToolCallPiece p;
  p.content = std::string(text);
  out.push_back(std::move(p));
}

void emit_call(std::vector<ToolCallPiece>& out, ToolCall call) {
  ToolCallPiece p;
  p.is_call = true;
  p.call = std::move(call);
  out.push_back(std::move(p));
}

// A tool's parameters schema moved to `base` (a JSON pointer such as
// "#/anyOf/1/properties/arguments") inside the call schema: its $defs (and
// definitions) go to the root's $defs under "<tool>.<name>", and every $ref
// is rewritten to match ("#/$defs/X" -> "#/$defs/<tool>.X", "#" and other
// local pointers -> under `base`). Values that are data, not schema (enum,
// const, default, examples), are left alone.
void relocate_refs(ojson& v, const std::string& tool, const std::string& base) {
  if (v.is_array()) {
    for (ojson& e : v) relocate_refs(e, tool, base);
    return;
  }
  if (!v.is_object()) return;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& key = it.key();
    if (key == "enum" || key == "const" || key == "default" || key == "examples") continue;
    if (key == "$ref" && it->is_string()) {
      const std::string ref = it->get<std::string>();
      for (const char* defs : {"#/$defs/", "#/definitions/"}) {
        const std::string prefix = defs;
        if (ref.rfind(prefix, 0) == 0) {
          *it = "#/$defs/" + tool + "." + ref.substr(prefix.size());
          break;
        }
      }
      if (it->get_ref<const std::string&>() == ref && (ref == "#" || ref.rfind("#/", 0) == 0))
        *it = base + ref.substr(1);
      continue;
    }
    relocate_refs(*it, tool, base);
  }
}

ojson relocate_parameters(ojson params, const std::string& tool, const std::string& base, ojson& root_defs) {
  relocate_refs(params, tool, base);
  for (const char* defs : {"$defs", "definitions"}) {
    auto it = params.find(defs);
    if (it == params.end() || !it->is_object()) continue;
    for (auto d = it->begin(); d != it->end(); ++d) root_defs[tool + "." + d.key()] = d.value();
    params.erase(defs);
  }
  return params;
}

}  // namespace

ToolCallFormat detect_tool_call_format(std::string_view source) {
  const auto has = [&](std::string_view needle) { return source.find(needle) != std::string_view::npos; };
  if (has(kMistralCalls)) return ToolCallFormat::Mistral;
  if (has(kHermesOpen)) return ToolCallFormat::Hermes;
  if (has("<|start_header_id|>") && has("\"parameters\"") && has("tools")) return ToolCallFormat::Llama3Json;
  return ToolCallFormat::None;
}

ToolCallFormat resolve_tool_call_parser(std::string_view option, std::string_view template_source) {
  if (option == "auto") return detect_tool_call_format(template_source);
  const std::optional<ToolCallFormat> f = kToolCallFormats.find(option);
  if (!f || *f == ToolCallFormat::None) {
    throw ConfigError(cat("--tool-call-parser '", option, "' is not a tool-call format; valid: auto, hermes, ",
                          "llama3_json, mistral"));
  }
  return *f;
}

std::vector<std::string> tool_call_marker_tokens(ToolCallFormat format) {
  switch (format) {
    case ToolCallFormat::Hermes:
      return {std::string(kHermesOpen), std::string(kHermesClose)};
    case ToolCallFormat::Llama3Json:
      return {std::string(kPythonTag)};
    case ToolCallFormat::Mistral:
      return {std::string(kMistralCalls)};
    case ToolCallFormat::None:
      break;
  }
  return {};
}

void prepare_messages_for_format(ToolCallFormat format, ojson& messages) {
  if (format != ToolCallFormat::Mistral || !messages.is_array()) return;
  const auto last9 = [](ojson& id) {
    if (id.is_string() && id.get_ref<const std::string&>().size() > 9) {
      const std::string& s = id.get_ref<const std::string&>();
      id = s.substr(s.size() - 9);
    }
  };
  for (ojson& m : messages) {
    if (!m.is_object()) continue;
    if (auto it = m.find("tool_call_id"); it != m.end()) last9(*it);
    if (auto it = m.find("tool_calls"); it != m.end() && it->is_array()) {
      for (ojson& call : *it) {
        if (auto id = call.find("id"); id != call.end()) last9(*id);
      }
    }
  }
}

std::string tool_call_id(uint64_t a, uint64_t b) {
  static constexpr char kAlnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) {
    uint64_t& w = i < 12 ? a : b;
    id.push_back(kAlnum[w % 62]);
    w /= 62;
  }
  return id;
}

ToolCallStream::ToolCallStream(ToolCallFormat format) : format_(format) {}

std::vector<ToolCallPiece> ToolCallStream::push(std::string_view text) {
  held_.append(text);
  std::vector<ToolCallPiece> out;
  drain(false, out);
  return out;
}

std::vector<ToolCallPiece> ToolCallStream::finish() {
  std::vector<ToolCallPiece> out;
  drain(true, out);
  held_.clear();
  return out;
}

void ToolCallStream::drain(bool end, std::vector<ToolCallPiece>& out) {
  const std::string_view marker = format_ == ToolCallFormat::Hermes ? kHermesOpen : kMistralCalls;
  auto content = [&](std::string_view t) {
    if (t.empty()) return;
    emit_content(out, t);
    at_start_ = false;
    after_call_ = false;
  };
  auto call = [&](ToolCall c) {
    emit_call(out, std::move(c));
    at_start_ = false;
    after_call_ = true;
  };
  while (!held_.empty()) {
    const std::string_view s = held_;
    size_t used = 0;  // bytes of held_ resolved by this round; 0: wait for more text
    if (after_call_ && is_blank(s[0])) {
      used = skip_blanks(s, 0);  // blanks after a call are its framing
    } else if (format_ == ToolCallFormat::None || plain_) {
      content(s);
      used = s.size();
    } else if (format_ == ToolCallFormat::Llama3Json) {
      if (at_start_ || llama_next_) {
        // A call object, after blanks (and <|python_tag|> first).
        size_t i = skip_blanks(s, 0);
        if (at_start_ && s.substr(i, kPythonTag.size()) == kPythonTag) {
          i += kPythonTag.size();
        } else if (at_start_ && !end && proper_prefix_of(s.substr(i), kPythonTag)) {
          return;
        }
        size_t start = 0, stop = 0;
        const Scan scan = json_container_at(s, i, end, &start, &stop);
        if (scan == Scan::Incomplete) return;
        std::optional<ToolCall> c;
        if (scan == Scan::Complete && s[start] == '{') {
          c = call_from_object(s.substr(start, stop - start), "parameters", "arguments");
        }
        if (c) {
          call(std::move(*c));
          llama_next_ = false;
          used = stop;
        } else {
          plain_ = true;  // not a call: this and the rest is content
          content(s);
          used = s.size();
        }
      } else {
        // After a call: ";" and another call, or the end of the calls.
        const size_t i = skip_blanks(s, 0);
        if (i < s.size() && s[i] == ';') {
          llama_next_ = true;
          used = i + 1;
        } else {
          plain_ = true;
          used = i;
          if (used == 0) continue;
        }
      }
    } else {
      // hermes, mistral: content up to the marker, then the call(s).
      const size_t p = s.find(marker);
      if (p == std::string_view::npos) {
        if (end) {
          content(s);
          used = s.size();
        } else {
          // Hold back what may start the marker, and the blanks before it
          // (dropped if a call follows).
          size_t cut = s.size() - partial_marker_tail(s, marker);
          while (cut > 0 && is_blank(s[cut - 1])) --cut;
          content(s.substr(0, cut));
          used = cut;
        }
      } else {
        const BodyScan body = format_ == ToolCallFormat::Hermes ? hermes_body(s, p + marker.size(), end)
                                                                : mistral_body(s, p + marker.size(), end);
        const std::string_view before = rstrip(s.substr(0, p));
        if (body.scan == Scan::Incomplete) {
          content(before);
          used = before.size();
        } else if (body.scan == Scan::Complete) {
          content(before);
          for (const ToolCall& c : body.calls) call(c);
          used = body.end;
        } else {
          content(s.substr(0, p + marker.size()));  // not a call: the marker is text
          used = p + marker.size();
        }
      }
    }
    if (used == 0) return;
    held_.erase(0, used);
  }
}

ParsedToolCalls parse_tool_calls(ToolCallFormat format, std::string_view text) {
  ToolCallStream stream(format);
  std::vector<ToolCallPiece> pieces = stream.push(text);
  for (ToolCallPiece& p : stream.finish()) pieces.push_back(std::move(p));
  ParsedToolCalls out;
  for (ToolCallPiece& p : pieces) {
    if (p.is_call) {
      out.calls.push_back(std::move(p.call));
    } else {
      out.content += p.content;
    }
  }
  return out;
}

std::optional<ToolCallConstraint> tool_call_constraint(ToolCallFormat format, const ojson& tools,
                                                       const ToolChoice& choice, bool parallel_tool_calls) {
  if (format == ToolCallFormat::None || !tools.is_array() || tools.empty()) return std::nullopt;
  if (choice.kind != ToolChoice::Required && choice.kind != ToolChoice::Named) return std::nullopt;
  const char* args_key = format == ToolCallFormat::Llama3Json ? "parameters" : "arguments";
  std::vector<const ojson*> chosen;
  for (const ojson& tool : tools) {
    if (choice.kind == ToolChoice::Named && tool.at("function").at("name").get<std::string>() != choice.name) continue;
    chosen.push_back(&tool);
  }
  if (chosen.empty()) return std::nullopt;  // a named function not among the tools: the parser rejects that
  ojson schemas = ojson::array();
  ojson defs = ojson::object();
  for (size_t k = 0; k < chosen.size(); ++k) {
    const ojson& fn = chosen[k]->at("function");
    const std::string name = fn.at("name").get<std::string>();
    const std::string base = chosen.size() == 1 ? std::string("#/properties/") + args_key
                                                : "#/anyOf/" + std::to_string(k) + "/properties/" + args_key;
    ojson params = fn.contains("parameters") && fn["parameters"].is_object()
                       ? relocate_parameters(fn["parameters"], name, base, defs)
                       : ojson{{"type", "object"}, {"properties", ojson::object()}};
    ojson props = ojson::object();
    props["name"] = {{"const", name}};
    props[args_key] = std::move(params);
    schemas.push_back({{"type", "object"},
                       {"properties", std::move(props)},
                       {"required", {"name", args_key}},
                       {"additionalProperties", false}});
  }

  ToolCallConstraint c;
  c.call_schema = schemas.size() == 1 ? schemas[0] : ojson{{"anyOf", std::move(schemas)}};
  if (!defs.empty()) c.call_schema["$defs"] = std::move(defs);
  // A named function is called once; "required" may call several unless parallel calls are off.
  c.max_calls = parallel_tool_calls && choice.kind != ToolChoice::Named ? kUnboundedCalls : 1;
  switch (format) {
    case ToolCallFormat::Hermes:
      c.prefix = std::string(kHermesOpen) + "\n";
      c.separator = "\n" + std::string(kHermesClose) + "\n" + std::string(kHermesOpen) + "\n";
      c.suffix = "\n" + std::string(kHermesClose);
      break;
    case ToolCallFormat::Llama3Json:
      c.separator = "; ";
      c.max_calls = 1;
      break;
    case ToolCallFormat::Mistral:
      c.prefix = std::string(kMistralCalls) + "[";
      c.separator = ", ";
      c.suffix = "]";
      break;
    case ToolCallFormat::None:
      break;
  }
  return c;
}

}  // namespace tpinfer::server
