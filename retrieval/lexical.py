"""BM25 over analysed chunk text (bm25s) in two fields, with access-group and document filtering inside the scoring
(a weight mask), and synonyms scored as Lucene's `SynonymQuery` scores them.

Fields. `words`: jieba words (search mode) and stemmed English (`retrieval.analyzer`). `bigrams`: the Chinese text
as overlapping character bigrams (`cjk_bigrams`, Elasticsearch's `cjk_bigram`), which finds a word however jieba
cut it in the question and in the document. A chunk's lexical score is words + BIGRAM_WEIGHT × bigrams; English
text has no bigrams, so English is scored by its words alone (docs/RETRIEVAL.md has the measurements).

Synonyms (`retrieval.synonyms.Expansion`): the query's words a rule stands for leave the plain terms, and the
rule's terms are scored as ONE term in each field: its term frequency in a chunk is the sum of its terms' (a term
of several words, or of several bigrams, counts its occurrences as a phrase: consecutive in the analysed text), its
document frequency is that of its most frequent term (as Lucene's), and BM25 (the same k1, b and length norm) is
computed from those. A chunk that says 年休假 five times thus outranks one that says "annual" and "leave" once
each, and the user's own word is not counted a second time through its synonyms. bm25s stores each term's score
per chunk, not its frequency: the frequency is read back from the score exactly (`_Field.postings`).

bm25s indexes are immutable, so a field is rebuilt from per-chunk token lists after a change; the lists are kept
(and saved) so that unchanged chunks are never analysed twice (unless the analyzer's user dictionary changed: then
every word list is made again from the chunk's text). Their strings are interned (one object per distinct term,
not per occurrence): the lists are the largest text item a serving process holds, and interning cuts them
3.3–3.6× (docs/SCALING.md).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

from ingest.types import Chunk

from .analyzer import DEFAULT, Analyzer, cjk_bigrams, has_cjk
from .synonyms import Expansion

logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG

# Robertson/Lucene BM25 with the parameters Anserini uses for BEIR (k1=0.9, b=0.4).
K1, B = 0.9, 0.4
BIGRAM_WEIGHT = 0.5  # the bigram field's BM25 counts half of the words field's (docs/RETRIEVAL.md)

Members = list[tuple[str, ...]]  # a synonym rule's terms, each as the tokens it is matched by (one, or a phrase)


@dataclass(frozen=True)
class FieldQuery:
    """What one field is asked for a query: its plain `terms` and one clause per synonym expansion, its score
    counted `weight` times (`grams`: the bigram field, else the words field)."""

    grams: bool
    weight: float
    terms: list[str]
    clauses: list[Members]


def field_queries(analyzer: Analyzer, query: str, synonyms: Sequence[Expansion] = (),
                  bigram_weight: float = BIGRAM_WEIGHT) -> list[FieldQuery]:
    """The query as each field with a weight is asked for it, by both stores (the folder index here, Milvus in
    `retrieval.shared`). The query's tokens its expansions stand for are scored through them, not again on their
    own: each said term as its members match it (拖欠工资 itself, not the sub-words 拖欠 and 工资 that jieba's search
    mode adds, which stay the user's own words; both words of "annual leave")."""
    out = []
    for grams, analyze, members, weight in ((False, analyzer.analyze, lambda t: synonym_members(analyzer, t), 1.0),
                                            (True, cjk_bigrams, bigram_members, bigram_weight)):
        if weight:
            said = {t for e in synonyms for m in members(e.said) for t in m}
            out.append(FieldQuery(grams, weight, [t for t in analyze(query) if t not in said],
                                  [m for e in synonyms if (m := members(e.searched))]))
    return out


class _Field:
    """One field: a token list per row and its bm25s index."""

    def __init__(self, tokens: list[list[str]] | None = None) -> None:
        self.tokens: list[list[str]] = tokens if tokens is not None else []
        self._bm25: bm25s.BM25 | None = None
        self._norm: np.ndarray | None = None  # per row: k1 * (1 - b + b * length / average length)

    def bm25(self) -> bm25s.BM25 | None:
        if self._bm25 is None and any(self.tokens):  # a field with no token at all (English text's bigrams) has none
            bm25 = bm25s.BM25(k1=K1, b=B, method="lucene")
            bm25.index(self.tokens, show_progress=False)
            self._bm25 = bm25
        return self._bm25

    def scores(self, terms: Sequence[str], clauses: Sequence[Members]) -> np.ndarray | None:
        """BM25 of the plain `terms` (those the field knows) plus each clause as one term, for every row; None
        when nothing of them is in the field."""
        bm25 = self.bm25()
        if bm25 is None:
            return None
        known = [t for t in terms if t in bm25.vocab_dict]
        out = bm25.get_scores(known) if known else None
        for members in clauses:
            extra = self.clause_scores(members)
            if extra is not None:
                out = extra if out is None else out + extra
        return out

    def clause_scores(self, members: Members) -> np.ndarray | None:
        """BM25 of the members as one term, for every row (None where none occurs anywhere): term frequencies
        summed, and the document frequency of the most frequent member, as Lucene's SynonymQuery takes it."""
        n = len(self.tokens)
        tf = np.zeros(n, dtype=np.float64)
        df = 0
        for tokens in members:
            rows, counts = self.postings(tokens[0]) if len(tokens) == 1 else self.phrase(tokens)
            np.add.at(tf, rows, counts)
            df = max(df, len(rows))
        if not df:
            return None
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
        return (idf * tf / (tf + self.norms())).astype(np.float32)

    def norms(self) -> np.ndarray:
        if self._norm is None:
            lengths = np.fromiter((len(t) for t in self.tokens), dtype=np.float64, count=len(self.tokens))
            self._norm = K1 * (1 - B + B * lengths / max(lengths.mean(), 1e-9))
        return self._norm

    def postings(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        """The rows holding `token` and its frequency in each. bm25s keeps s = idf * tf / (tf + norm) per row,
        so tf = s * norm / (idf - s), rounded (float32 scores keep it exact far beyond any chunk's length)."""
        bm25 = self.bm25()
        tid = bm25.vocab_dict.get(token) if bm25 is not None else None
        if tid is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        lo, hi = bm25.scores["indptr"][tid], bm25.scores["indptr"][tid + 1]
        rows = np.asarray(bm25.scores["indices"][lo:hi], dtype=np.int64)
        s = np.asarray(bm25.scores["data"][lo:hi], dtype=np.float64)
        idf = np.log(1 + (len(self.tokens) - len(rows) + 0.5) / (len(rows) + 0.5))
        return rows, np.rint(s * self.norms()[rows] / (idf - s))

    def phrase(self, tokens: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The rows holding `tokens` consecutively and how many times each does."""
        rows: np.ndarray | None = None
        for t in set(tokens):
            found = self.postings(t)[0]
            rows = found if rows is None else np.intersect1d(rows, found, assume_unique=True)
            if not len(rows):
                break
        hits: list[int] = []
        counts: list[int] = []
        want, width = list(tokens), len(tokens)
        for row in rows if rows is not None else ():
            seq = self.tokens[row]
            c = sum(1 for i in range(len(seq) - width + 1) if seq[i] == want[0] and seq[i:i + width] == want)
            if c:
                hits.append(int(row))
                counts.append(c)
        return np.asarray(hits, dtype=np.int64), np.asarray(counts, dtype=np.float64)


class LexicalIndex:
    def __init__(self, analyzer: Analyzer = DEFAULT, bigram_weight: float = BIGRAM_WEIGHT) -> None:
        self.analyzer = analyzer
        self.bigram_weight = bigram_weight  # 0: the words field alone
        self.chunk_ids: list[str] = []
        self.words = _Field()
        self.bigrams = _Field()

    @property
    def tokens(self) -> list[list[str]]:
        """The words field's token list of each row."""
        return self.words.tokens

    def set_chunks(self, chunks: Sequence[Chunk], known: dict[str, list[str]] | None = None) -> None:
        """Index exactly these chunks (their `context_text()`), reusing known word lists by chunk id (and the
        bigram lists of the chunks indexed now: they depend on the text alone)."""
        known = known if known is not None else dict(zip(self.chunk_ids, self.words.tokens))
        known_bigrams = dict(zip(self.chunk_ids, self.bigrams.tokens))
        analyze = self.analyzer.analyze
        self.chunk_ids = [c.chunk_id for c in chunks]
        self.words = _Field([known[c.chunk_id] if c.chunk_id in known else _interned(analyze(c.context_text()))
                             for c in chunks])
        self.bigrams = _Field([known_bigrams[c.chunk_id] if c.chunk_id in known_bigrams
                               else _interned(cjk_bigrams(c.context_text())) for c in chunks])

    def set_bigrams(self, chunks: Sequence[Chunk]) -> None:
        """Make the bigram list of each row from its chunk among `chunks` (a row whose chunk is missing gets
        none)."""
        text = {c.chunk_id: c.context_text() for c in chunks}
        self.bigrams = _Field([_interned(cjk_bigrams(text.get(cid, ""))) for cid in self.chunk_ids])

    @classmethod
    def of(cls, chunks: Sequence[Chunk], analyzer: Analyzer) -> LexicalIndex:
        """An index of these chunks with `analyzer` (every token list made from the text)."""
        fresh = cls(analyzer)
        fresh.set_chunks(chunks, known={})
        return fresh

    def search(self, query: str, k: int, allowed: np.ndarray | None = None,
               synonyms: Sequence[Expansion] = ()) -> list[tuple[str, float]]:
        """Up to k (chunk_id, bm25) pairs with a positive score, best first. `allowed` is a 0/1 mask over rows;
        `synonyms` are the expansions of the query (`Synonyms.expansions`), each scored as one term in place of the
        query words it stands for."""
        if not self.chunk_ids or k <= 0:
            return []
        scores = None
        for q in field_queries(self.analyzer, query, synonyms, self.bigram_weight):
            part = (self.bigrams if q.grams else self.words).scores(q.terms, q.clauses)
            if part is not None:
                scores = q.weight * part if scores is None else scores + q.weight * part
        if scores is None:
            return []
        if allowed is not None:
            scores = scores * allowed
        top = min(k, len(scores))
        part = np.argpartition(-scores, top - 1)[:top]
        order = part[np.argsort(-scores[part], kind="stable")]
        return [(self.chunk_ids[i], float(scores[i])) for i in order if scores[i] > 0]

    def save(self, folder: Path) -> None:
        """tokens.jsonl: a `[chunk_id, words]` line per row. Bigrams are not saved: made from the chunk text
        again when loaded (cheaper than reading them, and no jieba involved)."""
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "tokens.jsonl", "w", encoding="utf-8") as fh:
            for cid, toks in zip(self.chunk_ids, self.words.tokens):
                fh.write(json.dumps([cid, toks], ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, folder: Path, analyzer: Analyzer = DEFAULT, chunks: Sequence[Chunk] = ()) -> LexicalIndex:
        """The index saved in `folder`, its bigram field made from `chunks` (the rows' chunks)."""
        index = cls(analyzer)
        with open(folder / "tokens.jsonl", encoding="utf-8") as fh:
            for line in fh:
                cid, toks = json.loads(line)
                index.chunk_ids.append(cid)
                index.words.tokens.append(_interned(toks))
        index.set_bigrams(chunks)
        return index


def synonym_members(analyzer: Analyzer, terms: Sequence[str]) -> Members:
    """Each synonym term as the analysed words it is matched by: one word, or a phrase of several. A Chinese term
    that jieba keeps whole is that one word (its sub-words, which search mode adds, are not asked for)."""
    out: Members = []
    for term in terms:
        words = analyzer.analyze(term)
        whole = term.lower()
        if has_cjk(term) and whole in words:
            words = [whole]
        if words and tuple(words) not in out:
            out.append(tuple(words))
    return out


def bigram_members(terms: Sequence[str]) -> Members:
    """Each synonym term with Chinese text as its bigrams, a phrase (so it matches where the term's characters
    stand together); a term without Chinese has no place in the bigram field."""
    out: Members = []
    for term in terms:
        grams = tuple(cjk_bigrams(term))
        if grams and grams not in out:
            out.append(grams)
    return out


def _interned(tokens: list[str]) -> list[str]:
    """The same terms as shared string objects (a term occurring a million times is stored once)."""
    return [sys.intern(t) for t in tokens]
