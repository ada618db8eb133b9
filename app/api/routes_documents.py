"""POST /ingest (multipart upload), GET /documents, GET /filters, DELETE /documents/{doc_id}.

Uploads go through the same pipeline and limits as `kb ingest` (`app.services.library`); the API then serves the
new index version, and the query cache is keyed by index version, so the next search sees the change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from ingest import IngestError
from ingest.load import normalise_acl
from retrieval.filters import known_keys, value_choices
from retrieval.storage import IndexLocked

from ..errors import KbError
from ..services.library import safe_name
from .deps import AdminDep, CallerDep, ServiceDep, StateDep
from .errors import error_responses
from .schemas import DocumentInfo, FilterChoices

router = APIRouter(responses=error_responses(400, 401, 403, 404, 409, 413, 422, 503))
_BUSY = {"Retry-After": "5"}


def _groups_field(groups: str | None) -> list[str]:
    if groups is None or not groups.strip():
        return []
    try:
        return normalise_acl([g.strip() for g in groups.split(",") if g.strip()], "groups")
    except IngestError as exc:
        raise KbError("validation", f"groups: {exc.reason}") from exc


@router.post("/ingest", summary="Upload files (HTML, PDF, DOCX, XLSX, PPTX, CSV, Markdown, TXT, images) into the "
             "index")
def ingest(st: StateDep, who: AdminDep, service: ServiceDep,
           files: Annotated[list[UploadFile], File(description="one or more documents")],
           groups: Annotated[str | None, Form(description="comma-separated access groups; empty: public")] = None,
           ) -> dict:
    acl = _groups_field(groups)
    named = []
    for up in files:
        try:
            named.append((safe_name(up.filename), up.file.read()))
        except ValueError as exc:
            raise KbError("bad_request", f"upload {exc}") from exc
    with st.ingest_lock:
        try:
            report = st.library().ingest_uploads(named, acl)
        except IndexLocked as exc:
            raise KbError("conflict", str(exc), headers=_BUSY) from exc
        if report.changed:
            st.reload_index()
    st.audit.record(who, "upload", files=[n for n, _ in named], groups_given=acl,
                    added=[Path(x).name for x in report.added], updated=[Path(x).name for x in report.updated],
                    skipped=len(report.skipped))
    out = report.to_dict()
    out["skipped"] = [{"file": Path(f).name, "reason": r} for f, r in report.skipped]
    out["pages_not_read"] = [{"file": Path(f).name, "page": p, "reason": r} for f, p, r in report.pages_not_read]
    out["added"] = [Path(x).name for x in report.added]
    out["updated"] = [Path(x).name for x in report.updated]
    if not report.added and not report.updated and not report.unchanged:
        raise KbError("unprocessable", "nothing ingested: " + "; ".join(f"{x['file']}: {x['reason']}"
                                                                        for x in out["skipped"]))
    return out


@router.get("/documents", response_model=list[DocumentInfo], summary="Documents in the index (those you may see)")
def documents(who: CallerDep, service: ServiceDep) -> list[DocumentInfo]:
    visible = [r for r in service.index.documents.values() if who.may_read(r.acl)]
    return [DocumentInfo(doc_id=r.doc_id, source=r.source, title=r.title, format=r.format, chunks=r.n_chunks,
                         acl=r.acl, ingested_at=r.ingested_at, fields=r.fields, updated=r.updated)
            for r in sorted(visible, key=lambda r: r.source)]


@router.get("/filters", response_model=FilterChoices,
            summary="The metadata filters POST /search accepts, with the values present (in documents you may see)")
def filters(who: CallerDep, service: ServiceDep) -> FilterChoices:
    visible = service.index.visible_documents(None if who.groups is None else list(who.groups)).values()
    return FilterChoices(keys=known_keys(visible), values=value_choices(visible))


@router.delete("/documents/{doc_id}", summary="Remove a document (and its uploaded file) from the index")
def delete_document(doc_id: str, st: StateDep, who: AdminDep, service: ServiceDep) -> dict:
    if doc_id not in service.index.documents:
        raise KbError("not_found", f"no document {doc_id!r} in the index; GET /documents lists them")
    with st.ingest_lock:
        try:
            sources = st.library().delete([doc_id])
        except IndexLocked as exc:
            raise KbError("conflict", str(exc), headers=_BUSY) from exc
        service = st.reload_index()
    st.audit.record(who, "delete", doc_ids=[doc_id], sources=sources)
    return {"deleted": doc_id, "sources": sources, "index_version": service.index.version}
