"""Writes py_intset.json: CPython 3.11's iteration order of int sets, for intset.rs's tests.

Each `adds` case: the keys added in order, then `list(s)`, `list(set(s))` (the copy) and
`list(set(list(s)))`; each `and` case: two key lists and `list(set(a) & set(b))`.

    python3.11 gen_py_intset.py > py_intset.json
"""
import json
import random

r = random.Random(1)
adds = []
for _ in range(150):
    keys = [r.randint(0, 70) for _ in range(r.randint(1, 12))]
    s = set()
    for k in keys:
        s.add(k)
    adds.append([keys, list(s), list(set(s)), list(set(list(s)))])
lists = [[r.randint(0, 40) for _ in range(r.randint(1, 10))] for _ in range(200)]
ands = [[lists[i], lists[i + 1], list(set(lists[i]) & set(lists[i + 1]))] for i in range(0, 200, 2)]
print(json.dumps({"adds": adds, "and": ands}))
