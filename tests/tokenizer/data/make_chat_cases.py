#!/usr/bin/python3
"""Writes chat_cases.json: what Python's jinja2 renders from every chat template
in the shared models/templates folder for conversations that exercise more of
the templates than models/templates/conversations.json does (tool calls and
tool results, reasoning content, template options). The environment is the one
of models/templates/render.py (transformers' apply_chat_template).

Each case: {"conversation", "template", "expected"} or {..., "error"}.
chat_template_test.cc renders them with ChatTemplate and compares. Run with
Debian's python3-jinja2 from this folder:
    /usr/bin/python3 make_chat_cases.py ../../../../shared/models/templates > chat_cases.json
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "jinja", "data"))
from make_jinja_cases import environment  # noqa: E402

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Unit"},
        "days": {"type": "integer", "description": "Forecast days", "default": 1}},
        "required": ["city"]}}}
SEARCH = {"type": "function", "function": {
    "name": "search", "description": "Search the web",
    "parameters": {"type": "object", "properties": {
        "query": {"type": "string", "description": "What to look for"},
        "filters": {"type": "array", "items": {"type": "string"}, "description": "Filters"}},
        "required": ["query"]}}}

CONVERSATIONS = {
    "tool-roundtrip": {
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": "Weather in Paris and Köln?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call12345", "type": "function",
                 "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
            {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "{\"temp\": 21}"},
            {"role": "assistant", "content": "It is 21°C in Paris."},
            {"role": "user", "content": "Thanks!"}],
        "tools": [WEATHER, SEARCH], "add_generation_prompt": True},
    "tool-args-as-string": {
        "messages": [
            {"role": "user", "content": "Find cats"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "abcdefghi", "type": "function",
                 "function": {"name": "search", "arguments": "{\"query\": \"cats\"}"}}]},
            {"role": "tool", "tool_call_id": "abcdefghi", "content": "3 results"},
            {"role": "tool", "tool_call_id": "abcdefghi", "content": "no more"}],
        "tools": [SEARCH], "add_generation_prompt": True},
    "reasoning": {
        "messages": [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "<think>\nsimple sum\n</think>\n\n4"},
            {"role": "user", "content": "and 3+3?"},
            {"role": "assistant", "content": "6", "reasoning_content": "add them", "thinking": "add them"}],
        "add_generation_prompt": False, "extra": {"enable_thinking": False}},
    "system-options": {
        "messages": [
            {"role": "system", "content": "  Be terse. /no_think  "},
            {"role": "user", "content": ""},
            {"role": "assistant", "content": "\n\nOk."},
            {"role": "user", "content": "tabs\tand\nnewlines\n"}],
        "add_generation_prompt": True,
        "extra": {"reasoning_effort": "high", "model_identity": "You are Tester.", "date_string": "01 Jan 2025"}},
    "builtin-tools": {
        "messages": [{"role": "user", "content": "Run code"}],
        "tools": [WEATHER], "add_generation_prompt": True,
        "extra": {"builtin_tools": ["code_interpreter", "brave_search", "browser", "python"],
                  "tools_in_user_message": False}},
}


def main():
    folder = sys.argv[1]
    tokens = json.load(open(os.path.join(folder, "tokens.json")))
    env = environment()
    cases = []
    for name in sorted(f[:-6] for f in os.listdir(folder) if f.endswith(".jinja")):
        tpl = env.from_string(open(os.path.join(folder, name + ".jinja")).read())
        for cname, conv in CONVERSATIONS.items():
            args = dict(tokens.get(name, {}))
            args.update(conv.get("extra", {}))
            args["messages"] = conv["messages"]
            args["add_generation_prompt"] = conv.get("add_generation_prompt", False)
            if "tools" in conv:
                args["tools"] = conv["tools"]
            case = {"conversation": cname, "template": name}
            try:
                case["expected"] = tpl.render(**args)
            except Exception as e:
                case["error"] = f"{type(e).__name__}: {e}"
            cases.append(case)
    json.dump({"conversations": CONVERSATIONS, "cases": cases}, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
