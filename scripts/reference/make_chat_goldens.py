#!/usr/bin/env python3
"""Write golden chat-template renderings made with the real Jinja templates.

usage: python make_chat_goldens.py [TOKENIZER_DIR] [OUT_DIR]
  TOKENIZER_DIR defaults to build/data/tokenizers (where the configure step unpacks
  tests/data/tokenizers/*.tar.xz), OUT_DIR to tests/data/chat.
  Needs only `pip install jinja2` (3.1.x).

Templates: TOKENIZER_DIR/{llama-3.1,qwen3,gemma3}/tokenizer_config.json and
OUT_DIR/templates/<name>/tokenizer_config.json. Each conversation below is rendered with
add_generation_prompt=True the way transformers' apply_chat_template does it (sandboxed
environment, trim_blocks, lstrip_blocks, loopcontrols, raise_exception, tojson), with
bos_token/eos_token from the config and date_string pinned to "26 Jul 2024"; strftime_now,
tools and enable_thinking are left undefined. OUT_DIR/<family>.jsonl gets one line per
(template, conversation): {"template", "messages", "rendered"} or, where the template raises,
{"template", "messages", "error"}.
"""

import json
import os
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENIZERS = (sys.argv[1] if len(sys.argv) > 1
              else os.path.join(ROOT, "build", "data", "tokenizers"))
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "tests", "data", "chat")

# (family file, template name). "tokenizer:X" = TOKENIZERS/X, otherwise OUT/templates/X.
TEMPLATES = [
    ("llama3", "tokenizer:llama-3.1"),
    ("llama3", "llama-3.2-instruct"),
    ("chatml", "tokenizer:qwen3"),
    ("chatml", "chatml"),
    ("chatml", "chatml-default-system"),
    ("mistral", "mistral-7b-instruct-v0.1"),
    ("mistral", "mistral-7b-instruct-v0.1-eos-space"),
    ("mistral", "mistral-7b-instruct-v0.3"),
    ("mistral", "mistral-nemo-instruct-2407"),
    ("gemma", "tokenizer:gemma3"),
]


def m(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = [
    [m("system", "You are a helpful assistant."), m("user", "What is 2+2?")],
    [m("user", "Hello!")],
    [m("system", "Be brief."), m("user", "Hi"), m("assistant", "Hello! How can I help?"),
     m("user", "Tell me a joke.")],
    [m("user", "One"), m("assistant", "Two"), m("user", "Three"), m("assistant", "Four"),
     m("user", "Five")],
    [m("user", "Grüße aus Köln! 日本語のテキスト 🎉🚀 — «quotes» and ñ")],
    [m("system", "  Système : réponds en français.\n"),
     m("user", "\u3000 spaces\u00a0and tabs\t around \n\n"),
     m("assistant", "\n\u2003 Bien sûr ! \n"), m("user", "Merci 🙏 ")],
    [m("user", "Say hi"), m("assistant", "hi")],
    [m("user", "What is 1+1?"),
     m("assistant", "<think>\nSimple addition.\n</think>\n\n2"), m("user", "And 2+2?")],
    [m("user", "Think about it"), m("assistant", "<think>\nhmm\n\n</think>\n\nDone")],
    [m("user", "Question"), m("assistant", "Answer"),
     m("user", "<tool_response>42</tool_response>")],
    [m("system", "Only a system prompt.")],
    [m("user", ""), m("assistant", ""), m("user", "x")],
    [m("user", "Is <|eot_id|> or <|im_end|> or [INST] literal text?")],
    [m("user", "first"), m("system", "A system message in the middle."), m("user", "second")],
    [m("assistant", "I speak first."), m("user", "ok")],
    [m("user", "a"), m("user", "b")],
    [m("system", "sys"), m("user", "u1"), m("assistant", "a1")],
]


class TemplateError(Exception):
    pass


def raise_exception(message):
    raise TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def token_string(value):
    if isinstance(value, dict):
        return value.get("content")
    return value


def load(name):
    if name.startswith("tokenizer:"):
        path = os.path.join(TOKENIZERS, name[len("tokenizer:"):], "tokenizer_config.json")
    else:
        path = os.path.join(OUT, "templates", name, "tokenizer_config.json")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env.from_string(config["chat_template"]), config


def main():
    lines = {}
    for family, name in TEMPLATES:
        template, config = load(name)
        for messages in CONVERSATIONS:
            record = {"template": name, "messages": messages}
            try:
                record["rendered"] = template.render(
                    messages=messages, add_generation_prompt=True,
                    bos_token=token_string(config.get("bos_token")) or "",
                    eos_token=token_string(config.get("eos_token")) or "",
                    date_string="26 Jul 2024")
            except TemplateError as e:
                record["error"] = str(e)
            lines.setdefault(family, []).append(record)
    for family, records in lines.items():
        path = os.path.join(OUT, family + ".jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        n_err = sum("error" in r for r in records)
        print(f"{path}: {len(records)} lines ({n_err} template errors)")
    print(f"jinja2 {jinja2.__version__}, Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
