#!/usr/bin/env python3
"""Writes tests/data/gepa_{single,two_step,all_current_best,many}_trace.json: DSPy 3.4.1's GEPA (the
gepa 0.1.4 engine) optimizing (a) a one-predictor QA program, (b) a two-predictor program (draft,
then answer) with round robin, the Pareto selector and an accepted merge, (c) the same with
component_selector="all", candidate_selection_strategy="current_best" and no merging, and (d) a
longer run whose Pareto selections depend on CPython's set order, against a deterministic scripted
LM, for dspex's GEPA parity test (tests/tests/gepa_parity.rs).

As in scripts/gen_optimizer_traces.py, the LM answers every prompt with a function of the prompt
alone (a SHA-256 of its messages), so a re-implementation that sends the same prompts gets the
same answers. The same scripted LM is the reflection LM: asked (through DSPy's JSONAdapter) for a
new instruction, it appends a hint named after the prompt's digest to the current instruction,
and the task answers are right more often the more hints their instruction holds, so proposals
change the candidates and some of them are accepted.

Each file holds every prompt's digest in the order DSPy sent them (reflection prompts included),
the candidates with their parents, per-instance validation scores, the Pareto front per
validation instance, the metric calls, and the compiled program's instructions.

The merge step iterates a Python `set` of component names, whose order depends on the string
hash; the script re-runs itself with PYTHONHASHSEED=0 so the files never depend on it.

    /work/main/.venv/bin/python scripts/gen_gepa_traces.py tests/data
"""
import json
import logging
import os
import re
import sys
import warnings

if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

warnings.filterwarnings("ignore")
import dspy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from script_lm import ScriptedDummyLM, digest  # noqa: E402  (shared by the trace generators)
from dspy.clients.engines.dummy_engine import DummyEngine
from dspy.lm15 import Message, Response, TextPart, Usage

logging.disable(logging.CRITICAL)


def make(i):
    a, b = i % 9 + 1, i // 9 + 2
    return dspy.Example(question=f"What is {a} plus {b}?", answer=str(a + b)).with_inputs("question")


TRAIN = [make(i) for i in range(0, 12, 2)]
VAL = [make(i) for i in range(1, 11, 2)]
# A larger case, for a run with many candidates.
BIG_TRAIN = [make(i) for i in range(20, 44, 2)]
BIG_VAL = [make(i) for i in range(21, 37, 2)]
ANSWERS = {ex.question: ex.answer for ex in TRAIN + VAL + BIG_TRAIN + BIG_VAL}


def answer(messages):
    """The scripted completion for a prompt: JSON for the reflection (JSONAdapter), ChatAdapter
    fields for the task."""
    system = messages[0]["content"]
    user = messages[-1]["content"]
    h = digest(messages)
    if "`new_instruction`" in system:
        current = user.split("[[ ## current_instruction ## ]]\n")[1].split("\n\n[[ ## examples_with_feedback ## ]]")[0]
        return json.dumps({"new_instruction": f"{current} Hint {h[:4]}."})
    block = system.split("Your output fields are:")[1].split("All interactions")[0]
    outs = re.findall(r"^\d+\. `(\w+)` \(", block, re.M)
    q = re.search(r"\[\[ ## question ## \]\]\n(.*)", user).group(1)
    first = int(re.search(r"What is (\d+)", q).group(1))
    # A hint helps the questions whose first number has its parity, so candidates specialize and
    # the Pareto front keeps several of them.
    helpful = sum(1 for x in re.findall(r"Hint ([0-9a-f]{4})\.", system) if int(x, 16) % 2 == first % 2)
    values = []
    for f in outs:
        if f == "answer":
            odds = ODDS["base"] + ODDS["hint"] * min(helpful, ODDS["hint_cap"])
            if "(careful)" in user:
                odds += ODDS["careful"]
            right = int(h[-8:], 16) % 100 < odds
            v = ANSWERS.get(q, "0") if right else "wrong"
        elif f == "draft":
            v = f"Draft {h[:6]}" + (" (careful)" if helpful else "")
        else:
            v = f"{f} {h[:8]}"
        values.append(f"[[ ## {f} ## ]]\n{v}")
    return "\n\n".join(values) + "\n\n[[ ## completed ## ]]"


SEEN = []
FIRST = {}
# How likely a right answer is: `base`, plus `hint` for each helpful hint up to `hint_cap`, plus
# `careful` when the draft says "(careful)". Recorded in each file as "odds".
ODDS = {}
DEFAULT_ODDS = {"base": 45, "hint": 40, "hint_cap": 1, "careful": 40}


class ScriptEngine(DummyEngine):
    def _complete_messages(self, messages, index=0):
        SEEN.append(digest(messages))
        kind = "reflection" if "`new_instruction`" in messages[0]["content"] else "task"
        FIRST.setdefault(kind, messages)
        return Response(id=None, model="dummy", message=Message.assistant([TextPart(answer(messages))]),
                        finish_reason="stop", usage=Usage(input_tokens=0, output_tokens=0, total_tokens=0))

    def complete_legacy(self, lm, request, *, prompt=None, messages=None, **context):
        from dspy.clients.call_result import CallResult

        messages = request["messages"] if messages is None else messages
        return CallResult.native(self._complete_messages(messages))


class ScriptLM(ScriptedDummyLM):
    ENGINE = ScriptEngine


def metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
    """1 for the right answer; feedback only when wrong (a right one gets DSPy's default)."""
    if gold.answer == pred.answer:
        return dspy.Prediction(score=1.0, feedback=None)
    return dspy.Prediction(score=0.0, feedback=f"The answer should be {gold.answer}, not {pred.answer}.")


class TwoStep(dspy.Module):
    def __init__(self):
        super().__init__()
        self.draft = dspy.Predict("question -> draft")
        self.answer = dspy.Predict("question, draft -> answer")

    def forward(self, question):
        draft = self.draft(question=question).draft
        return self.answer(question=question, draft=draft)


def run(name, program, max_metric_calls, path, odds=DEFAULT_ODDS, trainset=TRAIN, valset=VAL, **knobs):
    SEEN.clear()
    FIRST.clear()
    ODDS.clear()
    ODDS.update(odds)
    lm = ScriptLM()
    dspy.configure(lm=lm)
    config = {"seed": 0, "use_merge": True, "reflection_minibatch_size": 3, **knobs}
    opt = dspy.GEPA(metric=metric, max_metric_calls=max_metric_calls, reflection_lm=lm, num_threads=1,
                    track_stats=True, **config)
    compiled = opt.compile(program, trainset=trainset, valset=valset)
    r = compiled.detailed_results.to_dict()
    out = {
        "dspy_version": dspy.__version__,
        "program": name,
        "optimizer": {"name": "GEPA", "max_metric_calls": max_metric_calls, "num_threads": 1, **config},
        "odds": ODDS,
        "trainset": [ex.toDict() for ex in trainset],
        "valset": [ex.toDict() for ex in valset],
        "prompt_digests": list(SEEN),
        "first_task_prompt": FIRST.get("task"),
        "first_reflection_prompt": FIRST.get("reflection"),
        "components": list(r["candidates"][0].keys()),
        "candidates": r["candidates"],
        "parents": r["parents"],
        "val_subscores": [[s[i] for i in range(len(valset))] for s in r["val_subscores"]],
        "val_aggregate_scores": r["val_aggregate_scores"],
        "per_val_instance_best_candidates": [sorted(r["per_val_instance_best_candidates"][i]) for i in range(len(valset))],
        "discovery_eval_counts": r["discovery_eval_counts"],
        "total_metric_calls": r["total_metric_calls"],
        "num_full_val_evals": r["num_full_val_evals"],
        "best_idx": r["best_idx"],
        "final_instructions": {n: p.signature.instructions for n, p in compiled.named_predictors()},
    }
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    merges = sum(1 for p in r["parents"] if len(p) == 2)
    print(f"{name}: {len(SEEN)} prompts, {len(r['candidates'])} candidates ({merges} merged), "
          f"{r['total_metric_calls']} metric calls, best {r['best_idx']}", file=sys.stderr)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data"
    run("single", dspy.Predict("question -> answer"), 60, os.path.join(out, "gepa_single_trace.json"))
    run("two_step", TwoStep(), 150, os.path.join(out, "gepa_two_step_trace.json"))
    run("two_step_all_current_best", TwoStep(), 90, os.path.join(out, "gepa_all_current_best_trace.json"),
        component_selector="all", candidate_selection_strategy="current_best", use_merge=False,
        reflection_minibatch_size=2, seed=3)
    # Many candidates: fronts such as {6, 8} iterate as 8, 6 in CPython, and with seed 1 eight of
    # the Pareto selector's choices land on another parent than ascending order would give.
    run("many", TwoStep(), 300, os.path.join(out, "gepa_many_trace.json"),
        odds={"base": 25, "hint": 20, "hint_cap": 3, "careful": 20}, trainset=BIG_TRAIN, valset=BIG_VAL, seed=1)


if __name__ == "__main__":
    main()
