"""BM25 over analysed chunk text (bm25s), with access-group and document filtering inside the scoring (a weight
mask), and query expansion by synonyms weighted below the user's own words.

bm25s indexes are immutable, so the index is rebuilt from per-chunk token lists after a change; the token
lists are kept (and saved) so that unchanged chunks are never analysed twice (unless the analyzer's user
dictionary changed: then every list is made again from the chunk's text). Their strings are interned (one
object per distinct term, not per occurrence): the lists are the largest text item a serving process holds, and
interning cuts them 3.3–3.6× (docs/SCALING.md).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np

from ingest.types import Chunk

from .analyzer import DEFAULT, Analyzer

logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG

# Robertson/Lucene BM25 with the parameters Anserini uses for BEIR (k1=0.9, b=0.4).
K1, B = 0.9, 0.4
EXPANSION_WEIGHT = 0.5  # a synonym's BM25 score counts half of the user's own word's


class LexicalIndex:
    def __init__(self, analyzer: Analyzer = DEFAULT) -> None:
        self.analyzer = analyzer
        self.chunk_ids: list[str] = []
        self.tokens: list[list[str]] = []
        self._bm25: bm25s.BM25 | None = None

    def set_chunks(self, chunks: Sequence[Chunk], known: dict[str, list[str]] | None = None) -> None:
        """Index exactly these chunks (their `context_text()`), reusing known token lists by chunk id."""
        known = known if known is not None else dict(zip(self.chunk_ids, self.tokens))
        analyze = self.analyzer.analyze
        self.chunk_ids = [c.chunk_id for c in chunks]
        self.tokens = [known[c.chunk_id] if c.chunk_id in known else _interned(analyze(c.context_text()))
                       for c in chunks]
        self._bm25 = None

    @classmethod
    def of(cls, chunks: Sequence[Chunk], analyzer: Analyzer) -> LexicalIndex:
        """An index of these chunks with `analyzer` (every token list made from the text)."""
        fresh = cls(analyzer)
        fresh.set_chunks(chunks, known={})
        return fresh

    def _ensure(self) -> bm25s.BM25 | None:
        if self._bm25 is None and self.chunk_ids:
            bm25 = bm25s.BM25(k1=K1, b=B, method="lucene")
            bm25.index(self.tokens, show_progress=False)
            self._bm25 = bm25
        return self._bm25

    def search(self, query: str, k: int, allowed: np.ndarray | None = None,
               also: Sequence[str] = ()) -> list[tuple[str, float]]:
        """Up to k (chunk_id, bm25) pairs with a positive score, best first. `allowed` is a 0/1 mask over rows;
        `also` are more terms to search for (synonyms), their scores weighted by EXPANSION_WEIGHT."""
        bm25 = self._ensure()
        if bm25 is None or k <= 0:
            return []
        vocab = bm25.vocab_dict
        own = self.analyzer.analyze(query)
        terms = [t for t in own if t in vocab]
        extra = [t for t in dict.fromkeys(self.analyzer.analyze(" ".join(also))) if t in vocab and t not in own]
        if not terms and not extra:
            return []
        scores = bm25.get_scores(terms) if terms else np.zeros(len(self.chunk_ids), dtype=np.float32)
        if extra:
            scores = scores + EXPANSION_WEIGHT * bm25.get_scores(extra)
        if allowed is not None:
            scores = scores * allowed
        top = min(k, len(scores))
        part = np.argpartition(-scores, top - 1)[:top]
        order = part[np.argsort(-scores[part], kind="stable")]
        return [(self.chunk_ids[i], float(scores[i])) for i in order if scores[i] > 0]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "tokens.jsonl", "w", encoding="utf-8") as fh:
            for cid, toks in zip(self.chunk_ids, self.tokens):
                fh.write(json.dumps([cid, toks], ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, folder: Path, analyzer: Analyzer = DEFAULT) -> LexicalIndex:
        index = cls(analyzer)
        with open(folder / "tokens.jsonl", encoding="utf-8") as fh:
            for line in fh:
                cid, toks = json.loads(line)
                index.chunk_ids.append(cid)
                index.tokens.append(_interned(toks))
        return index


def _interned(tokens: list[str]) -> list[str]:
    """The same terms as shared string objects (a term occurring a million times is stored once)."""
    return [sys.intern(t) for t in tokens]
