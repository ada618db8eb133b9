"""POST /feedback (a judgment on a search's result) and GET /analytics (admins: what people ask, what goes
unanswered, thumbs per document), over the events store (`app.services.events`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from .deps import AdminDep, CallerDep, StateDep
from .errors import error_responses
from .schemas import FeedbackRequest

router = APIRouter(responses=error_responses(400, 401, 403, 404, 413, 422, 503))


@router.post("/feedback", status_code=201, summary="Judge a result of a search: useful or not (or none answers)")
def feedback(body: FeedbackRequest, st: StateDep, who: CallerDep) -> dict:
    events = st.events
    feedback_id = events.record_feedback(who, body.query_id, body.chunk_id, body.useful, body.comment)
    judged = "none" if body.chunk_id is None else str(body.useful).lower()
    st.metrics.feedback.labels(judged).inc()
    st.metrics.feedback_by_model.labels(events.scored_by(body.query_id) or "none", judged).inc()
    return {"id": feedback_id, "query_id": body.query_id, "chunk_id": body.chunk_id, "useful": body.useful}


@router.get("/analytics", summary="Searches, latency, no-answer queries, top queries, feedback (admins)")
def analytics(st: StateDep, who: AdminDep,
              days: Annotated[int, Query(ge=1, le=3650, description="the last this many days")] = 30) -> dict:
    report = st.events.analytics(days)
    index = st.require_ready().index
    for d in report["per_document"]:  # name the documents the index still holds
        rec = index.documents.get(d["doc_id"]) if index is not None else None
        d["title"], d["source"] = (rec.title, rec.source) if rec is not None else ("", "")
    return report
