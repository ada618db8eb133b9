"""A search with a latency budget against one without: wall time and how many of the K candidates were reranked.

The reranker is a random-weight model of bge-reranker-v2-m3's shape (`rerank_cpu.build_m3_sized`, `--layers` of
its 24), the knowledge base the sample documents (ingested with the packaged MiniLM into `--index` when it is not
there yet), K=50, the query cache off. Per query, in this order: a first budgeted search on a fresh service (no
measurement yet: the top_n probe, then what fits in the rest of the budget), the search without a budget (every
candidate; the meter learns the speed), then the budgeted search again at the learnt speed.

    HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/rerank_budget.py --layers 6 --budget-ms 2000,15000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--budget-ms", default="2000", help="comma-separated budgets, e.g. 2000,15000")
    parser.add_argument("--queries", type=int, default=2)
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--index", type=Path, default=Path(tempfile.gettempdir()) / "kb-budget-bench" / "index")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    budgets = [int(b) for b in args.budget_ms.split(",")]

    from app.components import build_search, load_embedder
    from app.identity import OPERATOR
    from app.services.library import sync
    from app.services.request import SearchRequest
    from app.settings import Settings
    from benchmarks.rerank_cpu import build_m3_sized
    from rerank.budget import Meters

    labelled = [json.loads(line) for line in
                (ROOT / "data" / "samples" / "queries.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    by_lang = [next(q["text"] for q in labelled if q.get("lang") == lang) for lang in ("zh", "en")]
    queries = (by_lang + [q["text"] for q in labelled if q["text"] not in by_lang])[:args.queries]
    with tempfile.TemporaryDirectory() as tmp:
        model = build_m3_sized(Path(tmp) / "m3", num_hidden_layers=args.layers)
        s = Settings(index_dir=args.index, embedder="packaged:all-MiniLM-L6-v2", reranker=str(model), cache_size=0,
                     _env_file=None)
        embedder = load_embedder(s)
        if not (args.index / "CURRENT").exists():
            sync([ROOT / "data" / "samples" / "docs"], args.index, embedder)
        service = build_search(s, embedder)
        runs = []

        def run(label: str, svc, query: str, budget: int) -> None:
            t0 = time.perf_counter()
            res = svc.search(SearchRequest.of(query, top_k=args.top_k, rerank_budget_ms=budget), OPERATOR)
            wall = (time.perf_counter() - t0) * 1000
            rate = svc.meters.of(res.reranker).rate
            runs.append({"run": label, "query": query, "budget_ms": budget or None, "wall_ms": round(wall),
                         "rerank_ms": round(res.timings_ms["rerank"]), "reranked": res.reranked,
                         "candidates": res.candidates, "tokens_per_s": round(rate, 1) if rate else None})
            if not args.json:
                print(runs[-1], flush=True)

        for q in queries:
            run("budget, first search (probe)", replace(service, meters=Meters()), q, budgets[0])
            run("no budget", service, q, 0)
            for b in budgets:
                run("budget, measured speed", service, q, b)
    report = {"model": f"bge-reranker-v2-m3 shape, {args.layers} layers, random weights", "top_k": args.top_k,
              "budgets_ms": budgets, "runs": runs, "load_average_after": os.getloadavg(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
