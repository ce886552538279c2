"""Writes dspex-core/src/adapter/testdata/history_tools.json: the messages DSPy 3.4.1's
ChatAdapter, JSONAdapter and XMLAdapter format for a `History` input whose turns hold tool calls
and tool results (`Adapter.format_conversation_history`), with native function calling on and
off: calls with results whose ids match, mismatched ids, calls without ids, calls without
results, results of every JSON kind (unicode included) and errors, other outputs beside the
calls, an output-only turn, and a tool-calls value under a key the signature does not have.

Run with the DSPy 3.4.1 venv: python scripts/gen_history_tool_cases.py OUT.json
"""

import json
import sys

import dspy
from dspy.adapters.types.tool import ToolCallResults, ToolCalls


def sig_json(sig):
    def fields(fs):
        out = []
        for name, f in fs.items():
            ty = dspy.adapters.utils.get_annotation_name(f.annotation)
            field = {"name": name, "type": ty}
            desc = f.json_schema_extra.get("desc")
            if desc and desc != f"${{{name}}}":
                field["desc"] = desc
            out.append(field)
        return out

    return {"instructions": sig.instructions, "inputs": fields(sig.input_fields), "outputs": fields(sig.output_fields)}


def dump(v):
    """A value as dspex reads it: JSON, a tool call's provider id kept (pydantic's dump drops it)."""
    if isinstance(v, ToolCalls):
        calls = []
        for c in v.tool_calls:
            call = {"id": c.id} if c.id is not None else {}
            call.update({"name": c.name, "args": c.args})
            calls.append(call)
        out = {"tool_calls": calls}
        if v.tool_call_results is not None:
            out["tool_call_results"] = dump(v.tool_call_results)
        return out
    if isinstance(v, ToolCallResults):
        return v.model_dump(mode="json")
    if isinstance(v, dspy.History):
        return {"messages": [{k: dump(x) for k, x in m.items()} for m in v.messages]}
    if isinstance(v, list):
        return [dump(x) for x in v]
    if isinstance(v, dict):
        return {k: dump(x) for k, x in v.items()}
    return v


class Agent(dspy.Signature):
    """Answer the question, calling tools when needed."""

    history: dspy.History = dspy.InputField()
    question: str = dspy.InputField()
    answer: str = dspy.OutputField()
    tool_calls: ToolCalls = dspy.OutputField()


class CallsOnly(dspy.Signature):
    """Decide which tools to call."""

    question: str = dspy.InputField()
    history: dspy.History = dspy.InputField(desc="Earlier turns")
    tool_calls: ToolCalls = dspy.OutputField()


class NoCallsField(dspy.Signature):
    """Answer the question."""

    question: str = dspy.InputField()
    history: dspy.History = dspy.InputField()
    answer: str = dspy.OutputField()


def calls(*items, results=None):
    return ToolCalls(
        tool_calls=[ToolCalls.ToolCall(id=i, name=n, args=a) for i, n, a in items],
        tool_call_results=results,
    )


def results(*items):
    return ToolCallResults(
        tool_call_results=[
            ToolCallResults.ToolCallResult(call_id=i, name=n, value=v, is_error=e) for i, n, v, e in items
        ]
    )


weather = ("call_1", "get_weather", {"city": "Paris"})
time_ = ("call_2", "get_time", {"tz": "Europe/Paris", "format": 24})

cases = [
    (
        "matching_ids",
        Agent,
        [
            {
                "question": "Weather and time in Paris?",
                "tool_calls": calls(
                    weather,
                    time_,
                    results=results(
                        ("call_1", "get_weather", "Sunny, 21°C", False),
                        ("call_2", "get_time", {"time": "14:05", "dst": True}, False),
                    ),
                ),
            },
            {"question": "Thanks!", "answer": "You're welcome."},
        ],
        {"question": "And tomorrow?"},
    ),
    (
        "mismatched_ids",
        Agent,
        [
            {
                "question": "Weather and time in Paris?",
                "tool_calls": calls(
                    weather,
                    time_,
                    results=results(
                        ("call_2", "get_time", "14:05", False),
                        ("call_1", "get_weather", "Sunny", False),
                    ),
                ),
            },
        ],
        {"question": "And tomorrow?"},
    ),
    (
        "calls_without_ids",
        Agent,
        [
            {
                "question": "Weather in Paris?",
                "tool_calls": calls(
                    (None, "get_weather", {"city": "Paris"}),
                    results=results((None, "get_weather", "Sunny", False)),
                ),
            },
        ],
        {"question": "And Rome?"},
    ),
    (
        "calls_without_results",
        Agent,
        [{"question": "Weather in Paris?", "tool_calls": calls(weather, time_)}],
        {"question": "And Rome?"},
    ),
    (
        "result_values",
        Agent,
        [
            {
                "question": "Everything about Zürich?",
                "tool_calls": calls(
                    ("a", "lookup", {"q": "Zürich 日本 🎉", "n": 2.5, "flags": [True, None]}),
                    ("b", "count", {}),
                    ("c", "list", {"nested": {"x": [1, 2]}}),
                    ("d", "nothing", {}),
                    ("e", "fails", {"x": 1}),
                    ("f", "flag", {}),
                    ("g", "ratio", {}),
                    results=results(
                        ("a", "lookup", {"city": "Zürich", "note": "naïve “quotes” 日本 🎉\n\"esc\""}, False),
                        ("b", "count", 42, False),
                        ("c", "list", ["é", 1, 2.0, None, {"k": []}], False),
                        ("d", "nothing", None, False),
                        ("e", "fails", "Error: division by zero", True),
                        ("f", "flag", False, False),
                        ("g", "ratio", 0.1, False),
                    ),
                ),
            },
        ],
        {"question": "Summarize."},
    ),
    (
        "outputs_beside_calls",
        Agent,
        [
            {
                "question": "Weather in Paris?",
                "answer": "Let me check the weather.",
                "tool_calls": calls(weather, results=results(("call_1", "get_weather", "Sunny", False))),
            },
            {
                "question": "And Rome?",
                "answer": "Checking Rome.",
                "tool_calls": calls(("call_9", "get_weather", {"city": "Rome"})),
            },
        ],
        {"question": "And Oslo?"},
    ),
    (
        "output_only_turns",
        CallsOnly,
        [
            {"question": "Weather in Paris?"},
            {"tool_calls": calls(weather, results=results(("call_1", "get_weather", "Sunny", False)))},
            {"tool_calls": calls(time_)},
        ],
        {"question": "What now?"},
    ),
    (
        "calls_outside_signature",
        NoCallsField,
        [
            {
                "question": "Weather in Paris?",
                "calls": calls(weather, results=results(("call_1", "get_weather", {"sky": "clear"}, False))),
            },
            {"question": "Thanks", "answer": "Sure."},
        ],
        {"question": "Anything else?"},
    ),
    (
        "results_as_list",
        Agent,
        [
            {
                "question": "Weather in Paris?",
                "tool_calls": calls(
                    weather, results=[{"call_id": "call_1", "name": "get_weather", "value": {"t": 21}}]
                ),
            },
        ],
        {"question": "Ok?"},
    ),
]

adapters = {
    "chat": lambda native: dspy.ChatAdapter(use_native_function_calling=native),
    "json": lambda native: dspy.JSONAdapter(use_native_function_calling=native),
    "xml": lambda native: dspy.XMLAdapter(use_native_function_calling=native),
}

out = []
for name, sig, turns, inputs in cases:
    for aname, make in adapters.items():
        for native in (False, True):
            history = dspy.History(messages=turns)
            full_inputs = {"history": history, **inputs}
            msgs = make(native).format(sig, [], dict(full_inputs))
            out.append(
                {
                    "name": name,
                    "adapter": aname,
                    "native": native,
                    "signature": sig_json(sig),
                    "inputs": dump(full_inputs),
                    "messages": msgs,
                }
            )

with open(sys.argv[1], "w", encoding="utf-8") as f:
    json.dump(out, f, indent=1, ensure_ascii=False)
    f.write("\n")
print(f"{len(out)} cases")
