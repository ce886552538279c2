"""Writes dspex-core/src/adapter/testdata/code_reasoning.json: what DSPy 3.4.1 does with
`dspy.Code["python"]`, bare `dspy.Code` and `dspy.Reasoning` fields — the messages each adapter
formats, what each adapter parses from tricky completions, and `_filter_code` itself.

Run with the DSPy 3.4.1 venv: python scripts/gen_code_reasoning_cases.py OUT.json
"""

import json
import sys
from typing import Optional

import dspy
from dspy.adapters.types.code import _filter_code

Py = dspy.Code["python"]
Rs = dspy.Code["rust"]


def sig_json(sig):
    def fields(fs):
        out = []
        for name, f in fs.items():
            ann = f.annotation
            ty = dspy.adapters.utils.get_annotation_name(ann)
            if ann is dspy.Reasoning:
                ty = "Reasoning"
            if ann is Optional[Py]:
                ty = "Optional[Code_python]"
            field = {"name": name, "type": ty}
            desc = f.json_schema_extra.get("desc")
            if desc and desc != f"${{{name}}}":
                field["desc"] = desc
            out.append(field)
        return out

    return {"instructions": sig.instructions, "inputs": fields(sig.input_fields), "outputs": fields(sig.output_fields)}


def dump(v):
    if isinstance(v, dspy.Type):
        return v.model_dump()
    if isinstance(v, list):
        return [dump(x) for x in v]
    return v


class CodeOut(dspy.Signature):
    """Write a Python function for the task."""

    task: str = dspy.InputField()
    code: Py = dspy.OutputField()


class BareCodeOut(dspy.Signature):
    """Write code."""

    task: str = dspy.InputField()
    code: dspy.Code = dspy.OutputField(desc="The code to run")


class CodeIn(dspy.Signature):
    """Explain the code."""

    code: Rs = dspy.InputField(desc="Some Rust")
    maybe: Optional[Py] = dspy.InputField()
    explanation: str = dspy.OutputField()


class CodeList(dspy.Signature):
    """Write several snippets."""

    task: str = dspy.InputField()
    snippets: list[Py] = dspy.OutputField()


class ReasonOut(dspy.Signature):
    """Answer with reasoning."""

    question: str = dspy.InputField()
    reasoning: dspy.Reasoning = dspy.OutputField()
    answer: str = dspy.OutputField()


class ReasonIn(dspy.Signature):
    """Judge the reasoning."""

    reasoning: dspy.Reasoning = dspy.InputField()
    verdict: bool = dspy.OutputField()


adapters = {"chat": dspy.ChatAdapter(), "json": dspy.JSONAdapter(), "xml": dspy.XMLAdapter()}

format_cases = [
    ("code_output", CodeOut, [{"task": "Add.", "code": Py(code="def add(a, b):\n    return a + b")}], {"task": "Sub."}),
    ("bare_code_output", BareCodeOut, [], {"task": "Hello."}),
    ("code_input", CodeIn, [], {"code": Rs(code="fn main() {}"), "maybe": None}),
    ("code_input_str", CodeIn, [], {"code": "```rust\nfn main() {}\n```", "maybe": Py(code="x = 1")}),
    ("code_list", CodeList, [], {"task": "Two."}),
    ("reasoning_output", ReasonOut, [{"question": "1+1?", "reasoning": dspy.Reasoning(content="One and one."), "answer": "2"}], {"question": "2+2?"}),
    ("reasoning_input", ReasonIn, [], {"reasoning": dspy.Reasoning(content="Because.")}),
]

out = {"format": [], "parse": [], "filter": []}
for name, sig, demos, inputs in format_cases:
    for aname, adapter in adapters.items():
        msgs = adapter.format(sig, [dspy.Example(**d) for d in demos], inputs)
        out["format"].append(
            {
                "name": name,
                "adapter": aname,
                "signature": sig_json(sig),
                "demos": [{k: dump(v) for k, v in d.items()} for d in demos],
                "inputs": {k: dump(v) for k, v in inputs.items()},
                "messages": msgs,
            }
        )

tricky = [
    "def f():\n    return 1",
    "```python\ndef f():\n    return 1\n```",
    "```\nx = 1\n```",
    "```x = 1```",
    "```rust\nfn main() {}\n```",
    "Here you go:\n```python\na = 1\n```\nand also\n```python\nb = 2\n```",
    "```python\nunterminated = True\n",
    "```python\n\n  spaced = 1  \n\n```",
    "```python```",
    "``````",
    "```",
    "",
    "   indented = 1   ",
    "\"quoted\"",
    "42",
    "[1, 2]",
    '{"code": "```python\\nz = 3\\n```"}',
    '{"code": 5}',
    '{"other": "x"}',
    "```python\r\nwin = 1\r\n```",
    "text ``` inline ``` more",
    "```py\nx\n```python\ny\n```",
]
for text in tricky:
    out["filter"].append({"text": text, "code": _filter_code(text)})


def parse(adapter_name, sig, completion):
    try:
        return {"ok": {k: dump(v) for k, v in adapters[adapter_name].parse(sig, completion).items()}}
    except Exception as e:  # noqa: BLE001
        return {"error": type(e).__name__}


for text in tricky:
    for aname, completion in [
        ("chat", f"[[ ## code ## ]]\n{text}\n\n[[ ## completed ## ]]"),
        ("json", json.dumps({"code": text})),
        ("xml", f"<code>\n{text}\n</code>"),
    ]:
        out["parse"].append({"signature": sig_json(CodeOut), "adapter": aname, "completion": completion, "expected": parse(aname, CodeOut, completion)})
    for aname, completion in [
        ("chat", f"[[ ## reasoning ## ]]\n{text}\n\n[[ ## answer ## ]]\nok\n\n[[ ## completed ## ]]"),
        ("json", json.dumps({"reasoning": text, "answer": "ok"})),
        ("xml", f"<reasoning>\n{text}\n</reasoning>\n<answer>ok</answer>"),
    ]:
        out["parse"].append({"signature": sig_json(ReasonOut), "adapter": aname, "completion": completion, "expected": parse(aname, ReasonOut, completion)})

# JSON values that are not strings.
for value in [{"code": "```python\nz = 3\n```"}, {"code": 5}, 5, ["a"], None]:
    completion = json.dumps({"code": value})
    out["parse"].append({"signature": sig_json(CodeOut), "adapter": "json", "completion": completion, "expected": parse("json", CodeOut, completion)})
for value in [{"content": "deep"}, {"content": 1}, 5, None]:
    completion = json.dumps({"reasoning": value, "answer": "ok"})
    out["parse"].append({"signature": sig_json(ReasonOut), "adapter": "json", "completion": completion, "expected": parse("json", ReasonOut, completion)})
# list[Code] outputs.
for text in ['["```python\\na\\n```", "b"]', "```python\nnot a list\n```"]:
    completion = f"[[ ## snippets ## ]]\n{text}\n\n[[ ## completed ## ]]"
    out["parse"].append({"signature": sig_json(CodeList), "adapter": "chat", "completion": completion, "expected": parse("chat", CodeList, completion)})

with open(sys.argv[1], "w") as f:
    json.dump(out, f, indent=1, ensure_ascii=False)
    f.write("\n")
