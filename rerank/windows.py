"""Long passages: overlapping token windows with the query kept whole, never silent truncation.

A (query, passage) pair whose tokens (special tokens included) exceed `max_length` is split: the passage is cut
into windows of at most `max_length - len(query) - specials` tokens that overlap by a quarter of a window, each
window is scored with the whole query, and the passage's score aggregates the windows (max by default, or mean,
or first). Windows are text spans of the passage (cut at token boundaries with the tokenizer's offsets), so they
can be shown and re-tokenized; every window is re-checked against `max_length` after re-tokenization.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from rerank.errors import RerankerParameterError
from rerank.params import check_long_passage

MIN_PASSAGE_TOKENS = 16  # a window shorter than this cannot say much; the query is then too long for max_length
OVERLAP_SHARE = 0.25


@dataclass(frozen=True)
class Window:
    index: int  # which passage (position in the input)
    text: str  # the span of the passage this window covers
    start: int  # character offsets into the passage
    end: int
    n_tokens: int  # tokens of the (query, window) pair, special tokens included


@dataclass(frozen=True)
class Prepared:
    """One scoring request made ready for the model: the checked query and, per (cleaned) text in input order,
    the windows it is scored as. What a batch of requests costs is read from it before any forward pass."""

    query: str
    windows: tuple[tuple[Window, ...], ...]

    @property
    def n_pairs(self) -> int:
        """(query, window) pairs this request puts through the model."""
        return sum(len(ws) for ws in self.windows)

    @property
    def n_tokens(self) -> int:
        """Tokens of all its pairs, special tokens included (the unit of a token budget, as TEI's)."""
        return sum(w.n_tokens for ws in self.windows for w in ws)


def pair_lengths(tokenizer, query: str, texts: Sequence[str], extra_tokens: int = 0) -> list[int]:
    """Token count of each (query, text) pair, special tokens included, without truncation."""
    if not texts:
        return []
    enc = tokenizer([query] * len(texts), list(texts), add_special_tokens=True, truncation=False, verbose=False)
    return [len(ids) + extra_tokens for ids in enc["input_ids"]]


def query_budget(tokenizer, query: str, max_length: int, extra_tokens: int = 0) -> int:
    """Tokens left for the passage once the whole query and the special tokens are in."""
    n_query = len(tokenizer(query, add_special_tokens=False, verbose=False)["input_ids"])
    specials = tokenizer.num_special_tokens_to_add(pair=True) + extra_tokens
    budget = max_length - n_query - specials
    if budget < MIN_PASSAGE_TOKENS:
        raise RerankerParameterError(
            "max_length", max_length,
            f"at least {n_query + specials + MIN_PASSAGE_TOKENS} tokens for this query ({n_query} query tokens, "
            f"{specials} special tokens, {MIN_PASSAGE_TOKENS} passage tokens); the query is kept whole",
            "shorten the query or raise --max-length")
    return budget


def _spans(n_tokens: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Token spans [start, end) of `size` covering 0..n_tokens, overlapping by `overlap`, the last one flush."""
    if n_tokens <= size:
        return [(0, n_tokens)]
    stride = max(1, size - overlap)
    spans = []
    start = 0
    while start + size < n_tokens:
        spans.append((start, start + size))
        start += stride
    spans.append((max(0, n_tokens - size), n_tokens))
    return spans


def split_windows(tokenizer, query: str, passage: str, max_length: int, index: int = 0,
                  extra_tokens: int = 0, overlap_share: float = OVERLAP_SHARE) -> list[Window]:
    """Windows of `passage` such that every (query, window) pair fits in `max_length` tokens.

    A passage that fits comes back as one window holding the whole passage. `extra_tokens` counts tokens an
    engine adds around the pair besides the tokenizer's special tokens (an LLM reranker's prompt).
    """
    whole = pair_lengths(tokenizer, query, [passage], extra_tokens)[0]
    if whole <= max_length:
        return [Window(index, passage, 0, len(passage), whole)]
    budget = query_budget(tokenizer, query, max_length, extra_tokens)
    enc = tokenizer(passage, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = [(s, e) for s, e in enc["offset_mapping"] if e > s] or [(0, len(passage))]
    windows: list[Window] = []
    size = budget
    for _ in range(8):  # re-tokenizing a span can add a token or two at its edges; shrink and retry, bounded
        windows = []
        for a, b in _spans(len(offsets), size, int(size * overlap_share)):
            start, end = offsets[a][0], offsets[b - 1][1]
            windows.append(Window(index, passage[start:end], start, end, 0))
        lengths = pair_lengths(tokenizer, query, [w.text for w in windows], extra_tokens)
        excess = max(lengths) - max_length
        if excess <= 0:
            return [Window(w.index, w.text, w.start, w.end, n) for w, n in zip(windows, lengths, strict=True)]
        size -= max(excess, 1)
        if size < 1:
            break
    raise RerankerParameterError("max_length", max_length, "enough tokens to hold the query and a passage window",
                                 "raise --max-length or shorten the query")


def aggregate(scores: Sequence[float], how: str = "max") -> float:
    """One passage score from its windows' raw scores: max (default), mean, or first."""
    check_long_passage(how)
    if not scores:
        raise ValueError("aggregate needs at least one window score")
    if how == "max":
        return max(scores)
    if how == "mean":
        return statistics.fmean(scores)
    return scores[0]
