"""Loads a program state file written by dspex into the equivalent DSPy 3.4.1 program and prints
the state DSPy then holds (its `dump_state()`), as JSON on stdout.

    python dspy_load_state.py STATE.json [rag|multihop]
"""
import json
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import dspy


class Rag(dspy.Module):
    def __init__(self):
        super().__init__()
        self.generate_query = dspy.ChainOfThought("question -> search_query")
        self.answer = dspy.Predict("context: list[str], question -> answer")


class MultiHop(dspy.Module):
    def __init__(self):
        super().__init__()
        self.generate_query = [dspy.Predict("context: list[str], question -> query") for _ in range(2)]
        self.retrieve = dspy.Retrieve(k=3)
        self.generate_answer = dspy.ChainOfThought("context: list[str], question -> answer")


kind = sys.argv[2] if len(sys.argv) > 2 else "rag"
program = {"rag": Rag, "multihop": MultiHop}[kind]()
program.load(sys.argv[1])
# DSPy 3.4.1's `Retrieve.dump_state()` takes no `json_mode` (so `dump_state(json_mode=True)` on a
# program holding one raises TypeError): dump parameter by parameter.
state = {}
for name, param in program.named_parameters():
    try:
        state[name] = param.dump_state(json_mode=True)
    except TypeError:
        state[name] = param.dump_state()
# Loaded demos are plain dicts in DSPy; dump them as dicts either way.
json.dump({"dspy_version": dspy.__version__, "state": state}, sys.stdout)
