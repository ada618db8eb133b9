"""Which best bets one caller sees for one search, as passages (`pinned`), and what a new bet may pin (`target`).

A bet's target is shown only when, in the index version searched, its document is there, the caller's groups may
read it (the document's acl and the passage's, checked as recall checks every hit: `allowed_by_groups`) and it
meets the request's metadata filters (`index.matching_documents`, as recall restricts its candidates). A bet whose
target the caller may not read is as if it did not exist: nothing about it is returned. A document bet shows the
document's first passage.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from retrieval.filters import FilterError, Filters
from retrieval.stores.base import allowed_by_groups

from ..errors import KbError
from .bestbets import BestBets
from .results import Pinned

if TYPE_CHECKING:  # the ingest package loads every format's reader: a search process needs only the type
    from ingest.types import Chunk

MAX_SHOWN = 3  # more pinned passages than this would push the normal results off the first screen

_first: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()  # index → doc → chunk_id
_first_lock = threading.Lock()


def first_passage(index: Any, doc_id: str) -> Chunk | None:
    """The first passage of `doc_id` in this index version (None: no such document, or it has no text); found
    once per version and document."""
    with _first_lock:
        known = _first.setdefault(index, {}).get(doc_id)
    if known is not None:
        found = index.fetch([known]).get(known)
        if found is not None:
            return found
    chunks = index.document_chunks(doc_id)
    if not chunks:
        return None
    first = min(chunks, key=lambda c: (c.meta.get("position", 0), c.chunk_id))
    with _first_lock:
        _first.setdefault(index, {})[doc_id] = first.chunk_id
    return first


def target(index: Any, doc_id: str | None, chunk_id: str | None) -> tuple[str, str | None]:
    """(doc_id, chunk_id) of a bet to add, checked against the index served: the passage `chunk_id` (its document
    is taken from it; a `doc_id` given too must be that one) or the document `doc_id`. KbError not_found naming the
    id and where to find one; not_ready when there is no index."""
    if index is None:
        raise KbError("not_ready", "no index yet: ingest documents before pinning one")
    if chunk_id:
        chunk = index.fetch([chunk_id]).get(chunk_id)
        if chunk is None:
            raise KbError("not_found", f"chunk_id {chunk_id!r} is not in the index; take one from `kb search --json` "
                                       "(results[].chunk_id), or pin the whole document with doc_id")
        if doc_id and doc_id != chunk.doc_id:
            raise KbError("validation", f"chunk_id {chunk_id!r} belongs to document {chunk.doc_id!r}, not "
                                        f"{doc_id!r}: give one of them, or both matching")
        return chunk.doc_id, chunk_id
    if not doc_id:
        raise KbError("validation", "give doc_id (a document) or chunk_id (one passage of it) to pin")
    if doc_id not in index.documents:
        raise KbError("not_found", f"doc_id {doc_id!r} is not in the index; `kb search --json` (results[].doc_id) "
                                   "or GET /documents lists them")
    return doc_id, None


def pinned(bets: BestBets, query: str, also: Sequence[str], index: Any, groups: Sequence[str] | None,
           filters: Filters | None) -> list[Pinned]:
    """The passages of the bets `query` (searched with the synonyms `also`) calls for that a caller of `groups`
    (None: every document) may read and that meet `filters`; at most MAX_SHOWN, one per passage, oldest bet
    first."""
    wanted = bets.for_query(query, also)
    if not wanted or index is None:
        return []
    try:
        allowed = index.matching_documents(filters, groups) if filters else None
    except FilterError:  # recall has refused these filters already; no pinned passage either
        return []
    out: list[Pinned] = []
    for bet in wanted:
        rec = index.documents.get(bet.doc_id)
        if rec is None or not allowed_by_groups(rec.acl, groups) or (allowed is not None and bet.doc_id not in allowed):
            continue
        chunk = index.fetch([bet.chunk_id]).get(bet.chunk_id) if bet.chunk_id else first_passage(index, bet.doc_id)
        if chunk is None or chunk.doc_id != bet.doc_id or not allowed_by_groups(chunk.meta.get("acl", ()), groups):
            continue
        if any(p.chunk.chunk_id == chunk.chunk_id for p in out):
            continue
        out.append(Pinned(bet.bet_id, bet.label, bet.match, chunk))
        if len(out) == MAX_SHOWN:
            break
    return out
