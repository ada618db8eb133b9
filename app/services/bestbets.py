"""Best bets: a document or passage an administrator pins to questions, shown above the normal results with a
label ("recommended by HR"), like SharePoint's promoted results or Elasticsearch's pinned queries.

A bet names its target (`doc_id`, and `chunk_id` for one passage of it), the `phrases` it answers and how a question
must name them (`match`):
- `exact`: the question is one of the phrases (compared as `events.normalize_query` folds them: case, width,
  punctuation and spaces do not count);
- `contains`: the question contains a phrase (a Latin word whole: "leave" does not match "leaves");
- `synonyms`: the question, or one of the synonyms it is also searched with (`Synonyms.expand`), contains a phrase,
  so a bet on 年假 also answers "annual leave" when the synonyms join them.

All bets are one entry, "best_bets", of the shared control state (`app.services.control`), a JSON document written
whole by compare-and-set, so every process on every machine reads the same bets. `BestBetsStore` reads and changes
it; `BestBetsSource` is what a serving process holds: it rereads the entry when its version changed, asking the
database at most once every `reload_s` seconds. Who may see a bet's target is decided per search
(`app.services.pinning`), never here.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ..errors import KbError
from .control import ControlStore
from .events import normalize_query

log = logging.getLogger(__name__)

KEY = "best_bets"
Match = Literal["exact", "contains", "synonyms"]
MATCHES: tuple[str, ...] = get_args(Match)
LABEL_DEFAULT = "recommended"
LABEL_MAX = 80
PHRASE_MAX = 200
PHRASES_MAX = 50
BETS_MAX = 1000  # the whole list is read at every change: a bound keeps that small
WRITE_TRIES = 3  # a change redone on top of another process's write (add and remove commute)


def _contains(text: str, phrase: str) -> bool:
    """Whether normalised `text` holds normalised `phrase`; a Latin letter or digit next to it on either side means
    it is part of a longer word (Chinese has no spaces, so no such rule applies between Chinese characters)."""
    return re.search(rf"(?<![0-9a-z]){re.escape(phrase)}(?![0-9a-z])", text) is not None


@dataclass(frozen=True)
class BestBet:
    """One pinned target and the questions it answers (see the module docstring)."""

    bet_id: str
    phrases: tuple[str, ...]
    match: Match
    doc_id: str
    chunk_id: str | None  # None: the document (its first passage is shown)
    label: str
    added_by: str = ""
    added_at: float = 0.0

    def matches(self, query: str, also: Sequence[str] = ()) -> bool:
        """Whether a question (`query`, searched with the synonyms `also`) calls for this bet."""
        q = normalize_query(query)
        wanted = [p for p in (normalize_query(p) for p in self.phrases) if p]
        if self.match == "exact":
            return q in wanted
        texts = [q] + ([normalize_query(t) for t in also] if self.match == "synonyms" else [])
        return any(_contains(t, p) for t in texts for p in wanted)

    def to_dict(self) -> dict[str, Any]:
        return {"bet_id": self.bet_id, "phrases": list(self.phrases), "match": self.match, "doc_id": self.doc_id,
                "chunk_id": self.chunk_id, "label": self.label, "added_by": self.added_by,
                "added_at": self.added_at}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BestBet:
        return cls(str(d["bet_id"]), tuple(str(p) for p in d["phrases"]), d["match"], str(d["doc_id"]),
                   None if d.get("chunk_id") is None else str(d["chunk_id"]), str(d.get("label") or LABEL_DEFAULT),
                   str(d.get("added_by") or ""), float(d.get("added_at") or 0.0))


def new_bet(phrases: Sequence[str], match: str, label: str, doc_id: str | None = None,
            chunk_id: str | None = None, by: str = "") -> BestBet:
    """A checked bet on `doc_id` or one passage `chunk_id` (whose document `target` finds: see `BestBetsStore.add`).
    KbError validation naming the field and the fix for anything a reader could not use."""
    if match not in MATCHES:
        raise KbError("validation", f"match must be one of {', '.join(MATCHES)}; got {match!r}")
    if isinstance(phrases, str) or not isinstance(phrases, Sequence):
        raise KbError("validation", "phrases must be a list of questions or words, e.g. [\"年假\", \"annual leave\"]")
    if not all(isinstance(p, str) for p in phrases):
        raise KbError("validation", "phrases must be texts: the questions (exact) or words (contains, synonyms) "
                                    "the bet answers")
    kept = list(dict.fromkeys(p.strip() for p in phrases if p.strip()))  # blanks dropped, repeats said once
    if not kept:
        raise KbError("validation", "phrases: give at least one question (exact) or word (contains, synonyms)")
    if len(kept) > PHRASES_MAX:
        raise KbError("validation", f"phrases: at most {PHRASES_MAX} per bet; got {len(kept)}: add another bet")
    for p in kept:
        if len(p) > PHRASE_MAX or not normalize_query(p):
            raise KbError("validation", f"phrases: {p[:40]!r} must have 1 to {PHRASE_MAX} characters and at least "
                                        "one letter or digit")
    label = (label or "").strip() or LABEL_DEFAULT
    if len(label) > LABEL_MAX:
        raise KbError("validation", f"label must have at most {LABEL_MAX} characters (e.g. 'recommended by HR'); "
                                    f"got {len(label)}")
    if not doc_id and not chunk_id:
        raise KbError("validation", "give doc_id (a document) or chunk_id (one passage of it) to pin")
    return BestBet(f"bb-{uuid.uuid4().hex[:10]}", tuple(kept), match, doc_id or "", chunk_id or None, label,  # type: ignore[arg-type]
                   by[:256], time.time())


@dataclass(frozen=True)
class BestBets:
    """The bets of one version of the stored entry (None: never written), in the order they were added."""

    bets: tuple[BestBet, ...] = ()
    version: int | None = None

    def for_query(self, query: str, also: Sequence[str] = ()) -> list[BestBet]:
        """The bets this question calls for, oldest first."""
        return [b for b in self.bets if b.matches(query, also)]

    def get(self, bet_id: str) -> BestBet | None:
        return next((b for b in self.bets if b.bet_id == bet_id), None)


def parse(body: str, version: int | None) -> BestBets:
    """The stored JSON; a bet that cannot be read is skipped and logged (the others still serve)."""
    data = json.loads(body) if body.strip() else {}
    bets = []
    for item in data.get("bets", []):
        try:
            bets.append(BestBet.from_dict(item))
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("best bet %r skipped: %s", item, exc)
    return BestBets(tuple(b for b in bets if b.match in MATCHES), version)


def _body(bets: Sequence[BestBet]) -> str:
    return json.dumps({"bets": [b.to_dict() for b in bets]}, ensure_ascii=False, indent=1)


class BestBetsStore:
    """The "best_bets" entry of `control` (see the module docstring)."""

    def __init__(self, control: ControlStore):
        self.control = control

    @property
    def where(self) -> str:
        return self.control.where

    def version(self) -> int | None:
        return self.control.version(KEY)

    def load(self) -> BestBets:
        """The stored bets (none before the first is added)."""
        entry = self.control.read(KEY)
        return BestBets() if entry is None else parse(entry.body, entry.version)

    def add(self, bet: BestBet, by: str) -> BestBets:
        """Store `bet` (its target checked by the caller: `pinning.target`); KbError conflict when a bet with the
        same target, match and phrases exists, or when the store keeps changing under this write."""
        def change(now: BestBets) -> list[BestBet]:
            for b in now.bets:
                if (b.doc_id, b.chunk_id, b.match, set(b.phrases)) == (bet.doc_id, bet.chunk_id, bet.match,
                                                                      set(bet.phrases)):
                    raise KbError("conflict", f"best bet {b.bet_id} already pins this target to these phrases; "
                                              f"remove it first to change its label")
            if len(now.bets) >= BETS_MAX:
                raise KbError("validation", f"at most {BETS_MAX} best bets can be stored; remove some first")
            return [*now.bets, bet]

        return self._write(change, by)

    def remove(self, bet_id: str, by: str) -> BestBet:
        """Delete the bet `bet_id`; returns it. KbError not_found when there is none."""
        removed: list[BestBet] = []

        def change(now: BestBets) -> list[BestBet]:
            found = now.get(bet_id)
            if found is None:
                raise KbError("not_found", f"no best bet {bet_id!r}; `kb bestbets list` shows their ids")
            removed[:] = [found]
            return [b for b in now.bets if b.bet_id != bet_id]

        self._write(change, by)
        return removed[0]

    def _write(self, change, by: str) -> BestBets:
        """Apply `change` (current bets → new list) by compare-and-set; redone on top of a write that came first,
        a few times at most (adds and removals of different bets do not depend on each other)."""
        for attempt in range(WRITE_TRIES):
            now = self.load()
            body = _body(change(now))
            try:
                entry = self.control.write(KEY, body, by, expect=now.version)
            except KbError as exc:
                if exc.kind != "conflict" or attempt == WRITE_TRIES - 1:
                    raise
                continue
            return parse(entry.body, entry.version)
        raise AssertionError("unreachable")


@dataclass
class BestBetsSource:
    """What a serving process holds: the bets as last read, read again when the stored version changed, asking
    the database at most once every `reload_s` seconds (0: at every call). A database that cannot be read keeps
    the bets last read (logged once per outage), so a search never fails for want of its best bets."""

    store: BestBetsStore
    reload_s: float = 5.0
    _bets: BestBets = field(default_factory=BestBets)
    _checked: float = float("-inf")
    _error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self) -> None:
        """Ask the database at the next `current()` (this process has just changed the bets)."""
        self._checked = float("-inf")

    def current(self) -> BestBets:
        now = time.monotonic()
        if now - self._checked < self.reload_s or not self._lock.acquire(blocking=False):
            return self._bets  # checked lately, or another thread is checking now
        try:
            self._checked = now
            version = self.store.version()
            if version != self._bets.version:
                self._bets = self.store.load()
            if self._error is not None:
                log.warning("the best bets can be read again")
                self._error = None
        except KbError as exc:
            if exc.message != self._error:
                log.warning("%s; the best bets read before stay in use", exc.message)
            self._error = exc.message
        finally:
            self._lock.release()
        return self._bets
