"""Parity of the lexical (BM25) leg: Milvus's BM25 function (`retrieval.shared.SharedIndex`) against bm25s
(`retrieval.lexical.LexicalIndex`), over the same chunks with the same analyzer, for docs/SCALING.md (issue 28:
top-10 overlap ≥ 0.9 and |ΔnDCG@10| ≤ 0.01 on SciFact and CMRC2018).

What it does, per BEIR data set (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv):

- chunks the documents as `kb eval` does (`app.quality.evaluate.build_index`: the repo's chunker, the packaged
  all-MiniLM-L6-v2 tokenizer as the counter, ≤ 256 tokens, overlap 32);
- builds bm25s over them (`LexicalIndex.of(chunks, Analyzer())`, the score matrix included), and a SharedIndex in
  a `milvus-lite server` that this script starts on a free loopback port in a temporary folder (and stops at the
  end), with random unit vectors (only the lexical leg is compared) and a SQLite catalog;
- searches every query (or `--max-queries` of them, a seeded sample) on both, `--depth` chunks deep (100: what
  recall's lexical leg asks for in hybrid mode), and reports: top-10 chunk overlap (mean |A∩B|/|A|, A = bm25s's
  top 10), top-1 agreement, nDCG@10 of each (chunks → documents by their best chunk, as `kb eval`; ranx through
  `app.quality.evaluate.score_run`), |ΔnDCG@10|, build times (rows/s for the Milvus ingest, client-side analysis
  included) and lexical search p50/p95 ms of each, and the ratio of Milvus's scores to bm25s's on shared hits
  (1.0 everywhere when the statistics agree: Milvus keeps the (k1 + 1) factor that bm25s's Lucene variant drops,
  and `MilvusCorpus.lexical` divides it out);
- `--revisions N` writes the Milvus corpus in N published revisions (incremental ingests): Milvus Lite keeps BM25
  statistics per segment and each publish flushes one, so this shows how far that moves the ranking.

Milvus Lite filters rows in Python and keeps BM25 statistics per segment: its latencies are not a Milvus server's.

Run (from the repo root; about 4 minutes on a 2-core CPU)::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/milvus_parity.py --data ../shared/eval-data \
        --sets scifact:test cmrc2018:dev --json parity.json

Prints a table; `--json FILE` also writes every figure (and the machine) as one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from app.quality.evaluate import load_beir, ranked_run, score_run  # noqa: E402
from app.quality.latency import percentiles  # noqa: E402
from ingest import Document, chunk  # noqa: E402
from retrieval.analyzer import Analyzer  # noqa: E402
from retrieval.lexical import LexicalIndex  # noqa: E402
from retrieval.shared import SharedOpener  # noqa: E402
from retrieval.stores.milvus import MilvusConfig  # noqa: E402

TOP = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def milvus_lite_server(folder: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """A `milvus-lite server` on a free loopback port with its data in `folder`: (its URI, its process); stopped
    on exit."""
    exe = shutil.which("milvus-lite") or str(Path(sys.executable).parent / "milvus-lite")
    port = free_port()
    log = open(folder / "server.log", "wb")
    proc = subprocess.Popen([exe, "server", "--data-dir", str(folder / "data"), "--host", "127.0.0.1", "--port",
                             str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("milvus-lite server did not start: "
                                       + (folder / "server.log").read_text(errors="replace")[-2000:]) from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def machine() -> dict:
    import platform

    from pymilvus import __version__ as pymilvus_version

    cpu = platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    try:
        from importlib.metadata import version

        lite = version("milvus-lite")
    except Exception:  # noqa: BLE001
        lite = "?"
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "load_average": [round(x, 2) for x in os.getloadavg()],
            "milvus_lite": lite, "pymilvus": pymilvus_version, "date": time.strftime("%Y-%m-%d %H:%M")}


def chunked(data, max_tokens: int, overlap: int):
    """The documents and their chunks, as `app.quality.evaluate.build_index` makes them (MiniLM's tokenizer)."""
    from retrieval.embedder import Embedder
    from retrieval.models import PACKAGED_MINILM

    emb = Embedder(PACKAGED_MINILM, device="cpu").load()
    max_tokens = min(max_tokens, emb.max_seq_length)
    docs = []
    for doc_id, (title, text) in data.corpus.items():
        doc = Document(doc_id=doc_id, source=f"beir:{data.name}/{doc_id}", title=title, text=text,
                       meta={"content_hash": doc_id, "format": "beir", "acl": []})
        docs.append((doc, chunk(doc, emb.count_tokens, max_tokens, overlap)))
    return docs, {"max_tokens": max_tokens, "overlap": overlap, "counter": emb.name}


def compare(name: str, split: str, folder: Path, uri: str, work: Path, args) -> dict:
    data = load_beir(folder, split)
    qids = sorted(data.queries)
    if args.max_queries and len(qids) > args.max_queries:
        qids = sorted(random.Random(0).sample(qids, args.max_queries))
    t0 = time.perf_counter()
    docs, chunker = chunked(data, args.max_tokens, args.overlap)
    chunk_s = time.perf_counter() - t0
    chunks = [c for _, cs in docs for c in cs]
    doc_of_chunk = {c.chunk_id: c.doc_id for c in chunks}
    analyzer = Analyzer()
    print(f"{name}: {len(data.corpus)} documents → {len(chunks)} chunks ({chunk_s:.0f} s); {len(qids)} queries",
          flush=True)

    t0 = time.perf_counter()
    lex = LexicalIndex.of(chunks, analyzer)
    lex.words.bm25()  # the bm25s score matrix
    bm25s_s = time.perf_counter() - t0

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((len(chunks), args.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    opener = SharedOpener(MilvusConfig(uri, f"parity_{name}", args.index), f"sqlite:///{work / (name + '.db')}",
                          analyzer)
    embedder = {"name": "random-unit-vectors", "dim": args.dim}
    root = work / f"index-{name}"
    t0 = time.perf_counter()
    step, offset = -(-len(docs) // args.revisions), 0
    for r in range(args.revisions):  # --revisions N: N writers in turn, each publishing a share (incremental ingests)
        part = docs[r * step:(r + 1) * step]
        n = sum(len(cs) for _, cs in part)
        with opener.writing(root):
            writer = opener.new(root, embedder, chunker) if r == 0 else opener.open(root, embedder, chunker)
            writer.replace_documents(part, vecs[offset:offset + n])
            writer.save()
        offset += n
    milvus_s = time.perf_counter() - t0
    shared = opener.open(root, embedder, {})
    print(f"  built: bm25s {bm25s_s:.1f} s, Milvus {milvus_s:.1f} s ({len(chunks) / milvus_s:.0f} rows/s)",
          flush=True)

    overlap, top1, t_bm25s, t_milvus, ratios = [], [], [], [], []
    runs = {"bm25s": {}, "milvus": {}}
    both_empty = 0
    for n, qid in enumerate(qids, start=1):
        text = data.queries[qid]
        t0 = time.perf_counter()
        a_hits = lex.search(text, args.depth)
        a = [cid for cid, _ in a_hits]
        t1 = time.perf_counter()
        b_hits = shared.lexical_hits(text, args.depth)
        t2 = time.perf_counter()
        t_bm25s.append((t1 - t0) * 1000)
        t_milvus.append((t2 - t1) * 1000)
        b = [c.chunk_id for c, _ in b_hits]
        mine = {c.chunk_id: s for c, s in b_hits}
        ratios += [mine[cid] / s for cid, s in a_hits[:TOP] if cid in mine]
        if a:
            overlap.append(len(set(a[:TOP]) & set(b[:TOP])) / len(a[:TOP]))
            top1.append(float(bool(b) and a[0] == b[0]))
        elif not b:
            both_empty += 1
        runs["bm25s"][qid] = ranked_run([doc_of_chunk[cid] for cid in a])
        runs["milvus"][qid] = ranked_run([doc_of_chunk[cid] for cid in b])
        if n % 200 == 0:
            print(f"  {n}/{len(qids)} queries", flush=True)
    qrels = {q: data.qrels[q] for q in qids}
    ndcg = {k: score_run(qrels, run, ["ndcg@10"])["ndcg@10"] for k, run in runs.items()}
    return {
        "dataset": name, "split": split, "documents": len(data.corpus), "chunks": len(chunks), "chunker": chunker,
        "queries": len(qids), "queries_in_split": len(data.queries), "depth": args.depth,
        "queries_without_terms": both_empty,
        "milvus_revisions": args.revisions,
        "top10_overlap": round(float(np.mean(overlap)), 4), "top1_agreement": round(float(np.mean(top1)), 4),
        "queries_below_full_overlap": int(sum(o < 1 for o in overlap)),
        # 1.0 when statistics agree (MilvusCorpus.lexical divides out the (k1 + 1) factor bm25s's Lucene drops)
        "score_ratio_milvus_to_bm25s": {p: round(float(np.percentile(ratios, q)), 4)
                                        for p, q in (("min", 0), ("p5", 5), ("median", 50), ("p95", 95), ("max", 100))},
        "ndcg@10": ndcg, "abs_delta_ndcg@10": round(abs(ndcg["bm25s"] - ndcg["milvus"]), 4),
        "build_s": {"chunking": round(chunk_s, 1), "bm25s": round(bm25s_s, 1), "milvus": round(milvus_s, 1)},
        "milvus_rows_per_s": round(len(chunks) / milvus_s, 1),
        "search_ms": {"bm25s": percentiles(t_bm25s), "milvus": percentiles(t_milvus)},
    }


def table(results: list[dict]) -> str:
    lines = ["| data set | queries | chunks | top-10 overlap | top-1 agreement | nDCG@10 bm25s | nDCG@10 Milvus "
             "| \\|ΔnDCG@10\\| | build bm25s / Milvus (rows/s) | p50/p95 ms bm25s | p50/p95 ms Milvus Lite |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        sb, sm = r["search_ms"]["bm25s"], r["search_ms"]["milvus"]
        lines.append(f"| {r['dataset']} ({r['split']}) | {r['queries']} | {r['chunks']:,} | {r['top10_overlap']:.3f} "
                     f"| {r['top1_agreement']:.3f} | {r['ndcg@10']['bm25s']:.4f} | {r['ndcg@10']['milvus']:.4f} "
                     f"| {r['abs_delta_ndcg@10']:.4f} | {r['build_s']['bm25s']} s / {r['build_s']['milvus']} s "
                     f"({r['milvus_rows_per_s']:.0f}) | {sb['p50']:.1f} / {sb['p95']:.1f} "
                     f"| {sm['p50']:.1f} / {sm['p95']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/eval-data"), help="folder of BEIR data sets")
    ap.add_argument("--sets", nargs="+", default=["scifact:test", "cmrc2018:dev"], help="NAME:SPLIT ...")
    ap.add_argument("--max-queries", type=int, default=0, help="a seeded sample of this many queries (0: all)")
    ap.add_argument("--depth", type=int, default=100, help="chunks each leg returns per query")
    ap.add_argument("--max-tokens", type=int, default=512, help="chunk budget (capped by MiniLM's 256)")
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--dim", type=int, default=384, help="dimension of the random vectors written to Milvus")
    ap.add_argument("--revisions", type=int, default=1, help="write the Milvus corpus in this many published "
                    "revisions (incremental ingests: more flushes, more segments)")
    ap.add_argument("--index", default="FLAT", help="Milvus vector index type (the dense leg is not compared)")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args()
    out = {"machine": machine(), "results": []}
    with tempfile.TemporaryDirectory() as tmp, milvus_lite_server(Path(tmp)) as (uri, _):
        for spec in args.sets:
            name, _, split = spec.partition(":")
            out["results"].append(compare(name, split or "test", args.data / name, uri, Path(tmp), args))
    out["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(table(out["results"]))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
