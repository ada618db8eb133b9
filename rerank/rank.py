"""Turn reranker scores into ranked `Scored` results (`rerank`), map them through a fitted calibrator
(`calibrated`), and choose what a person is shown of one search's candidates (`select`: threshold, the
per-document cap, neighbouring chunks merged into one passage, top-N)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from ingest.types import Chunk
from rerank.params import check_threshold, check_top_n
from rerank.protocol import Reranker
from rerank.text import prepare_texts
from rerank.types import Scored, band_of
from retrieval.types import Hit


def rerank(query: str, candidates: Sequence[Hit] | Sequence[str], reranker: Reranker) -> list[Scored]:
    """Score every candidate (hits from recall, or plain strings in the playground) and sort by score, best first.

    Ties keep input order. `rank` is 1-based; `index` is the candidate's input position; `text` is the cleaned
    text shown (a hit's chunk body; the reranker reads its context_text()); `hit` is the Hit (None for
    strings). The input is not modified.
    """
    hits: list[Hit | None] = []
    raw_texts: list[str] = []  # what the reranker reads: a chunk's context_text() (title, headings, body)
    shown: list[str] = []  # what a person sees: the body
    for i, c in enumerate(candidates):
        if isinstance(c, Hit):
            hits.append(c)
            raw_texts.append(c.chunk.context_text())
            shown.append(c.chunk.text)
        elif isinstance(c, str):
            hits.append(None)
            raw_texts.append(c)
            shown.append(c)
        else:
            raise TypeError(f"candidates[{i}] must be a Hit or a str; got {type(c).__name__}")
    if not raw_texts:
        return []
    texts = prepare_texts(raw_texts)
    shown = prepare_texts(shown)
    scores = reranker.score(query, texts)
    if len(scores) != len(texts):
        raise RuntimeError(f"reranker {reranker.name!r} returned {len(scores)} scores for {len(texts)} candidates")
    order = sorted(range(len(texts)), key=lambda i: (-scores[i][0], i))  # raw: sigmoid saturates
    return [Scored(index=i, text=shown[i], raw_score=float(scores[i][0]), score=float(scores[i][1]),
                   band=band_of(scores[i][1]), rank=r, hit=hits[i]) for r, i in enumerate(order, start=1)]


def calibrated(scored: Sequence[Scored], apply: Callable[[float], float] | None) -> list[Scored]:
    """`scored` with each score mapped from its raw score by `apply` (a fitted calibrator; None: the sigmoid scores
    as they are) and its band from the new score. `apply` never decreases as the raw score rises, so the order
    stays as reranked."""
    if apply is None:
        return list(scored)
    return [replace(r, score=p, band=band_of(p)) for r in scored for p in [float(apply(r.raw_score))]]


def cap_per_document(results: Sequence[Scored], max_per_doc: int | None) -> list[Scored]:
    """Keep at most `max_per_doc` results of any one document, in the given (score) order; None keeps all."""
    if max_per_doc is None:
        return list(results)
    seen: dict[str, int] = {}
    kept = []
    for r in results:
        n = seen.get(r.hit.chunk.doc_id, 0)
        if n < max_per_doc:
            kept.append(r)
        seen[r.hit.chunk.doc_id] = n + 1
    return kept


def _joined_text(chunks: Sequence[Chunk]) -> str:
    """Neighbouring chunks' texts in order; a table's caption and header (`meta["table_head"]`, which every chunk of
    the table starts with) is shown once, above the first of them."""
    parts = []
    for before, c in zip([None, *chunks], chunks):
        head = c.meta.get("table_head")
        if before is not None and head and before.meta.get("table_head") == head and c.text.startswith(head + "\n"):
            parts.append(c.text[len(head) + 1:])
        else:
            parts.append(c.text)
    return "\n".join(parts)


def merge_adjacent(results: Sequence[Scored]) -> list[Scored]:
    """Merge results that are neighbouring chunks of one document into one passage, read in document order.

    The merged result keeps the best member's place, scores and band (the passage is shown because of it) and its
    text is the members' texts joined in position order, so a procedure split across two chunks reads whole (a
    table's header once, not once per chunk).
    """
    def pos(r: Scored) -> int:
        return int(r.hit.chunk.meta.get("position", 0))

    groups: list[list[Scored]] = []
    for r in results:  # best first: each result joins the first group it touches
        for g in groups:
            if g[0].hit.chunk.doc_id == r.hit.chunk.doc_id and any(abs(pos(m) - pos(r)) == 1 for m in g):
                g.append(r)
                break
        else:
            groups.append([r])
    merged = []
    for rank, g in enumerate(groups, start=1):
        best = g[0]
        if len(g) == 1:
            merged.append(replace(best, rank=rank))
            continue
        members = sorted(g, key=pos)
        c = best.hit.chunk
        chunk = Chunk(chunk_id=c.chunk_id, doc_id=c.doc_id, text=_joined_text([m.hit.chunk for m in members]),
                      title=c.title, section=c.section, page=members[0].hit.chunk.page,
                      n_tokens=sum(m.hit.chunk.n_tokens for m in members),
                      meta={**c.meta, "merged": [m.hit.chunk.chunk_id for m in members]})
        merged.append(replace(best, rank=rank, hit=replace(best.hit, chunk=chunk)))
    return merged


@dataclass(frozen=True)
class Selection:
    """What a person is shown of one search's candidates, and what not."""

    shown: list[Scored]  # ranked 1..N
    more: list[Scored]  # at or above the threshold but cut by N, the per-document cap or a merge
    hidden: list[Scored]  # scored below the threshold


def select(hits: Sequence[Hit], scored: Sequence[Scored] | None, top_n: int, threshold: float,
           max_per_doc: int | None = None, merge: bool = False) -> Selection:
    """Threshold, per-document cap, merging and top-N over one search's candidates.

    `scored`: what the reranker scored, best first — the first `len(scored)` of `hits` (recall order) when a
    latency budget stopped it early — or None when there is no reranker (recall-only: the recall order is the
    order shown, every hit counts as passing). Candidates the budget left out follow the reranked ones that pass,
    in recall order with None scores, and count as passing (nothing says otherwise); the per-document cap counts
    both. `threshold` and `top_n` are checked (ValueError naming them)."""
    check_threshold(threshold)
    check_top_n(top_n)
    done = [] if scored is None else list(scored)
    rest = hits[len(done):]
    # not reranked: recall order, no scores (`index`: its position in `hits`)
    unscored = [Scored(index=i, text=h.chunk.text, raw_score=None, score=None, band=None, rank=i + 1, hit=h)
                for i, h in enumerate(rest, start=len(hits) - len(rest))]
    if scored is None:
        above, hidden = unscored, []
        kept = cap_per_document(above, max_per_doc)
        kept = merge_adjacent(kept) if merge else kept
    else:
        above = [r for r in done if r.score >= threshold]
        hidden = [r for r in done if r.score < threshold]
        kept = cap_per_document(above, max_per_doc)
        kept = merge_adjacent(kept) if merge else kept
        if unscored:  # after every reranked result that passes
            merged = {cid for r in kept for cid in r.hit.chunk.meta.get("merged", ())}
            kept = cap_per_document(kept + [r for r in unscored if r.hit.chunk.chunk_id not in merged], max_per_doc)
            above = above + unscored
    shown = [replace(r, rank=i) for i, r in enumerate(kept[:top_n], start=1)]
    used = {cid for r in shown for cid in r.hit.chunk.meta.get("merged", [r.hit.chunk.chunk_id])}
    more = [replace(r, rank=i) for i, r in enumerate((r for r in above if r.hit.chunk.chunk_id not in used),
                                                     start=len(shown) + 1)]
    return Selection(shown, more, hidden)
