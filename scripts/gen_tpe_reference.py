#!/usr/bin/env python3
"""Writes dspex-runtime/src/optimize/testdata/tpe_optuna_5_0_0.json: the trials optuna 5.0.0's
TPESampler(seed, multivariate=True) asks for over categorical parameters, driven as DSPy's MIPROv2 drives it
(a baseline trial added first, and a trial added by hand while every fourth asked one runs).

Run it in a scratch venv with `pip install optuna==5.0.0 numpy`:
    python scripts/gen_tpe_reference.py > dspex-runtime/src/optimize/testdata/tpe_optuna_5_0_0.json
"""
import json, math, warnings, sys
warnings.filterwarnings("ignore")
import optuna
optuna.logging.set_verbosity(optuna.logging.ERROR)
from optuna.distributions import CategoricalDistribution

def run(seed, n_instr, n_demos, n_pred, n_trials, score):
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    dists = {}
    for i in range(n_pred):
        dists[f"{i}_predictor_instruction"] = CategoricalDistribution(range(n_instr))
        if n_demos:
            dists[f"{i}_predictor_demos"] = CategoricalDistribution(range(n_demos))
    base = {k: 0 for k in dists}
    study.add_trial(optuna.trial.create_trial(params=base, distributions=dists, value=score(base, -1)))
    asked = []
    for t in range(n_trials):
        trial = study.ask()
        params = {}
        for i in range(n_pred):
            params[f"{i}_predictor_instruction"] = trial.suggest_categorical(f"{i}_predictor_instruction", range(n_instr))
            if n_demos:
                params[f"{i}_predictor_demos"] = trial.suggest_categorical(f"{i}_predictor_demos", range(n_demos))
        v = score(params, t)
        if t % 4 == 3:
            # a hand-added "full evaluation" trial, added while the asked trial still runs, as
            # MIPROv2 adds them from inside its objective
            study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=v - 1.0))
        study.tell(trial, v)
        asked.append([params[k] for k in params])
    return asked

def score_a(p, t):
    s = 0.0
    for k, v in sorted(p.items()):
        s += (v * 7 + len(k)) % 5
    return round(50 + 3 * s + (t % 3), 2)

cases = [
    dict(seed=9, n_instr=3, n_demos=6, n_pred=1, n_trials=30),
    dict(seed=9, n_instr=6, n_demos=0, n_pred=2, n_trials=25),
    dict(seed=1, n_instr=4, n_demos=5, n_pred=3, n_trials=40),
]
out = []
for c in cases:
    out.append(dict(case=c, asked=run(score=score_a, **c)))
print(json.dumps(out))
