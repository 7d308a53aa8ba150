#include "server/structured_output.h"

#include <cctype>

#include "structured/json_schema.h"

namespace tpinfer::server {

std::shared_ptr<CompiledGrammar> StructuredOutputs::compile(const OutputFormat& format) {
  using Kind = OutputFormat::Kind;
  if (format.kind == Kind::Text) return nullptr;
  JsonSchemaOptions options;
  options.strict = format.strict;
  std::string key;
  const char* param = format.kind == Kind::Grammar ? "grammar" : "response_format";
  try {
    switch (format.kind) {
      case Kind::JsonObject:
        key = json_object_gbnf(options);
        break;
      case Kind::JsonSchema:
        key = json_schema_to_gbnf(format.schema, options);
        break;
      case Kind::Grammar:
        key = format.grammar;
        break;
      case Kind::Text:
        break;
    }
  } catch (const SchemaError& e) {
    throw ApiError::invalid(std::string("The JSON schema cannot be enforced: ") + e.what(), param);
  }
  return compile_gbnf(
      key, param,
      format.kind == Kind::Grammar ? "The grammar does not parse: " : "The JSON schema cannot be enforced: ");
}

namespace {

// The GBNF `text` with its rule `root` renamed to `name` (literals and
// character classes left alone), so it can be a part of a larger grammar.
std::string rename_root(const std::string& text, const std::string& name) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (c == '"' || c == '[') {
      const char close = c == '"' ? '"' : ']';
      size_t j = i + 1;
      while (j < text.size() && text[j] != close) j += text[j] == '\\' ? 2 : 1;
      out.append(text, i, j + 1 - i);
      i = j + 1;
    } else if (c == '#') {
      const size_t j = text.find('\n', i);
      out.append(text, i, j == std::string::npos ? std::string::npos : j - i);
      i = j == std::string::npos ? text.size() : j;
    } else if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') {
      size_t j = i;
      while (j < text.size() && (std::isalnum(static_cast<unsigned char>(text[j])) || text[j] == '-' || text[j] == '_'))
        ++j;
      const std::string word = text.substr(i, j - i);
      out += word == "root" ? name : word;
      i = j;
    } else {
      out += c;
      ++i;
    }
  }
  return out;
}

}  // namespace

std::shared_ptr<CompiledGrammar> StructuredOutputs::compile(const ToolCallConstraint& calls) {
  // A call's JSON is read by the server, not by people: newlines but no
  // indentation between its tokens (indentation is only tokens spent).
  JsonSchemaOptions options;
  options.strict = true;
  options.max_indent = 0;
  std::string call;
  try {
    call = rename_root(json_schema_to_gbnf(calls.call_schema, options), "tool-call");
  } catch (const SchemaError& e) {
    throw ApiError::invalid(std::string("A tool's parameters cannot be enforced: ") + e.what(), "tools");
  }
  // root ::= prefix tool-call (separator tool-call){0,n-1} suffix, literals left out when empty.
  std::string root = "root ::= ";
  const auto literal = [&root](const std::string& text) {
    if (text.empty()) return;
    root += gbnf_literal(text);
    root += ' ';
  };
  literal(calls.prefix);
  root += "tool-call";
  if (calls.max_calls != 1) {
    root += " (";
    literal(calls.separator);
    root += "tool-call)";
    root += calls.max_calls == kUnboundedCalls ? std::string("*") : cat("{0,", calls.max_calls - 1, "}");
  }
  root += ' ';
  literal(calls.suffix);
  root += '\n';
  return compile_gbnf(root + call, "tools", "A tool's parameters cannot be enforced: ");
}

std::shared_ptr<CompiledGrammar> StructuredOutputs::compile_gbnf(const std::string& gbnf, const char* param,
                                                                 const char* what) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto it = index_.find(gbnf); it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->second;
  }
  if (!vocab_) vocab_ = grammar_vocabulary(tok_, model_vocab_, literal_specials_);
  std::shared_ptr<CompiledGrammar> grammar;
  try {
    grammar = CompiledGrammar::create(Grammar::parse_gbnf(gbnf), vocab_);
  } catch (const GrammarError& e) {
    std::string message(what);
    message += e.what();
    throw ApiError::invalid(message, param);
  }
  lru_.emplace_front(gbnf, grammar);
  index_[gbnf] = lru_.begin();
  if (lru_.size() > capacity_) {
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return grammar;
}

}  // namespace tpinfer::server
