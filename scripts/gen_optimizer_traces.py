#!/usr/bin/env python3
"""Writes tests/data/{mipro_light,copro,random_search,infer_rules}_trace.json: DSPy 3.4.1's MIPROv2
(auto="light", seed 9), COPRO (breadth 3, depth 2), BootstrapFewShotWithRandomSearch (3
candidate programs) and InferRules (3 candidates of 4 rules) compiling a ChainOfThought QA program against a
deterministic scripted LM, for dspex's optimizer parity tests.

The LM answers every prompt with a function of the prompt alone (a SHA-256 of its messages, and
the completion's index when several are asked for), so a re-implementation that sends the same
prompts gets the same answers in any order; `tests/tests/optimizer_parity.rs` implements the same
function. Each file holds the digest of every prompt DSPy sent (a multiset), the trials where the
optimizer logs them, and the compiled program's saved state.

Needs a venv with `dspy==3.4.1` and `optuna==5.0.0` (the project venv has no optuna):
    python scripts/gen_optimizer_traces.py tests/data [mipro_light|copro|random_search|infer_rules ...]
"""
import hashlib
import json
import os
import logging
import re
import sys
import warnings

warnings.filterwarnings("ignore")
import dspy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from script_lm import ScriptedDummyLM, digest  # noqa: E402  (shared by the trace generators)
from dspy.clients.engines.dummy_engine import DummyEngine
from dspy.lm15 import Message, Response, TextPart, Usage
from dspy.propose.utils import get_dspy_source_code

logging.disable(logging.CRITICAL)

N = 80
TRAIN = [
    dspy.Example(question=f"What is {i % 9 + 1} plus {i // 9 + 2}?", answer=str(i % 9 + 1 + i // 9 + 2)).with_inputs("question")
    for i in range(N)
]
ANSWERS = {ex.question: ex.answer for ex in TRAIN}


def answer(messages, index=0):
    """The scripted completion `index` for a prompt (ChatAdapter format)."""
    system = messages[0]["content"]
    user = messages[-1]["content"]
    h = digest(messages)
    if index:
        h = hashlib.sha256(f"{h}:{index}".encode()).hexdigest()
    block = system.split("Your output fields are:")[1].split("All interactions")[0]
    outs = re.findall(r"^\d+\. `(\w+)` \(", block, re.M)
    values = []
    for f in outs:
        if f == "answer":
            q = re.search(r"\[\[ ## question ## \]\]\n(.*)", user).group(1)
            # Demos and a proposed instruction make right answers likelier, so the search has
            # something to find.
            odds = 60
            if any(m["role"] == "assistant" for m in messages):
                odds += 25
            if "arithmetic question" in system:
                odds += 10
            right = int(h[:8], 16) % 100 < odds
            v = ANSWERS.get(q, "0") if right else "wrong"
        elif f == "proposed_instruction":
            v = f"Proposed Instruction: Answer the arithmetic question with a number ({h[:6]})."
        elif f == "reasoning":
            v = f"Adding the numbers ({h[:6]})."
        else:
            v = f"{f.replace('_', ' ')} {h[:8]}"
        values.append(f"[[ ## {f} ## ]]\n{v}")
    return "\n\n".join(values) + "\n\n[[ ## completed ## ]]"


SEEN = []


class ScriptEngine(DummyEngine):
    def _complete_messages(self, messages, index=0):
        if index == 0:
            SEEN.append(digest(messages))
        return Response(id=None, model="dummy", message=Message.assistant([TextPart(answer(messages, index))]),
                        finish_reason="stop", usage=Usage(input_tokens=0, output_tokens=0, total_tokens=0))

    def complete_legacy(self, lm, request, *, prompt=None, messages=None, **context):
        from dspy.clients.call_result import CallResult, combine

        messages = request["messages"] if messages is None else messages
        count = request.get("n") or 1
        results = [CallResult.native(self._complete_messages(messages, i)) for i in range(count)]
        return results[0] if count == 1 else combine(results, model_type="chat")


class ScriptLM(ScriptedDummyLM):
    ENGINE = ScriptEngine


def metric(example, prediction, trace=None):
    return example.answer == prediction.answer


def mipro(path):
    SEEN.clear()
    lm = ScriptLM()
    dspy.configure(lm=lm)
    program = dspy.ChainOfThought("question -> answer")
    opt = dspy.MIPROv2(metric=metric, auto="light", num_threads=1, seed=9, verbose=False)
    compiled = opt.compile(program, trainset=TRAIN)
    trials = []
    for num, log in sorted(compiled.trial_logs.items()):
        entry = {"trial": num}
        for k in ("0_predictor_instruction", "0_predictor_demos", "mb_score", "full_eval_score"):
            if k in log:
                entry[k] = log[k]
        trials.append(entry)
    out = {
        "dspy_version": dspy.__version__,
        "program": {"module": "ChainOfThought", "signature": "question -> answer"},
        "optimizer": {"name": "MIPROv2", "auto": "light", "seed": 9, "metric": "exact answer match"},
        "trainset": [ex.toDict() for ex in TRAIN],
        # What DSPy shows the prompt model as the program's code (Python-specific; dspex takes it
        # as the `program_code` option to reproduce these prompts).
        "program_code": get_dspy_source_code(dspy.ChainOfThought("question -> answer")),
        "prompt_digests": sorted(SEEN),
        "trials": trials,
        "score": compiled.score,
        "compiled_state": compiled.dump_state(json_mode=True),
    }
    write(path, out)


def copro(path):
    SEEN.clear()
    lm = ScriptLM()
    dspy.configure(lm=lm)
    program = dspy.ChainOfThought("question -> answer")
    trainset = TRAIN[:20]
    opt = dspy.COPRO(metric=metric, breadth=3, depth=2)
    compiled = opt.compile(program, trainset=trainset, eval_kwargs={"num_threads": 1, "display_progress": False})
    out = {
        "dspy_version": dspy.__version__,
        "program": {"module": "ChainOfThought", "signature": "question -> answer"},
        "optimizer": {"name": "COPRO", "breadth": 3, "depth": 2, "init_temperature": 1.4, "metric": "exact answer match"},
        "trainset": [ex.toDict() for ex in trainset],
        "prompt_digests": sorted(SEEN),
        "total_calls": compiled.total_calls,
        "candidate_scores": [c["score"] for c in compiled.candidate_programs],
        "compiled_state": compiled.dump_state(json_mode=True),
    }
    write(path, out)


def random_search(path):
    SEEN.clear()
    lm = ScriptLM()
    dspy.configure(lm=lm)
    program = dspy.ChainOfThought("question -> answer")
    trainset = TRAIN[:20]
    opt = dspy.BootstrapFewShotWithRandomSearch(
        metric=metric, max_bootstrapped_demos=3, max_labeled_demos=4, num_candidate_programs=3, num_threads=1
    )
    compiled = opt.compile(program, trainset=trainset)
    out = {
        "dspy_version": dspy.__version__,
        "program": {"module": "ChainOfThought", "signature": "question -> answer"},
        "optimizer": {"name": "BootstrapFewShotWithRandomSearch", "max_bootstrapped_demos": 3,
                      "max_labeled_demos": 4, "num_candidate_programs": 3, "metric": "exact answer match"},
        "trainset": [ex.toDict() for ex in trainset],
        "prompt_digests": sorted(SEEN),
        "candidates": sorted(({"seed": c["seed"], "score": c["score"]} for c in compiled.candidate_programs),
                             key=lambda c: c["seed"]),
        "compiled_state": compiled.dump_state(json_mode=True),
    }
    write(path, out)


def infer_rules(path):
    SEEN.clear()
    lm = ScriptLM()
    dspy.configure(lm=lm)
    program = dspy.ChainOfThought("question -> answer")
    trainset = TRAIN[:16]
    opt = dspy.InferRules(metric=metric, num_candidates=3, num_rules=4, num_threads=1,
                          max_bootstrapped_demos=2, max_labeled_demos=3)
    compiled = opt.compile(program, trainset=trainset)
    out = {
        "dspy_version": dspy.__version__,
        "program": {"module": "ChainOfThought", "signature": "question -> answer"},
        "optimizer": {"name": "InferRules", "num_candidates": 3, "num_rules": 4, "max_bootstrapped_demos": 2,
                      "max_labeled_demos": 3, "metric": "exact answer match"},
        "trainset": [ex.toDict() for ex in trainset],
        "prompt_digests": sorted(SEEN),
        "compiled_state": compiled.dump_state(json_mode=True),
    }
    write(path, out)


def write(path, out):
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


def main():
    import os
    folder = sys.argv[1]
    runs = {"mipro_light": mipro, "copro": copro, "random_search": random_search, "infer_rules": infer_rules}
    # Optional names after the folder regenerate only those traces.
    for name in sys.argv[2:] or list(runs):
        runs[name](os.path.join(folder, f"{name}_trace.json"))


if __name__ == "__main__":
    main()
