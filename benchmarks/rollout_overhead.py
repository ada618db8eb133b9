"""What reranker rollout costs a running process: search latency with a shadow model scoring every search in the
background against none (alternating blocks, side by side), the share of searches a canary takes, and how long a
promotion takes to be served and how much memory the second model adds while both are loaded.

    HF_HUB_OFFLINE=1 python benchmarks/rollout_overhead.py [--searches 200] [--gap-ms 0] [--layers 6] [--hidden 384]
        [--json]

The sample knowledge base is ingested with the packaged MiniLM into a temporary folder; the two rerankers are random
cross-encoders of the given shape (default: MiniLM-L6's, like cross-encoder/ms-marco-MiniLM-L-6-v2) written to
folders and loaded through the same path as a user's fine-tune. Searches recall K=50 and rerank all 50.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUERIES = ["how do I reset my VPN token", "试用期员工离职需要办理哪些手续", "annual leave days", "报销需要哪些发票",
           "laptop software request", "年假怎么申请", "report a security incident", "remote work approval",
           "password expiry", "加班工资怎么算", "parental leave", "出差住宿标准"]


BLOCK = 10  # searches per arm in a row


def rss_mb() -> float:
    """Current resident memory of this process (Linux), MB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--searches", type=int, default=200, help="searches per arm")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--gap-ms", type=float, default=0.0, help="pause between searches (0: back to back, the "
                        "worst case for a shadow, which scores in the gaps)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from app.components import live_search, load_unshared, make_search, open_index, rollout_store
    from app.identity import OPERATOR
    from app.quality.bench import machine
    from app.quality.latency import percentiles
    from app.services import promotion
    from app.services.library import sync
    from app.services.request import SearchRequest
    from app.services.search import in_canary
    from app.settings import Settings
    from rerank.validation.gate import GateLimits
    from retrieval.embedder import Embedder
    from retrieval.models import PACKAGED_MINILM
    from tests.tiny_models import build_tiny_cross_encoder

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shape = dict(arch="bert", hidden_size=args.hidden, num_layers=args.layers, num_heads=max(1, args.hidden // 32),
                     initializer_range=0.02)
        v1 = build_tiny_cross_encoder(root / "reranker_v1", seed=1, **shape)
        v2 = build_tiny_cross_encoder(root / "reranker_v2", seed=2, **shape)
        settings = Settings(index_dir=root / "index", embedder=PACKAGED_MINILM, reranker=str(v1), cache_size=0,
                            models_reload_s=0, _env_file=None)
        emb = Embedder(PACKAGED_MINILM).load()
        sync([ROOT / "data" / "samples" / "docs"], settings.index_dir, emb)
        live = live_search(settings, make_search(settings, emb, open_index(settings, emb)))
        for q in QUERIES:  # warm both paths
            live.service.search(SearchRequest.of(q, threshold=0.0), OPERATOR)

        store = rollout_store(settings)
        before = rss_mb()
        promotion.start_shadow(store, v2, settings.reranker, OPERATOR)
        t0 = time.perf_counter()
        live.reload_models()
        shadow_load_s = time.perf_counter() - t0
        with_shadow = live.service
        second_model_mb = rss_mb() - before
        plain = replace(with_shadow, shadow=None)
        off_ms, on_ms = [], []
        # Alternating blocks (not single searches): the shadow scores a search after its response, so it competes
        # with the searches that follow; each block with the shadow ends when the shadow has caught up, so the
        # block without it never pays for it.
        for block in range(0, args.searches, BLOCK):
            for svc, sink in ((plain, off_ms), (with_shadow, on_ms)):
                for i in range(block, min(block + BLOCK, args.searches)):
                    t = time.perf_counter()
                    svc.search(SearchRequest.of(QUERIES[i % len(QUERIES)], threshold=0.0), OPERATOR)
                    sink.append((time.perf_counter() - t) * 1000)
                    time.sleep(args.gap_ms / 1000)
                with_shadow.shadow.join(600)
        snap = live.stats.snapshot()
        promotion.stop_shadow(store, OPERATOR)
        live.reload_models()

        t0 = time.perf_counter()
        promotion.promote(store, v2, settings.reranker, OPERATOR, load=load_unshared,
                          limits=GateLimits(min_top_overlap=0.0, max_score_shift=1.0))
        gate_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        live.reload_models()
        switch_s = time.perf_counter() - t0
        assert live.service.reranker_name == str(v2)
        live.stop()

    off, on = percentiles(off_ms), percentiles(on_ms)
    report = {
        "machine": machine(), "model": f"BERT {args.layers} layers x {args.hidden}", "searches_per_arm": args.searches,
        "gap_ms": args.gap_ms,
        "search_ms_without_shadow": off, "search_ms_with_shadow": on,
        "p50_ratio": round(on["p50"] / off["p50"], 3), "p95_ratio": round(on["p95"] / off["p95"], 3),
        "shadow_scored": snap["shadow"][0]["searches"] if snap["shadow"] else 0,
        "shadow_dropped": snap["shadow_dropped"], "shadow_load_s": round(shadow_load_s, 2),
        "second_model_mb": round(second_model_mb, 1), "promotion_gate_s": round(gate_s, 2),
        "promotion_switch_s": round(switch_s, 2),
        "canary_share_at_0.1": sum(in_canary(f"question {i}", 0.1) for i in range(10000)) / 10000,
    }
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return
    for k, v in report.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
