"""The DSPy side of `tests/tests/bridge_hybrid.rs`: a multi-module DSPy program whose
ChainOfThought steps dspex runs natively and whose ProgramOfThought step runs in the pool.

    python dspy_hybrid.py save PATH            set demos and instructions, save with DSPy's `save`
    python dspy_hybrid.py check DSPY DSPEX     load both files into the same program, compare states

`check` prints `OK` and the predictor names when the two states are equal, else exits non-zero
with the differences.
"""

import json
import sys
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)

import dspy  # noqa: E402


class Pipeline(dspy.Module):
    def __init__(self):
        super().__init__()
        self.plan = dspy.ChainOfThought("question -> plan")
        self.compute = dspy.ProgramOfThought("question, plan -> result")
        self.explain = dspy.ChainOfThought("question, result -> answer")


def tuned():
    program = Pipeline()
    program.plan.predict.signature = program.plan.predict.signature.with_instructions(
        "Write a one-line plan to compute the answer."
    )
    program.plan.predict.demos = [
        dspy.Example(question="What is 2 + 3?", reasoning="Add them.", plan="Add 2 and 3."),
    ]
    program.compute.code_generate.predict.demos = [
        dspy.Example(
            question="What is 2 + 3?",
            plan="Add 2 and 3.",
            reasoning="Sum.",
            generated_code='```python\nSUBMIT({"result": 2 + 3})\n```',
        ),
    ]
    program.explain.predict.signature = program.explain.predict.signature.with_instructions(
        "Answer in one sentence from the computed result."
    )
    program.explain.predict.demos = [
        dspy.Example(question="What is 2 + 3?", result="5", reasoning="It is 5.", answer="2 + 3 is 5."),
        dspy.Example(question="What is 3 * 3?", result="9", reasoning="It is 9.", answer="3 * 3 is 9."),
    ]
    return program


def main(argv):
    if argv[:1] == ["save"] and len(argv) == 2:
        tuned().save(argv[1])
        return 0
    if argv[:1] == ["check"] and len(argv) == 3:
        from_dspy = Pipeline()
        from_dspy.load(argv[1])
        from_dspex = Pipeline()
        from_dspex.load(argv[2])
        a, b = from_dspy.dump_state(), from_dspex.dump_state()
        if a != b:
            for key in sorted(set(a) | set(b)):
                if a.get(key) != b.get(key):
                    print(f"differs: {key}\n  dspy:  {json.dumps(a.get(key))}\n  dspex: {json.dumps(b.get(key))}")
            return 1
        print("OK " + " ".join(name for name, _ in from_dspex.named_predictors()))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
