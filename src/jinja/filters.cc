// Jinja's built-in filters: the table of every filter by name, and the
// filters on sequences and mappings (first/last, join, map, select and reject,
// sort, dictsort, unique, sum, min/max, batch/slice, ...) with Jinja's
// attribute paths. The filters on strings and numbers are in string_filters.cc.
#include <algorithm>
#include <unordered_set>

#include "jinja/filters_internal.h"
#include "jinja/text.h"

namespace tpinfer::jinja {

namespace {

[[noreturn]] void type_error(const std::string& message) { throw TemplateError("TypeError: " + message); }
[[noreturn]] void value_error(const std::string& message) { throw TemplateError("ValueError: " + message); }
[[noreturn]] void filter_error(const std::string& message) { throw TemplateError("FilterArgumentError: " + message); }

Value iterator(std::vector<Value> items) { return Value::list(std::move(items), List::Flavor::kIterator); }

// Jinja's attribute paths ("a.b.0"): each part an item lookup (then attribute).
std::vector<Value> attribute_parts(const Value& attribute) {
  std::vector<Value> parts;
  if (attribute.is_none() || attribute.is_undefined()) return parts;
  if (!attribute.is_string()) return {attribute};
  for (const std::string& p : py_split(attribute.str(), std::string("."), -1)) {
    // An index too long for int64 stays a string key: Jinja2 would look up a
    // Python int that no list or dict can hold either.
    if (!p.empty() && p.size() <= 18 && p.find_first_not_of("0123456789") == std::string::npos) {
      parts.emplace_back(static_cast<int64_t>(std::stoll(p)));
    } else {
      parts.emplace_back(p);
    }
  }
  return parts;
}

Value lower_if_string(const Value& v) { return v.is_string() ? Value(py_lower(v.str())) : v; }

struct AttrGetter {
  explicit AttrGetter(std::vector<Value> p, bool l = false, std::optional<Value> d = std::nullopt)
      : parts(std::move(p)), lower(l), dflt(std::move(d)) {}
  std::vector<Value> parts;
  bool lower;
  std::optional<Value> dflt;
  Value operator()(Interpreter& in, const Value& item) const {
    Value v = item;
    for (const Value& p : parts) {
      v = in.get_item(v, p);
      if (dflt && v.is_undefined()) {
        v = *dflt;
        break;
      }
    }
    return lower ? lower_if_string(v) : v;
  }
};

// Sorting keys for sort/dictsort (several attributes compare as a list).
bool key_less(const Value& a, const Value& b) { return compare(a, b, "<") == -1; }

// ---- filters -----------------------------------------------------------------------

Value f_attr(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"name"}, "attr");
  if (!a[0]) type_error("attr() missing required argument 'name'");
  const std::string name = text_of(*a[0]);
  // An attribute only, never an item: for a dict, d|attr("key") is undefined.
  if (v.is_object() || v.is_undefined()) return in.get_attr(v, name);
  if ((v.is_string() || v.is_list() || v.is_dict()) && find_method(v, name) != MethodKind::kNone) {
    return in.get_attr(v, name);
  }
  return Value::undefined(
      cat(py_repr(v.is_none() ? "None" : type_name(v) + " object"), " has no attribute ", py_repr(name)));
}

Value f_batch(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"linecount", "fill_with"}, "batch");
  const int64_t n = int_arg(a[0], 0, "batch");
  if (n <= 0) value_error("batch size must be positive");
  std::vector<Value> out, cur;
  for (Value& item : in.iterate(v)) {
    cur.push_back(std::move(item));
    if (static_cast<int64_t>(cur.size()) == n) out.push_back(Value::list(std::exchange(cur, {})));
  }
  if (!cur.empty()) {
    if (a[1] && !a[1]->is_none()) {
      while (static_cast<int64_t>(cur.size()) < n) cur.push_back(*a[1]);
    }
    out.push_back(Value::list(std::move(cur)));
  }
  return iterator(std::move(out));
}

Value f_length(Interpreter& in, const Value& v, CallArgs& args) {
  no_args(args, "length");
  return Value(length(v));
}

Value f_default(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"default_value", "boolean"}, "default");
  if (v.is_undefined() || (bool_arg(a[1], false) && !truthy(v))) return a[0] ? *a[0] : Value("");
  return v;
}

Value f_dictsort(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"case_sensitive", "by", "reverse"}, "dictsort");
  if (v.is_undefined()) v.fail_undefined();
  if (!v.is_dict()) throw TemplateError(cat("AttributeError: '", type_name(v), "' object has no attribute 'items'"));
  const bool case_sensitive = bool_arg(a[0], false);
  const std::string by = a[1] ? text_of(*a[1]) : "key";
  if (by != "key" && by != "value") filter_error("You can only sort by either 'key' or 'value'");
  const size_t pos = by == "key" ? 0 : 1;
  std::vector<std::pair<Value, Value>> items = v.dict().items();
  auto key = [&](const std::pair<Value, Value>& kv) {
    const Value& k = pos == 0 ? kv.first : kv.second;
    return case_sensitive ? k : lower_if_string(k);
  };
  const bool reverse = bool_arg(a[2], false);
  std::stable_sort(items.begin(), items.end(), [&](const auto& x, const auto& y) {
    return reverse ? key_less(key(y), key(x)) : key_less(key(x), key(y));
  });
  std::vector<Value> out;
  for (auto& [k, e] : items) out.push_back(Value::tuple({k, e}));
  return Value::list(std::move(out));
}

Value f_first(Interpreter& in, const Value& v, CallArgs& args) {
  no_args(args, "first");
  if (v.is_undefined()) return Value::undefined("No first item, sequence was empty.");
  if (v.is_list()) {
    const List& l = v.list();
    const size_t at = v.is_iterator() ? l.consumed() : 0;  // next(iter(x)) takes one from an iterator
    if (at >= l.items().size()) return Value::undefined("No first item, sequence was empty.");
    if (v.is_iterator()) l.consume(1);
    return l.items()[at];
  }
  const std::vector<Value> items = in.iterate(v);
  return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
}

Value f_last(Interpreter& in, const Value& v, CallArgs& args) {
  no_args(args, "last");
  if (v.is_iterator()) type_error("'generator' object is not reversible");
  if (v.is_undefined()) return Value::undefined("No last item, sequence was empty.");
  if (v.is_list()) {
    const auto& items = v.list().items();
    return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
  }
  if (!v.is_string() && !v.is_dict()) type_error(cat("'", type_name(v), "' object is not reversible"));
  const std::vector<Value> items = in.iterate(v);
  return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
}

Value f_items(Interpreter& in, const Value& v, CallArgs& args) {
  no_args(args, "items");
  if (v.is_undefined()) return iterator({});
  if (!v.is_dict()) type_error("Can only get item pairs from a mapping.");
  std::vector<Value> out;
  out.reserve(v.dict().size());
  for (const auto& [k, e] : v.dict().items()) out.push_back(Value::tuple({k, e}));
  return iterator(std::move(out));
}

Value f_join(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"d", "attribute"}, "join");
  const std::string sep = a[0] ? text_of(*a[0]) : "";
  std::vector<Value> items = in.iterate(v);
  if (a[1] && !a[1]->is_none()) {
    const AttrGetter get{attribute_parts(*a[1])};
    for (Value& item : items) item = get(in, item);
  }
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += text_of(items[i]);
    in.charge(out.size() / 8 + 16);
    if (out.size() > SIZE_MAX / 2) in.charge(SIZE_MAX);
  }
  in.charge(out.size());
  return Value(std::move(out));
}

Value f_list(Interpreter& in, const Value& v, CallArgs& args) {
  no_args(args, "list");
  std::vector<Value> items = in.iterate(v);
  in.charge(items.size() * sizeof(Value));
  return Value::list(std::move(items));
}

Value f_map(Interpreter& in, const Value& v, CallArgs& args) {
  if (!truthy(v)) return iterator({});  // Jinja maps nothing over a false value
  std::vector<Value> items = in.iterate(v);
  std::vector<Value> out;
  out.reserve(items.size());
  if (args.positional.empty()) {
    std::optional<Value> attribute, dflt;
    for (auto& [k, e] : args.keyword) {
      if (k == "attribute") {
        attribute = e;
      } else if (k == "default") {
        dflt = e;
      } else {
        filter_error(cat("Unexpected keyword argument ", py_repr(k)));
      }
    }
    if (!attribute) filter_error("map requires a filter argument");
    const AttrGetter get{attribute_parts(*attribute), false, dflt};
    for (const Value& item : items) out.push_back(get(in, item));
    return iterator(std::move(out));
  }
  const std::string name = text_of(args.positional[0]);
  CallArgs rest;
  rest.positional.assign(args.positional.begin() + 1, args.positional.end());
  rest.keyword = args.keyword;
  for (const Value& item : items) {
    CallArgs call_args = rest;
    out.push_back(in.filter(name, item, call_args));
  }
  return iterator(std::move(out));
}

Value min_or_max(Interpreter& in, const Value& v, CallArgs& args, bool want_max, const char* fn) {
  const auto a = bind_args(args, {"case_sensitive", "attribute"}, fn);
  const AttrGetter get{a[1] ? attribute_parts(*a[1]) : std::vector<Value>{}, !bool_arg(a[0], false)};
  const std::vector<Value> items = in.iterate(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key = get(in, items[0]);
  for (size_t i = 1; i < items.size(); ++i) {
    Value k = get(in, items[i]);
    const int c = compare(k, best_key, want_max ? ">" : "<");
    if (want_max ? c == 1 : c == -1) {
      best = i;
      best_key = std::move(k);
    }
  }
  return items[best];
}
Value f_max(Interpreter& in, const Value& v, CallArgs& args) { return min_or_max(in, v, args, true, "max"); }
Value f_min(Interpreter& in, const Value& v, CallArgs& args) { return min_or_max(in, v, args, false, "min"); }

Value select_impl(Interpreter& in, const Value& v, CallArgs& args, bool by_attribute, bool keep) {
  if (!truthy(v)) return iterator({});  // Jinja selects nothing from a false value
  std::vector<Value> items = in.iterate(v);
  std::optional<AttrGetter> get;
  size_t next = 0;
  if (by_attribute) {
    if (args.positional.empty()) type_error("selectattr() missing the attribute argument");
    get = AttrGetter{attribute_parts(args.positional[0])};
    next = 1;
  }
  std::optional<std::string> test_name;
  CallArgs test_args;
  if (next < args.positional.size()) {
    test_name = text_of(args.positional[next]);
    test_args.positional.assign(args.positional.begin() + static_cast<std::ptrdiff_t>(next) + 1, args.positional.end());
    test_args.keyword = args.keyword;
  }
  std::vector<Value> out;
  for (Value& item : items) {
    const Value probe = get ? (*get)(in, item) : item;
    bool ok;
    if (test_name) {
      CallArgs ta = test_args;
      ok = in.test(*test_name, probe, ta);
    } else {
      ok = truthy(probe);
    }
    if (ok == keep) out.push_back(std::move(item));
  }
  return iterator(std::move(out));
}

Value f_select(Interpreter& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, false, true); }
Value f_reject(Interpreter& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, false, false); }
Value f_selectattr(Interpreter& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, true, true); }
Value f_rejectattr(Interpreter& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, true, false); }

Value f_reverse(Interpreter& in, const Value& v, CallArgs& args) {
  no_args(args, "reverse");
  if (v.is_string()) {
    std::u32string cps = decode_utf8(v.str());
    std::reverse(cps.begin(), cps.end());
    in.charge(v.str().size());
    return Value(encode_utf8(cps));
  }
  if (!v.is_list() && !v.is_dict() && !v.is_undefined()) {
    throw TemplateError("FilterArgumentError: argument must be iterable");
  }
  std::vector<Value> items = in.iterate(v);
  std::reverse(items.begin(), items.end());
  in.charge(items.size() * sizeof(Value));
  // reversed(list) is an iterator; a generator is materialized into a list.
  return Value::list(std::move(items), v.is_iterator() ? List::Flavor::kList : List::Flavor::kIterator);
}

Value f_slice(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"slices", "fill_with"}, "slice");
  const int64_t slices = int_arg(a[0], 0, "slice");
  if (slices <= 0) value_error("slice count must be positive");
  const std::vector<Value> seq = in.iterate(v);
  const auto length = static_cast<int64_t>(seq.size());
  const int64_t per = length / slices, extra = length % slices;
  int64_t offset = 0;
  std::vector<Value> out;
  for (int64_t n = 0; n < slices; ++n) {
    const int64_t start = offset + n * per;
    if (n < extra) ++offset;
    const int64_t end = offset + (n + 1) * per;
    std::vector<Value> part(seq.begin() + start, seq.begin() + end);
    if (a[1] && !a[1]->is_none() && n >= extra) part.push_back(*a[1]);
    out.push_back(Value::list(std::move(part)));
  }
  return iterator(std::move(out));
}

Value f_sort(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"reverse", "case_sensitive", "attribute"}, "sort");
  const bool reverse = bool_arg(a[0], false);
  const bool lower = !bool_arg(a[1], false);
  std::vector<AttrGetter> getters;
  if (a[2] && a[2]->is_string()) {
    for (const std::string& part : py_split(a[2]->str(), std::string(","), -1)) {
      getters.push_back(AttrGetter{attribute_parts(Value(part)), lower});
    }
  } else {
    getters.push_back(AttrGetter{a[2] ? attribute_parts(*a[2]) : std::vector<Value>{}, lower});
  }
  std::vector<Value> items = in.iterate(v);
  std::vector<std::pair<Value, size_t>> keyed;
  keyed.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    if (getters.size() == 1) {
      keyed.emplace_back(getters[0](in, items[i]), i);
    } else {
      std::vector<Value> ks;
      for (const AttrGetter& g : getters) ks.push_back(g(in, items[i]));
      keyed.emplace_back(Value::list(std::move(ks)), i);
    }
  }
  // Sorting costs n log n comparisons; account for them like bytes of work.
  size_t log2n = 1;
  while ((size_t{1} << log2n) < keyed.size()) ++log2n;
  in.charge_work(keyed.size() * log2n * sizeof(Value));
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return reverse ? key_less(y.first, x.first) : key_less(x.first, y.first);
  });
  std::vector<Value> out;
  out.reserve(items.size());
  for (const auto& k : keyed) out.push_back(items[k.second]);
  in.charge(out.size() * sizeof(Value));
  return Value::list(std::move(out));
}

Value f_sum(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"attribute", "start"}, "sum");
  Value total = a[1] ? *a[1] : Value(0);
  const AttrGetter get{a[0] ? attribute_parts(*a[0]) : std::vector<Value>{}};
  for (const Value& item : in.iterate(v)) total = binary_op(in, BinaryOp::kAdd, total, get(in, item));
  return total;
}

Value f_unique(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"case_sensitive", "attribute"}, "unique");
  const AttrGetter get{a[1] ? attribute_parts(*a[1]) : std::vector<Value>{}, !bool_arg(a[0], false)};
  std::unordered_set<std::string> seen;
  std::vector<Value> out;
  for (Value& item : in.iterate(v)) {
    const Value k = get(in, item);
    const auto h = hash_key(k);
    if (!h) type_error(cat("unhashable type: '", type_name(k), "'"));
    if (seen.insert(*h).second) out.push_back(std::move(item));
  }
  return iterator(std::move(out));
}

struct FilterEntry {
  std::string_view name;
  FilterFn fn;
};

constexpr FilterEntry kFilters[] = {
    {"abs", f_abs},
    {"attr", f_attr},
    {"batch", f_batch},
    {"capitalize", f_capitalize},
    {"center", f_center},
    {"count", f_length},
    {"d", f_default},
    {"default", f_default},
    {"dictsort", f_dictsort},
    {"e", f_escape},
    {"escape", f_escape},
    {"first", f_first},
    {"float", f_float},
    {"forceescape", f_escape},
    {"format", f_format},
    {"indent", f_indent},
    {"int", f_int},
    {"items", f_items},
    {"join", f_join},
    {"last", f_last},
    {"length", f_length},
    {"list", f_list},
    {"lower", f_lower},
    {"map", f_map},
    {"max", f_max},
    {"min", f_min},
    {"reject", f_reject},
    {"rejectattr", f_rejectattr},
    {"replace", f_replace},
    {"reverse", f_reverse},
    {"round", f_round},
    {"safe", f_safe},
    {"select", f_select},
    {"selectattr", f_selectattr},
    {"slice", f_slice},
    {"sort", f_sort},
    {"string", f_string},
    {"sum", f_sum},
    {"title", f_title},
    {"tojson", f_tojson},
    {"trim", f_trim},
    {"truncate", f_truncate},
    {"unique", f_unique},
    {"upper", f_upper},
    {"wordcount", f_wordcount},
};

}  // namespace

FilterFn find_filter(std::string_view name) {
  for (const auto& f : kFilters) {
    if (f.name == name) return f.fn;
  }
  return nullptr;
}

}  // namespace tpinfer::jinja
