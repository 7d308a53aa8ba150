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
#include "structured/structured_testing.h"

namespace tpinfer {
namespace {

using nlohmann::json;
using testing_structured::generate;
using testing_structured::test_vocab;
using testing_structured::validate;

struct SchemaCase {
  const char* name;
  const char* schema;
  std::vector<std::string> valid;
  std::vector<std::string> invalid;
  bool strict = true;
};

const std::vector<SchemaCase>& cases() {
  static const std::vector<SchemaCase> c = {
      {"person",
       R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer","minimum":0,"maximum":150},
           "email":{"type":"string","format":"email"}},"required":["name","age"]})",
       {R"({"name":"Ann","age":31})", R"({"name":"Bo","age":0,"email":"bo@mail.example.org"})",
        "{ \"name\": \"Ann\",\n  \"age\": 150 }"},
       {R"({"name":"Ann"})", R"({"age":3,"name":"Ann"})", R"({"name":"Ann","age":151})", R"({"name":"Ann","age":-1})",
        R"({"name":"Ann","age":3,"email":"nope"})", R"({"name":"Ann","age":3,"x":1})", "{  \"name\":\"A\",\"age\":1}"}},
      {"product",
       R"({"type":"object","properties":{"id":{"type":"string","format":"uuid"},"price":{"type":"number","minimum":0},
           "tags":{"type":"array","items":{"type":"string"},"minItems":1,"maxItems":3},"in_stock":{"type":"boolean"}},
           "required":["id","price","tags","in_stock"],"additionalProperties":false})",
       {R"({"id":"123e4567-e89b-12d3-a456-426614174000","price":9.99,"tags":["a"],"in_stock":true})",
        R"({"id":"123e4567-e89b-12d3-a456-426614174000","price":1e3,"tags":["a","b","c"],"in_stock":false})"},
       {R"({"id":"123e4567-e89b-12d3-a456-42661417400","price":9.99,"tags":["a"],"in_stock":true})",
        R"({"id":"123e4567-e89b-12d3-a456-426614174000","price":-1,"tags":["a"],"in_stock":true})",
        R"({"id":"123e4567-e89b-12d3-a456-426614174000","price":1,"tags":[],"in_stock":true})",
        R"({"id":"123e4567-e89b-12d3-a456-426614174000","price":1,"tags":["a","b","c","d"],"in_stock":true})"}},
      {"color_enum",
       R"({"type":"object","properties":{"color":{"enum":["red","green","blue"]},
           "shade":{"type":"integer","minimum":1,"maximum":5}},"required":["color"]})",
       {R"({"color":"red"})", R"({"color":"blue","shade":5})"},
       {R"({"color":"pink"})", R"({"color":"red","shade":0})", R"({"color":"red","shade":6})", R"({"shade":1})"}},
      {"nested_address",
       R"({"type":"object","properties":{"customer":{"type":"object","properties":{
             "name":{"type":"string"},
             "address":{"type":"object","properties":{"street":{"type":"string"},"city":{"type":"string"},
               "zip":{"type":"string","pattern":"^[0-9]{5}$"}},"required":["street","city","zip"]}},
             "required":["name","address"]},
           "notes":{"type":"string"}},"required":["customer"]})",
       {R"({"customer":{"name":"A","address":{"street":"1 Main St","city":"X","zip":"12345"}}})",
        R"({"customer":{"name":"A","address":{"street":"","city":"","zip":"00000"}},"notes":"n"})"},
       {R"({"customer":{"name":"A","address":{"street":"s","city":"c","zip":"1234"}}})",
        R"({"customer":{"name":"A","address":{"street":"s","city":"c","zip":"1234a"}}})"}},
      {"recursive_tree",
       R"({"$defs":{"node":{"type":"object","properties":{"value":{"type":"integer"},
             "children":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":3}},"required":["value","children"]}},
           "$ref":"#/$defs/node"})",
       {R"({"value":1,"children":[]})",
        R"({"value":1,"children":[{"value":-2,"children":[{"value":3,"children":[]}]}]})"},
       {R"({"value":1})", R"({"value":1,"children":[{"value":2}]})",
        R"({"value":1,"children":[{"value":1,"children":[]},{"value":1,"children":[]},{"value":1,"children":[]},{"value":1,"children":[]}]})"}},
      {"any_of",
       R"({"type":"object","properties":{"result":{"anyOf":[{"type":"string"},{"type":"integer"},{"type":"null"}]}},
           "required":["result"]})",
       {R"({"result":"x"})", R"({"result":-7})", R"({"result":null})"},
       {R"({"result":1.5})", R"({"result":true})", R"({"result":[]})"}},
      {"nullable_types",
       R"({"type":"object","properties":{"nickname":{"type":["string","null"]},"score":{"type":["number","null"]}},
           "required":["nickname","score"]})",
       {R"({"nickname":null,"score":null})", R"({"nickname":"z","score":-0.5e-3})"},
       {R"({"nickname":1,"score":null})", R"({"nickname":null})"}},
      {"date_formats",
       R"({"type":"object","properties":{"date":{"type":"string","format":"date"},"time":{"type":"string","format":"time"},
           "when":{"type":"string","format":"date-time"}},"required":["date","time","when"]})",
       {R"({"date":"2024-02-29","time":"23:59:59Z","when":"2024-01-01T12:00:00.123+01:00"})"},
       {R"({"date":"2024-13-01","time":"12:00:00Z","when":"2024-01-01T12:00:00Z"})",
        R"({"date":"2024-01-01","time":"24:00:00Z","when":"2024-01-01T12:00:00Z"})",
        R"({"date":"2024-01-01","time":"12:00:00","when":"2024-01-01 12:00:00Z"})"}},
      {"points",
       R"({"type":"array","items":{"type":"object","properties":{"x":{"type":"number"},"y":{"type":"number"}},
           "required":["x","y"]},"minItems":2,"maxItems":4})",
       {R"([{"x":1,"y":2},{"x":0.5,"y":-3}])", "[ {\"x\":1,\"y\":2} , {\"x\":1,\"y\":2} ]"},
       {R"([{"x":1,"y":2}])", R"([{"x":1,"y":2},{"x":1,"y":2},{"x":1,"y":2},{"x":1,"y":2},{"x":1,"y":2}])",
        R"([{"x":1},{"x":1,"y":2}])"}},
      {"const_and_mixed_enum",
       R"({"type":"object","properties":{"version":{"const":2},"mode":{"enum":["fast",1,null,true,{"a":[1,"b"]}]}},
           "required":["version","mode"]})",
       {R"({"version":2,"mode":"fast"})", R"({"version":2,"mode":{"a":[1,"b"]}})", R"({"version":2,"mode":null})"},
       {R"({"version":3,"mode":"fast"})", R"({"version":2,"mode":"slow"})", R"({"version":2,"mode":false})"}},
      {"tuple",
       R"({"type":"array","prefixItems":[{"type":"string"},{"type":"integer"},{"type":"boolean"}],"minItems":2,"items":false})",
       {R"(["a",1])", R"(["a",1,true])"},
       {R"(["a"])", R"(["a",1,true,4])", R"([1,"a"])"}},
      {"additional_strings",
       R"({"type":"object","properties":{"id":{"type":"integer"}},"required":["id"],
           "additionalProperties":{"type":"string"}})",
       {R"({"id":1})", R"({"id":1,"note":"x","idx":"y"})"},
       {R"({"id":1,"note":2})", R"({"id":1,"id":"x"})", R"({"note":"x"})"}},
      {"one_of_definitions",
       R"({"definitions":{
             "click":{"type":"object","properties":{"kind":{"const":"click"},"x":{"type":"integer"},"y":{"type":"integer"}},
               "required":["kind","x","y"]},
             "key":{"type":"object","properties":{"kind":{"const":"key"},"code":{"type":"string","minLength":1,"maxLength":8}},
               "required":["kind","code"]}},
           "type":"object","properties":{"events":{"type":"array","items":{"oneOf":[{"$ref":"#/definitions/click"},
             {"$ref":"#/definitions/key"}]}}},"required":["events"]})",
       {R"({"events":[]})", R"({"events":[{"kind":"click","x":1,"y":2},{"kind":"key","code":"Esc"}]})"},
       {R"({"events":[{"kind":"key","code":""}]})", R"({"events":[{"kind":"click","x":1}]})"}},
      {"string_lengths",
       R"({"type":"object","properties":{"code":{"type":"string","minLength":2,"maxLength":4},
           "note":{"type":"string","maxLength":10}},"required":["code","note"]})",
       {R"({"code":"ab","note":""})", R"({"code":"é€😀x","note":"\n\u00e9"})"},
       {R"({"code":"a","note":""})", R"({"code":"abcde","note":""})", R"({"code":"ab","note":"01234567890"})"}},
      {"calendar_event",
       R"({"type":"object","properties":{"name":{"type":"string"},"date":{"type":"string","format":"date"},
           "participants":{"type":"array","items":{"type":"string"}}},
           "required":["name","date","participants"],"additionalProperties":false})",
       {R"({"name":"Science fair","date":"2024-10-11","participants":["Alice","Bob"]})"},
       {R"({"name":"x","date":"2024-10-11"})"}},
      {"patterns",
       R"({"type":"object","properties":{"sku":{"type":"string","pattern":"^(AB|CD)-[0-9]{3}(-[A-Z])?$"},
           "phone":{"type":"string","pattern":"^\\+?[0-9]{10,12}$"},"slug":{"type":"string","pattern":"^[a-z0-9]+(?:-[a-z0-9]+)*$"},
           "has_x":{"type":"string","pattern":"x"}},"required":["sku","phone","slug","has_x"]})",
       {R"({"sku":"AB-123","phone":"+4412345678","slug":"a-b-c","has_x":"x"})",
        R"({"sku":"CD-000-Z","phone":"123456789012","slug":"abc","has_x":"1x\"2"})"},
       {R"({"sku":"AC-123","phone":"+4412345678","slug":"a","has_x":"x"})",
        R"({"sku":"AB-123","phone":"123","slug":"a","has_x":"x"})",
        R"({"sku":"AB-123","phone":"+4412345678","slug":"a--b","has_x":"x"})",
        R"({"sku":"AB-123","phone":"+4412345678","slug":"a","has_x":"y"})"}},
      {"network",
       R"({"type":"object","properties":{"host":{"type":"string","format":"hostname"},"ip":{"type":"string","format":"ipv4"},
           "port":{"type":"integer","exclusiveMinimum":0,"exclusiveMaximum":65536}},"required":["host","ip","port"]})",
       {R"({"host":"api.example.com","ip":"192.168.0.255","port":443})", R"({"host":"x","ip":"0.0.0.0","port":65535})"},
       {R"({"host":"x","ip":"256.1.1.1","port":1})", R"({"host":"x","ip":"1.1.1.1","port":0})",
        R"({"host":"x","ip":"1.1.1.1","port":65536})", R"({"host":"-x","ip":"1.1.1.1","port":1})"}},
      {"math_reasoning",
       R"({"type":"object","properties":{"steps":{"type":"array","items":{"type":"object","properties":{
             "explanation":{"type":"string"},"output":{"type":"string"}},"required":["explanation","output"],
             "additionalProperties":false}},"final_answer":{"type":"string"}},"required":["steps","final_answer"],
           "additionalProperties":false})",
       {R"({"steps":[{"explanation":"8x+7=-23","output":"8x=-30"}],"final_answer":"x=-3.75"})"},
       {R"({"steps":[{"explanation":"a"}],"final_answer":"x"})"}},
      {"linked_list_root_ref",
       R"({"type":"object","properties":{"v":{"type":"integer","minimum":-5,"maximum":1234},
           "next":{"anyOf":[{"$ref":"#"},{"type":"null"}]}},"required":["v","next"]})",
       {R"({"v":1,"next":{"v":-5,"next":null}})", R"({"v":1234,"next":null})"},
       {R"({"v":1,"next":{"v":1}})", R"({"v":1235,"next":null})", R"({"v":-6,"next":null})"}},
      {"non_strict_open_object",
       R"({"type":"object","properties":{"a":{"type":"boolean"},"b":{"type":"number","minimum":0,"maximum":1}}})",
       {R"({})", R"({"b":0.25,"zz":[1,{"q":null}]})", R"({"a":true,"b":1})", R"({"extra":"x"})"},
       {R"({"b":1.5})", R"({"b":1.01})", R"({"a":1})", R"({"b":-0.5})"},
       false},
  };
  return c;
}

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
