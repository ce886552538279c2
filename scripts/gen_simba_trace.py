#!/usr/bin/env python3
"""Writes tests/data/{simba,simba_feedback,simba_teacher}_trace.json: DSPy 3.4.1's SIMBA
(num_threads=1, trainset 12, bsize 4; the knobs and seed of each run are in `VARIANTS`)
compiling a ChainOfThought QA program against a deterministic scripted LM, for dspex's SIMBA
parity tests (`tests/tests/optimizer_parity.rs`).

The scripted LM is `scripts/gen_optimizer_traces.py`'s (an answer is a function of the prompt's
SHA-256, so a re-implementation that sends the same prompts gets the same answers in any order),
with two additions SIMBA needs:
- the resampling models are `lm.copy(rollout_id=r, temperature=1.0)`: when the calling LM has a
  `rollout_id`, the digest is hashed again with `:r{rollout_id}`, so resamples of one prompt
  differ (as a real model's would at temperature 1.0) and the buckets have something to sort;
- `OfferFeedback`'s `module_advice` is a well-formed JSON dict `{"predict": advice}` whose
  advice mentions "arithmetic question", which (as a MIPROv2 instruction does in the base
  script) makes right answers likelier, so appended rules can win.

`simba` scores with a float metric (1.0 or 0.0); `simba_feedback` with a graded metric that
returns a `dspy.Prediction(score=…, feedback=…)` (the reward info), cuts demo inputs at 12
characters, keeps one demo per predictor and blanks one trajectory ("N/A"); `simba_teacher`
adds `teacher_settings={"lm": expert}`, an LM that always answers right. Each file holds the
digest of every prompt (a multiset), the mini-batch scores of each step's candidates and the
strategies drawn (from SIMBA's log), DSPy's `trial_logs`, the final candidates' full-trainset
scores, the `OfferFeedback` program code (`inspect.getsource` of the student's class:
Python-specific, dspex takes it as the `program_code` option) and the compiled program's saved
state.

    /work/main/.venv/bin/python scripts/gen_simba_trace.py tests/data [simba|simba_feedback|simba_teacher ...]
"""
import ast
import hashlib
import inspect
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

logging.disable(logging.WARNING)

N = 12
TRAIN = [
    dspy.Example(question=f"What is {i % 9 + 1} plus {i // 9 + 2}?", answer=str(i % 9 + 1 + i // 9 + 2)).with_inputs("question")
    for i in range(N)
]
ANSWERS = {ex.question: ex.answer for ex in TRAIN}


def answer(messages, index=0, rollout=None, expert=False):
    """The scripted completion `index` for a prompt (ChatAdapter format), for `rollout`; an
    `expert` (the teacher of `simba_teacher`) always answers right."""
    system = messages[0]["content"]
    user = messages[-1]["content"]
    h = digest(messages)
    if index:
        h = hashlib.sha256(f"{h}:{index}".encode()).hexdigest()
    if rollout is not None:
        h = hashlib.sha256(f"{h}:r{rollout}".encode()).hexdigest()
    block = system.split("Your output fields are:")[1].split("All interactions")[0]
    outs = re.findall(r"^\d+\. `(\w+)` \(", block, re.M)
    values = []
    for f in outs:
        if f == "answer":
            q = re.search(r"\[\[ ## question ## \]\]\n(.*)", user).group(1)
            odds = 60
            if any(m["role"] == "assistant" for m in messages):
                odds += 25
            if "arithmetic question" in system:
                odds += 10
            right = expert or int(h[:8], 16) % 100 < odds
            v = ANSWERS.get(q, "0") if right else "wrong"
        elif f == "reasoning":
            v = f"Adding the numbers ({h[:6]})."
        elif f == "module_advice":
            v = ('{"predict": "If the module receives an arithmetic question, it should add the two numbers '
                 f'and answer with the sum alone ({h[:6]})."}}')
        else:
            v = f"{f.replace('_', ' ')} {h[:8]}"
        values.append(f"[[ ## {f} ## ]]\n{v}")
    return "\n\n".join(values) + "\n\n[[ ## completed ## ]]"


SEEN = []
# OfferFeedback prompts with a blanked ("N/A") trajectory, to show the trace covers that case.
BLANKED = []


class ScriptEngine(DummyEngine):
    def _complete_messages(self, messages, index=0, rollout=None, expert=False):
        if index == 0:
            SEEN.append(digest(messages))
            if "Prediction not available" in messages[-1]["content"]:
                BLANKED.append(digest(messages))
        return Response(id=None, model="dummy", message=Message.assistant([TextPart(answer(messages, index, rollout, expert))]),
                        finish_reason="stop", usage=Usage(input_tokens=0, output_tokens=0, total_tokens=0))

    def complete_legacy(self, lm, request, *, prompt=None, messages=None, **context):
        from dspy.clients.call_result import CallResult, combine

        messages = request["messages"] if messages is None else messages
        count = request.get("n") or 1
        rollout = lm.kwargs.get("rollout_id")
        # The flag lives on the LM: DSPy builds engines anew (per thread) from the engine's type.
        expert = getattr(lm, "expert", False)
        results = [CallResult.native(self._complete_messages(messages, i, rollout, expert)) for i in range(count)]
        return results[0] if count == 1 else combine(results, model_type="chat")


class ScriptLM(ScriptedDummyLM):
    ENGINE = ScriptEngine

    def __init__(self, expert=False):
        self.expert = expert
        super().__init__()


def metric(example, prediction, trace=None):
    return 1.0 if example.answer == prediction.answer else 0.0


def feedback_metric(example, prediction, trace=None):
    """A graded metric that explains itself (SIMBA's `output_metadata`): 1.0 for the right
    answer, else 0.5, or 0.0 when the first byte of the reasoning's SHA-256 is a multiple of 4."""
    right = example.answer == prediction.answer
    partial = int(hashlib.sha256(prediction.reasoning.encode()).hexdigest()[:2], 16) % 4 != 0
    score = 1.0 if right else (0.5 if partial else 0.0)
    return dspy.Prediction(score=score, feedback=f"expected {example.answer}, got {prediction.answer}")


# name -> (metric, metric description, SIMBA knobs, seed)
VARIANTS = {
    "simba": (metric, "exact answer match, 1.0 or 0.0",
              dict(bsize=4, num_candidates=3, max_steps=4, max_demos=2), 1),
    # Reward info from the metric's prediction, demo inputs cut at 12 characters, one demo per
    # predictor at most (so demos are dropped), two resampling models and a seed (16) where a
    # bucket of equal scores blanks a trajectory in an OfferFeedback prompt.
    "simba_feedback": (feedback_metric, "graded (1.0 / 0.5 / 0.0) with a `feedback` field",
                       dict(bsize=4, num_candidates=2, max_steps=5, max_demos=1, demo_input_field_maxlen=12),
                       int(__import__("os").environ.get("SIMBA_FEEDBACK_SEED", "16"))),
    # The first resampling model is a teacher that always answers right
    # (`teacher_settings={"lm": expert}`; DSPy sets `rollout_id` 0 in its kwargs in place).
    "simba_teacher": (metric, "exact answer match, 1.0 or 0.0",
                      dict(bsize=4, num_candidates=3, max_steps=3, max_demos=2), 5),
}


class StepScores(logging.Handler):
    """SIMBA logs each step's candidate mini-batch scores and strategies; keep them."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.scores = []
        self.strategies = []

    def emit(self, record):
        msg = record.getMessage()
        if m := re.match(r"Scores after (\d+) batches: (\[.*?\]), Best", msg):
            self.scores.append(ast.literal_eval(m.group(2)))
        elif m := re.search(r"Invoking strategy: (\w+)", msg):
            self.strategies.append(m.group(1))


def main():
    folder = sys.argv[1]
    for name in sys.argv[2:] or list(VARIANTS):
        run(name, f"{folder}/{name}_trace.json")


def run(name, path):
    metric_fn, metric_desc, knobs, seed = VARIANTS[name]
    SEEN.clear()
    BLANKED.clear()
    logging.disable(logging.NOTSET)
    logging.getLogger().setLevel(logging.CRITICAL)
    log = logging.getLogger("dspy.teleprompt.simba")
    log.setLevel(logging.INFO)
    handler = StepScores()
    log.handlers.clear()
    log.addHandler(handler)
    log.propagate = False
    for logger_name in ("dspy.teleprompt.simba_utils", "dspy.utils.parallelizer"):
        logging.getLogger(logger_name).setLevel(logging.CRITICAL)

    lm = ScriptLM()
    dspy.configure(lm=lm)
    program = dspy.ChainOfThought("question -> answer")
    extra = {"teacher_settings": {"lm": ScriptLM(expert=True)}} if name == "simba_teacher" else {}
    opt = dspy.SIMBA(metric=metric_fn, num_threads=1, **knobs, **extra)
    compiled = opt.compile(program, trainset=TRAIN, seed=seed)
    out = {
        "dspy_version": dspy.__version__,
        "program": {"module": "ChainOfThought", "signature": "question -> answer"},
        "optimizer": {"name": "SIMBA", **knobs, "seed": seed, "metric": metric_desc},
        "trainset": [ex.toDict() for ex in TRAIN],
        "program_code": inspect.getsource(dspy.ChainOfThought),
        "prompt_digests": sorted(SEEN),
        "blanked_trajectory_prompts": len(BLANKED),
        "step_candidate_scores": handler.scores,
        "step_strategies": handler.strategies,
        "trial_logs": {str(k): v for k, v in sorted(compiled.trial_logs.items())},
        "candidate_scores": [c["score"] for c in compiled.candidate_programs],
        "compiled_state": compiled.dump_state(json_mode=True),
    }
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
