"""What recording searches costs a search: the time `EventLog.record_search` adds on the request path (it only
queues; a background thread writes), and whole searches with and without recording, interleaved, side by side.

    HF_HUB_OFFLINE=1 python benchmarks/events_overhead.py --searches 2000 [--json]

The sample knowledge base is ingested with the packaged MiniLM into a temporary folder, searched recall-only
(reranker none: the cheapest search, so the added cost is the largest share it can be), on SQLite. Goal: under
1 ms added at P95.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ["how do I reset my VPN token", "试用期员工离职需要办理哪些手续", "annual leave days", "报销需要哪些发票",
           "laptop software request", "年假怎么申请", "report a security incident", "remote work approval"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--searches", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from app.components import make_search, open_index
    from app.identity import Caller
    from app.quality.bench import machine
    from app.quality.latency import percentiles
    from app.services.events import EventLog
    from app.services.library import sync
    from app.services.request import SearchRequest
    from app.settings import Settings
    from retrieval.embedder import Embedder
    from retrieval.models import PACKAGED_MINILM

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(index_dir=Path(tmp) / "index", embedder=PACKAGED_MINILM, reranker="none", cache_size=0,
                            _env_file=None)
        emb = Embedder(PACKAGED_MINILM).load()
        sync([ROOT / "data" / "samples" / "docs"], settings.index_dir, emb)
        index = open_index(settings, emb)
        events = EventLog(f"sqlite:///{Path(tmp) / 'events.db'}", b"k" * 32).open()
        plain = make_search(settings, emb, index)
        logged = make_search(settings, emb, index, events=events)
        who = Caller.member_of(["hr"], who="someone@example.com", via="oidc")
        results = [plain.search(SearchRequest.of(q), who) for q in QUERIES]
        record_us, with_ms, without_ms = [], [], []
        for i in range(args.searches):
            res = replace(results[i % len(results)], query_id=uuid.uuid4().hex)  # each search has its own id
            t0 = time.perf_counter()
            events.record_search(res, who)
            record_us.append((time.perf_counter() - t0) * 1e6)
        events.flush()
        for i in range(max(1, args.searches // 10)):  # whole searches, interleaved
            q = QUERIES[i % len(QUERIES)]
            for svc, out in ((plain, without_ms), (logged, with_ms)) if i % 2 else ((logged, with_ms),
                                                                                  (plain, without_ms)):
                t0 = time.perf_counter()
                svc.search(SearchRequest.of(q), who)
                out.append((time.perf_counter() - t0) * 1000)
        events.close()
        report = {"searches_recorded": args.searches, "record_search_us": percentiles(record_us, 1),
                  "search_ms_without": percentiles(without_ms), "search_ms_with": percentiles(with_ms),
                  "p50_ratio": round(percentiles(with_ms)["p50"] / percentiles(without_ms)["p50"], 3),
                  "written": events.stats.written, "dropped": events.stats.dropped, "machine": machine()}
    if args.json:
        print(json.dumps(report))
        return
    r = report["record_search_us"]
    print(f"record_search: p50 {r['p50']} µs, p95 {r['p95']} µs, p99 {r['p99']} µs over {args.searches} calls; "
          f"whole search p50 {report['search_ms_without']['p50']} ms without, {report['search_ms_with']['p50']} ms "
          f"with recording (ratio {report['p50_ratio']}); {report['written']} written, {report['dropped']} dropped")


if __name__ == "__main__":
    main()
