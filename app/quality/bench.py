"""Performance figures behind `kb bench`: rerank (engine variants against the naive baseline, side by side), search
latency by stage at growing corpus sizes, ingest throughput. Each returns one JSON-able dict.

Machines here are shared and noisy, so rerank variants run interleaved (every repetition runs each variant once,
in rotating order) and the ratio to the naive baseline is the median of per-repetition ratios; every report carries
the machine (CPU, cores, load average before and after) so a reader can judge the absolute times.
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rerank.types import RerankerOptions, sigmoid
from retrieval.index import IndexOpener

from .latency import percentiles

if TYPE_CHECKING:
    from ingest import OcrOptions

    from ..services.search import SearchService

# "+exact": the reduced-precision pass, then float32 on the near-ties of the top 10 (rerank.exact), or float32
# directly where re-scoring would redo more than `exact_max_share` of the candidates; "+exact-forced": always the
# reduced pass and its re-scoring (exact_max_share 1, the engine before that choice existed). "auto": the engine's
# backend auto in float32 (the faster exact one of torch, ONNX Runtime and OpenVINO, timed once on this machine).
# "defaults": the engine exactly as a CPU install builds it with no KB_RERANK_* setting (backend auto, dtype auto,
# exact top-10: it may serve bfloat16 + exact where this machine measured it faster, `rerank.engines.auto`). The peers
# are what a user would write without this engine: sentence-transformers' CrossEncoder and FlagEmbedding's
# FlagReranker.
PEERS = ("naive", "flagembedding")
RERANK_VARIANTS = (*PEERS, "defaults", "auto", "torch", "torch-bf16", "torch-bf16+exact", "torch-bf16+exact-forced",
                   "onnx", "onnx-int8", "onnx-int8+exact", "openvino")
DEFAULT_QUERIES = ["试用期员工离职需要提前几天通知公司？", "How many days of annual leave do new employees get?",
                   "报销差旅费需要哪些发票？", "How do I reset my VPN token when I lost it?",
                   "加班工资怎么计算？", "Who approves remote work days?"]


# ---- shared -------------------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """Where the figures were taken: CPU model, cores this process may use, load average, library versions."""
    from rerank.engines.scorers import available_cores, cpu_model

    out = {"cpu": cpu_model() or platform.processor() or platform.machine(), "cores": available_cores(),
           "load_average": [round(x, 2) for x in os.getloadavg()],
           "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M")}
    import torch

    out["torch"] = torch.__version__
    out["torch_threads"] = torch.get_num_threads()
    out["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return out


def corpus_files(paths: Sequence[Path]) -> list[Path]:
    from ingest import SUPPORTED_SUFFIXES

    out = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUPPORTED_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"corpus path {p} does not exist; pass --corpus with a folder of documents")
    if not out:
        raise ValueError(f"no supported documents under {', '.join(map(str, paths))}")
    return out


# ---- rerank -------------------------------------------------------------------------------------------------------
def candidate_texts(corpus: Sequence[Path], count_tokens: Callable[[str], int], budget: int) -> list[str]:
    """Chunk texts (as the reranker reads them: title, headings, body) of real documents, each at most `budget`
    tokens: the lengths a reranker meets after `kb ingest`, short section ends included."""
    from ingest import IngestError, chunk, load

    texts = []
    for f in corpus_files(corpus):
        try:
            texts += [c.context_text() for c in chunk(load(f), count_tokens, budget, min(32, budget // 4))]
        except IngestError:
            continue
    return texts


def variant_options(variant: str, options: RerankerOptions) -> RerankerOptions:
    """`options` (batch size, max length, threads, models folder) set up for a `RERANK_VARIANTS` engine variant:
    on the CPU, its backend and precision, reduced copies used even when they fail their check (the benchmark
    reports the agreement instead). `defaults`: the reranking settings' defaults (a benchmark's batch size does not
    apply), as `app.components` builds them from `Settings()` with no KB_RERANK_* variable set."""
    if variant == "defaults":
        from app.settings import Settings

        fields = Settings.model_fields
        return replace(options, device="cpu", dtype=fields["rerank_dtype"].default or fields["dtype"].default,
                       batch_size=fields["rerank_batch_size"].default, backend=fields["rerank_backend"].default,
                       quantize=fields["rerank_quantize"].default, exact_top=fields["rerank_exact_top"].default,
                       exact_max_share=fields["rerank_exact_max_share"].default)
    forced = variant.endswith("+exact-forced")
    base = variant.removesuffix("+exact-forced").removesuffix("+exact")
    exact = forced or variant.endswith("+exact")
    backend = {"auto": "auto", "torch": "torch", "torch-bf16": "torch", "onnx": "onnx", "onnx-int8": "onnx",
               "openvino": "openvino"}[base]
    return replace(options, device="cpu", dtype="bfloat16" if base == "torch-bf16" else "float32", backend=backend,
                   quantize=base == "onnx-int8", quantize_policy="warn", exact_top=10 if exact else 0,
                   exact_max_share=1.0 if forced else options.exact_max_share)


def load_variant(variant: str, model: str, options: RerankerOptions):
    """A loaded scorer for a `RERANK_VARIANTS` name: a peer (the naive CrossEncoder, FlagEmbedding's FlagReranker,
    each with its own defaults on the CPU), or our engine set up for it."""
    if variant == "naive":
        from sentence_transformers import CrossEncoder

        return CrossEncoder(model, device="cpu")  # default settings: the baseline as a user would write it
    if variant == "flagembedding":
        from FlagEmbedding import FlagReranker

        return FlagReranker(model, devices="cpu")  # its defaults: batch 128, max_length 512, no fp16 on a CPU
    from rerank.engines.cross_encoder import CrossEncoderReranker

    return CrossEncoderReranker(model, variant_options(variant, options)).load()


def run_variant(variant: str, model, query: str, texts: list[str]) -> list[float]:
    """Sigmoid scores in input order (the naive CrossEncoder applies the sigmoid itself)."""
    if variant == "naive":
        return [float(s) for s in model.predict([(query, t) for t in texts], show_progress_bar=False)]
    if variant == "flagembedding":
        raw = model.compute_score([(query, t) for t in texts])  # raw logits (normalize=False by default)
        return [sigmoid(float(x)) for x in (raw if isinstance(raw, list) else [raw])]
    return [score for _, score in model.score(query, texts)]


def bench_rerank(model: str, corpus: Sequence[Path], ks: Sequence[int] = (10, 50), repeats: int = 3,
                 variants: Sequence[str] = ("naive", "torch", "onnx", "onnx-int8"),
                 queries: Sequence[str] | None = None, options: RerankerOptions | None = None, seed: int = 0,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Rerank K candidates (real chunks of `corpus`, cut to fit `max_length` with the query, so every variant
    scores the same pairs) with each variant, interleaved; latency, pairs/s, ratio to `naive`, score agreement."""
    from rerank.validation.agreement import top_k_order

    unknown = [v for v in variants if v not in RERANK_VARIANTS]
    if unknown or "naive" not in variants:
        raise ValueError(f"variants must include naive and come from {', '.join(RERANK_VARIANTS)}; got {variants}")
    if repeats < 1 or not ks or min(ks) < 1:
        raise ValueError(f"repeats and every K must be at least 1; got repeats={repeats}, ks={list(ks)}")
    corpus_files(corpus)  # a missing corpus fails before minutes of model loading
    options = options if options is not None else RerankerOptions()
    max_length = options.max_length
    say = progress or (lambda msg: None)
    queries = list(queries) if queries else DEFAULT_QUERIES
    started_machine = machine()
    loaded, load_s = {}, {}
    for v in variants:
        say(f"loading {v}")
        t0 = time.perf_counter()
        loaded[v] = load_variant(v, model, options)
        load_s[v] = round(time.perf_counter() - t0, 2)
    tokenizer = loaded["naive"].tokenizer

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    budget = max_length - max(count(q) for q in queries) - 4  # room for the pair's special tokens
    texts = candidate_texts(corpus, count, budget)
    if len(texts) < max(ks):
        raise ValueError(f"the corpus gives {len(texts)} chunks; K={max(ks)} needs at least that many")
    rng = random.Random(seed)
    pools = {k: rng.sample(texts, k) for k in ks}
    times: dict[int, dict[str, list[float]]] = {k: {v: [] for v in variants} for k in ks}
    scores: dict[int, dict[str, list[list[float]]]] = {k: {v: [] for v in variants} for k in ks}
    for rep in range(repeats):
        query = queries[rep % len(queries)]
        for k in ks:
            order = list(variants[rep % len(variants):]) + list(variants[:rep % len(variants)])  # rotate
            for v in order:
                say(f"repetition {rep + 1}/{repeats}, K={k}, {v}")
                t0 = time.perf_counter()
                scores[k][v].append(run_variant(v, loaded[v], query, pools[k]))
                times[k][v].append(time.perf_counter() - t0)
    by_k = {}
    for k in ks:
        lengths = [len(tokenizer(queries[0], t)["input_ids"]) for t in pools[k]]
        row: dict[str, Any] = {"pair_tokens": {"mean": round(statistics.fmean(lengths), 1),
                                               "p50": int(np.percentile(lengths, 50)), "max": max(lengths)}}
        for v in variants:
            t = times[k][v]
            entry = {"latency_ms": percentiles([x * 1000 for x in t]),
                     "pairs_per_s": round(k / statistics.median(t), 2)}
            for peer in (p for p in PEERS if p in variants and p != v):
                entry[f"ratio_vs_{peer}"] = round(statistics.median(
                    [n / x for n, x in zip(times[k][peer], t)]), 3)
            if v != "naive":
                diffs, same = [], []
                for ref, got in zip(scores[k]["naive"], scores[k][v]):
                    diffs.append(max(abs(a - b) for a, b in zip(ref, got)))
                    same.append(top_k_order(ref, 10) == top_k_order(got, 10))
                entry["max_abs_score_diff"] = float(f"{max(diffs):.3g}")
                entry["top10_identical"] = all(same)
            row[v] = entry
        by_k[str(k)] = row
    info = {v: {key: getattr(m.info(), key) for key in ("backend", "dtype", "quantized", "threads", "warning",
                                                        "agreement", "exact_margin", "exact_rescored",
                                                        "exact_choice", "backend_choice")}
            for v, m in loaded.items() if v not in PEERS}
    n_params = _parameters(loaded)
    return {"model": model, "parameters": n_params, "variants": list(variants), "ks": list(ks), "repeats": repeats,
            "batch_size": options.batch_size or next((m.batch_size for v, m in loaded.items() if v not in PEERS),
                                                     None),
            "max_length": max_length, "corpus": [str(c) for c in corpus],
            "corpus_chunks": len(texts), "load_s": load_s, "by_k": by_k, "best": best_variant(by_k, variants),
            "engine": info,
            "machine": started_machine, "load_average_after": [round(x, 2) for x in os.getloadavg()]}


def best_variant(by_k: dict[str, dict[str, Any]], variants: Sequence[str]) -> dict[str, Any]:
    """Per K, the fastest of the engine's variants whose top-10 order matched the naive baseline's in every
    repetition, with its ratio to each peer (None when no variant kept the order)."""
    out = {}
    for k, row in by_k.items():
        kept = [v for v in variants if v not in PEERS and row[v].get("top10_identical")]
        best = max(kept, key=lambda v: row[v]["pairs_per_s"], default=None)
        out[k] = None if best is None else {"variant": best, **{key: value for key, value in row[best].items()
                                                                 if key.startswith("ratio_vs_")}}
    return out


def _parameters(loaded: dict[str, Any]) -> int | None:
    naive = loaded.get("naive")
    try:
        return int(sum(p.numel() for p in naive.model.parameters()))
    except AttributeError:
        return None


# ---- search -------------------------------------------------------------------------------------------------------
_WORDS = ("leave annual sick parental probation resignation notice payroll salary expense receipt travel hotel "
          "laptop software request vpn token password reset security incident report onboarding remote office "
          "年假 病假 试用期 离职 手续 工资 报销 发票 差旅 电脑 软件 密码 "
          "令牌 安全 事件 入职 远程 办公 审批 主管").split()


def synthetic_index(n: int, embedder, root: Path, opener: IndexOpener | None = None, words: int = 60, seed: int = 0):
    """A KnowledgeIndex of `n` synthetic chunks (random words of a mixed Chinese/English HR vocabulary, random unit
    vectors), made by `opener` (None: FAISS): recall cost depends on sizes, not meaning. 10% of chunks belong to the
    group `hr`."""
    from ingest.types import Chunk

    rng = np.random.default_rng(seed)
    index = (opener if opener is not None else IndexOpener()).new(root, embedder.info(), {})
    chunks = [Chunk(chunk_id=f"c{i}", doc_id=f"d{i // 20}", text=" ".join(rng.choice(_WORDS, words)),
                    meta={"acl": ["hr"] if i % 10 == 0 else [], "position": i % 20}) for i in range(n)]
    vecs = rng.standard_normal((n, embedder.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index.dense.upsert(chunks, vecs)
    index.chunks = {c.chunk_id: c for c in chunks}
    index.lexical.set_chunks(chunks)
    return index


def bench_search(make_service: Callable[[Any], SearchService], embedder, opener: IndexOpener | None = None,
                 sizes: Sequence[int] = (1_000, 10_000, 100_000), repeats: int = 30, top_k: int = 50,
                 words: int = 60, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """End-to-end `SearchService.search` latency by stage (embed, recall, rerank, total) at each corpus size;
    `make_service(index)` gives the service (with its query cache off) over each synthetic index. P50/P95/P99
    over `repeats` queries."""
    from ..identity import OPERATOR
    from ..services.request import SearchRequest

    if repeats < 1 or not sizes or min(sizes) < 1:
        raise ValueError(f"repeats and every size must be at least 1; got repeats={repeats}, sizes={list(sizes)}")
    say = progress or (lambda msg: None)
    out: dict[str, Any] = {"embedder": embedder.name, "reranker": None, "top_k": top_k, "repeats": repeats,
                           "chunk_words": words, "machine": machine(), "sizes": {}}
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            say(f"building a synthetic index of {n} chunks")
            t0 = time.perf_counter()
            index = synthetic_index(n, embedder, Path(tmp), opener, words)
            svc = make_service(index)
            out["reranker"] = svc.reranker.name if svc.reranker else None
            svc.search(SearchRequest.of("warm up", top_k=top_k, top_n=5, threshold=0.0), OPERATOR)  # FAISS, BM25
            build_s = time.perf_counter() - t0
            stages: dict[str, list[float]] = {"embed": [], "recall": [], "rerank": [], "total": []}
            for r in range(repeats):
                say(f"{n} chunks: query {r + 1}/{repeats}")
                res = svc.search(SearchRequest.of(DEFAULT_QUERIES[r % len(DEFAULT_QUERIES)], top_k=top_k, top_n=5,
                                                  threshold=0.0), OPERATOR)
                for stage in stages:
                    stages[stage].append(res.timings_ms[stage])
            out["sizes"][str(n)] = {"dense_index": index.dense.kind, "build_s": round(build_s, 3),
                                    **{stage: percentiles(v) for stage, v in stages.items()}}
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


# ---- ingest -------------------------------------------------------------------------------------------------------
def bench_ingest(corpora: Sequence[Path], embedder, max_tokens: int = 512, overlap: int = 32,
                 progress: Callable[[str], None] | None = None, ocr: OcrOptions | None = None) -> dict[str, Any]:
    """`kb ingest` into a fresh temporary index for each corpus: documents/s and chunks/s end to end, and the
    share of parsing + chunking alone (measured in a separate pass without embedding). Files read by OCR (scans,
    images) also give `ocr_pages` and `ocr_pages_per_s`: their pages over the time their loading took."""
    from ingest import IngestError, OcrOptions, chunk, load

    from ..services.library import IngestOptions, chunker_settings, sync

    say = progress or (lambda msg: None)
    out: dict[str, Any] = {"embedder": embedder.name, "machine": machine(), "corpora": {}}
    for corpus in corpora:
        files = corpus_files([corpus])
        budget = chunker_settings(embedder, max_tokens, overlap)["max_tokens"]
        say(f"{corpus}: parse + chunk")
        t0 = time.perf_counter()
        n_chunks, ocr_pages, ocr_s = 0, 0, 0.0
        for f in files:
            t_file = time.perf_counter()
            try:
                doc = load(f, ocr=ocr)
            except IngestError:
                continue
            if "ocr" in doc.meta:
                ocr_pages += len(doc.meta["ocr"]["pages"]) + len(doc.meta["ocr"]["unreadable"])
                ocr_s += time.perf_counter() - t_file
            n_chunks += len(chunk(doc, embedder.count_tokens, budget, overlap))
        parse_s = time.perf_counter() - t0
        say(f"{corpus}: kb ingest")
        with tempfile.TemporaryDirectory() as tmp:
            report = sync([corpus], Path(tmp) / "index", embedder,
                          IngestOptions(max_tokens, overlap, ocr=ocr if ocr is not None else OcrOptions()))
        seconds = max(report.seconds, 1e-9)
        out["corpora"][str(corpus)] = {
            "documents": len(report.added), "chunks": report.chunks_written, "skipped": len(report.skipped),
            "seconds": round(report.seconds, 3), "documents_per_s": round(len(report.added) / seconds, 2),
            "chunks_per_s": round(report.chunks_written / seconds, 2),
            "parse_chunk_s": round(parse_s, 2), "parse_chunk_share": round(min(1.0, parse_s / seconds), 3),
            "chunks_counted_without_embedding": n_chunks, "ocr_pages": ocr_pages,
            "ocr_pages_per_s": round(ocr_pages / ocr_s, 3) if ocr_s else None}
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out
