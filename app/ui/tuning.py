"""What the Tuning page computes, without Streamlit. The labelled-set work itself is `app.tune` (shared with
`kb tune`); this adds what only the page needs: a search service over a labelled set's own index, MRR against
K, a histogram, and keeping an uploaded labelled set in a stable folder so its eval index is built once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from app.evaluate import EvalSet, ranked_run, score_run
from app.search import SearchService
from app.tune import Collected

SAMPLE_SET = Path(__file__).resolve().parents[2] / "data" / "samples"  # docs/ and queries.jsonl
K_STEPS = (5, 10, 20, 30, 50, 75, 100)


def ks_up_to(k_max: int) -> list[int]:
    """The K values swept: the usual steps up to `k_max`, and `k_max` itself."""
    return sorted({k for k in K_STEPS if k <= k_max} | {k_max})


def labelled_service(base: SearchService, labelled: EvalSet) -> SearchService:
    """A service with `base`'s models over the labelled set's index (models are shared, not loaded again)."""
    svc = SearchService(base.settings, index_dir=labelled.index.root, embedder=base.embedder_name,
                        reranker=base.reranker_name)
    svc.embedder = base.embedder
    svc.index = labelled.index
    svc.load_reranker()  # the process-wide instance `base` already loaded
    return svc


def mrr_vs_k(collected: Collected, ks: Sequence[int]) -> dict[int, float]:
    """MRR@10 after reranking the top K recalled chunks, for each K (from one collection at the largest K, as
    `app.tune.sweep_k` does for nDCG and hit@N)."""
    qrels = {q.qid: q.relevant for q in collected.queries if q.answerable}
    out = {}
    for k in ks:
        run = {q.qid: ranked_run([c.unit for c in q.candidates if c.recall_rank <= k])
               for q in collected.queries if q.answerable}
        out[k] = score_run(qrels, run, ["mrr@10"])["mrr@10"]
    return out


def histogram(scores: Sequence[float], bins: int = 20) -> pd.DataFrame:
    """Counts of scores in `bins` equal bins over 0..1: columns start, end, count."""
    counts, edges = np.histogram(np.asarray(scores, dtype=float), bins=bins, range=(0.0, 1.0))
    return pd.DataFrame({"start": edges[:-1], "end": edges[1:], "count": counts})


def save_uploaded_set(files: Sequence[tuple[str, bytes]], folder: Path,
                      sample_docs: Path = SAMPLE_SET / "docs") -> Path:
    """Keep an uploaded labelled set under `folder` and return the folder to evaluate.

    Either a BEIR set (corpus.jsonl, queries.jsonl and one qrels .tsv, kept as qrels/test.tsv), or a single
    queries.jsonl in the sample-set format, judged against the sample documents. The folder is the same for
    every upload of a kind, so the eval index is reused when the documents did not change. ValueError says what
    to upload otherwise.
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
