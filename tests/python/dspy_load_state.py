"""Loads a program state file written by dspex into the equivalent DSPy 3.4.1 program and prints
the state DSPy then holds (its `dump_state()`), as JSON on stdout.

    python dspy_load_state.py STATE.json
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


program = Rag()
program.load(sys.argv[1])
state = program.dump_state(json_mode=True)
# Loaded demos are plain dicts in DSPy; dump them as dicts either way.
json.dump({"dspy_version": dspy.__version__, "state": state}, sys.stdout)
