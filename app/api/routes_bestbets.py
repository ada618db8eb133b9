"""GET /bestbets, POST /bestbets, DELETE /bestbets/{bet_id} (admins): the passages and documents pinned above the
results of some questions (`app.services.bestbets`), the same ones the Vocabulary page and `kb bestbets` manage.
Every change is written to the audit log, every refusal too (`deps.AdminDep`). POST /search shows a bet, as
`best_bets`, only to callers who may read its document."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from ..components import best_bets_store
from ..services.bestbets import LABEL_DEFAULT, LABEL_MAX, PHRASES_MAX, new_bet
from ..services.pinning import target
from .deps import AdminDep, StateDep
from .errors import error_responses
from .schemas import Text

router = APIRouter(responses=error_responses(400, 401, 403, 404, 409, 413, 422, 503))


class BestBetBody(BaseModel):
    """A document (`doc_id`) or one passage of it (`chunk_id`) to pin to `phrases`."""

    model_config = ConfigDict(extra="forbid")

    phrases: list[Text] = Field(..., min_length=1, max_length=PHRASES_MAX,
                                description="the questions (exact) or words (contains, synonyms) it answers")
    match: Literal["exact", "contains", "synonyms"] = Field(
        "contains", description="exact: the whole question; contains: a phrase in it; synonyms: a phrase in it or "
        "in the synonyms it is also searched with")
    doc_id: Text | None = Field(None, max_length=512, description="the document (its first passage is shown)")
    chunk_id: Text | None = Field(None, max_length=512, description="one passage (a chunk_id POST /search returned)")
    label: Text = Field(LABEL_DEFAULT, max_length=LABEL_MAX, description="what the result says, e.g. 'recommended "
                        "by HR'")


def _described(bet, index) -> dict:
    rec = index.documents.get(bet.doc_id) if index is not None else None
    return {**bet.to_dict(), "title": rec.title if rec else "", "source": rec.source if rec else "",
            "in_index": rec is not None}


@router.get("/bestbets", summary="Every best bet, with its document and whether the index holds it (admins)")
def list_bets(st: StateDep, who: AdminDep) -> dict:
    bets = best_bets_store(st.settings).load()
    index = st.require_ready().index
    return {"version": bets.version, "best_bets": [_described(b, index) for b in bets.bets]}


@router.post("/bestbets", status_code=201, summary="Pin a document or passage to questions (admins)")
def add_bet(body: BestBetBody, st: StateDep, who: AdminDep) -> dict:
    doc_id, chunk_id = target(st.require_ready().index, body.doc_id, body.chunk_id)
    bet = new_bet(body.phrases, body.match, body.label, doc_id, chunk_id, who.who)
    best_bets_store(st.settings).add(bet, who.who)
    st.audit.record(who, "add best bet", bet_id=bet.bet_id, doc_id=doc_id, chunk_id=chunk_id, match=bet.match,
                    phrases=list(bet.phrases), label=bet.label)
    return bet.to_dict()


@router.delete("/bestbets/{bet_id}", summary="Remove a best bet (admins)")
def remove_bet(bet_id: str, st: StateDep, who: AdminDep) -> dict:
    bet = best_bets_store(st.settings).remove(bet_id, who.who)
    st.audit.record(who, "remove best bet", bet_id=bet.bet_id, doc_id=bet.doc_id, chunk_id=bet.chunk_id,
                    phrases=list(bet.phrases))
    return {"removed": bet.to_dict()}
