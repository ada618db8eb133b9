"""Vocabulary learned from the search log: suggested synonym pairs and best bets, each with the evidence counted,
for an administrator to accept or dismiss (`app.services.suggestion_decisions`).

The evidence is `EventLog.history` (who asked what, when, and what they thought of it):
- a **reformulation**: a search that failed (no result passed the threshold, or its asker gave a thumbs-down or
  "none of these answers", and no thumbs-up) followed, within `window_s` seconds, by a search of the same person
  in other words that succeeded (they gave a thumbs-up). The words that differ — one run of words in each question,
  compared as words (Latin words whole, Chinese as jieba cuts it) — are a suggested synonym pair; the first
  question and the document liked after it are a suggested best bet. Questions rewritten in more than one place
  or at length say nothing about one word, and are left out of the pairs.
- a **frequent no-answer question**: asked `min_no_answer` times or more (by its normalised text) with no result
  passing the threshold; a best bet to write, its document left for the administrator to choose unless a
  reformulation of it names one.

Left out: what the vocabulary already has (a pair one synonym set joins, a question a best bet answers), what was
dismissed, and what has fewer than `min_pairs` reformulations. Each suggestion has a stable id (`sg-` and a hash of
what it suggests), so a dismissal holds for the same suggestion however often it comes back.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any, Literal

from retrieval.synonyms import Synonyms

from ..errors import KbError
from .bestbets import BestBets
from .events import SearchEvent, normalize_query

WINDOW_S = 300.0  # "within a few minutes"
MAX_WORDS = 4  # a synonym is a term, not a rewritten question
MAX_CHARS = 40
EXAMPLES = 3

_RUN = re.compile(r"[0-9a-z]+|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


@dataclass(frozen=True)
class Suggestion:
    """A synonym pair (`terms` the two terms) or a best bet (`terms` the question, `doc_id` the document liked after
    it, None when none is known), `count` times seen (reformulations, or no-answer searches) by `people` askers."""

    suggestion_id: str
    kind: Literal["synonyms", "best_bet"]
    terms: tuple[str, ...]
    count: int
    people: int
    reason: Literal["reformulated", "no answer"]
    doc_id: str | None = None
    examples: tuple[tuple[str, str], ...] = ()  # (first question, the one that worked), at most EXAMPLES

    def to_dict(self) -> dict[str, Any]:
        return {"suggestion_id": self.suggestion_id, "kind": self.kind, "terms": list(self.terms),
                "doc_id": self.doc_id, "count": self.count, "people": self.people, "reason": self.reason,
                "examples": [list(e) for e in self.examples]}


def suggestion_id(kind: str, terms: Sequence[str], doc_id: str | None = None) -> str:
    """The stable id of a suggestion: the same pair (in any order) or question and document, the same id."""
    parts = sorted(terms) if kind == "synonyms" else list(terms)
    text = "\x1f".join([kind, *parts, doc_id or ""])
    return "sg-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def words(text: str) -> list[tuple[str, int, int]]:
    """(word, start, end) of normalised `text`: Latin words and numbers whole, Chinese runs cut by jieba."""
    import jieba  # the lexical leg's segmenter (retrieval.analyzer), here for surface words: no stemming

    out: list[tuple[str, int, int]] = []
    for m in _RUN.finditer(text):
        if m.group(0)[0].isascii():
            out.append((m.group(0), m.start(), m.end()))
            continue
        at = m.start()
        for w in jieba.lcut(m.group(0)):
            out.append((w, at, at + len(w)))
            at += len(w)
    return out


def differing(first: str, second: str) -> tuple[str, str] | None:
    """The one run of words in which two normalised questions differ, as (its text in `first`, in `second`);
    None when they differ in more than one place, one only adds or drops words, or a run is longer than a term."""
    a, b = words(first), words(second)
    ops = [op for op in SequenceMatcher(None, [w for w, _, _ in a], [w for w, _, _ in b], autojunk=False)
           .get_opcodes() if op[0] != "equal"]
    if len(ops) != 1 or ops[0][0] != "replace":
        return None
    _, i1, i2, j1, j2 = ops[0]
    if i2 - i1 > MAX_WORDS or j2 - j1 > MAX_WORDS:
        return None
    left, right = first[a[i1][1]:a[i2 - 1][2]], second[b[j1][1]:b[j2 - 1][2]]
    if len(left) > MAX_CHARS or len(right) > MAX_CHARS:
        return None
    return left, right


def failed(e: SearchEvent) -> bool:
    return not e.liked and (not e.answered or e.disliked)


def reformulations(history: Iterable[SearchEvent], window_s: float = WINDOW_S) -> list[tuple[SearchEvent,
                                                                                             SearchEvent]]:
    """(failed search, the first later search of the same person within `window_s` that they liked), for every
    failed search that has one in other words."""
    mine: dict[str, list[SearchEvent]] = {}
    for e in history:
        mine.setdefault(e.who, []).append(e)
    pairs = []
    for events in mine.values():
        events.sort(key=lambda e: e.at)
        for i, first in enumerate(events):
            if not failed(first):
                continue
            for later in events[i + 1:]:
                if later.at - first.at > window_s:
                    break
                if later.liked:
                    if later.normalized != first.normalized:
                        pairs.append((first, later))
                    break
    return pairs


@dataclass
class _Tally:
    count: int = 0
    people: set[str] = field(default_factory=set)
    examples: list[tuple[str, str]] = field(default_factory=list)
    wording: str = ""  # the latest wording of the question (best bets)

    def add(self, who: str, example: tuple[str, str] | None = None, wording: str = "") -> None:
        self.count += 1
        self.people.add(who)
        if example is not None and example not in self.examples and len(self.examples) < EXAMPLES:
            self.examples.append(example)
        self.wording = wording or self.wording


def _joined(synonyms: Synonyms, a: str, b: str) -> bool:
    """Whether a synonym set already joins the two terms (either way round)."""
    def norm(terms: Iterable[str]) -> set[str]:
        return {normalize_query(t) for t in terms}

    return b in norm(synonyms.expand(a)) or a in norm(synonyms.expand(b))


def suggest(history: Sequence[SearchEvent], synonyms: Synonyms, bets: BestBets, dismissed: Collection[str] = (),
            window_s: float = WINDOW_S, min_pairs: int = 2, min_no_answer: int = 3) -> list[Suggestion]:
    """The suggestions the log supports (see the module docstring), most evidence first."""
    if window_s <= 0 or min_pairs < 1 or min_no_answer < 1:
        raise KbError("validation", f"window_s must be > 0 and min_pairs, min_no_answer >= 1; got {window_s}, "
                                    f"{min_pairs}, {min_no_answer}")
    pairs: dict[tuple[str, str], _Tally] = {}
    pins: dict[tuple[str, str], _Tally] = {}
    for first, later in reformulations(history, window_s):
        example = (first.query, later.query)
        diff = differing(first.normalized, later.normalized)
        if diff is not None:
            pairs.setdefault(diff, _Tally()).add(first.who, example)
        pins.setdefault((first.normalized, later.liked[0]), _Tally()).add(first.who, example, first.query)
    gaps: dict[str, _Tally] = {}
    for e in history:
        if not e.answered:
            gaps.setdefault(e.normalized, _Tally()).add(e.who, None, e.query)

    out: list[Suggestion] = []
    merged: dict[frozenset[str], tuple[tuple[str, str], _Tally]] = {}
    for (a, b), t in pairs.items():  # a→b and b→a are one pair
        key = frozenset((a, b))
        if key in merged:
            t0 = merged[key][1]
            t0.count += t.count
            t0.people |= t.people
            t0.examples = (t0.examples + t.examples)[:EXAMPLES]
        else:
            merged[key] = ((a, b), t)
    for (a, b), t in merged.values():
        if t.count >= min_pairs and not _joined(synonyms, a, b):
            out.append(Suggestion(suggestion_id("synonyms", (a, b)), "synonyms", (a, b), t.count, len(t.people),
                                  "reformulated", examples=tuple(t.examples)))
    asked: set[str] = set()
    for (question, doc_id), t in pins.items():
        if t.count >= min_pairs and not bets.for_query(t.wording, synonyms.expand(t.wording)):
            out.append(Suggestion(suggestion_id("best_bet", (question,), doc_id), "best_bet", (t.wording,), t.count,
                                  len(t.people), "reformulated", doc_id, tuple(t.examples)))
            asked.add(question)
    for question, t in gaps.items():
        if t.count >= min_no_answer and question not in asked and \
                not bets.for_query(t.wording, synonyms.expand(t.wording)):
            out.append(Suggestion(suggestion_id("best_bet", (question,)), "best_bet", (t.wording,), t.count,
                                  len(t.people), "no answer"))
    kept = [s for s in out if s.suggestion_id not in set(dismissed)]
    return sorted(kept, key=lambda s: (-s.count, s.kind, s.terms))


def find(suggestions: Iterable[Suggestion], suggestion_id: str) -> Suggestion:
    """The suggestion `suggestion_id`; KbError not_found (it may have been accepted, dismissed or aged out)."""
    for s in suggestions:
        if s.suggestion_id == suggestion_id:
            return s
    raise KbError("not_found", f"no suggestion {suggestion_id!r} now: it was accepted or dismissed, or its searches "
                               "are older than the days looked at; `kb analytics --suggestions` lists them")
