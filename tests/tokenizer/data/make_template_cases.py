#!/usr/bin/python3
"""Renders the chat templates in templates/ (models the shared
models/templates folder lacks: Llama 2, Zephyr, Qwen2 and the classic Mistral
[INST] templates; templates/README.md says where each came from) over every
conversation of the shared models/templates/conversations.json and of
templates/conversations.json (non-alternating and assistant-first turns, which
Llama 2 and Mistral reject), exactly as the shared render.py does, i.e. as
Hugging Face transformers' apply_chat_template does: a sandboxed jinja2
environment with trim_blocks and lstrip_blocks, loopcontrols, tojson keeping
non-ASCII text, raise_exception and strftime_now (make_jinja_cases.environment),
the template's bos_token/eos_token (templates/tokens.json), messages,
add_generation_prompt, tools (when the conversation has some) and the
conversation's extra variables.

Writes templates/expected/<template>.<conversation>.txt (the rendered text) or
.error ("ExceptionType: message" and a newline), the layout of the shared
models/templates/expected. chat_template_test.cc compares the C++ interpreter
with every file. Run with Debian's python3-jinja2 from this folder:
    /usr/bin/python3 make_template_cases.py ../../../../shared/models/templates
"""
import json
import os
import shutil
import sys

import jinja2

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "jinja", "data"))
from make_jinja_cases import TemplateRaised, environment  # noqa: E402


def main():
    shared = sys.argv[1]
    folder = os.path.join(HERE, "templates")
    convs = json.load(open(os.path.join(shared, "conversations.json")))
    local = json.load(open(os.path.join(folder, "conversations.json")))
    assert not set(convs) & set(local), "conversation names must be unique"
    convs.update(local)
    tokens = json.load(open(os.path.join(folder, "tokens.json")))
    out = os.path.join(folder, "expected")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    env = environment()
    for name in sorted(f[:-6] for f in os.listdir(folder) if f.endswith(".jinja")):
        tpl = env.from_string(open(os.path.join(folder, name + ".jinja")).read())
        for cname, conv in convs.items():
            args = dict(tokens[name])
            args.update(conv.get("extra", {}))
            args["messages"] = conv["messages"]
            args["add_generation_prompt"] = conv.get("add_generation_prompt", False)
            if "tools" in conv:
                args["tools"] = conv["tools"]
            try:
                text = tpl.render(**args)
                open(os.path.join(out, f"{name}.{cname}.txt"), "w").write(text)
            except (TemplateRaised, jinja2.TemplateError) as e:
                open(os.path.join(out, f"{name}.{cname}.error"), "w").write(f"{type(e).__name__}: {e}\n")


if __name__ == "__main__":
    main()
