"""Does a faster reranker variant rank like the naive float32 baseline, query after query, on recalled candidates?

For every labelled query of `data/samples/queries.jsonl` (193, Chinese and English), the K candidates are what BM25
recalls from the sample documents' chunks (as `kb search` would rerank them), and every variant of
`kb bench rerank` scores the same pairs, interleaved in one process. Reported per variant: queries whose top-10
order is identical to the naive baseline's, whose top-10 set is identical, whose top-1 is identical, max |Δscore|
(sigmoid scale) and the speed ratio to naive (median of per-query ratios), plus the same for the `exact` rescoring
(a fast pass over all K, then float32 on the candidates near the top; see rerank.exact).

Meant for a *trained* model (`benchmarks/train_proxy_reranker.py` makes one offline, or pass a real reranker):
on random weights every candidate's logit lies within noise of the others and every reduced precision reorders.

    HF_HUB_OFFLINE=1 python benchmarks/rerank_agreement.py --reranker /tmp/proxy-reranker --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reranker", required=True)
    parser.add_argument("--queries", type=Path, default=ROOT / "data" / "samples" / "queries.jsonl")
    parser.add_argument("--corpus", type=Path, default=ROOT / "data" / "samples" / "docs")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--limit", type=int, default=0, help="only the first N queries (0: all)")
    parser.add_argument("--variants", default="naive,torch,torch-bf16,onnx-int8")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import tempfile

    import numpy as np

    from app.quality.bench import candidate_texts, load_variant, machine, run_variant
    from ingest.types import Chunk
    from rerank.types import RerankerOptions
    from rerank.validation.agreement import top_k_order
    from retrieval.lexical import LexicalIndex

    variants = args.variants.split(",")
    queries = [json.loads(line)["text"] for line in args.queries.read_text(encoding="utf-8").splitlines() if line]
    queries = queries[:args.limit] if args.limit else queries
    started = machine()
    with tempfile.TemporaryDirectory() as tmp:
        options = RerankerOptions(batch_size=args.batch_size, max_length=args.max_length, models_dir=tmp)
        loaded = {v: load_variant(v, args.reranker, options) for v in variants}
        tok = loaded["naive"].tokenizer
        budget = args.max_length - max(len(tok(q, add_special_tokens=False)["input_ids"]) for q in queries) - 4
        texts = candidate_texts([args.corpus], lambda t: len(tok(t, add_special_tokens=False)["input_ids"]), budget)
        lexical = LexicalIndex()
        lexical.set_chunks([Chunk(chunk_id=str(i), doc_id=str(i), text=t) for i, t in enumerate(texts)])
        times = {v: [] for v in variants}
        rows = {v: {"order": 0, "set": 0, "top1": 0, "diff": 0.0, "shifts": []} for v in variants if v != "naive"}
        for n, query in enumerate(queries):
            hits = [int(cid) for cid, _ in lexical.search(query, args.k)]
            hits += [i for i in range(len(texts)) if i not in set(hits)][:args.k - len(hits)]  # pad a short recall
            pool = [texts[i] for i in hits]
            order = variants[n % len(variants):] + variants[:n % len(variants)]
            scores = {}
            for v in order:
                t0 = time.perf_counter()
                scores[v] = run_variant(v, loaded[v], query, pool)
                times[v].append(time.perf_counter() - t0)
            ref = scores["naive"]
            for v, row in rows.items():
                got = scores[v]
                row["order"] += top_k_order(ref, 10) == top_k_order(got, 10)
                row["set"] += set(top_k_order(ref, 10)) == set(top_k_order(got, 10))
                row["top1"] += top_k_order(ref, 1) == top_k_order(got, 1)
                row["diff"] = max(row["diff"], max(abs(a - b) for a, b in zip(ref, got)))
                row["shifts"] += [abs(_logit(a) - _logit(b)) for a, b in zip(ref, got)]
            print(f"query {n + 1}/{len(queries)}", file=sys.stderr, flush=True)
        info = {v: {key: getattr(m.info(), key) for key in ("dtype", "backend", "quantized", "warning",
                                                            "exact_margin", "exact_rescored")}
                for v, m in loaded.items() if v != "naive"}
    report = {"reranker": args.reranker, "queries": len(queries), "k": args.k, "corpus_chunks": len(texts),
              "batch_size": args.batch_size, "machine": started,
              "load_average_after": [round(x, 2) for x in os.getloadavg()],
              "naive_p50_ms": round(statistics.median(times["naive"]) * 1000, 1), "variants": {}}
    for v, row in rows.items():
        report["variants"][v] = {
            "engine": info[v],
            "ratio_vs_naive": round(statistics.median(n / x for n, x in zip(times["naive"], times[v])), 3),
            "p50_ms": round(statistics.median(times[v]) * 1000, 1),
            "top10_order_identical": f"{row['order']}/{len(queries)}",
            "top10_set_identical": f"{row['set']}/{len(queries)}", "top1_identical": f"{row['top1']}/{len(queries)}",
            "max_abs_score_diff": float(f"{row['diff']:.3g}"),
            # |Δ logit| per pair (logits recovered from the sigmoid scores), to set against the check set's δ
            "logit_shift": {q: float(f"{np.percentile(row['shifts'], p):.3g}")
                            for q, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))}}
    print(json.dumps(report) if args.json else json.dumps(report, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
