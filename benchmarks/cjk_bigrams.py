"""Chinese character bigrams as a second lexical field beside jieba words (issue 30, part 2): does it help?

What it measures, on the product's own chunks, lexical recall only (no dense leg, no reranker):

  jieba          the words field alone: `retrieval.lexical.LexicalIndex(bigram_weight=0)` over `retrieval.analyzer`
                 (jieba search mode for Chinese, Snowball-stemmed English; bm25s Lucene BM25, k1=0.9, b=0.4),
                 searched as `kb eval --mode lexical` does (the caller's access groups as a mask inside the scoring)
  product        what ships: `LexicalIndex()`, words + BIGRAM_WEIGHT x the field of Chinese bigrams (Latin text has
                 none), synonyms scored in both fields
  bigram         BM25 (bm25s, same parameters) over character bigrams: each run of CJK characters becomes its
                 overlapping bigrams (a one-character run its unigram), Latin words analysed as the words field
                 (Elasticsearch's `cjk_bigram` with `output_unigrams: false`); the experiment's own field
  rrf 1:W        both fields fused by reciprocal rank fusion (`retrieval.fusion.rrf`, k=60), each field 100 deep,
                 bigram weight W (1 and 0.5)
  sum W          one score per chunk: jieba BM25 + W x bigram BM25 (W = 0.5 and 1.0)
  +syn           the same with the synonyms file (`Synonyms.expansions`, as `kb search` passes them), on the
                 labour-law sets and the sample set; for rrf/sum in the jieba field only
  +syn2          synonyms in the bigram field too: each synonym term's bigrams that the query lacks, at 0.5

Sets (each chunked exactly as `kb eval` chunks it, through `app.quality.evaluate.open_dataset`: `build_index` for
the BEIR layout, the ingest `sync` for a sample layout; the chunker counts tokens with the embedder's tokenizer,
default the packaged all-MiniLM-L6-v2 as in docs/EVALUATION.md, so chunks are <= 256 tokens):

  cmrc2018       ../shared/eval-data/cmrc2018, split dev (3,219 questions, judged by document, MaxP)
  labor-dev      ../shared/corpora/cn-labor-law/*.md (README.md left out) + benchmarks/labor_law/queries.jsonl
  labor-heldout  the same documents + benchmarks/labor_law/heldout.jsonl (judged by chunk)
  samples        data/samples (judged by chunk, each question with its own access groups)

Vectors are not needed here, so the chunks are stored with zero vectors (the tokenizer is the real one) in this
script's own cache folder (--cache), never in the product's eval folder.

Metrics (ranx, through `app.quality.evaluate.score_run`, answerable questions only): hit@1, hit@5, MRR@10,
nDCG@10, recall@100. Also, per set: the time to build each field (analysis + bm25s index), its postings (non-zero
(chunk, term) pairs in bm25s' matrix) and distinct terms, and the median query time of each variant relative to
today's jieba search.

Run from the repository root (about 1 minute on the shared 2-core CPU, most of it chunking CMRC2018 the first time
and jieba):

    HF_HUB_OFFLINE=1 python benchmarks/cjk_bigrams.py [--sets cmrc2018 labor-dev labor-heldout samples]
        [--cmrc-limit N] [--synonyms data/vocabulary/synonyms-hr-zh.txt] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bm25s  # noqa: E402

from app.quality.evaluate import (  # noqa: E402
    EvalQuery,
    EvalSet,
    load_sample_queries,
    map_evidence,
    open_dataset,
    ranked_run,
    score_run,
)
from app.services.library import IngestOptions  # noqa: E402
from retrieval.analyzer import _IS_CJK, _RUN, _STOP, _stemmer  # noqa: E402
from retrieval.embedder import Embedder  # noqa: E402
from retrieval.fusion import rrf  # noqa: E402
from retrieval.lexical import K1, B, LexicalIndex  # noqa: E402
from retrieval.synonyms import NONE, Synonyms, read_synonyms  # noqa: E402

METRICS = ["hit@1", "hit@5", "mrr@10", "ndcg@10", "recall@100"]
DEPTH = 100  # each field's depth before fusion, and the list judged (kb eval's --top-k default)
RRF_K = 60
RRF_WEIGHTS = (1.0, 0.5)
SUM_WEIGHTS = (0.5, 1.0)
SETS = ("cmrc2018", "labor-dev", "labor-heldout", "samples")
SYNONYM_SETS = ("labor-dev", "labor-heldout", "samples")
SYNONYM_WEIGHT = 0.5  # a synonym's bigrams in the bigram field ("+syn2" rows), as the committed jieba field weighs them


# ---- the bigram field -----------------------------------------------------------------------------------------
def bigrams(text: str) -> list[str]:
    """Chinese runs as overlapping character bigrams (a one-character run as itself); Latin runs as the product's
    analyzer makes them (lowercased, stop-worded, Snowball-stemmed); punctuation dropped."""
    out: list[str] = []
    stem = _stemmer().stemWord
    for match in _RUN.finditer(text.lower()):
        run = match.group(0)
        if _IS_CJK.match(run):
            out.extend([run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)])
        elif run not in _STOP:
            out.append(stem(run))
    return out


class BigramField:
    """bm25s over `bigrams(text)` of the same rows as the product's LexicalIndex."""

    def __init__(self, chunk_ids: Sequence[str], texts: Sequence[str]):
        self.chunk_ids = list(chunk_ids)
        self.tokens = [bigrams(t) for t in texts]
        self.bm25 = bm25s.BM25(k1=K1, b=B, method="lucene")
        self.bm25.index(self.tokens, show_progress=False)

    def scores(self, query: str, allowed: np.ndarray | None, also: Sequence[str] = ()) -> np.ndarray:
        """BM25 of every row; `also` (synonym terms) as bigrams the query lacks, weighted SYNONYM_WEIGHT."""
        vocab = self.bm25.vocab_dict
        own = bigrams(query)
        terms = [t for t in own if t in vocab]
        extra = [t for t in dict.fromkeys(bigrams(" ".join(also))) if t in vocab and t not in own]
        scores = self.bm25.get_scores(terms) if terms else np.zeros(len(self.chunk_ids), dtype=np.float32)
        if extra:
            scores = scores + SYNONYM_WEIGHT * self.bm25.get_scores(extra)
        return scores * allowed if allowed is not None else scores


def top(scores: np.ndarray, ids: Sequence[str], k: int) -> list[tuple[str, float]]:
    """Up to k (id, score) with a positive score, best first (ties in row order, as LexicalIndex.search)."""
    k = min(k, len(scores))
    if k <= 0:
        return []
    part = np.argpartition(-scores, k - 1)[:k]
    order = part[np.argsort(-scores[part], kind="stable")]
    return [(ids[i], float(scores[i])) for i in order if scores[i] > 0]


def first_relevant(run: dict[str, float], relevant: dict[str, int]) -> float:
    """The position (from 1) of the first relevant id in a position-scored run; inf when none is there."""
    ranked = sorted(run, key=lambda i: -run[i])
    return next((r for r, i in enumerate(ranked, start=1) if i in relevant), float("inf"))


def postings(bm25: bm25s.BM25) -> int:
    return int(bm25.scores["data"].size)


# ---- data -----------------------------------------------------------------------------------------------------
class ChunkOnlyEmbedder(Embedder):
    """The real embedder's tokenizer (so the chunker cuts exactly as the product does) with zero vectors: this
    benchmark measures BM25 only, and embedding ~3,700 chunks on a shared CPU would take minutes for nothing."""

    def embed_passages(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        return np.zeros((len(texts), self.dim), dtype=np.float32)


@dataclass
class Loaded:
    name: str
    unit: str
    queries: list[EvalQuery]  # answerable only
    es: EvalSet
    note: str = ""


def labor_folder(cache: Path, corpus: Path) -> Path:
    """A sample-layout folder (docs/ + queries.jsonl) with copies of the labour-law documents, as
    benchmarks/labor_law/README.md makes one (the ingest does not follow symlinks out of a folder)."""
    folder = cache / "labor-law"
    docs = folder / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    wanted = {p.name: p for p in sorted(corpus.glob("*.md")) if p.name != "README.md"}
    if not wanted:
        raise FileNotFoundError(f"no labour-law documents (*.md) in {corpus}; give the folder with --labor")
    for p in docs.iterdir():
        if p.name not in wanted:
            p.unlink()
    for name, src in wanted.items():
        dst = docs / name
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            shutil.copyfile(src, dst)
    shutil.copyfile(ROOT / "benchmarks/labor_law/queries.jsonl", folder / "queries.jsonl")
    return folder


def load_sets(names: Sequence[str], embedder: Embedder, cache: Path, cmrc: Path, labor: Path, samples: Path,
              cmrc_limit: int | None, log: Callable[[str], None]) -> list[Loaded]:
    options = IngestOptions()  # kb's defaults: 512 tokens (capped at the embedder's window), overlap 32
    index_root = cache / "eval"
    out = []
    labor_es = None
    for name in names:
        t0 = time.perf_counter()
        if name == "cmrc2018":
            es = open_dataset(cmrc, embedder, index_root, options, split="dev")
            qs = [q for q in es.queries if q.answerable]
            note = f"dev, all {len(qs)} questions"
            if cmrc_limit is not None and cmrc_limit < len(qs):
                qs = qs[:cmrc_limit]
                note = f"dev, first {len(qs)} questions of queries.jsonl (--cmrc-limit)"
            out.append(Loaded(name, "doc", qs, es, note))
        elif name in ("labor-dev", "labor-heldout"):
            if labor_es is None:
                labor_es = open_dataset(labor_folder(cache, labor), embedder, index_root, options)
            folder = cache / "labor-law"
            rows = load_sample_queries(ROOT / "benchmarks/labor_law" /
                                       ("queries.jsonl" if name == "labor-dev" else "heldout.jsonl"))
            qs = [q for q in map_evidence(rows, labor_es.index, folder) if q.answerable]
            out.append(Loaded(name, "chunk", qs, labor_es, f"{len(qs)} answerable of {len(rows)}"))
        elif name == "samples":
            es = open_dataset(samples, embedder, index_root, options)
            qs = [q for q in es.queries if q.answerable]
            zh = sum(q.lang == "zh" for q in qs)
            out.append(Loaded(name, "chunk", qs, es, f"{len(qs)} answerable ({zh} zh, {len(qs) - zh} en)"))
        else:
            raise ValueError(f"unknown set {name!r}; choose from {', '.join(SETS)}")
        es = out[-1].es
        log(f"{name}: {len(es.index.chunks)} chunks of {es.documents} documents, {len(out[-1].queries)} questions "
            f"({time.perf_counter() - t0:.1f} s to load/chunk)")
    return out


# ---- one set --------------------------------------------------------------------------------------------------
def variant_names(with_synonyms: bool) -> list[str]:
    base = ["jieba", "bigram", "product"] + [f"rrf 1:{w:g}" for w in RRF_WEIGHTS] + [f"sum {w:g}" for w in SUM_WEIGHTS]
    if with_synonyms:
        base += ["jieba +syn", "product +syn"]
        for suffix in (" +syn", " +syn2"):
            base += [f"rrf 1:{w:g}{suffix}" for w in RRF_WEIGHTS] + [f"sum {w:g}{suffix}" for w in SUM_WEIGHTS]
    return base


def run_set(ld: Loaded, synonyms: Synonyms, log: Callable[[str], None]) -> dict:
    es = ld.es
    index = es.index
    # field (a): a fresh LexicalIndex of the version's chunks, as the product builds it (timed)
    chunks = index.ordered_chunks()
    index.analyzer.analyze("预热 warm-up")  # jieba loads its dictionary on first use: not part of a build
    t0 = time.perf_counter()
    jieba_field = LexicalIndex(index.analyzer, bigram_weight=0)  # the words field alone
    jieba_field.set_chunks(chunks, known={})
    jieba_field.words.bm25()
    t_jieba = time.perf_counter() - t0
    if jieba_field.chunk_ids != index.lexical.chunk_ids:
        raise RuntimeError(f"{ld.name}: the rebuilt jieba field's rows differ from the eval index's")
    t0 = time.perf_counter()
    bigram_field = BigramField(jieba_field.chunk_ids, [c.context_text() for c in chunks])
    t_bigram = time.perf_counter() - t0
    product = LexicalIndex(index.analyzer)  # what ships: words + BIGRAM_WEIGHT x Chinese bigrams, synonyms in both
    product.words, product.chunk_ids = jieba_field.words, jieba_field.chunk_ids
    product.set_bigrams(chunks)
    ids = jieba_field.chunk_ids
    n = len(ids)
    row = {cid: i for i, cid in enumerate(ids)}
    unit = {cid: es.unit_of(index.chunks[cid]) for cid in ids}
    with_syn = bool(synonyms.fingerprint) and ld.name in SYNONYM_SETS
    names = variant_names(with_syn)
    runs: dict[str, dict[str, dict[str, float]]] = {v: {} for v in names}
    times: dict[str, list[float]] = {"jieba": [], "bigram": [], "rrf": [], "sum": []}

    def judged(pairs: Sequence[tuple[str, float]]) -> dict[str, float]:
        return ranked_run([unit[cid] for cid, _ in pairs[:DEPTH]])

    for q in ld.queries:
        mask = index.lexical_mask(q.groups)
        # "+syn": synonyms in the jieba field only; "+syn2": in the bigram field too (as bigrams, weighted 0.5)
        for suffix in (["", " +syn", " +syn2"] if with_syn else [""]):
            also = {"synonyms": synonyms.expansions(q.text)} if suffix else {}
            t0 = time.perf_counter()
            j_top = jieba_field.search(q.text, DEPTH, mask, **also)  # today's lexical leg
            t_j = time.perf_counter() - t0
            t0 = time.perf_counter()
            b_scores = bigram_field.scores(q.text, mask, synonyms.expand(q.text) if suffix == " +syn2" else ())
            b_top = top(b_scores, ids, DEPTH)
            t_b = time.perf_counter() - t0
            t0 = time.perf_counter()
            for w in RRF_WEIGHTS:
                fused = rrf([[c for c, _ in j_top], [c for c, _ in b_top]], [1.0, w], RRF_K)
                runs[f"rrf 1:{w:g}{suffix}"][q.qid] = judged(fused)
            t_r = (time.perf_counter() - t0) / len(RRF_WEIGHTS)
            # score sum needs every jieba score, not the top 100: the same product search, all rows deep
            j_all = np.zeros(n, dtype=np.float32)
            for cid, s in jieba_field.search(q.text, n, mask, **also):
                j_all[row[cid]] = s
            t0 = time.perf_counter()
            for w in SUM_WEIGHTS:
                runs[f"sum {w:g}{suffix}"][q.qid] = judged(top(j_all + w * b_scores, ids, DEPTH))
            t_s = (time.perf_counter() - t0) / len(SUM_WEIGHTS)
            if suffix != " +syn2":
                runs["jieba" + suffix][q.qid] = judged(j_top)
                runs["product" + suffix][q.qid] = judged(product.search(q.text, DEPTH, mask, **also))
            if not suffix:
                runs["bigram"][q.qid] = judged(b_top)
                times["jieba"].append(t_j)
                times["bigram"].append(t_b)
                times["rrf"].append(t_j + t_b + t_r)
                times["sum"].append(t_j + t_b + t_s)  # a real sum would score both fields fully: about the same

    qrels = {q.qid: q.relevant for q in ld.queries}
    groups = {"all": list(qrels)}
    langs = sorted({q.lang for q in ld.queries})
    if len(langs) > 1:
        for lang in langs:
            groups[lang] = [q.qid for q in ld.queries if q.lang == lang]
    metrics = {}
    for gname, qids in groups.items():
        sub = {q: qrels[q] for q in qids}
        metrics[gname] = {v: score_run(sub, {q: runs[v][q] for q in qids}, METRICS) for v in names}
    # paired, per question, against today's field: how many questions gain / lose a relevant chunk in the top 5
    first = {v: {q: first_relevant(runs[v][q], qrels[q]) for q in qrels} for v in names}
    paired = {}
    for v in names:
        ref = first["jieba +syn" if "+syn" in v else "jieba"]
        paired[v] = {"hit@5_gained": sum(first[v][q] <= 5 < ref[q] for q in qrels),
                     "hit@5_lost": sum(ref[q] <= 5 < first[v][q] for q in qrels),
                     "rank_better": sum(first[v][q] < ref[q] for q in qrels),
                     "rank_worse": sum(first[v][q] > ref[q] for q in qrels)}
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    jb, bb = jieba_field.words.bm25(), bigram_field.bm25
    cost = {
        "build_s": {"jieba": round(t_jieba, 2), "bigram": round(t_bigram, 2)},
        "postings": {"jieba": postings(jb), "bigram": postings(bb), "ratio": round(postings(bb) / postings(jb), 2)},
        "terms": {"jieba": len(jb.vocab_dict), "bigram": len(bb.vocab_dict)},
        "tokens": {"jieba": sum(map(len, jieba_field.tokens)), "bigram": sum(map(len, bigram_field.tokens))},
        "query_ms_p50": {k: round(v, 3) for k, v in med.items()},
        "query_cost_ratio": {k: round(v / med["jieba"], 2) for k, v in med.items()},
    }
    log(f"{ld.name}: done")
    return {"set": ld.name, "note": ld.note, "unit": ld.unit, "chunks": n, "questions": len(ld.queries),
            "synonyms": with_syn, "metrics": metrics, "paired": paired, "cost": cost}


# ---- report ---------------------------------------------------------------------------------------------------
def table(results: list[dict]) -> str:
    lines = ["d hit@5 and the paired counts compare with jieba (with jieba +syn for the +syn/+syn2 rows); hit@5 +/-: "
             "questions that gain / lose a relevant result in the top 5; rank +/-: questions whose first relevant "
             "result moves up / down"]
    for r in results:
        lines.append(f"\n== {r['set']}: {r['questions']} questions ({r['note']}), {r['chunks']} chunks, judged by "
                     f"{r['unit']}")
        for gname, by_variant in r["metrics"].items():
            if gname != "all":
                lines.append(f"-- questions in {gname}")
            head = f"{'variant':<18}" + "".join(f"{m:>11}" for m in METRICS) + f"{'d hit@5':>10}"
            lines.append(head + ("   hit@5 +/-   rank +/-" if gname == "all" else ""))
            for v, m in by_variant.items():
                base = by_variant["jieba +syn" if "+syn" in v else "jieba"]["hit@5"]
                line = f"{v:<18}" + "".join(f"{m[k]:>11.4f}" for k in METRICS) + f"{m['hit@5'] - base:>+10.4f}"
                if gname == "all":
                    p = r["paired"][v]
                    line += f"{p['hit@5_gained']:>7}/{p['hit@5_lost']:<4}{p['rank_better']:>7}/{p['rank_worse']}"
                lines.append(line)
        c = r["cost"]
        lines.append(f"build s: jieba {c['build_s']['jieba']}, bigram {c['build_s']['bigram']}; postings: jieba "
                     f"{c['postings']['jieba']:,}, bigram {c['postings']['bigram']:,} (x{c['postings']['ratio']}); "
                     f"terms: jieba {c['terms']['jieba']:,}, bigram {c['terms']['bigram']:,}")
        lines.append("query p50 ms: " + ", ".join(f"{k} {v:.2f} (x{c['query_cost_ratio'][k]})"
                                                  for k, v in c["query_ms_p50"].items()))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    ap.add_argument("--cmrc", type=Path, default=ROOT.parent / "shared/eval-data/cmrc2018")
    ap.add_argument("--labor", type=Path, default=ROOT.parent / "shared/corpora/cn-labor-law")
    ap.add_argument("--samples", type=Path, default=ROOT / "data/samples")
    ap.add_argument("--cmrc-limit", type=int, default=None, help="only the first N CMRC2018 dev questions")
    ap.add_argument("--synonyms", type=Path, default=ROOT / "data/vocabulary/synonyms-hr-zh.txt",
                    help="applied to the jieba field on the labour-law and sample sets ('' for none)")
    ap.add_argument("--embedder", default="packaged:all-MiniLM-L6-v2",
                    help="whose tokenizer the chunker counts with (kb's --embedder); its vectors are not computed")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/kb-cjk-bigrams"),
                    help="this script's own folder for the chunked sets (reused between runs)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    args = ap.parse_args(argv)

    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    synonyms = NONE
    if str(args.synonyms):
        synonyms, problems = read_synonyms(args.synonyms)
        for p in problems:
            log(p)
    args.cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    embedder = ChunkOnlyEmbedder(args.embedder, device="cpu").load()
    sets = load_sets(args.sets, embedder, args.cache, args.cmrc, args.labor, args.samples, args.cmrc_limit, log)
    results = [run_set(ld, synonyms, log) for ld in sets]
    meta = {"embedder_tokenizer": embedder.name, "k1": K1, "b": B, "depth": DEPTH, "rrf_k": RRF_K,
            "synonyms": str(args.synonyms) if synonyms.fingerprint else None}
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, ensure_ascii=False, indent=1))
    else:
        print(f"lexical recall, bm25s lucene k1={K1} b={B}, fields {DEPTH} deep, RRF k={RRF_K}; chunks counted "
              f"with {embedder.name}'s tokenizer; synonyms: {meta['synonyms']} (jieba field only)")
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
