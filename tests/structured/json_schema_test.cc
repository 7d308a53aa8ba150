// JSON Schema -> grammar: for real-world schemas, random outputs (uniform
// sampling among allowed tokens of a vocabulary whose tokens span grammar
// boundaries) always parse and validate against the schema by an independent
// validator; hand-written documents are accepted or rejected; keywords that
// cannot be honoured are errors that name them.
#include "structured/json_schema.h"

#include <gtest/gtest.h>

#include <random>
#include <regex>

#include "structured/grammar_matcher.h"
#include "structured/schema_cases.h"
#include "structured/structured_testing.h"

namespace tpinfer {
namespace {

using nlohmann::json;
using testing_structured::cases;
using testing_structured::generate;
using testing_structured::SchemaCase;
using testing_structured::test_vocab;
using testing_structured::validate;

std::shared_ptr<CompiledGrammar> compile(const SchemaCase& c) {
  JsonSchemaOptions options;
  options.strict = c.strict;
  return CompiledGrammar::create(compile_json_schema(std::string_view(c.schema), options), test_vocab().vocab);
}

bool accepts(const std::shared_ptr<CompiledGrammar>& g, const std::string& doc) {
  GrammarMatcher m(g);
  return m.accept_bytes(doc) && m.is_complete();
}

TEST(JsonSchema, HandWrittenDocuments) {
  for (const SchemaCase& c : cases()) {
    SCOPED_TRACE(c.name);
    const auto g = compile(c);
    const json schema = json::parse(c.schema);
    for (const std::string& doc : c.valid) {
      EXPECT_TRUE(accepts(g, doc)) << doc;
      EXPECT_EQ(validate(json::parse(doc), schema, schema, c.strict), "") << doc;  // the test's own premise
    }
    for (const std::string& doc : c.invalid) EXPECT_FALSE(accepts(g, doc)) << doc;
  }
}

TEST(JsonSchema, RandomOutputsParseAndValidate) {
  ASSERT_GE(cases().size(), 15u);
  std::mt19937 rng(24);
  for (const SchemaCase& c : cases()) {
    SCOPED_TRACE(c.name);
    const auto g = compile(c);
    const json schema = json::parse(c.schema);
    for (int i = 0; i < 40; ++i) {
      const testing_structured::Generated out = generate(g, rng);
      ASSERT_TRUE(out.complete) << "did not finish: " << out.text;
      json doc;
      ASSERT_NO_THROW(doc = json::parse(out.text)) << out.text;
      EXPECT_EQ(validate(doc, schema, schema, c.strict), "") << out.text;
    }
  }
}

TEST(JsonSchema, JsonObjectMode) {
  const auto g = CompiledGrammar::create(compile_json_object(), test_vocab().vocab);
  EXPECT_TRUE(accepts(g, R"({"a":[1,2.5e-3,{"b":null}],"c":"\u00e9\n"})"));
  EXPECT_TRUE(accepts(g, "{}"));
  EXPECT_FALSE(accepts(g, "[]"));
  EXPECT_FALSE(accepts(g, R"({"a":01})"));
  EXPECT_FALSE(accepts(g, R"({"a":"\ud800"})"));  // a lone surrogate escape would not parse
  EXPECT_FALSE(accepts(g, R"({"a":1} )"));        // nothing after the value
  std::mt19937 rng(7);
  for (int i = 0; i < 60; ++i) {
    const testing_structured::Generated out = generate(g, rng);
    ASSERT_TRUE(out.complete) << out.text;
    json doc;
    ASSERT_NO_THROW(doc = json::parse(out.text)) << out.text;
    EXPECT_TRUE(doc.is_object());
  }
}

TEST(JsonSchema, WhitespaceIsBounded) {
  const auto g = CompiledGrammar::create(compile_json_object(), test_vocab().vocab);
  EXPECT_TRUE(accepts(g, "{\n" + std::string(20, ' ') + "\"a\": 1 }"));
  EXPECT_FALSE(accepts(g, "{\n" + std::string(21, ' ') + "\"a\": 1 }"));
  EXPECT_FALSE(accepts(g, "{  \"a\": 1 }"));
  EXPECT_FALSE(accepts(g, " {}"));
}

std::string schema_error(const char* schema) {
  try {
    compile_json_schema(std::string_view(schema));
  } catch (const SchemaError& e) {
    return e.what();
  }
  return "";
}

TEST(JsonSchema, UnsupportedKeywordsAreNamed) {
  EXPECT_EQ(schema_error(R"({"type":"object","patternProperties":{"^x":{}}})"),
            "schema #: 'patternProperties' is not supported");
  EXPECT_EQ(schema_error(R"({"type":"object","properties":{"a":{"if":{"type":"string"},"then":{}}}})"),
            "schema #/properties/a: 'if' is not supported");
  EXPECT_EQ(schema_error(R"({"properties":{"a":{"$ref":"https://example.com/s.json"}}})"),
            "schema #/properties/a/$ref: '$ref' to \"https://example.com/s.json\": only local references (#/...) "
            "are supported");
  EXPECT_EQ(schema_error(R"({"$ref":"#/$defs/missing"})"),
            "schema #/$ref: '$ref' \"#/$defs/missing\" points at nothing");
  EXPECT_EQ(
      schema_error(R"({"type":"string","format":"uri"})"),
      "schema #: 'format' \"uri\" is not supported (supported: date, time, date-time, uuid, email, hostname, ipv4)");
  EXPECT_EQ(schema_error(R"({"type":"array","uniqueItems":true})"),
            "schema #: 'uniqueItems' is not supported (only false)");
  EXPECT_EQ(schema_error(R"({"allOf":[{"type":"string"},{"minLength":2}]})"),
            "schema #: 'allOf' is supported only with a single schema");
  EXPECT_EQ(schema_error(R"({"type":"number","multipleOf":3})"), "schema #: 'multipleOf' is not supported");
  EXPECT_EQ(schema_error(R"({"type":"object","minProperties":1})"), "schema #: 'minProperties' is not supported");
  EXPECT_EQ(schema_error(R"({"type":"object","properties":{"a":{"type":"number","exclusiveMinimum":0}}})"),
            "schema #/properties/a: 'exclusiveMinimum' is not supported for numbers (only for integers)");
  EXPECT_EQ(schema_error(R"({"type":"string","pattern":"^(?=a)b$"})"),
            "schema #: 'pattern' uses an unsupported regex feature: lookaround or named groups '(?' at offset 2 of "
            "\"^(?=a)b$\"");
  EXPECT_EQ(schema_error(R"({"type":"string","pattern":"(a)\\1"})"),
            "schema #: 'pattern' uses an unsupported regex feature: backreferences \\1..\\9 at offset 5 of \"(a)\\1\"");
  EXPECT_EQ(schema_error(R"({"type":"string","pattern":"\\bword"})"),
            "schema #: 'pattern' uses an unsupported regex feature: word boundary \\b at offset 2 of \"\\bword\"");
  EXPECT_EQ(schema_error(R"({"type":"object","required":["x"]})"),
            "schema #: 'required' names \"x\", which is not in 'properties'");
  EXPECT_EQ(schema_error(R"({"anyOf":[{"type":"string"}],"type":"string"})"),
            "schema #: 'anyOf' beside 'type' is not supported");
  EXPECT_EQ(schema_error(R"({"type":"strin"})"), "schema #: 'type' names an unknown type \"strin\"");
  EXPECT_EQ(schema_error(R"({"type":"string","minLength":3,"pattern":"a"})"),
            "schema #: 'minLength' together with 'pattern' is not supported");
  EXPECT_EQ(schema_error(R"({"type":"array","minItems":3,"maxItems":2})"),
            "schema #: 'maxItems' leaves no valid length (below minItems or the items allowed)");
  EXPECT_NE(schema_error("{").find("schema is not valid JSON"), std::string::npos);
}

TEST(JsonSchema, PatternAnchorsBindToTheirAlternative) {
  // ECMAScript: ^ab|cd$ is (^ab)|(cd$), and an unanchored side may match
  // anywhere.
  const auto g = CompiledGrammar::create(
      compile_json_schema(std::string_view(R"({"type":"string","pattern":"^ab|cd$"})")), test_vocab().vocab);
  for (const char* ok : {R"("ab")", R"("abX")", R"("Xcd")", R"("abcd")", R"("ab\"")"}) {
    EXPECT_TRUE(accepts(g, ok)) << ok;
    EXPECT_TRUE(std::regex_search(json::parse(ok).get<std::string>(), std::regex("^ab|cd$"))) << ok;
  }
  for (const char* bad : {R"("XabX")", R"("cdX")", R"("")"}) {
    EXPECT_FALSE(accepts(g, bad)) << bad;
    EXPECT_FALSE(std::regex_search(json::parse(bad).get<std::string>(), std::regex("^ab|cd$"))) << bad;
  }
}

TEST(JsonSchema, MutatedSchemasCompileOrRaiseSchemaError) {
  std::mt19937 rng(12);
  const std::string alphabet = "{}[]\":,01 abcdefimnoprstuxy$#/^.*+?()|\\";
  int compiled = 0, rejected = 0;
  for (int i = 0; i < 1500; ++i) {
    std::string text = cases()[i % cases().size()].schema;
    for (int k = 0; k < 1 + static_cast<int>(rng() % 3); ++k) {
      const size_t at = rng() % (text.size() + 1);
      switch (rng() % 3) {
        case 0:
          text.insert(at, 1, alphabet[rng() % alphabet.size()]);
          break;
        case 1:
          if (at < text.size()) text.erase(at, 1);
          break;
        default:
          if (at < text.size()) text[at] = alphabet[rng() % alphabet.size()];
      }
    }
    try {
      compile_json_schema(std::string_view(text));
      ++compiled;
    } catch (const SchemaError&) {
      ++rejected;
    }
  }
  EXPECT_GT(compiled, 0);
  EXPECT_GT(rejected, 0);
}

TEST(JsonSchema, PropertiesKeepTheirDeclaredOrder) {
  const auto g = CompiledGrammar::create(
      compile_json_schema(std::string_view(R"({"type":"object","properties":{"z":{"type":"integer"},
        "a":{"type":"integer"}},"required":["z","a"]})")),
      test_vocab().vocab);
  EXPECT_TRUE(accepts(g, R"({"z":1,"a":2})"));
  EXPECT_FALSE(accepts(g, R"({"a":2,"z":1})"));
}

TEST(JsonSchema, GeneratedGbnfIsReadable) {
  const std::string gbnf = json_schema_to_gbnf(std::string_view(R"({"type":"object","properties":{
      "n":{"type":"integer","minimum":1,"maximum":5}},"required":["n"]})"));
  EXPECT_NE(gbnf.find("root ::= "), std::string::npos) << gbnf;
  EXPECT_NE(gbnf.find("\"\\\"n\\\"\""), std::string::npos) << gbnf;  // the key literal "\"n\""
}

}  // namespace
}  // namespace tpinfer
