# Captures rows_*.csv / rows_*.json: DSPy 3.4.1's Evaluate exports (save_as_csv, save_as_json) for
# a bool metric named `metric`, a float metric named `fmetric`, and a failed example
# (failure_score=0.25). Offline: python capture_rows.py
import os, json, logging
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"]="True"
import dspy
logging.basicConfig(level=logging.INFO, format="%(name)s|%(message)s")
class Prog(dspy.Module):
    def forward(self, question):
        if question == "boom":
            raise RuntimeError("kaboom")
        ans = {"q0":"Paris","q1":"Rome","q2":"x","q3":"Zürich \"quoted\", comma\nnewline"}.get(question, "?")
        return dspy.Prediction(answer=ans, extra=[1, 2.5, True, None, "é"], flag=False)
dev = [dspy.Example(question="q0", answer="Paris", meta=None).with_inputs("question"),
       dspy.Example(question="q1", answer="Berlin", meta=[]).with_inputs("question"),
       dspy.Example(question="q3", answer="Zürich", meta={"k": 1.0, "n": 1e-05, "s": "a\u2028b😀"}).with_inputs("question"),
       ]
def metric(ex, pred):
    return ex.answer == pred.answer
def fmetric(ex, pred):
    return 0.75 if ex.answer == pred.answer else 0.1
for m in (metric, fmetric):
    r = dspy.Evaluate(devset=dev, metric=m, num_threads=1, max_errors=100, failure_score=0.0,
        save_as_csv=f"rows_{m.__name__}.csv", save_as_json=f"rows_{m.__name__}.json")(Prog())
    print(repr(r), r.score)
    print(open(f"rows_{m.__name__}.csv","rb").read())
    print(open(f"rows_{m.__name__}.json","rb").read())
dev2 = [dspy.Example(question="boom", answer="x").with_inputs("question"), dev[0]]
r = dspy.Evaluate(devset=dev2, metric=metric, num_threads=1, max_errors=100, failure_score=0.25, save_as_json="rows_failed.json")(Prog())
print(repr(r)); print(open("rows_failed.json").read())
