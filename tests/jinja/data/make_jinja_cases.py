#!/usr/bin/python3
"""Writes jinja_cases.json: small templates with what Python's jinja2 renders
from them, in the environment Hugging Face transformers builds for chat
templates (the one ../../../../shared/models/templates/render.py uses):
sandboxed, trim_blocks and lstrip_blocks, loopcontrols, tojson that keeps
non-ASCII text, raise_exception, strftime_now fixed to 26 Jul 2024.

Each case: {"name", "template", "context", and "expected" (the rendered text)
or "error" ("ExceptionType: message")}. jinja_test.cc renders every case with
the C++ interpreter and compares. Run with Debian's python3-jinja2:
    /usr/bin/python3 make_jinja_cases.py > jinja_cases.json
"""
import json
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


class TemplateRaised(Exception):
    pass


def environment():
    def raise_exception(message):
        raise TemplateRaised(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime(2024, 7, 26).strftime(fmt)
    return env


MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                         "required": ["city"]}}}]

# (name, template, context)
CASES = [
    # ---- text, output, comments, whitespace control
    ("text", "plain text", {}),
    ("print_types", "{{ 1 }} {{ 1.5 }} {{ 'a' }} {{ true }} {{ false }} {{ none }} {{ x }}|", {}),
    ("print_containers", "{{ [1, 'a', none, true, 1.5, {'k': (1, 2)}, \"it's\", 'q\"x'] }}", {}),
    ("print_repr_escapes", "{{ ['\\n\\t\\x01', 'é', '\\u200b', '\\\\'] }}", {}),
    ("print_tuples", "{{ (1,) }} {{ () }} {{ (1, 'b') }} {{ {} }} {{ {'a': none, 1: 2} }}", {}),
    ("floats", "{{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 0.00001 }} {{ 1/3 }} {{ -0.0 }} {{ 2**0.5 }} {{ 10/2 }} {{ 1.5e300*1e10 }} {{ 123456789.123 }}", {}),
    ("json_numbers", "{{ a }} {{ b }} {{ c }} {{ d }} {{ a + b }}", {"a": 1.0, "b": 2, "c": 1e-7, "d": 12345678901234}),
    ("comment", "a{# hidden #}b{#- strip -#}  c", {}),
    ("ws_minus", "a  {{- 'b' -}}  c\n  {%- if true -%}  d  {%- endif -%}  e", {}),
    ("trim_blocks", "{% if true %}\nyes\n{% endif %}\nafter", {}),
    ("lstrip_blocks", "x\n    {% if true %}\n    in\n    {% endif %}\nend", {}),
    ("lstrip_plus", "x\n    {%+ if true %}in{% endif %}\n", {}),
    ("trim_plus", "{% if true +%}\nyes{% endif %}", {}),
    ("lstrip_not_vars", "x\n    {{ 'v' }}\n", {}),
    ("lstrip_comment", "a\n   {# c #}\nb", {}),
    ("trailing_newline", "line\n", {}),
    ("two_trailing_newlines", "line\n\n", {}),
    ("crlf", "a\r\nb\rc{% if true %}\r\nd{% endif %}", {}),
    ("raw", "{% raw %}{{ not parsed }}{% endraw %}", {}),
    ("raw_ws", "  {% raw -%}  {{ x }}  {%- endraw %}\nz", {}),
    ("lstrip_first_line", "   {% if true %}a{% endif %}", {}),
    ("lstrip_tabs", "\t \t{% if true %}a{% endif %}", {}),
    ("minus_unicode_space", "a\u3000 {{- 'b' }}", {}),
    ("brace_balancing", "{{ {'a': {'b': 1}} }} {{ {'a': 1}['a'] }}", {}),
    # ---- expressions
    ("arith", "{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7.5 % -2 }} {{ 2 ** -1 }} {{ 2 ** 3 ** 2 }} {{ 7 / 2 }} {{ -7.5 // 2 }}", {}),
    ("arith_bool", "{{ true + 1 }} {{ true * 3 }} {{ false - 1 }} {{ 3 * 'ab' }} {{ [1] * 2 }} {{ 'x' * 0 }}", {}),
    ("precedence", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ -2 ** 2 }} {{ not true or true }} {{ 2 + 3 ~ 4 }} {{ 1 ~ 2 + 3 }}", {}),
    ("unary_filter", "{{ -1|abs }} {{ -(1)|abs }} {{ - 'a'|length }}", {}),
    ("concat", "{{ 'a' ~ 1 ~ none ~ undefined_thing ~ [1] }}", {}),
    ("string_concat", "{{ 'a' + 'b' }}{{ \"c\" 'd' }}", {}),
    ("compare", "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 != 'a' }} {{ none == none }}", {}),
    ("in_operator", "{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} {{ 1 in u }}", {}),
    ("and_or_values", "{{ 0 or 'x' }} {{ 1 and 'y' }} {{ '' and 1 }} {{ none or [] }} {{ [] or {} }}|", {}),
    ("truthiness", "{% for v in [0, 1, '', 'a', [], [0], {}, {'a': 1}, none, 0.0, 0.1] %}{{ 'T' if v else 'F' }}{% endfor %}", {}),
    ("cond_expr", "{{ 'a' if true else 'b' }} {{ 'a' if false else 'b' }} [{{ 'a' if false }}] {{ (1 if false) is defined }}", {}),
    ("cond_chain", "{{ 1 if false else 2 if false else 3 }}", {}),
    ("literals", "{{ [1, 2, ] }} {{ {'a': 1, } }} {{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 1_000 }} {{ 1.5e3 }} {{ 1E2 }} {{ True }} {{ None }}", {}),
    ("string_escapes", "{{ 'tab\\there' }}|{{ \"q\\\"q\" }}|{{ 'a\\\\b' }}|{{ '\\x41\\u00e9\\U0001F600' }}|{{ '\\d' }}|{{ '\\101' }}", {}),
    ("string_multiline", "{{ 'a\nb' }}", {}),
    ("attr_item", "{{ d.a }} {{ d['a'] }} {{ d.b.c }} {{ l[0] }} {{ l[-1] }} {{ l.1 }} {{ s[1] }} {{ s[-1] }}", {"d": {"a": 1, "b": {"c": 2}}, "l": [10, 20], "s": "héllo"}),
    ("undefined_attr", "[{{ d.missing }}] [{{ l[5] }}] [{{ d.missing is defined }}] [{{ none.x is defined }}]", {"d": {"a": 1}, "l": [1]}),
    ("dict_key_vs_method", "{{ d['items'] }} {{ d.items is defined }} {{ d['values'] }} {{ d.get('items') }}", {"d": {"items": [1], "values": 2}}),
    ("slices", "{{ l[1:] }} {{ l[:2] }} {{ l[::-1] }} {{ l[::2] }} {{ l[-2:] }} {{ l[1:-1] }} {{ l[10:] }} {{ l[:-10] }} {{ l[3:0:-1] }} {{ s[::-1] }} {{ s[1:3] }}", {"l": [1, 2, 3, 4, 5], "s": "añb€c"}),
    ("tuple_item", "{{ (1, 2)[1] }} {{ [[1, 2]][0][1] }}", {}),
    ("undefined_ops", "{{ x is undefined }} {{ x|default('d') }} {{ x|length }} {{ x|list }} {{ x == x }} {{ x ~ 'y' }} {% for i in x %}no{% else %}empty{% endfor %}", {}),
    ("none_default", "{{ none|default('d') }} {{ ''|default('d', true) }} {{ ''|d('e', boolean=true) }} {{ 0|default(5) }}", {}),
    # ---- statements
    ("if_elif_else", "{% for x in [1, 2, 3] %}{% if x == 1 %}one{% elif x == 2 %}two{% else %}many{% endif %};{% endfor %}", {}),
    ("for_loop_vars", "{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}", {}),
    ("for_prev_next", "{% for x in [1, 2, 3] %}{{ loop.previtem|default('-') }}{{ x }}{{ loop.nextitem|default('-') }} {% endfor %}", {}),
    ("for_cycle_changed", "{% for x in [1, 1, 2, 3, 3] %}{{ loop.cycle('a', 'b') }}{{ loop.changed(x) }} {% endfor %}", {}),
    ("for_else", "{% for x in [] %}a{% else %}empty{% endfor %}{% for x in [1] %}a{% else %}empty{% endfor %}", {}),
    ("for_filter", "{% for x in range(10) if x is odd %}{{ x }}:{{ loop.index }}/{{ loop.length }} {% endfor %}", {}),
    ("for_dict", "{% for k in d %}{{ k }}{% endfor %} {% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %} {% for k, v in d|items %}{{ k }}{{ v }}{% endfor %}", {"d": {"z": 1, "a": 2, "m": 3}}),
    ("for_unpack", "{% for a, b in [(1, 2), [3, 4]] %}{{ a }}{{ b }}{% endfor %}", {}),
    ("for_nested_loop", "{% for a in [1, 2] %}{% for b in 'xy' %}{{ loop.index }}{{ a }}{{ b }} {% endfor %}{{ loop.index }}|{% endfor %}", {}),
    ("for_string_chars", "{% for c in 'né👍' %}[{{ c }}]{% endfor %}", {}),
    ("break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("for_recursive", "{% for n in tree recursive %}{{ n.name }}{% if n.children %}({{ loop(n.children) }}){% endif %}{{ loop.depth }}{% endfor %}",
     {"tree": [{"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}, {"name": "d"}]}, {"name": "e"}]}),
    ("scope_for", "{% set x = 1 %}{% for i in range(3) %}[{{ x }}{% set x = x + 10 %}{{ x }}]{% endfor %}{{ x }}", {}),
    ("scope_if", "{% if true %}{% set z = 3 %}{% endif %}{{ z }}", {}),
    ("scope_loop_var", "{% for i in [1] %}{{ i }}{% endfor %}[{{ i }}]", {}),
    ("scope_else", "{% for x in [] %}{% else %}{% set y = 5 %}{{ y }}{% endfor %}[{{ y }}]", {}),
    ("set_tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set (c, (d, e)) = (3, (4, 5)) %}{{ c }}{{ d }}{{ e }}", {}),
    ("set_block", "{% set x %}  hello {{ 1 }}{% endset %}[{{ x }}]", {}),
    ("set_block_filter", "{% set x | upper | replace('B', 'b') %}abc{% endset %}{{ x }}", {}),
    ("set_block_scope", "{% set x %}{% set y = 3 %}{{ y }}{% endset %}{{ x }}[{{ y }}]", {}),
    ("namespace", "{% set ns = namespace(a=1, b=[]) %}{% for i in range(3) %}{% set ns.a = ns.a + i %}{% set ns.b = ns.b + [i] %}{% endfor %}{{ ns.a }} {{ ns.b }} {{ ns.c is defined }}", {}),
    ("namespace_dict_arg", "{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}{{ ns['a'] }}", {}),
    ("with", "{% set x = 1 %}{% with x = 2, y = x %}{{ x }}{{ y }}{% endwith %}{{ x }}", {}),
    ("filter_block", "{% filter upper %}abc {{ 'd' }}{% endfilter %}", {}),
    ("macro_basic", "{% macro m(a, b='B', c=none) %}{{ a }}-{{ b }}-{{ c }}{% endmacro %}{{ m(1) }} {{ m(1, 2) }} {{ m(1, c=3) }} {{ m(a=4) }}", {}),
    ("macro_missing_arg", "{% macro m(a, b) %}[{{ a }}][{{ b }}][{{ b is defined }}]{% endmacro %}{{ m(1) }}", {}),
    ("macro_varargs_kwargs", "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, x=4) }}", {}),
    ("macro_recursive", "{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(5) }}", {}),
    ("macro_closure", "{% set x = 1 %}{% macro m() %}{{ x }}{% endmacro %}{% set x = 2 %}{{ m() }}", {}),
    ("macro_no_loop_vars", "{% macro m() %}[{{ i }}]{% endmacro %}{% for i in range(2) %}{{ m() }}{% endfor %}", {}),
    ("macro_in_loop", "{% for i in range(2) %}{% macro m() %}{{ i }}{% endmacro %}{{ m() }}{% endfor %}", {}),
    ("macro_default_uses_param", "{% macro m(a, b=a * 2) %}{{ a }}{{ b }}{% endmacro %}{{ m(3) }}", {}),
    ("macro_returns_string", "{% macro m() %}  x  {% endmacro %}[{{ m()|trim }}] {{ m() is string }}", {}),
    ("macro_attrs", "{% macro mm(a, b) %}{% endmacro %}{{ mm.name }} {{ mm.arguments }}", {}),
    ("call_block", "{% macro wrap(t) %}<{{ t }}>{{ caller() }}</{{ t }}>{% endmacro %}{% call wrap('b') %}in{% endcall %}", {}),
    ("call_block_args", "{% macro each(xs) %}{% for x in xs %}{{ caller(x) }}{% endfor %}{% endmacro %}{% call(item) each([1, 2]) %}[{{ item }}]{% endcall %}", {}),
    ("print_tag", "{% print 'a', 1 %}", {}),
    # ---- tests
    ("tests_types", "{% for v in [1, 1.5, 'a', none, true, [1], {'a': 1}, (1,)] %}{{ v is number }}{{ v is integer }}{{ v is float }}{{ v is string }}{{ v is none }}{{ v is boolean }}{{ v is mapping }}{{ v is iterable }}{{ v is sequence }} {% endfor %}", {}),
    ("tests_undefined", "{{ x is defined }}{{ x is undefined }}{{ x is iterable }}{{ x is sequence }}{{ x is string }}{{ x is none }}{{ x is callable }}", {}),
    ("tests_values", "{{ 3 is odd }}{{ 3 is even }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(2) }}{{ true is true }}{{ 1 is true }}{{ false is false }}{{ 0 is false }}", {}),
    ("tests_compare", "{{ 1 is eq 1 }}{{ 1 is equalto 2 }}{{ 1 is ne 2 }}{{ 1 is lt 2 }}{{ 2 is le 2 }}{{ 3 is gt 2 }}{{ 3 is ge 4 }}{{ 2 is in [1, 2] }}{{ none is sameas none }}", {}),
    ("tests_case", "{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ 'aBc' is lower }}{{ '12' is upper }}", {}),
    ("tests_callable", "{{ range is callable }}{{ 'a'.upper is callable }}{{ 1 is callable }}{% macro m() %}{% endmacro %}{{ m is callable }}", {}),
    ("tests_not", "{{ x is not defined }} {{ not x is defined }} {{ 1 is not string }}", {}),
    ("test_filter_test", "{{ 'upper' is filter }}{{ 'nope' is filter }}{{ 'odd' is test }}", {}),
    # ---- filters
    ("f_trim", "[{{ '  a b \n'|trim }}] [{{ 'xxaxx'|trim('x') }}] [{{ x|trim }}]", {}),
    ("f_length", "{{ 'héllo'|length }} {{ [1, 2]|count }} {{ {'a': 1}|length }} {{ ''|length }}", {}),
    ("f_first_last", "{{ [1, 2, 3]|first }} {{ [1, 2, 3]|last }} {{ 'abc'|first }} {{ 'abc'|last }} [{{ []|first }}] {{ {'a': 1, 'b': 2}|first }}", {}),
    ("f_join", "{{ [1, 'a', none, true]|join(', ') }} {{ 'abc'|join('-') }} {{ users|join(', ', attribute='name') }} {{ []|join }}|", {"users": [{"name": "x"}, {"name": "y"}]}),
    ("f_replace", "{{ 'aaa'|replace('a', 'b') }} {{ 'aaa'|replace('a', 'b', 2) }} {{ 'abc'|replace('', '-') }} {{ 1|replace('1', 'one') }}", {}),
    ("f_case", "{{ 'hello WORLD'|upper }} {{ 'Hello'|lower }} {{ 'hello wORLD-foo (bar)'|title }} {{ 'hELLO world'|capitalize }} {{ 'éà ß'|upper }}", {}),
    ("f_default", "{{ x|default('a') }} {{ x|d('b') }} {{ 1|default(2) }} {{ false|default('c', true) }}", {}),
    ("f_string_int_float", "{{ 1|string }} {{ [1]|string }} {{ '42'|int + 1 }} {{ '4.7'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ '0x1A'|int(0, 16) }} {{ 3.9|int }} {{ '3'|float }} {{ 'a'|float }} {{ 2|float }} {{ ' 12 '|int }} {{ '1_000'|int }} {{ true|int }}", {}),
    ("f_list", "{{ 'ab'|list }} {{ (1, 2)|list }} {{ {'a': 1}|list }} {{ x|list }}", {}),
    ("f_map", "{{ users|map(attribute='name')|join(',') }} {{ ['a', 'b']|map('upper')|list }} {{ users|map(attribute='age', default=0)|list }} {{ [' a ']|map('trim')|list }}", {"users": [{"name": "x", "age": 3}, {"name": "y"}]}),
    ("f_select_reject", "{{ [1, 2, 3, 4]|select('odd')|list }} {{ [1, 2, 3, 4]|reject('odd')|list }} {{ [0, 1, '', 'a']|select|list }} {{ [1, 5, 10]|select('gt', 3)|list }} {{ ['a', 'b']|select('equalto', 'a')|list }}", {}),
    ("f_selectattr", "{{ msgs|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }} {{ msgs|rejectattr('role', 'in', ['user', 'system'])|list|length }} {{ msgs|selectattr('tool_calls')|list }} {{ msgs|selectattr('tool_calls', 'defined')|list|length }} {{ msgs|selectattr('role', '==', 'system')|list|length }}", {"msgs": MSGS}),
    ("generator_truthy", "{% if []|select %}T{% endif %}{% if [1]|select %}U{% endif %}{% if []|select|list %}V{% endif %}", {}),
    ("f_items_dictsort", "{{ d|items|list }} {{ d|dictsort }} {{ d|dictsort(reverse=true) }} {{ d|dictsort(by='value') }} {{ {'b': 1, 'A': 2, 'a': 3}|dictsort }} {{ {'b': 1, 'A': 2}|dictsort(true) }}", {"d": {"b": 2, "a": 3, "c": 1}}),
    ("f_sort", "{{ [3, 1, 2]|sort }} {{ ['b', 'A', 'a', 'B']|sort }} {{ ['b', 'A', 'a']|sort(case_sensitive=true) }} {{ [3, 1, 2]|sort(reverse=true) }} {{ users|sort(attribute='age')|map(attribute='name')|join }} {{ users|sort(attribute='age,name')|map(attribute='name')|join }}",
     {"users": [{"name": "b", "age": 3}, {"name": "a", "age": 3}, {"name": "c", "age": 1}]}),
    ("f_unique", "{{ ['a', 'A', 'b', 'a']|unique|list }} {{ ['a', 'A']|unique(case_sensitive=true)|list }} {{ users|unique(attribute='age')|map(attribute='name')|list }}", {"users": [{"name": "b", "age": 3}, {"name": "a", "age": 3}, {"name": "c", "age": 1}]}),
    ("f_min_max_sum", "{{ [3, 1, 2]|min }} {{ [3, 1, 2]|max }} {{ ['b', 'A', 'c']|max }} {{ ['b', 'A', 'c']|min }} {{ [1, 2, 3]|sum }} {{ [1.5, 2]|sum(start=10) }} {{ users|sum(attribute='age') }} {{ users|max(attribute='age') }} [{{ []|max }}]", {"users": [{"name": "b", "age": 3}, {"name": "c", "age": 1}]}),
    ("f_reverse", "{{ 'abc'|reverse }} {{ [1, 2, 3]|reverse|list }} {{ (1, 2)|reverse|list }} {% for x in [1, 2]|reverse %}{{ x }}{% endfor %}", {}),
    ("f_round_abs", "{{ 2.5|round }} {{ 3.5|round }} {{ 2.675|round(2) }} {{ 1.2345|round(2, 'floor') }} {{ 1.2|round(0, 'ceil') }} {{ 3|round }} {{ -3|abs }} {{ -2.5|abs }} {{ 1234.5|round(-2) }} {{ 0.5|round }} {{ -0.5|round }}", {}),
    ("f_tojson", "{{ d|tojson }} {{ d|tojson(indent=2) }} {{ 'é\"\\n'|tojson }} {{ [1, none, true, 1.5]|tojson }} {{ d|tojson(sort_keys=true) }} {{ d|tojson(separators=(',', ':')) }} {{ 'é'|tojson(ensure_ascii=true) }} {{ {}|tojson(indent=2) }} {{ []|tojson(indent=2) }}",
     {"d": {"z": [1, {"x": None}], "a": "b"}}),
    ("f_tojson_tools", "{% for t in tools %}{{ t|tojson(indent=4) }}\n{{ t|tojson }}{% endfor %}", {"tools": TOOLS}),
    ("f_tojson_emoji", "{{ s|tojson }} {{ s|tojson(ensure_ascii=true) }}", {"s": "👍🏽 \u0001\u007f\t"}),
    ("f_indent", "{{ 'a\nb\n\nc'|indent }}|{{ 'a\nb'|indent(2, true) }}|{{ 'a\n\nb'|indent(2, blank=true) }}|{{ 'a\nb'|indent('> ') }}", {}),
    ("f_center_truncate_wordcount", "[{{ 'ab'|center(6) }}] [{{ 'abc'|center(6) }}] {{ 'hello world foo bar'|truncate(12) }} {{ 'hello world foo bar'|truncate(12, true) }} {{ 'short'|truncate(12) }} {{ 'one two, three'|wordcount }}", {}),
    ("f_batch_slice", "{{ [1, 2, 3, 4, 5]|batch(2)|list }} {{ [1, 2, 3]|batch(2, 'x')|list }} {{ [1, 2, 3, 4, 5]|slice(2)|list }}", {}),
    ("f_format", "{{ '%s-%d'|format('a', 3) }} {{ '%(a)s'|format(a=1) }} {{ '%5.1f|%-4s|'|format(3.14159, 'x') }}", {}),
    ("f_escape_safe", "{{ '<a href=\"x\">&\\'</a>'|e }} {{ '<b>'|safe }} {{ 1|escape }}", {}),
    ("f_attr", "{{ d|attr('a') is defined }} {{ 'abc'|attr('upper') is defined }} {{ ns|attr('x') }}", {"d": {"a": 1}}),
    ("f_chain", "{{ '  Hello World  '|trim|lower|replace('world', 'there')|title }}", {}),
    ("f_string_of_values", "{{ none|string }} {{ true|string }} {{ {'a': [1, 'b']}|string }} {{ 1.0|string }}", {}),
    # ---- methods
    ("str_methods_strip", "[{{ '  a  '.strip() }}][{{ '  a  '.lstrip() }}][{{ '  a  '.rstrip() }}][{{ 'xxaxx'.strip('x') }}][{{ '\n\na\n'.lstrip('\n') }}]", {}),
    ("str_methods_split", "{{ 'a,b,,c'.split(',') }} {{ '  a  b c '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ 'a\nb\r\nc'.splitlines() }} {{ ''.split(',') }} {{ ''.split() }}", {}),
    ("str_methods_affix", "{{ 'hello'.startswith('he') }} {{ 'hello'.endswith('lo') }} {{ 'hello'.startswith(('x', 'h')) }} {{ 'hello'.endswith('x') }} {{ 'hello'.startswith('l', 2) }}", {}),
    ("str_methods_case", "{{ 'aBc dEf'.upper() }} {{ 'aBc'.lower() }} {{ 'hello world'.title() }} {{ \"they're bill's\".title() }} {{ 'aBC'.capitalize() }} {{ 'aBc'.swapcase() }}", {}),
    ("str_methods_find", "{{ 'hello'.find('l') }} {{ 'hello'.rfind('l') }} {{ 'hello'.find('z') }} {{ 'hello'.index('e') }} {{ 'hello'.count('l') }} {{ 'héllo'.find('l') }}", {}),
    ("str_methods_misc", "{{ 'a-b'.replace('-', '+') }} {{ ', '.join(['a', 'b']) }} {{ 'ab'.ljust(4, '.') }}|{{ 'ab'.rjust(4) }}|{{ 'ab'.center(5, '*') }} {{ '42'.zfill(5) }} {{ '-42'.zfill(5) }} {{ 'abc'.removeprefix('a') }} {{ 'abc'.removesuffix('c') }} {{ 'a=b=c'.partition('=') }} {{ 'a=b=c'.rpartition('=') }}", {}),
    ("str_methods_is", "{{ '123'.isdigit() }}{{ 'abc'.isalpha() }}{{ 'ab1'.isalnum() }}{{ '  '.isspace() }}{{ 'Ab'.istitle() }}{{ 'AB'.isupper() }}{{ 'ab'.islower() }}{{ ''.isdigit() }}", {}),
    ("str_format_method", "{{ '{} {}'.format(1, 'a') }} {{ '{0}{1}{0}'.format('a', 'b') }} {{ '{x:>5}|{y:<4}|{z:^7.2f}'.format(x='a', y=1, z=2.5) }} {{ '{:,}'.format(1234567) }} {{ '{:08.3f}'.format(-3.14159) }} {{ '{{}}'.format() }} {{ '{!r}'.format('a') }} {{ '{:x}'.format(255) }} {{ '{:#b}'.format(5) }} {{ '{:+d}'.format(5) }} {{ '{0[a]}'.format({'a': 1}) }}", {}),
    ("percent_format", "{{ '%s-%d' % ('a', 3) }} {{ '%05.2f' % 3.14159 }} {{ '%(a)s' % {'a': 1} }} {{ '%s' % [1] }} {{ '%x %o %e %g %r %c %%' % (255, 8, 1.5, 0.0001, 'x', 65) }} {{ '%5s|%-5s|' % ('a', 'b') }} {{ '%.2s' % 'abc' }} {{ '%d' % 3.9 }}", {}),
    ("dict_methods", "{{ d.keys()|list }} {{ d.values()|list }} {{ d.items()|list }} {{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 5) }} {{ d.copy() }}", {"d": {"a": 1, "b": 2}}),
    ("list_methods", "{{ l.index(2) }} {{ l.count(1) }} {{ l.copy() }}", {"l": [1, 2, 1]}),
    ("globals", "{{ range(3)|list }} {{ range(1, 7, 2)|list }} {{ range(5, 0, -2)|list }} {{ dict(a=1, b=2) }} {{ strftime_now('%Y-%m-%d %d %b %Y') }}", {}),
    ("joiner_cycler", "{% set j = joiner('|') %}{% for x in 'abc' %}{{ j() }}{{ x }}{% endfor %} {% set c = cycler('a', 'b') %}{{ c.next() }}{{ c.next() }}{{ c.next() }}{{ c.current }}", {}),
    ("messages_like", "{% for m in messages %}{{ '<|' + m.role + '|>' + m['content'] | trim }}{% if not loop.last %}\n{% endif %}{% endfor %}", {"messages": MSGS}),
    ("messages_reverse_ns", "{% set ns = namespace(last=-1) %}{% for m in messages[::-1] %}{% set i = (messages|length - 1) - loop.index0 %}{% if ns.last == -1 and m.role == 'user' %}{% set ns.last = i %}{% endif %}{% endfor %}{{ ns.last }}", {"messages": MSGS}),
    ("bool_json_context", "{{ flag }} {{ flag is true }} {{ n is none }} {{ flag == 1 }}", {"flag": True, "n": None}),
    ("unicode_text", "日本語 {{ s }} {{ s|length }} {{ s[0] }} {{ s|upper }}", {"s": "ünï 👍🏽"}),
    # ---- harder corners
    ("ws_combo", "a\n  {%- for x in [1, 2] -%}\n  [{{ x }}]\n  {%- endfor %}\n  b\n{#- c -#}\n  d", {}),
    ("ws_var_minus_newline", "{{ 'a' -}}\n\n  {{ 'b' }}\n{{- 'c' }}", {}),
    ("ws_block_at_eof", "x{% if true %}y{% endif %}\n", {}),
    ("lstrip_after_text", "abc  {% if true %}x{% endif %}", {}),
    ("lstrip_multi_lines", "a\n\n   {% for i in [1] %}\n   {{ i }}\n   {% endfor %}\n\nb", {}),
    ("comment_multiline", "a\n{# one\n two #}\nb", {}),
    ("raw_plus_minus", "x {%- raw %} a {% endraw -%} y", {}),
    ("numbers_edge", "{{ 0.1 + 0.2 }} {{ 1e22 }} {{ 5e-324 }} {{ 1.7976931348623157e308 }} {{ 100.0 }} {{ 1e-4 }} {{ 123e-20 }} {{ 2**62 }} {{ -2**63 }}", {}),
    ("int_float_mix", "{{ 3 // 2.0 }} {{ -3 % 2.5 }} {{ 2 ** 0.5 > 1 }} {{ 10 % 3 }} {{ -10 % 3 }} {{ 10 % -3 }} {{ 7.0 // -2 }}", {}),
    ("eq_mixed", "{{ 1 == true }} {{ 0 == false }} {{ [1] == [1.0] }} {{ (1,) == [1] }} {{ {'a': 1} == {'a': 1.0} }} {{ 'a' == ['a'] }}", {}),
    ("dict_int_keys", "{% set d = {1: 'a', true: 'b', 1.0: 'c'} %}{{ d }} {{ d[1] }}", {}),
    ("nested_macro_caller", "{% macro outer() %}<{{ caller('x') }}>{% endmacro %}{% macro inner(v) %}({{ v }}){% endmacro %}{% call(v) outer() %}{{ inner(v) }}{% endcall %}", {}),
    ("macro_loop_inside", "{% macro m(xs) %}{% for x in xs %}{{ loop.index }}{{ x }}{% endfor %}{% endmacro %}{{ m('ab') }}{{ m([]) }}", {}),
    ("macro_set_local", "{% set x = 'outer' %}{% macro m() %}{% set x = 'inner' %}{{ x }}{% endmacro %}{{ m() }}{{ x }}", {}),
    ("macro_ns_mutation", "{% set ns = namespace(n=0) %}{% macro inc() %}{% set ns.n = ns.n + 1 %}{% endmacro %}{{ inc() }}{{ inc() }}{{ ns.n }}", {}),
    ("loop_in_filter_test", "{% for x in [1, 2, 3] if x > loop_limit %}{{ x }}{% endfor %}", {"loop_limit": 1}),
    ("loop_length_after_break", "{% for x in range(5) %}{{ loop.length }}{% if loop.index == 2 %}{% break %}{% endif %}{% endfor %}", {}),
    ("set_in_loop_visible_in_iter", "{% for x in [1, 2] %}{% set y = x * 10 %}{{ y }}{% endfor %}", {}),
    ("unicode_case", "{{ 'ÀÉÎõü'|lower }} {{ 'straße'|upper }} {{ 'ĳ ǅ'|upper }} {{ 'ΑΒΓ'|lower }} {{ 'привет'|upper }} {{ 'élan vital'|title }} {{ 'ǆ'|capitalize }}", {}),
    ("unicode_strip", "[{{ '\u00a0\u3000a\u2003'|trim }}] [{{ '\u200ba'|trim }}]", {}),
    ("repr_unicode", "{{ ['\u00a0', '\u00ad', 'ü', '\u2028', '\U0001F600', '\x7f', '\ud7ff'] }}", {}),
    ("round_more", "{{ 0.125|round(2) }} {{ 0.375|round(2) }} {{ 1.005|round(2) }} {{ -1.5|round }} {{ 1e20|round(2) }} {{ 15|round(-1) }} {{ 25|round(-1) }}", {}),
    ("truncate_more", "{{ 'aaaa bbbb cccc dddd'|truncate(9, leeway=0) }}|{{ 'aaaa bbbb'|truncate(8, end='!', leeway=0) }}|{{ 'abcdefghij'|truncate(5, false, '..', 0) }}", {}),
    ("indent_more", "{{ 'a\n  b\n'|indent(3) }}|{{ ''|indent }}|{{ 'x'|indent(first=true) }}", {}),
    ("wordcount_more", "{{ 'héllo wörld, it\\'s 42_x!'|wordcount }} {{ '日本 語'|wordcount }}", {}),
    ("title_filter_more", "{{ \"it's a-b (c) [d] {e} <f> g_h\"|title }}", {}),
    ("format_more", "{{ '{:>6}'.format('é') }}|{{ '{:.3}'.format('abcdef') }}|{{ '{:.2}'.format(1.0) }}|{{ '{:.2}'.format(1234.5) }}|{{ '{:e}'.format(12345.678) }}|{{ '{:%}'.format(0.25) }}|{{ '{:_}'.format(1234567) }}|{{ '{}'.format(none) }}|{{ '{:5}'.format(12) }}|{{ '{:<5}'.format(true) }}", {}),
    ("percent_more", "{{ '%3d|%-3d|%03d' % (5, 5, 5) }} {{ '%+d % d' % (5, 5) }} {{ '%.3e' % 12345.6789 }} {{ '%g %g' % (1e-5, 123456789) }} {{ '%s %s' % (none, true) }} {{ '%r' % ['a'] }} {{ '%#x %#o' % (255, 8) }} {{ '100%%' % () }}", {}),
    ("sort_mixed_case_stable", "{{ ['b', 'B', 'a', 'A']|sort }} {{ ['b', 'B', 'a', 'A']|sort(reverse=true) }}", {}),
    ("dictsort_values", "{{ {'a': 'B', 'b': 'a', 'c': 'C'}|dictsort(false, 'value') }}", {}),
    ("map_filter_args", "{{ ['a-b', 'c-d']|map('replace', '-', '+')|list }} {{ [1.26, 2.5]|map('round', 1)|list }} {{ [[1, 2], [3]]|map('length')|list }}", {}),
    ("select_more", "{{ [none, 1, none]|reject('none')|list }} {{ ['a', 1, 'b']|select('string')|list }} {{ [{'a': 1}, {'a': none}, {}]|selectattr('a', 'none')|list }} {{ [{'a': {'b': 1}}, {'a': {'b': 2}}]|selectattr('a.b', 'eq', 2)|list }}", {}),
    ("attribute_paths", "{{ users|map(attribute='tags.0')|list }} {{ users|sort(attribute='info.age')|map(attribute='name')|list }}", {"users": [{"name": "x", "tags": ["t1"], "info": {"age": 9}}, {"name": "y", "tags": ["t2"], "info": {"age": 2}}]}),
    ("items_of_undefined", "{% for k, v in nope|items %}{{ k }}{% else %}none{% endfor %}", {}),
    ("string_iteration_filters", "{{ 'hello'|unique|list }} {{ 'cab'|sort }} {{ 'abc'|select('ne', 'b')|join }} {{ 'a b'|list|length }}", {}),
    ("loop_object_print", "{% for x in [1] %}{{ loop.depth }}{{ loop.depth0 }}{% endfor %}", {}),
    ("tuple_literals", "{% set t = 1, 2 %}{{ t }} {{ t|length }} {% for a in (1, 2), (3, 4) %}{{ a }}{% endfor %}", {}),
    ("if_tuple_test", "{% if 1, 0 %}tuple true{% endif %}", {}),
    ("nested_data", "{{ d.a[0].b['c'][1:] }} {{ d['a'][0]['b'].c|length }}", {"d": {"a": [{"b": {"c": "xyz"}}]}}),
    ("none_in_concat_plus", "{{ 'a' ~ none }}", {}),
    ("str_of_float_json", "{{ x }} {{ x|string }} {{ x|tojson }} {{ [x] }}", {"x": 2.0}),
    ("big_ints", "{{ n }} {{ n + 1 }} {{ n|tojson }}", {"n": 9007199254740993}),
    ("empty_template", "", {}),
    ("only_ws_control", "  {%- if true -%}  {%- endif -%}  ", {}),
    ("filter_then_test", "{{ messages|selectattr('role', 'equalto', 'user')|list|length is odd }}", {"messages": MSGS}),
    ("test_arg_postfix", "{{ 2 is in [1, 2][0:2] }} {{ 'a' is in {'a': 1} }}", {}),
    ("neg_index_str", "{{ 'abc'[-1] }}{{ 'abc'[-3] }}[{{ 'abc'[-4] }}]", {}),
    ("bool_ops_short", "{{ false and x.y }} {{ true or x.y }}", {}),
    ("concat_list_repr", "{{ 'v: ' ~ [1, 'a'] ~ {'k': none} }}", {}),
    # ---- found by differential fuzzing
    ("fuzz_truncate_non_string", "{{ l|truncate(5) }} {{ []|truncate(5, leeway=0) is sequence }} {% if []|truncate(5) %}T{% else %}F{% endif %}", {"l": [1, 2]}),
    ("fuzz_select_false", "{{ false|select|list }} {{ 0|map('string')|list }} {{ none|selectattr('a')|list }} {{ ''|reject|list }}", {}),
    ("fuzz_str_mod_undefined", "{{ 'plain' % nope }}|{{ '%s!' % nope }}", {}),
    ("fuzz_reverse_undefined", "{{ nope|reverse|list }}", {}),
    ("fuzz_seq_times_bool", "{{ 'ab' * true }}{{ [1] * false }}{{ true * 'c' }}", {}),
    ("err_fuzz_indent_list", "{{ [1]|indent }}", {}),
    ("err_fuzz_indent_int", "{{ 5|indent }}", {}),
    ("err_fuzz_indent_undefined", "{{ nope|indent }}", {}),
    ("err_fuzz_truncate_int", "{{ 5|truncate(3) }}", {}),
    ("err_fuzz_truncate_long_list", "{{ [1, 2, 3, 4, 5, 6, 7, 8]|truncate(3, leeway=0) }}", {}),
    ("err_fuzz_int_undefined", "{{ nope|int }}", {}),
    ("err_fuzz_float_div_zero", "{{ 1.5 / 0 }}", {}),
    ("err_fuzz_float_floordiv_zero", "{{ 1.5 // 0 }}", {}),
    ("err_fuzz_int_mod_zero", "{{ 1 % 0 }}", {}),
    ("err_fuzz_seq_times_str", "{{ 'a' * 'b' }}", {}),
    ("err_fuzz_dictsort_str", "{{ 'a'|dictsort }}", {}),
    ("err_fuzz_reverse_int", "{{ 5|reverse }}", {}),
    ("err_fuzz_abs_undefined", "{{ nope|abs }}", {}),
    ("err_fuzz_round_undefined", "{{ nope|round }}", {}),
    ("err_fuzz_find_int", "{{ 'abc'.find(1) }}", {}),
    ("err_fuzz_replace_int", "{{ 'abc'.replace(1, 'x') }}", {}),
    ("fuzz_for_else_after_break", "{% for x in [1, 2] %}{% break %}{% else %}ELSE{% endfor %}|{% for x in [1, 2] %}{% continue %}{% else %}ELSE{% endfor %}|{% for x in [1, 2] %}{% if x == 2 %}{% break %}{% endif %}{% else %}ELSE{% endfor %}", {}),
    ("fuzz_break_in_filter_block", "{% for x in [1, 2] %}{% filter upper %}a{{ x }}{% break %}{% endfilter %}b{% endfor %}|{% for x in [1, 2] %}{% set s %}{{ x }}{% continue %}{% endset %}{{ s }}{% endfor %}", {}),
    ("fuzz_macro_special_names", "{% macro a(p=varargs) %}[{{ p }}]{% endmacro %}{{ a() }}{% macro b(p=varargs) %}[{{ p }}{{ varargs }}]{% endmacro %}{{ b() }}{{ b(1, 2) }}{% macro c() %}{{ kwargs }}{{ caller is defined }}{% endmacro %}{{ c(x=1) }}{% call c() %}{% endcall %}", {}),
    ("fuzz_macro_kwargs_positional", "{% macro m(a, b=2) %}{{ a }}{{ b }}{{ kwargs }}{% endmacro %}{{ m(1, a=5) }}{{ m(b=3, a=4) }}", {}),
    ("fuzz_caller_repr", "{% macro m() %}{{ kwargs }}{% endmacro %}{% call m() %}{% endcall %}", {}),
    ("err_macro_keyword_twice", "{% macro m(a) %}{% endmacro %}{{ m(1, a=2) }}", {}),
    ("err_macro_too_many", "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", {}),
    ("err_macro_unknown_keyword", "{% macro m(a) %}{% endmacro %}{{ m(b=1) }}", {}),
    ("err_call_without_caller", "{% macro m() %}x{% endmacro %}{% call m() %}body{% endcall %}", {}),
    ("err_loop_after_break_else", "{% for x in [1] %}{% break %}{% else %}{{ loop.index }}{% endfor %}", {}),
    ("generators_are_consumed", "{% set g = [1, 2, 3]|select %}{{ g|first }}|{% for x in g %}{{ x }}{% endfor %}|{% for x in g %}{{ x }}{% endfor %}|{{ g|list }} {% set h = [1, 2, 3]|map('string') %}{{ 2 in [1, 2]|select }}{{ '2' in h }}{{ h|join(',') }}|{{ h|join(',') }} {% set r = [1, 2]|reverse %}{{ r|list }}{{ r|list }}", {}),
    ("unknown_filter_in_untaken_if", "{% if false %}{{ x|nope }}{% endif %}ok{{ 1 if true else 2|nope }}", {}),
    ("err_unknown_filter_in_taken_if", "{% if true %}{{ x|nope }}{% endif %}", {}),
    ("err_unknown_test_in_cond_expr", "{{ 1 if false else (2 is nosuchtest) }}", {}),
    ("err_unknown_filter_in_loop_in_if", "{% if false %}{% for a in [1] %}{{ x|nope }}{% endfor %}{% endif %}", {}),
    # ---- syntax errors (the C++ side throws FormatError)
    ("syntax_unclosed_if", "{% if true %}a", {}),
    ("syntax_unknown_tag", "{% frobnicate %}", {}),
    ("syntax_bad_expr", "{{ 1 + }}", {}),
    ("syntax_unclosed_var", "{{ x", {}),
    ("syntax_unexpected_end", "{% endfor %}", {}),
    ("syntax_bad_char", "{{ x $ y }}", {}),
    ("syntax_unbalanced", "{{ (1 }}", {}),
    ("syntax_unclosed_comment", "{# open", {}),
    ("syntax_break_outside", "{% break %}", {}),
    ("syntax_default_order", "{% macro m(a=1, b) %}{% endmacro %}", {}),
    ("syntax_unclosed_string", "{{ 'abc }}", {}),
    # ---- errors
    ("err_raise", "{{ raise_exception('Custom failure: ' ~ 42) }}", {}),
    ("err_raise_in_loop", "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% endfor %}", {"messages": MSGS}),
    ("err_undefined_attr", "{{ x.y }}", {}),
    ("err_undefined_chain", "{{ d.b.c }}", {"d": {"a": 1}}),
    ("err_undefined_item", "{{ l[3].c }}", {"l": [1]}),
    ("err_none_attr", "{{ none.foo.bar }}", {}),
    ("err_add_types", "{{ 'a' + 1 }}", {}),
    ("err_add_types2", "{{ 1 + 'a' }}", {}),
    ("err_list_add", "{{ [1] + 'a' }}", {}),
    ("err_undefined_add", "{{ x + 1 }}", {}),
    ("err_call_undefined", "{{ nope() }}", {}),
    ("err_unsafe_append", "{% set l = [1] %}{{ l.append(2) }}", {}),
    ("err_unsafe_update", "{% set d = {} %}{{ d.update({'a': 1}) }}", {}),
    ("err_div_zero", "{{ 1 / 0 }}", {}),
    ("err_compare", "{{ 1 < 'a' }}", {}),
    ("err_not_iterable", "{% for x in 5 %}{% endfor %}", {}),
    ("err_unpack", "{% set a, b = [1, 2, 3] %}", {}),
    ("err_in_none", "{{ 'a' in none }}", {}),
    ("err_no_filter", "{{ 1|nosuchfilter }}", {}),
    ("err_ns_assign", "{% set d = {} %}{% set d.x = 1 %}", {}),
    ("err_tojson_undefined", "{{ x|tojson }}", {}),
    ("err_range_too_big", "{{ range(200000)|length }}", {}),
    ("err_items_not_mapping", "{{ [1]|items|list }}", {}),
    ("err_generator_length", "{{ [1]|select|length }}", {}),
    ("err_str_join_int", "{{ ','.join([1]) }}", {}),
]


def main():
    env = environment()
    out = []
    for name, source, context in CASES:
        case = {"name": name, "template": source, "context": context}
        try:
            case["expected"] = env.from_string(source).render(**context)
        except Exception as e:  # the type and message the C++ side must match
            case["error"] = f"{type(e).__name__}: {e}"
        out.append(case)
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
