"""Writes py_random.json: draws from CPython 3.11's random.Random that PyRandom must reproduce.

Run: python3 gen_py_random.py > py_random.json
Random floats are stored as int(x * 2**53) (exact) so no float parsing can blur them.
"""
import random, json
out = {}
seeds = [0, 1, 2, 3, 42, 12345, 2**32-1, 2**32, 2**40+5, 2**63+7, 2**64-1]
cases = []
for s in seeds:
    r = random.Random(s)
    c = {"seed": s}
    c["random53"] = [int(r.random() * 2**53) for _ in range(5)]
    c["bits"] = [r.getrandbits(k) for k in (1, 5, 31, 32, 33, 53, 64)]
    c["below"] = [r._randbelow(n) for n in (1, 2, 3, 4, 7, 8, 100, 2**31, 2**32 + 1, 10**15, 2**64 - 1)]
    c["randint"] = [r.randint(-5, 5) for _ in range(6)]
    x = list(range(20)); r.shuffle(x); c["shuffle20"] = x
    c["sample_pool"] = r.sample(range(10), 3)           # n <= 21: pool
    c["sample_pool_k"] = r.sample(range(100), 30)        # k=30: setsize 21+256 -> pool
    c["sample_set"] = r.sample(range(1000), 5)           # set
    c["sample_set_k"] = r.sample(range(1000), 30)        # setsize 277 < 1000 -> set
    c["sample_all"] = r.sample(range(8), 8)
    c["choice"] = [r.choice("abcdefg") for _ in range(5)]
    c["choices"] = r.choices(range(7), k=5)
    c["choices_w"] = r.choices(range(5), weights=[1, 2, 3, 4, 5.5], k=6)
    c["after"] = r.getrandbits(32)
    cases.append(c)
out["int_seeds"] = cases
out["randint_1_4"] = [random.Random(s).randint(1, 4) for s in range(16)]
strs = []
for s in ["", "hello", "dspy", "ünïcödé ✓", "x" * 200]:
    r = random.Random(s)
    strs.append({"seed": s, "random53": [int(r.random() * 2**53) for _ in range(3)], "bits": r.getrandbits(32)})
out["str_seeds"] = strs
# large population sampling in set mode with collisions likely (n just above setsize)
r = random.Random(7)
out["sample_n22_k5"] = r.sample(range(22), 5)
out["sample_n22_k1"] = random.Random(3).sample(range(22), 1)
print(json.dumps(out))
