#!/usr/bin/env python3
"""Writes tests/data/mipro_light_trace.json: DSPy 3.4.1's MIPROv2 (auto="light", seed 9) compiling a
ChainOfThought QA program against a deterministic scripted LM, for dspex's MIPROv2 parity test.

The LM answers every prompt with a function of the prompt alone (a SHA-256 of its messages), so a
re-implementation that sends the same prompts gets the same answers in any order. The file holds
the trainset, the digest of every prompt DSPy sent (a multiset), each trial's parameters and
score, and the compiled program's saved state.

Needs a venv with `dspy==3.4.1` and `optuna==5.0.0` (the project venv has no optuna):
    python scripts/gen_mipro_trace.py tests/data/mipro_light_trace.json
"""
import hashlib
import json
import logging
import re
import sys
import warnings

warnings.filterwarnings("ignore")
import dspy
from dspy.clients.engines.dummy_engine import AsyncDummyEngine, DummyEngine
from dspy.lm15 import Message, Response, TextPart, Usage
from dspy.utils.dummies import DummyLM

logging.disable(logging.CRITICAL)

N = 80
TRAIN = [
    dspy.Example(question=f"What is {i % 9 + 1} plus {i // 9 + 2}?", answer=str(i % 9 + 1 + i // 9 + 2)).with_inputs("question")
    for i in range(N)
]
ANSWERS = {ex.question: ex.answer for ex in TRAIN}


def digest(messages):
    h = hashlib.sha256()
    for m in messages:
        h.update(m["role"].encode())
        h.update(b"\x01")
        h.update(m["content"].encode())
        h.update(b"\x00")
    return h.hexdigest()


def answer(messages):
    """The scripted completion for a prompt (ChatAdapter format)."""
    system = messages[0]["content"]
    user = messages[-1]["content"]
    h = digest(messages)
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
    def _complete_messages(self, messages):
        SEEN.append(digest(messages))
        return Response(id=None, model="dummy", message=Message.assistant([TextPart(answer(messages))]),
                        finish_reason="stop", usage=Usage(input_tokens=0, output_tokens=0, total_tokens=0))


class ScriptLM(DummyLM):
    def __init__(self):
        super().__init__([])
        self._engine_spec = ScriptEngine(self)
        self._async_engine_spec = AsyncDummyEngine(self._engine_spec)

    def copy(self, **kwargs):
        copied = super().copy(**kwargs)
        copied._engine_spec = ScriptEngine(copied)
        copied._async_engine_spec = AsyncDummyEngine(copied._engine_spec)
        return copied


def metric(example, prediction, trace=None):
    return example.answer == prediction.answer


def main():
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
    state = compiled.dump_state(json_mode=True)
    out = {
        "dspy_version": dspy.__version__,
        "program": {"module": "ChainOfThought", "signature": "question -> answer"},
        "optimizer": {"name": "MIPROv2", "auto": "light", "seed": 9, "metric": "exact answer match"},
        "trainset": [ex.toDict() for ex in TRAIN],
        "prompt_digests": sorted(SEEN),
        "trials": trials,
        "score": compiled.score,
        "compiled_state": state,
    }
    with open(sys.argv[1], "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
