// JSON Schema -> GBNF: the grammar of the JSON texts a schema accepts, for
// constrained decoding (OpenAI's response_format json_schema / json_object).
//
// Output shape: compact JSON where a bounded amount of whitespace may appear
// between tokens (after '{' '[' ',' ':' and before '}' ']' ':' ','): nothing,
// one space, or one newline followed by at most `max_indent` spaces or tabs.
// Nothing before the first value or after the last, so a model cannot loop on
// whitespace and the grammar completes at the closing brace. Numbers are
// bounded too: at most 16 integer digits, 16 fraction digits and a 2-digit
// exponent (so every number fits a double); strings are not bounded unless
// the schema bounds them.
//
// Supported (anything else that constrains values raises SchemaError):
//   type (a name or an array of names), enum, const (any JSON value, emitted
//     compactly), anyOf and oneOf (alternation; oneOf's exclusivity is not
//     enforced), allOf of a single schema, $ref to a local JSON pointer
//     ("#", "#/$defs/x", "#/definitions/x", ...; recursion allowed).
//   object: properties (emitted in declared order; required ones always,
//     optional ones may be left out), required, additionalProperties (false,
//     true or a schema: extra keys after the declared ones, never a declared
//     name). When the schema does not say, additionalProperties is false with
//     strict = true (OpenAI's strict mode) and true otherwise (JSON Schema).
//   array: items, prefixItems, minItems, maxItems; uniqueItems false.
//   string: minLength, maxLength (code points; not together with pattern or
//     format), pattern (a regex subset: literals, escapes \d \w \s \D \W \S,
//     classes, '.', groups (...) (?:...), '|', * + ? {m} {m,} {m,n} (lazy ?
//     suffix ignored), ^ and $ around a top-level alternative; an unanchored
//     side may match anywhere in the string, as in JSON Schema; see
//     regex_to_gbnf.h), format date, time, date-time, uuid, email, ipv4,
//     hostname.
//   integer: minimum, maximum, exclusiveMinimum, exclusiveMaximum (exact,
//     within +-(10^16 - 1)).
//   number: minimum and maximum when both are integers, the minimum >= 0 and
//     the value has no exponent; "minimum": 0 alone (no minus sign).
//   Ignored: annotations (title, description, examples, default, $comment,
//   $schema, $id, deprecated, readOnly, writeOnly, ...) and keywords of other
//   types than the one being generated (JSON Schema applies them only there).
//   Rejected by name: patternProperties, propertyNames, if/then/else, not,
//   contains, dependentRequired, dependentSchemas, dependencies, multipleOf,
//   minProperties, maxProperties, unevaluated*, uniqueItems true, unknown
//   formats, $ref outside the document, allOf of several schemas,
//   anyOf/oneOf/allOf/$ref beside other validation keywords, number bounds
//   other than the above, exclusive bounds on numbers, and regex features
//   outside the subset (lookaround, backreferences, , \p{...}).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/error.h"
#include "structured/grammar.h"

namespace tpinfer {

// A schema that cannot be honoured. The message names the keyword and where it
// is: "schema #/properties/tags: unsupported keyword 'uniqueItems'".
class SchemaError : public Error {
 public:
  using Error::Error;
};

struct JsonSchemaOptions {
  bool strict = true;   // OpenAI strict semantics: additionalProperties defaults to false
  int max_indent = 20;  // spaces or tabs allowed after a newline between tokens
};

// The GBNF of any JSON object ({"type": "json_object"} mode).
std::string json_object_gbnf(const JsonSchemaOptions& options = {});

// The GBNF of the documents `schema` accepts. Throws SchemaError. Properties
// are emitted in the schema's order, so the schema is an ordered_json (a
// nlohmann::json sorts keys), or its text.
std::string json_schema_to_gbnf(const nlohmann::ordered_json& schema, const JsonSchemaOptions& options = {});
std::string json_schema_to_gbnf(std::string_view schema_text, const JsonSchemaOptions& options = {});

// The same, parsed. Throws SchemaError (a grammar problem, such as a schema
// that is left-recursive through $ref, is reported as one too).
Grammar compile_json_schema(const nlohmann::ordered_json& schema, const JsonSchemaOptions& options = {});
Grammar compile_json_schema(std::string_view schema_text, const JsonSchemaOptions& options = {});
Grammar compile_json_object(const JsonSchemaOptions& options = {});

}  // namespace tpinfer
