# Captures semantic.json (the tests add a "_source" key): DSPy 3.4.1's SemanticF1 and
# CompleteAndGrounded prompts and scores. Offline: python capture_semantic.py
import os, json
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"]="True"
import dspy
from dspy.utils import DummyLM
from dspy.evaluate import SemanticF1, CompleteAndGrounded
out = {}
ex = dspy.Example(question="What is the capital of France?", response="Paris is the capital of France.")
pred = dspy.Prediction(response="The capital is Paris, a city on the Seine.", context="Paris is France's capital.\nThe Seine flows through Paris.")
lm = DummyLM([{"reasoning": "Both say Paris.", "recall": "1.0", "precision": "0.5"}])
dspy.configure(lm=lm)
r = SemanticF1()(ex, pred)
out["semantic_f1"] = {"messages": lm.history[-1]["messages"], "score": r.score}
lm = DummyLM([{"reasoning": "R", "ground_truth_key_ideas": "1. Paris", "system_response_key_ideas": "1. Paris 2. Seine", "discussion": "D", "recall": "1.0", "precision": "0.5"}])
dspy.configure(lm=lm)
r = SemanticF1(decompositional=True)(ex, pred, trace=[])
out["semantic_f1_decomp"] = {"messages": lm.history[-1]["messages"], "score": r.score}
lm = DummyLM([{"reasoning": "R", "ground_truth_key_ideas": "1. Paris", "system_response_key_ideas": "1. Paris 2. Seine", "discussion": "D", "completeness": "0.9"},
              {"reasoning": "R2", "system_response_claims": "1. Paris is the capital", "discussion": "D2", "groundedness": "1.5"}])
dspy.configure(lm=lm)
r = CompleteAndGrounded()(ex, pred)
out["complete_and_grounded"] = {"messages": [h["messages"] for h in lm.history], "score": r.score}
json.dump(out, open("semantic.json","w"), indent=1, ensure_ascii=False)
print(out["semantic_f1"]["messages"][0]["content"]); print("----"); print(out["semantic_f1"]["messages"][1]["content"]); print(out["semantic_f1"]["score"], out["semantic_f1_decomp"]["score"], out["complete_and_grounded"]["score"])
