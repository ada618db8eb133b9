"""POST /ingest (multipart upload), GET /documents, DELETE /documents/{doc_id}.

Uploads go through the same pipeline and limits as `kb ingest`; the search index is reloaded afterwards, and the
query cache is keyed by index version, so the next search sees the change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from ingest import IngestError
from ingest.load import normalise_acl
from retrieval.index import IndexMismatch
from retrieval.storage import IndexLocked

from ..uploads import delete_documents, ingest_uploads, safe_name
from .auth import Caller
from .errors import ApiError, error_responses
from .schemas import DocumentInfo
from .state import ApiState, caller, state_of

router = APIRouter(responses=error_responses(400, 401, 403, 404, 409, 413, 422, 503))
CallerDep = Annotated[Caller, Depends(caller)]


def _groups_field(groups: str | None) -> list[str]:
    if groups is None or not groups.strip():
        return []
    try:
        return normalise_acl([g.strip() for g in groups.split(",") if g.strip()], "groups")
    except IngestError as exc:
        raise ApiError(422, f"groups: {exc.reason}", "validation_error") from exc


def _reload(st: ApiState) -> None:
    st.service.reload_index()
    st.metrics.index_chunks.set(len(st.service.index.chunks))


@router.post("/ingest", summary="Upload files (HTML, PDF, DOCX, Markdown, TXT) into the index")
def ingest(request: Request, who: CallerDep,
           files: Annotated[list[UploadFile], File(description="one or more documents")],
           groups: Annotated[str | None, Form(description="comma-separated access groups; empty: public")] = None,
           ) -> dict:
    st = state_of(request)
    service = st.require_ready()
    who.require_admin("uploading documents")
    acl = _groups_field(groups)
    named = []
    for up in files:
        try:
            named.append((safe_name(up.filename), up.file.read()))
        except ValueError as exc:
            raise ApiError(400, f"upload {exc}", "bad_request") from exc
    with st.ingest_lock:
        known = {r.source for r in service.index.documents.values()}
        try:
            report = ingest_uploads(named, acl, st.settings, service.index_dir, service.embedder, known)
        except IndexLocked as exc:
            raise ApiError(409, str(exc), "conflict", headers={"Retry-After": "5"}) from exc
        except IndexMismatch as exc:
            raise ApiError(409, str(exc), "conflict") from exc
        if report.changed:
            _reload(st)
    out = report.to_dict()
    out["skipped"] = [{"file": Path(f).name, "reason": r} for f, r in report.skipped]
    out["added"] = [Path(x).name for x in report.added]
    out["updated"] = [Path(x).name for x in report.updated]
    if not report.added and not report.updated and not report.unchanged:
        raise ApiError(422, "nothing ingested: " + "; ".join(f"{x['file']}: {x['reason']}" for x in out["skipped"]),
                       "unprocessable")
    return out


@router.get("/documents", response_model=list[DocumentInfo], summary="Documents in the index (those you may see)")
def documents(request: Request, who: CallerDep) -> list[DocumentInfo]:
    from retrieval.vector_store import allowed_by_groups

    index = state_of(request).require_ready().index
    visible = [r for r in index.documents.values()
               if who.groups is None or allowed_by_groups(r.acl, who.groups)]
    return [DocumentInfo(doc_id=r.doc_id, source=r.source, title=r.title, format=r.format, chunks=r.n_chunks,
                         acl=r.acl, ingested_at=r.ingested_at) for r in sorted(visible, key=lambda r: r.source)]


@router.delete("/documents/{doc_id}", summary="Remove a document (and its uploaded file) from the index")
def delete_document(doc_id: str, request: Request, who: CallerDep) -> dict:
    st = state_of(request)
    service = st.require_ready()
    who.require_admin("deleting documents")
    if doc_id not in service.index.documents:
        raise ApiError(404, f"no document {doc_id!r} in the index; GET /documents lists them", "not_found")
    with st.ingest_lock:
        try:
            sources = delete_documents([doc_id], st.settings, service.index_dir, service.embedder)
        except IndexLocked as exc:
            raise ApiError(409, str(exc), "conflict", headers={"Retry-After": "5"}) from exc
        _reload(st)
    return {"deleted": doc_id, "sources": sources, "index_version": service.index.version}
