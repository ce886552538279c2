"""The Python originals of dspex's parsers, for the differential tests (tests/tests/pycompat.rs).

Reads one JSON object per line on stdin and answers one JSON line per request on stdout:
  {"op": "json_repair", "text": t}                  json_repair.loads(t)
  {"op": "literal_eval", "text": t}                 ast.literal_eval(t)
  {"op": "parse_value", "type": name, "text": t}    dspy.adapters.utils.parse_value(t, type)
  {"op": "chat_parse" | "json_parse", "signature": s, "text": t}
                                                    ChatAdapter/JSONAdapter().parse(signature, t)
  {"op": "xml_parse", "signature": s, "text": t}   XMLAdapter().parse(signature, t)
  {"op": "xml_format", "signature": s, "demos": [..], "inputs": {..}}
                                                    XMLAdapter().format(signature, demos, inputs)
  {"op": "assigned", "text": t}                     whether this Python's Unicode database
                                                    knows every character of t
Values are tagged so ints, floats and dict keys survive JSON: None/bools/strings as they are,
{"i": str(int)}, {"f": repr(float)}, lists (and tuples) as arrays, {"d": [[key, value], ...]};
a failure is {"err": exception class name}.
"""

import ast
import json
import sys
import unicodedata
from typing import Any, Literal, Optional  # noqa: F401 (names the types may use)

import dspy
import json_repair
import pydantic
from dspy.adapters.utils import parse_value


class Citation(pydantic.BaseModel):
    title: str
    year: int


NAMES = {
    "Any": Any,
    "Literal": Literal,
    "Optional": Optional,
    "Citation": Citation,
    "list": list,
    "dict": dict,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "None": None,
    "True": True,
}


def tag(v):
    if isinstance(v, pydantic.BaseModel):
        v = v.model_dump()
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return {"i": str(v)}
    if isinstance(v, float):
        return {"f": repr(v)}
    if isinstance(v, (list, tuple)):
        return [tag(x) for x in v]
    if isinstance(v, dict):
        return {"d": [[tag(k), tag(x)] for k, x in v.items()]}
    return {"other": type(v).__name__, "repr": repr(v)}


def answer(request):
    op = request["op"]
    if op == "xml_format":
        signature = dspy.Signature(request["signature"], custom_types={"Citation": Citation})
        return dspy.XMLAdapter().format(signature, request["demos"], request["inputs"])
    text = request["text"]
    if op == "assigned":
        return all(unicodedata.category(c) != "Cn" for c in text)
    if op == "json_repair":
        return tag(json_repair.loads(text))
    if op == "literal_eval":
        return tag(ast.literal_eval(text))
    if op == "parse_value":
        return tag(parse_value(text, eval(request["type"], NAMES)))
    if op in ("chat_parse", "json_parse"):
        signature = dspy.Signature(request["signature"], custom_types={"Citation": Citation})
        adapter = dspy.ChatAdapter() if op == "chat_parse" else dspy.JSONAdapter()
        return tag(adapter.parse(signature, text))
    if op == "xml_parse":
        signature = dspy.Signature(request["signature"], custom_types={"Citation": Citation})
        return tag(dspy.XMLAdapter().parse(signature, text))
    raise ValueError(f"unknown op {op}")


def main():
    sys.setrecursionlimit(10000)
    for line in sys.stdin:
        try:
            result = answer(json.loads(line))
        except BaseException as e:  # noqa: BLE001 (every failure is an answer)
            if isinstance(e, KeyboardInterrupt):
                raise
            result = {"err": type(e).__name__}
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
