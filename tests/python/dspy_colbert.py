"""Real DSPy 3.4.1's ColBERTv2 client against dspex's mock ColBERTv2 server: prints one JSON object
with the passages DSPy got for each query and each way of asking, and the errors it raised.

Usage: python dspy_colbert.py CONFIG_JSON
where CONFIG_JSON is {"url": …, "host": …, "port": …, "queries": [...], "k": …,
                      "failing": {"name": url, …}}.
DSPy caches requests: point DSPY_CACHEDIR at a fresh directory.
"""
import json
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402


def ask(client, query, k):
    try:
        return [dict(p) for p in client(query, k=k)]
    except Exception as e:  # noqa: BLE001 - the type and message are the result
        return {"error_type": type(e).__name__, "error": str(e)}


def main():
    config = json.loads(sys.argv[1])
    k = config["k"]
    clients = {
        "get": dspy.ColBERTv2(url=config["url"]),
        "post": dspy.ColBERTv2(url=config["url"], post_requests=True),
        "port": dspy.ColBERTv2(url=config["host"], port=config["port"]),
    }
    out = {"dspy_version": dspy.__version__}
    for name, client in clients.items():
        out[name] = {q: ask(client, q, k) for q in config["queries"]}
    out["simplify"] = clients["get"](config["queries"][0], k=k, simplify=True)
    out["failing"] = {
        name: ask(dspy.ColBERTv2(url=url), config["queries"][0], k)
        for name, url in config["failing"].items()
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
