#include "server/structured_output.h"

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
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto it = index_.find(key); it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->second;
  }
  if (!vocab_) vocab_ = grammar_vocabulary(tok_, model_vocab_);
  std::shared_ptr<CompiledGrammar> grammar;
  try {
    grammar = CompiledGrammar::create(Grammar::parse_gbnf(key), vocab_);
  } catch (const GrammarError& e) {
    throw ApiError::invalid(std::string(format.kind == Kind::Grammar ? "The grammar does not parse: "
                                                                     : "The JSON schema cannot be enforced: ") +
                                e.what(),
                            param);
  }
  lru_.emplace_front(key, grammar);
  index_[key] = lru_.begin();
  if (lru_.size() > capacity_) {
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return grammar;
}

}  // namespace tpinfer::server
