"""bm25s's top k for each query: `bm25s_topk.py CORPUS.jsonl QUERIES.txt K` prints
{"ids": [[...], ...], "scores": [[...], ...]}, the reference the embedded BM25 index must match."""
import json
import sys

import bm25s

corpus_path, queries_path, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
docs = [json.loads(line) for line in open(corpus_path, encoding="utf-8") if line.strip()]
queries = [q.strip() for q in open(queries_path, encoding="utf-8") if q.strip()]
retriever = bm25s.BM25()
retriever.index(bm25s.tokenize([d["text"] for d in docs], stopwords="en", show_progress=False), show_progress=False)
ids, scores = retriever.retrieve(bm25s.tokenize(queries, stopwords="en", show_progress=False), k=k, show_progress=False)
json.dump({"ids": [[docs[j]["id"] for j in row] for row in ids.tolist()], "scores": scores.tolist()}, sys.stdout)
print()
