#!/usr/bin/env python3
"""Reference renderings of chat templates by Hugging Face transformers.

Writes tests/fixtures/chat/expected.json, which tests/test_chat.c compares
greta's Jinja interpreter against byte for byte. Every expected string here
comes from transformers' own chat-template machinery
(transformers.utils.chat_template_utils.render_jinja_template, the function
behind tokenizer.apply_chat_template(..., tokenize=False)), never from greta.

Templates: tests/fixtures/chat/<name>.jinja. smollm2.jinja is read from the
default model's GGUF (key tokenizer.chat_template, via the gguf package) when
the model is present; the others are official tokenizer_config.json template
texts found in public repositories (decode_sources.py.txt there records
where each came from and how it was decoded).

strftime_now is pinned to FIXED_TIME (UTC) so the fixtures are stable; the
C test passes the same instant through chat_options.fixed_time.

Usage: python3 scripts/gen_chat_fixtures.py   (from the repository root)
"""
import datetime as _dt
import json
import os
import sys

import jinja2
from transformers.utils import chat_template_utils as ctu

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(REPO, "tests", "fixtures", "chat")
MODEL = os.path.join(REPO, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
FIXED_TIME = 1725537600  # 2024-09-05 12:00:00 UTC


class _FixedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return _dt.datetime.fromtimestamp(FIXED_TIME, _dt.timezone.utc).replace(tzinfo=None)


# transformers' strftime_now calls datetime.now() from this module's namespace.
ctu.datetime = _FixedDatetime
ctu._compile_jinja_template.cache_clear()


def smollm2_template():
    path = os.path.join(FIX, "smollm2.jinja")
    if os.path.exists(MODEL):
        from gguf import GGUFReader
        reader = GGUFReader(MODEL)
        field = reader.fields["tokenizer.chat_template"]
        text = bytes(field.parts[field.data[0]]).decode("utf-8")
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    return path


TOKENS = {  # (bos, eos) as each model's tokenizer has them
    "smollm2": ("<|im_start|>", "<|im_end|>"),
    "chatml": (None, "<|im_end|>"),
    "qwen2.5": (None, "<|im_end|>"),
    "llama2": ("<s>", "</s>"),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3.1": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3.2": ("<|begin_of_text|>", "<|eot_id|>"),
    "mistral": ("<s>", "</s>"),
    "mistral-v0.3": ("<s>", "</s>"),
    "gemma": ("<bos>", "<eos>"),
    "phi3": ("<s>", "<|endoftext|>"),
    "zephyr": ("<s>", "</s>"),
}

SPECIAL = "  He said \"hi\" & 'bye' {{ not a tag }} {% raw %}\n\tline2 \\n\u00e9 \u4e16\u754c \U0001F642  "

CONVERSATIONS = {
    "sys_multi": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hi there. How can I help?"},
        {"role": "user", "content": "What is 2+2?"},
    ],
    "no_sys": [
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "  Hi there.  "},
        {"role": "user", "content": "Tell me a joke."},
    ],
    "single": [{"role": "user", "content": "Hi"}],
    "special": [
        {"role": "system", "content": SPECIAL},
        {"role": "user", "content": SPECIAL},
        {"role": "assistant", "content": "\n" + SPECIAL + "\n"},
        {"role": "user", "content": ""},
    ],
    "bad_alternation": [
        {"role": "user", "content": "one"},
        {"role": "user", "content": "two"},
    ],
    "system_only": [{"role": "system", "content": "Only a system prompt."}],
    "empty": [],
}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city \u2014 \"now\"",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "City name"},
                               "days": {"type": "integer"}},
                "required": ["city"],
            },
        },
    }
]
TOOL_TEMPLATES = ["llama3.1", "llama3.2", "qwen2.5", "mistral-v0.3"]


def render(template, messages, add_gen, bos, eos, tools=None):
    kwargs = {}
    if bos is not None:
        kwargs["bos_token"] = bos
    if eos is not None:
        kwargs["eos_token"] = eos
    try:
        out, _ = ctu.render_jinja_template(
            conversations=[messages], tools=tools, chat_template=template,
            add_generation_prompt=add_gen, **kwargs)
        return {"output": out[0]}
    except jinja2.exceptions.TemplateError as e:  # includes raise_exception, syntax and undefined errors
        return {"error": str(e)}
    except (TypeError, ValueError, IndexError, KeyError, AttributeError, ArithmeticError) as e:
        return {"error": "%s: %s" % (type(e).__name__, e)}


# Interpreter units: each template is rendered with the "sys_multi" messages,
# add_generation_prompt=True, bos "<s>", eos "</s>".
UNITS = [
    "{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 7 // 2 }}|{{ 7 % 3 }}|{{ -7 // 2 }}|{{ 2 ** 10 }}|{{ 10 - 3 - 2 }}",
    "{{ 7 / 2 }}|{{ 6 / 3 }}|{{ 1.5 + 1 }}|{{ 0.1 + 0.2 }}|{{ 1e3 }}|{{ 3.0 }}",
    "{{ 'a' ~ 1 ~ none ~ true }}|{{ 'ab' * 3 }}|{{ 'x' + 'y' }}",
    "{{ 1 == 1.0 }}|{{ 'a' < 'b' }}|{{ 2 >= 3 }}|{{ 1 != 2 }}|{{ [1,2] == [1,2] }}|{{ none == none }}",
    "{{ true and false }}|{{ true or false }}|{{ not true }}|{{ 0 or 'x' }}|{{ '' and 1 }}|{{ not '' }}",
    "{{ 'a' in 'cat' }}|{{ 2 in [1,2] }}|{{ 'k' in {'k': 1} }}|{{ 3 not in [1] }}",
    "{{ \"esc\\\"aped\\n\\tq\\\\\" }}|{{ 'it\\'s' }}|{{ '\\u00e9\\x41' }}",
    "{{ [1, 'two', none, true, 2.5] }}|{{ {'a': 1, 'b': [2]} }}|{{ ('t', 1) }}|{{ none }}|{{ true }}",
    "{{ messages[0].role }}|{{ messages[0]['content'] }}|{{ messages[-1].content }}|{{ messages|length }}",
    "{% for m in messages[1:] %}{{ m.role }},{% endfor %}|{% for m in messages[:2] %}{{ loop.index }}{% endfor %}|{{ 'hello'[1:4] }}|{{ 'hello'[::-1] }}|{{ [1,2,3,4,5][1::2] }}",
    "{% for m in messages %}{{ loop.index0 }}{{ loop.index }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }};{% endfor %}",
    "{% for x in [] %}x{% else %}empty{% endfor %}|{% for x in [1,2,3] if x > 1 %}{{ x }}{{ loop.index }}{% endfor %}",
    "{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}|{% for k, v in {'x': 'y'} | items %}{{ k }}{{ v }}{% endfor %}|{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}",
    "{% if 0 %}a{% elif none %}b{% elif [] %}c{% elif 'x' %}d{% else %}e{% endif %}",
    "{% set x = 5 %}{% set y = x * 2 %}{{ y }}|{% set ns = namespace(n=0, s='') %}{% for i in [1,2,3] %}{% set ns.n = ns.n + i %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.n }} {{ ns.s }}",
    "{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}",
    "{{ '  pad  ' | trim }}|{{ 'ABC' | lower }}|{{ 'abc' | upper }}|{{ 'hello world' | title }}|{{ 'hELLO' | capitalize }}|{{ 'a-b-c' | replace('-', '+') }}",
    "{{ [3, 1, 2] | length }}|{{ 'abc' | count }}|{{ [3, 1, 2] | first }}|{{ [3, 1, 2] | last }}|{{ [1, 2, 3] | join(', ') }}|{{ ['x', 'y'] | join }}",
    "{{ undefined_var | default('dflt') }}|{{ '' | default('e', true) }}|{{ none | default('n') }}|{{ 5 | string }}{{ 5 | string | length }}|{{ '42' | int + 1 }}|{{ 'x' | int }}|{{ 3.9 | int }}",
    "{{ {'b': 1, 'a': 2} | tojson }}|{{ [1, 'a\"b', none, true, 1.5] | tojson }}|{{ 'caf\u00e9' | tojson }}|{{ {'k': [1, {'z': 2}]} | tojson(indent=2) }}",
    "{{ {'a': {'b': []}, 'c': {}} | tojson(indent=4) }}",
    "{{ [1, 2, 3] | list }}|{{ 'ab' | list }}|{{ {'a': 1} | list }}|{{ [1, 2, 3] | reverse | list }}|{{ [3, 1, 2] | sort }}|{{ [1, 2, 2] | unique | list }}",
    "{{ messages | selectattr('role', 'equalto', 'user') | list | length }}|{{ messages | rejectattr('role', 'equalto', 'user') | map(attribute='role') | join(',') }}|{{ [1, 2, 3, 4] | select('odd') | list }}|{{ [1, 2, 3] | reject('equalto', 2) | list }}",
    "{{ messages | map(attribute='content') | first }}|{{ ['a', 'b'] | map('upper') | join }}|{{ messages | selectattr('tool_calls', 'undefined') | list | length }}",
    "{{ '  x  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ '  x'.lstrip() }}|{{ 'x  '.rstrip() }}|{{ 'hello'.startswith('he') }}|{{ 'hello'.endswith('lo') }}|{{ 'hello world'.title() }}",
    "{{ 'a,b,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'Hello'.upper() }}{{ 'Hello'.lower() }}|{{ 'abc'.replace('b', 'XY') }}|{{ 'a</think>b'.split('</think>')[-1] }}",
    "{{ 'hello'.find('l') }}|{{ 'hello'.count('l') }}|{{ 'x'.join(['1', '2']) }}|{{ 'hello world'.capitalize() }}|{{ {'a': 1}.get('a') }}{{ {'a': 1}.get('b') }}{{ {'a': 1}.get('b', 7) }}|{{ {'a': 1}.keys() | list }}{{ {'a': 1}.values() | list }}",
    "{{ x is defined }}|{{ messages is defined }}|{{ none is none }}|{{ 'a' is string }}|{{ 1 is number }}|{{ 1 is integer }}|{{ 1.5 is float }}|{{ [1] is iterable }}|{{ {} is mapping }}|{{ [1] is sequence }}|{{ 'a' is mapping }}",
    "{{ 3 is odd }}|{{ 4 is even }}|{{ 6 is divisibleby 3 }}|{{ 1 is equalto 1 }}|{{ 1 is eq 2 }}|{{ 2 is gt 1 }}|{{ true is boolean }}|{{ x is undefined }}|{{ 'A' is upper }}|{{ 'a' is lower }}|{{ 1 is not none }}",
    "{{ range(3) | list }}|{{ range(1, 4) | list }}|{{ range(0, 10, 3) | list }}|{% for i in range(2) %}{{ i }}{% endfor %}",
    "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Bob') }} {{ greet('Al', punct='?') }}",
    "{# comment #}a{#- trimmed -#}  b  {{- ' c ' -}}  d",
    "line1\n  {% if true %}\n    inner\n  {% endif %}\nline2\n{% for i in [1,2] %}\n  {{ i }}\n{% endfor %}\nend\n",
    "  {%- if true %} x {% endif -%}  \n  y  {%+ if true %}z{% endif %}\n{% raw %}{{ not rendered }}{% endraw %}\n",
    "{{ 'x' if messages else 'y' }}|{{ 'a' if false }}|{{ ('x' if false else 'y') | upper }}",
    "{{ messages[10] is defined }}|{{ messages[0].nosuch is defined }}|{{ messages[0].nosuch | default('d') }}",
    "{% for i in [1, 2, 3, 4] %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}",
    "{{ bos_token }}{{ eos_token }}|{{ add_generation_prompt }}|{{ tools }}|{{ documents }}|{{ tools is none }}",
    "{{ 1000000000 * 1000000000 }}|{{ 1 / 3 }}|{{ 2.0 * 3 }}|{{ 1e20 }}|{{ 123456789.123 }}|{{ -0.0 }}|{{ 1.0e-5 }}",
    "{{ raise_exception('custom failure: ' ~ messages|length) }}",
    "{{ messages[0].role.upper() }}|{{ (messages | last).role }}|{{ messages[1:3] | map(attribute='role') | list }}",
    "{% set d = {'k': 'v'} %}{{ d.k }}{{ d['k'] }}|{% set l = [1, 2] + [3] %}{{ l }}|{{ 'abc' | length }}{{ {'a': 1} | length }}",
    "{{ dict(a=1, b='x') }}|{{ dict(a=1).a }}|{{ strftime_now('%Y-%m-%d %d %b %B %A %a %H:%M:%S %j %p %y %m %e') }}",
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% else %}{% set loop_messages = messages %}{% endif %}{{ loop_messages | length }}",
    "{{ 'abc' | replace('', '-') }}|{{ 'aaa' | replace('a', 'b', 2) }}|{{ 'tEsT' | lower | capitalize }}|{{ 'x' | center(5) }}|{{ '%s-%d' % ('a', 3) }}|{{ 'a b' | wordcount }}",
    "{{ [1, 2, 3] | sum }}|{{ [3, 1, 2] | min }}{{ [3, 1, 2] | max }}|{{ -3 | abs }}|{{ 2.567 | round(2) }}|{{ 2.5 | round }}|{{ 7 | float }}",
    "{{ 'é'|length }}|{{ '世界🙂'|length }}|{{ '世界🙂'[1] }}|{{ '世界🙂'|upper }}|{{ 'ÉCOLE'|lower }}|{{ '世界🙂'|reverse }}",
    "{{ messages[0] }}|{{ messages[0] | tojson }}",
    "{{ 'a' == 'a' == 'a' }}|{{ 1 < 2 < 3 }}|{{ 3 > 2 > 1 }}|{{ not 1 == 2 }}|{{ -2 ** 2 }}|{{ (-2) ** 2 }}",
]

# Templates that must fail cleanly (greta: error, no crash, no hang).
HOSTILE = [
    "{% for x in messages %}",
    "{{ 1 + }}",
    "{% if true %}a{% else %}b{% else %}c{% endif %}",
    "{{ 'unterminated }}",
    "{# never closed",
    "{% endfor %}",
    "{{ }}",
    "{% set %}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
    "{{ 'x' * 1000000000 }}",
    "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
    "{% if true %}" * 5000,
    "{{ " + "[" * 5000 + " }}",
    "{{ " + "not " * 5000 + "1 }}",
    "{{ x" + ".a" * 30000 + " }}",
    "{{ 1" + " + 1" * 30000 + " }}",
    "{{ x" + "|trim" * 30000 + " }}",
    "{{ messages.__class__ }}",
    "{{ nosuchfunc(1) }}",
    "{{ 1 | nosuchfilter }}",
    "{{ 1 is nosuchtest }}",
    "{{ 1 / 0 }}",
    "{{ 1 // 0 }}",
    "{{ 1 % 0 }}",
    "{{ undefined_thing.attr }}",
    "{{ 'a' + 1 }}",
    "{% for x in 5 %}{% endfor %}",
    "{{ messages[0]['content'] - 1 }}",
    "{% generation %}x{% endgeneration %}",
    "{{ '\xff' }}",
    "{% set ns = namespace() %}{% set ns.__x = 1 %}",
    "{{ range(10**9) | list | length }}",
    "{{ 10000000000 * 10000000000 }}",
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
]


def main():
    smollm2_template()
    names = sorted(f[:-6] for f in os.listdir(FIX) if f.endswith(".jinja"))
    cases = []
    for name in names:
        with open(os.path.join(FIX, name + ".jinja"), encoding="utf-8", newline="") as f:
            template = f.read()
        bos, eos = TOKENS[name]
        for conv_name, messages in CONVERSATIONS.items():
            for add_gen in (False, True):
                case = {"template": name, "conversation": conv_name, "add_generation_prompt": add_gen,
                        "bos_token": bos, "eos_token": eos}
                case.update(render(template, messages, add_gen, bos, eos))
                cases.append(case)
        if name in TOOL_TEMPLATES:
            for conv_name in ("sys_multi", "single"):
                case = {"template": name, "conversation": conv_name, "add_generation_prompt": True,
                        "bos_token": bos, "eos_token": eos, "tools": TOOLS}
                case.update(render(template, CONVERSATIONS[conv_name], True, bos, eos, TOOLS))
                cases.append(case)
    units = []
    for text in UNITS:
        unit = {"template_text": text}
        unit.update(render(text, CONVERSATIONS["sys_multi"], True, "<s>", "</s>"))
        units.append(unit)
    hostile = []
    for text in HOSTILE:
        if len(text) > 2000 or "range(1" in text or "* 1000000000" in text or "m() }}{% endmacro" in text \
                or "range(40)" in text:
            result = {"error": "not rendered by the generator (resource exhaustion by design)"}
        else:
            result = render(text, CONVERSATIONS["sys_multi"], True, "<s>", "</s>")
        if "10000000000 * 10000000000" in text:
            # Python ints are unbounded; greta's are 64-bit and report the overflow (docs/chat.md)
            result = {"error": "integer overflow (greta integers are 64-bit)", "python_output": result.get("output")}
        hostile.append({"template_text": text, "reference": result})
    doc = {
        "generator": "scripts/gen_chat_fixtures.py",
        "transformers": __import__("transformers").__version__,
        "jinja2": jinja2.__version__,
        "fixed_time": FIXED_TIME,
        "conversations": CONVERSATIONS,
        "tools": TOOLS,
        "cases": cases,
        "units": units,
        "hostile": hostile,
    }
    with open(os.path.join(FIX, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    n_err = sum(1 for c in cases if "error" in c)
    print("templates %d, cases %d (%d errors), units %d, hostile %d" % (len(names), len(cases), n_err, len(units), len(hostile)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
