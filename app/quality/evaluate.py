"""Evaluation (`kb eval`) on labelled data, with ranx metrics, for recall alone and recall + rerank.

Two layouts are read:

- BEIR (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv): documents are chunked like any ingest and judged as
  documents: a document's score for a query is its best chunk's (MaxP). The index is cached under
  `index_root/eval-<dataset>-<fingerprint>` and reused while corpus, embedder and chunker settings are unchanged.
- The sample set (`data/samples`: docs/ and queries.jsonl with evidence passages): docs/ is ingested with
  `app.services.library.sync` into `index_root/eval-<name>-<fingerprint>` (unchanged files are not re-embedded), each
  evidence string is mapped to the chunk(s) of its document that contain it, and results are judged as chunks,
  the passages a person sees. Each query is searched with its own access `groups`. Queries without relevant
  passages (`answerable: false`) are not ranked; they are counted: how many would still show an answer.

Runs are scored by position (the order a person sees), so ties between equal retrieval scores cannot be
reordered by the metrics library.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ingest import Chunk, Document, chunk
from ingest.chunker import MIN_SECTION_TOKENS
from ingest.identity import doc_id_for, source_of
from retrieval.analyzer import has_cjk
from retrieval.embedder import Embedder
from retrieval.index import IndexOpener, KnowledgeIndex
from retrieval.recall import recall
from retrieval.synonyms import NONE, Synonyms

from ..identity import OPERATOR, Caller
from ..services.library import IngestOptions, chunker_settings, sync
from .latency import percentiles

METRICS = ["ndcg@10", "mrr@10", "recall@10", "recall@50", "recall@100"]
HIT_NS = (1, 3, 5)

Layout = Literal["beir", "samples"]


# ---- data ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BeirData:
    name: str
    corpus: dict[str, tuple[str, str]]  # id -> (title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


@dataclass(frozen=True)
class EvalQuery:
    """One labelled question. `relevant` maps judged ids (chunk ids for the sample set, document ids for BEIR)
    to grades > 0; empty means no visible document answers it. `groups` are the asker's access groups (None:
    unrestricted)."""

    qid: str
    text: str
    relevant: dict[str, int]
    groups: tuple[str, ...] | None = None
    lang: str = ""  # the set's own label ("zh", "en"), else judged from the text: figures are also given per language

    @property
    def answerable(self) -> bool:
        return bool(self.relevant)

    @property
    def caller(self) -> Caller:
        """Who asks it: a member of its groups, or the unrestricted operator."""
        return OPERATOR if self.groups is None else Caller.member_of(self.groups, who=f"query {self.qid}")


@dataclass(frozen=True)
class EvalSet:
    """A labelled data set with its built index. `unit` says what is judged: whole documents or chunks."""

    name: str
    layout: Layout
    unit: Literal["doc", "chunk"]
    queries: list[EvalQuery]
    index: KnowledgeIndex
    documents: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) from the ingest

    def unit_of(self, c: Chunk) -> str:
        return c.chunk_id if self.unit == "chunk" else c.doc_id

    @property
    def qrels(self) -> dict[str, dict[str, int]]:
        return {q.qid: q.relevant for q in self.queries if q.answerable}

    @property
    def unanswerable(self) -> list[EvalQuery]:
        return [q for q in self.queries if not q.answerable]


class EvidenceNotFound(ValueError):
    """A labelled evidence passage is in no chunk of its document."""


def detect_layout(folder: Path, split: str = "test") -> Layout:
    """'beir' when corpus.jsonl is there, 'samples' for docs/ + queries.jsonl; else FileNotFoundError."""
    folder = Path(folder)
    if (folder / "corpus.jsonl").is_file():
        return "beir"
    if (folder / "docs").is_dir() and (folder / "queries.jsonl").is_file():
        return "samples"
    raise FileNotFoundError(
        f"{folder} is not an evaluation folder: a BEIR folder needs corpus.jsonl, queries.jsonl and "
        f"qrels/{split}.tsv; a sample set (like data/samples) needs docs/ and queries.jsonl")


def load_beir(folder: Path, split: str = "test") -> BeirData:
    """Read a BEIR folder. Raises FileNotFoundError/ValueError naming the missing file or bad line."""
    folder = Path(folder)
    for name in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing; a BEIR folder needs corpus.jsonl, queries.jsonl "
                                    f"and qrels/{split}.tsv (pick another split with --split)")
    corpus = {}
    with open(folder / "corpus.jsonl", encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            try:
                row = json.loads(line)
                corpus[str(row["_id"])] = (row.get("title") or "", row["text"])
            except (ValueError, KeyError) as exc:
                raise ValueError(f"{folder / 'corpus.jsonl'} line {n}: needs _id and text ({exc})") from exc
    qrels: dict[str, dict[str, int]] = {}
    with open(folder / "qrels" / f"{split}.tsv", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader, None)  # header
        for row in reader:
            if len(row) >= 3 and int(row[2]) > 0:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    queries = {}
    with open(folder / "queries.jsonl", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if str(row["_id"]) in qrels:
                queries[str(row["_id"])] = row["text"]
    return BeirData(folder.name, corpus, queries, qrels)


def load_sample_queries(path: Path) -> list[dict[str, Any]]:
    """Read a sample-set queries.jsonl (see data/samples/README.md). Raises ValueError naming the line and field."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path} line {n}: not JSON ({exc})") from exc
            for key, kind in (("_id", str), ("text", str), ("groups", list), ("relevant", list)):
                if not isinstance(row.get(key), kind):
                    raise ValueError(f"{path} line {n}: field {key!r} must be a {kind.__name__}")
            for item in row["relevant"]:
                if not (isinstance(item, dict) and isinstance(item.get("doc"), str)
                        and isinstance(item.get("evidence"), str) and item["evidence"].strip()):
                    raise ValueError(f"{path} line {n} ({row['_id']}): each 'relevant' item needs 'doc' and a "
                                     "non-empty 'evidence' string")
            rows.append(row)
    return rows


# ---- indexes -------------------------------------------------------------------------------------------------
def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def build_index(data: BeirData, embedder: Embedder, index_root: Path, max_tokens: int, overlap: int,
                progress: bool = False, opener: IndexOpener | None = None,
                min_tokens: int = MIN_SECTION_TOKENS) -> KnowledgeIndex:
    """The BEIR corpus chunked and embedded into a cached index (built once per corpus, embedder and chunker;
    made and opened by `opener`, None: FAISS and the default analyzer)."""
    opener = opener if opener is not None else IndexOpener()
    chunker = chunker_settings(embedder, max_tokens, overlap, min_tokens)
    root = Path(index_root) / f"eval-{data.name}-{_fingerprint(sorted(data.corpus.items()), embedder.name, chunker)}"
    if opener.published(root) is not None:
        return opener.open(root, embedder.info(), chunker)
    docs, all_chunks = [], []
    for doc_id, (title, text) in data.corpus.items():
        doc = Document(doc_id=doc_id, source=f"beir:{data.name}/{doc_id}", title=title, text=text,
                       meta={"content_hash": doc_id, "format": "beir", "acl": []})
        chunks = chunk(doc, embedder.count_tokens, chunker["max_tokens"], overlap, min_tokens)
        docs.append((doc, chunks))
        all_chunks += chunks
    vectors = embedder.embed_passages([c.context_text() for c in all_chunks], show_progress=progress)
    with opener.writing(root):
        index = opener.new(root, embedder.info(), chunker)
        index.replace_documents(docs, vectors)
        index.save()
    return index


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def map_evidence(rows: Sequence[dict[str, Any]], index: KnowledgeIndex, folder: Path) -> list[EvalQuery]:
    """Judge chunks: each evidence string marks the chunk(s) of its document whose text contains it (whitespace
    normalised) with its grade (the highest when several evidences land in one chunk).

    Raises EvidenceNotFound naming the query id when a document is not in the index or no chunk holds the string.
    """
    by_doc: dict[str, list[Chunk]] = {}
    for c in index.chunks.values():
        by_doc.setdefault(c.doc_id, []).append(c)
    squashed = {cid: _squash(c.text) for cid, c in index.chunks.items()}
    out = []
    for row in rows:
        relevant: dict[str, int] = {}
        for item in row["relevant"]:
            path = Path(folder) / item["doc"]
            chunks = by_doc.get(doc_id_for(source_of(path)))
            if not chunks:
                raise EvidenceNotFound(f"query {row['_id']}: relevant document {item['doc']} is not in the index "
                                       f"(is {path} there, and did it ingest without being skipped?)")
            evidence = _squash(item["evidence"])
            found = [c for c in chunks if evidence in squashed[c.chunk_id]]
            if not found:
                raise EvidenceNotFound(
                    f"query {row['_id']}: evidence {item['evidence']!r} is in no chunk of {item['doc']} "
                    f"({len(chunks)} chunks); it must be an exact passage of the document's text inside one "
                    "sentence (a phrase that straddles a chunk boundary cannot be matched: shorten it)")
            grade = int(item.get("grade", 1))
            for c in found:
                relevant[c.chunk_id] = max(grade, relevant.get(c.chunk_id, 0))
        out.append(EvalQuery(str(row["_id"]), row["text"], relevant, tuple(row["groups"]),
                             str(row.get("lang") or language_of(row["text"]))))
    return out


def language_of(text: str) -> str:
    """"zh" for a question with Chinese characters, else "en" (for sets that do not label their queries)."""
    return "zh" if has_cjk(text) else "en"


def open_dataset(folder: Path, embedder: Embedder, index_root: Path, options: IngestOptions | None = None,
                 split: str = "test", progress: bool = False, opener: IndexOpener | None = None) -> EvalSet:
    """Load a labelled folder (BEIR or sample layout), build or reuse its eval index (made and opened by `opener`:
    the vector store and user dictionary in use; None: FAISS and the default analyzer), judge the queries.

    Raises FileNotFoundError for a folder that is neither layout, ValueError (EvidenceNotFound among them) for
    bad labels; each names the file, line or query id.
    """
    folder = Path(folder)
    options = options if options is not None else IngestOptions()
    layout = detect_layout(folder, split)
    if layout == "beir":
        data = load_beir(folder, split)
        index = build_index(data, embedder, index_root, options.max_tokens, options.overlap, progress, opener,
                            options.min_tokens)
        queries = [EvalQuery(qid, text, data.qrels[qid], lang=language_of(text)) for qid, text in data.queries.items()]
        return EvalSet(data.name, "beir", "doc", queries, index, len(data.corpus))

    rows = load_sample_queries(folder / "queries.jsonl")
    name = folder.resolve().name
    root = Path(index_root) / f"eval-{name}-{_fingerprint(source_of(folder), embedder.name)}"
    report = sync([folder / "docs"], root, embedder, options, opener)  # exactly as `kb ingest` would
    index = (opener if opener is not None else IndexOpener()).open(root, embedder.info(), {})
    return EvalSet(name, "samples", "chunk", map_evidence(rows, index, folder), index, report.total_documents,
                   list(report.skipped))


# ---- metrics -------------------------------------------------------------------------------------------------
def doc_run(hits_scores: list[tuple[str, float]]) -> dict[str, float]:
    """MaxP: an id's score is its best score (a document's best chunk). Ids that appear once keep their score."""
    run: dict[str, float] = {}
    for doc_id, score in hits_scores:
        if doc_id not in run or score > run[doc_id]:
            run[doc_id] = score
    return run


def ranked_run(ids: Sequence[str]) -> dict[str, float]:
    """A run that scores ids by position (first best), keeping each id's first (best) position."""
    return doc_run([(i, float(len(ids) - r)) for r, i in enumerate(ids)])


def metric_names(hit_ns: Sequence[int] = HIT_NS) -> list[str]:
    return METRICS + [f"hit@{n}" for n in sorted(set(hit_ns))]


def score_run(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]],
              metrics: list[str] | None = None) -> dict[str, float]:
    """Mean ranx metrics over the queries of `qrels`. `hit@N` (a relevant result in the first N) is ranx's
    hit_rate@N; a query missing from `run`, or with nothing recalled, scores 0."""
    import warnings

    from ranx import Qrels, Run, evaluate

    names = metrics or METRICS
    ranx_names = [m.replace("hit@", "hit_rate@") for m in names]
    run = {q: (run.get(q) or {"__none__": 0.0}) for q in qrels}  # ranx needs a doc per query
    with warnings.catch_warnings():  # numba's first-compile deprecation chatter
        warnings.simplefilter("ignore")
        result = evaluate(Qrels(qrels), Run(run), ranx_names, make_comparable=True)
    if len(ranx_names) == 1:
        result = {ranx_names[0]: result}
    return {name: round(float(result[r]), 4) for name, r in zip(names, ranx_names)}


def evaluate_set(es: EvalSet, embedder: Embedder, mode: str, top_k: int = 100, reranker=None, rerank_k: int = 100,
             hit_ns: Sequence[int] = HIT_NS, threshold: float = 0.5,
             calibrate: Callable[[float], float] | None = None, dense_weight: float = 1.0,
             lexical_weight: float = 1.0, rrf_k: int = 60,
             tick: Callable[[int, int], None] | None = None, synonyms: Synonyms = NONE) -> dict[str, dict[str, Any]]:
    """Metrics for recall alone ("recall") and, with a reranker, recall + rerank of the top `rerank_k` chunks
    ("rerank"), each with latency (ms per query: p50, p95) and `answers`: how many unanswerable queries would
    still show a result and how many answerable ones would show none. Recall-only shows its top N whatever the
    scores; after reranking a result is shown when its score (`calibrate(raw)` when given, else the reranker's
    sigmoid) is ≥ `threshold`. `by_language` gives the metrics of each language's queries alone. The lexical leg
    also searches `synonyms`, as a search does.
    """
    stages = ["recall"] + (["rerank"] if reranker is not None else [])
    runs: dict[str, dict[str, dict[str, float]]] = {s: {} for s in stages}
    latency: dict[str, list[float]] = {s: [] for s in stages}
    best: dict[str, dict[str, float]] = {s: {} for s in stages}  # query -> best shown score (recall: 1 if any)
    if reranker is not None:
        from rerank.rank import rerank
    for n, q in enumerate(es.queries, start=1):
        t0 = time.perf_counter()
        res = recall(es.index, embedder, q.text, top_k, mode, q.groups, dense_weight, lexical_weight, rrf_k,
                     synonyms=synonyms.expansions(q.text))
        latency["recall"].append((time.perf_counter() - t0) * 1000)
        runs["recall"][q.qid] = ranked_run([es.unit_of(h.chunk) for h in res.hits])
        best["recall"][q.qid] = 1.0 if res.hits else 0.0
        if reranker is not None:
            t1 = time.perf_counter()
            scored = rerank(q.text, res.hits[:rerank_k], reranker)
            latency["rerank"].append((time.perf_counter() - t1) * 1000)
            runs["rerank"][q.qid] = ranked_run([es.unit_of(s.hit.chunk) for s in scored])
            top = scored[0] if scored else None
            best["rerank"][q.qid] = -1.0 if top is None else (
                calibrate(top.raw_score) if calibrate is not None else top.score)
        if tick:
            tick(n, len(es.queries))
    answerable = [q.qid for q in es.queries if q.answerable]
    unanswerable = [q.qid for q in es.unanswerable]
    out = {}
    for stage in stages:
        limit = 1.0 if stage == "recall" else threshold
        answers = {"threshold": None if stage == "recall" else threshold,
                   "unanswerable": len(unanswerable),
                   "unanswerable_shown": sum(best[stage][q] >= limit for q in unanswerable),
                   "answerable": len(answerable),
                   "answerable_empty": sum(best[stage][q] < limit for q in answerable)}
        metrics = score_run(es.qrels, runs[stage], metric_names(hit_ns)) if es.qrels else {}
        by_language = {}
        for lang in sorted({q.lang for q in es.queries if q.answerable}):
            qrels = {q.qid: q.relevant for q in es.queries if q.answerable and q.lang == lang}
            by_language[lang] = {"queries": len(qrels),
                                 "metrics": score_run(qrels, {q: runs[stage][q] for q in qrels}, metric_names(hit_ns))}
        out[stage] = {"metrics": metrics, "by_language": by_language,
                      "latency_ms": percentiles(latency[stage]), "answers": answers}
    return out


def save_uploaded_set(files: Sequence[tuple[str, bytes]], folder: Path, sample_docs: Path) -> Path:
    """Keep a labelled set uploaded on the Tuning page under `folder` and return the folder to evaluate.

    Either a BEIR set (corpus.jsonl, queries.jsonl and one qrels .tsv, kept as qrels/test.tsv), or a single
    queries.jsonl in the sample-set format, judged against the documents in `sample_docs`. The folder is the same
    for every upload of a kind, so the eval index is reused when the documents did not change. ValueError says
    what to upload otherwise.
    """
    named = {Path(name).name: data for name, data in files}
    tsv = [n for n in named if n.endswith(".tsv")]
    if "corpus.jsonl" in named:
        if "queries.jsonl" not in named or len(tsv) != 1:
            raise ValueError("a BEIR set needs corpus.jsonl, queries.jsonl and one qrels .tsv file; got "
                             f"{', '.join(sorted(named))}")
        target = Path(folder) / "beir"
        (target / "qrels").mkdir(parents=True, exist_ok=True)
        (target / "corpus.jsonl").write_bytes(named["corpus.jsonl"])
        (target / "queries.jsonl").write_bytes(named["queries.jsonl"])
        (target / "qrels" / "test.tsv").write_bytes(named[tsv[0]])
        return target
    jsonl = [n for n in named if n.endswith(".jsonl")]
    if len(named) != 1 or len(jsonl) != 1:
        raise ValueError("upload one queries .jsonl file in the sample-set format (see data/samples/README.md), "
                         f"or a BEIR set (corpus.jsonl, queries.jsonl, qrels .tsv); got {', '.join(sorted(named))}")
    target = Path(folder) / "samples"
    target.mkdir(parents=True, exist_ok=True)
    (target / "queries.jsonl").write_bytes(named[jsonl[0]])
    docs = target / "docs"
    if not docs.exists():
        docs.symlink_to(Path(sample_docs).resolve(), target_is_directory=True)
    return target
