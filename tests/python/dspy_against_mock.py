"""Real DSPy 3.4.1 against dspex's mock LM server: prints one JSON object with what DSPy parsed.

Usage: python dspy_against_mock.py API_BASE
"""
import json
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402


def main():
    api_base = sys.argv[1]
    lm = dspy.LM("openai/mock", api_base=api_base, api_key="x", cache=False, num_retries=0)
    dspy.configure(lm=lm)
    predict = dspy.Predict("question -> answer")(question="What is the capital of France?")
    cot = dspy.ChainOfThought("question -> answer")(question="Why is the sky blue?")
    typed = dspy.Predict("text -> count: int, words: list[str], flag: bool")(text="three little words")
    with dspy.context(adapter=dspy.JSONAdapter()):
        as_json = dspy.Predict("question -> answer")(question="JSON please")
    print(json.dumps({
        "dspy_version": dspy.__version__,
        "predict_answer": predict.answer,
        "cot_reasoning": cot.reasoning,
        "cot_answer": cot.answer,
        "typed": {"count": typed.count, "words": typed.words, "flag": typed.flag},
        "json_answer": as_json.answer,
    }))


if __name__ == "__main__":
    main()
