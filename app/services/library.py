"""The library: keep an index in line with files (`kb ingest`, the API's POST /ingest, the app's Library page).

`sync` makes the index match the given files and folders. New files are added, changed files (content or
sidecar) re-chunked and re-embedded, files gone from the given folders deleted (unless `delete=False`),
unchanged files cost one read and one hash. Broken files are skipped with a reason and keep whatever version the
index already had. Nothing is published unless something changed, and what is published is a complete new
version (see `retrieval.storage`).

Uploads are kept under `Library.upload_dir` in one sub-folder per set of access groups (`upload_key`: `public`,
`groups-finance+hr`, …) under their cleaned file name, with a `.meta.json` sidecar carrying those groups: the
same name uploaded for other groups is another document, never a replacement of this one or of its groups. A
re-upload of the same bytes is a no-op and a changed file an update; a re-upload that cannot be read leaves the
kept copy and its indexed version as they were. Nothing a client sends can escape the folder: directory parts of
a name are dropped whichever separator they use, and hidden names, sidecar names and names with control
characters are refused (ValueError naming the file and the fix). Uploads are private to the server's user
(folders 0700, files 0600): they hold document text.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from ingest import Chunk, Document, IngestError, OcrOptions, chunk, discover, fingerprint, load
from ingest.chunker import MIN_SECTION_TOKENS
from ingest.files import atomic_write, open_private, private_dir
from ingest.identity import doc_id_for, source_of
from ingest.load import SIDECAR_SUFFIX, sidecar_path
from ingest.loaders import LOADERS
from retrieval.embedder import Embedder
from retrieval.index import IndexOpener, KnowledgeIndex

from ..identity import Caller

EXIT_OK = 0
EXIT_SKIPPED = 3  # some files were skipped; everything else was ingested

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class IngestOptions:
    """How files become chunks: the token budget per chunk (capped by the embedder's window), the overlap, the
    largest file read, how scans and images are read (OCR), and the size under which a section joins a neighbour."""

    max_tokens: int = 512
    overlap: int = 32
    max_bytes: int = 20 * 2**20
    ocr: OcrOptions = field(default_factory=OcrOptions)
    min_tokens: int = MIN_SECTION_TOKENS


@dataclass
class IngestReport:
    files_seen: int = 0
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    deleted: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    # (file, page, reason): scanned pages OCR could not read; the rest of the file is indexed
    pages_not_read: list[tuple[str, int, str]] = field(default_factory=list)
    chunks_written: int = 0
    total_documents: int = 0
    total_chunks: int = 0
    index_version: str = ""
    seconds: float = 0.0
    reanalyzed: bool = False  # BM25 was made again from the stored text for a changed user dictionary

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.deleted)

    @property
    def exit_code(self) -> int:
        return EXIT_SKIPPED if self.skipped else EXIT_OK

    def to_dict(self) -> dict:
        return {**self.__dict__, "skipped": [{"file": f, "reason": r} for f, r in self.skipped],
                "pages_not_read": [{"file": f, "page": p, "reason": r} for f, p, r in self.pages_not_read],
                "exit_code": self.exit_code}


def chunker_settings(embedder: Embedder, max_tokens: int, overlap: int, min_tokens: int = MIN_SECTION_TOKENS) -> dict:
    """What the chunks were made with (kept in the manifest: a change re-chunks every document). Chunks must fit the
    embedder's window: the budget is the smaller of the setting and its max_seq_length."""
    return {"max_tokens": min(max_tokens, embedder.max_seq_length), "overlap": overlap, "counter": embedder.name,
            "min_tokens": min_tokens}


def _under(source: str, roots: Sequence[Path]) -> bool:
    return any(source.startswith(root.as_posix().rstrip("/") + "/") for root in roots)



def _publish(index: KnowledgeIndex, report: IngestReport, rebuild: bool, tick) -> None:
    """Save a new version when anything changed (or there is none yet) and put the totals in the report."""
    if report.changed or rebuild or index.version == "" or report.reanalyzed:
        tick("save", 0, 1)
        index.save()
    report.total_documents, report.total_chunks = len(index.documents), len(index.chunks)
    report.index_version = index.version

def sync(paths: Sequence[str | Path], index_dir: Path, embedder: Embedder, options: IngestOptions | None = None,
         opener: IndexOpener | None = None, delete: bool = True, rebuild: bool = False,
         progress: Progress | None = None) -> IngestReport:
    """Bring the index at `index_dir` in line with `paths`, opened by `opener` (None: FAISS, the default analyzer;
    a changed user dictionary is applied to every stored chunk and published even when no file changed). Raises
    IndexLocked / IndexMismatch for the caller; `rebuild` starts over whatever the index was."""
    options = options if options is not None else IngestOptions()
    started = time.perf_counter()
    tick = progress or (lambda stage, done, total: None)
    report = IngestReport()
    found = discover(list(paths))
    report.skipped += [(str(p), "no such file or folder") for p in found.missing]
    report.skipped += [(str(p), f"unsupported file type '{p.suffix or p.name}'") for p in found.unsupported]
    report.skipped += [(str(p), why) for p, why in found.links]
    report.files_seen = len(found.files)
    chunker = chunker_settings(embedder, options.max_tokens, options.overlap, options.min_tokens)
    opener = opener if opener is not None else IndexOpener()
    with opener.writing(Path(index_dir)):
        if rebuild:  # not opened: a rebuild is how an index moves to another embedder or vector store
            index = opener.new(Path(index_dir), embedder.info(), chunker)
        else:
            index = opener.open(Path(index_dir), embedder.info(), chunker)
        report.reanalyzed = index.reanalyzed
        rechunk_all = index.chunker != chunker
        index.chunker = chunker
        by_source = {rec.source: rec for rec in index.documents.values()}

        pending = []  # (doc, chunks, is_new)
        for done, path in enumerate(found.files, start=1):
            tick("read", done, len(found.files))
            source = source_of(path)
            known = by_source.get(source)
            try:
                if known and not rechunk_all and known.content_hash == fingerprint(path):
                    report.unchanged += 1
                    continue
                doc = load(path, options.max_bytes, options.ocr)
                chunks = chunk(doc, embedder.count_tokens, chunker["max_tokens"], options.overlap, options.min_tokens)
            except IngestError as exc:
                report.skipped.append((exc.path, exc.reason))
                continue
            except (OSError, ValueError) as exc:
                report.skipped.append((source, str(exc)))
                continue
            report.pages_not_read += [(doc.source, int(p["page"]), str(p["reason"]))
                                      for p in doc.meta.get("ocr", {}).get("unreadable", [])]
            pending.append((doc, chunks, known is None))

        report.chunks_written = _embed_into(index, [(doc, chunks) for doc, chunks, _ in pending], embedder,
                                            progress is not None)
        for doc, _, is_new in pending:
            (report.added if is_new else report.updated).append(doc.source)

        if delete:
            present = {source_of(p) for p in found.files}
            given_files = {source_of(p) for p in map(Path, paths) if not p.is_dir()}
            gone = [rec for rec in index.documents.values()
                    if rec.source not in present and (_under(rec.source, found.roots) or rec.source in given_files)]
            index.delete_documents([rec.doc_id for rec in gone])
            report.deleted = [rec.source for rec in gone]

        _publish(index, report, rebuild, tick)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _embed_into(index: KnowledgeIndex, docs: Sequence[tuple[Document, Sequence[Chunk]]], embedder: Embedder,
                show_progress: bool) -> int:
    """Embed the chunks of `docs` in one batch and put the documents into `index` (replacing earlier versions);
    returns the number of chunks embedded."""
    texts = [c.context_text() for _, chunks in docs for c in chunks]
    if docs:
        vectors = embedder.embed_passages(texts, show_progress=show_progress and len(texts) > 64)
        index.replace_documents(docs, vectors)
    return len(texts)


def put_documents(docs: Sequence[Document], index_dir: Path, embedder: Embedder, delete: Collection[str] = (),
                  options: IngestOptions | None = None, opener: IndexOpener | None = None,
                  progress: Progress | None = None) -> IngestReport:
    """Add or update documents that do not come from files (crawled pages) and delete the documents whose
    source is in `delete`, with the same lock, chunking, embedding and atomic publish as `sync`.

    A document whose `content_hash` equals the indexed one is left as it is (counted unchanged). Nothing is
    published unless something changed. Raises IndexLocked / IndexMismatch for the caller.
    """
    options = options if options is not None else IngestOptions()
    started = time.perf_counter()
    tick = progress or (lambda stage, done, total: None)
    report = IngestReport(files_seen=len(docs))
    chunker = chunker_settings(embedder, options.max_tokens, options.overlap, options.min_tokens)
    opener = opener if opener is not None else IndexOpener()
    with opener.writing(Path(index_dir)):
        index = opener.open(Path(index_dir), embedder.info(), chunker)
        report.reanalyzed = index.reanalyzed
        rechunk_all = index.chunker != chunker
        index.chunker = chunker
        pending: list[tuple[Document, Sequence[Chunk]]] = []
        for done, doc in enumerate(docs, start=1):
            tick("chunk", done, len(docs))
            known = index.documents.get(doc.doc_id)
            if known and not rechunk_all and known.content_hash == doc.meta.get("content_hash"):
                report.unchanged += 1
                continue
            chunks = chunk(doc, embedder.count_tokens, chunker["max_tokens"], options.overlap, options.min_tokens)
            pending.append((doc, chunks))
            (report.updated if known else report.added).append(doc.source)
        report.chunks_written = _embed_into(index, pending, embedder, progress is not None)
        drop = set(delete)
        gone = sorted((rec for rec in index.documents.values() if rec.source in drop), key=lambda r: r.source)
        index.delete_documents([rec.doc_id for rec in gone])
        report.deleted = [rec.source for rec in gone]
        _publish(index, report, False, tick)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def remove_documents(index_dir: Path, embedder: Embedder, doc_ids: Sequence[str],
                     opener: IndexOpener | None = None) -> list[str]:
    """Delete documents by id and publish a new version; returns the sources removed (unknown ids are ignored)."""
    opener = opener if opener is not None else IndexOpener()
    with opener.writing(Path(index_dir)):
        index = opener.open(Path(index_dir), embedder.info(), {}, create=False)
        sources = [index.documents[d].source for d in doc_ids if d in index.documents]
        if index.delete_documents(list(doc_ids)):
            index.save()
    return sources


# ---- uploads --------------------------------------------------------------------------------------------------
def safe_name(name: str | None) -> str:
    """The file-name part of `name` (`../../x.md` → `x.md`, `C:\\a\\y.pdf` → `y.pdf`); ValueError when unusable."""
    base = unicodedata.normalize("NFC", PurePosixPath((name or "").replace("\\", "/")).name).strip()
    if not base or base in {".", ".."} or base.startswith("."):
        raise ValueError(f"file name {name!r} is not usable: give the file a plain name like policy.pdf")
    if any(unicodedata.category(ch).startswith("C") for ch in base) or len(base.encode()) > 255:
        raise ValueError(f"file name {name!r} has control characters or is over 255 bytes: rename the file")
    if base.endswith(SIDECAR_SUFFIX):
        raise ValueError(f"{base}: sidecar files are written by the server; choose access groups instead")
    return base


def supported(name: str) -> bool:
    return Path(name).suffix.lower() in LOADERS


def unsupported_reason(name: str) -> str:
    return f"unsupported file type '{Path(name).suffix or name}': send one of {', '.join(sorted(LOADERS))}"


PUBLIC = "public"  # the upload folder of files without access groups
_PLAIN_GROUP = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


def upload_key(groups: Sequence[str]) -> str:
    """The sub-folder of the uploads that holds files uploaded with exactly these access groups: `public` for
    none, `groups-finance+hr` for plain names (sorted, deduplicated), `hash-<16 hex>` for any other set. Files
    of the same name uploaded for different groups never share a folder, so one never replaces the other or its
    access groups."""
    names = sorted({g for g in groups})
    if not names:
        return PUBLIC
    plain = all(_PLAIN_GROUP.fullmatch(g) for g in names) and len("+".join(names)) <= 120
    if plain:
        return "groups-" + "+".join(names)
    return "hash-" + hashlib.sha256(json.dumps(names).encode("utf-8")).hexdigest()[:16]


def upload_path(folder: Path, name: str, groups: Sequence[str]) -> Path:
    """Where an upload of `name` for `groups` is kept: `folder/<upload_key(groups)>/<safe name>`."""
    return Path(folder).resolve() / upload_key(groups) / safe_name(name)


def stage_upload(folder: Path, name: str, data: bytes, groups: Sequence[str]) -> tuple[Path, Path]:
    """Write the bytes (and a sidecar with `groups`) into a fresh hidden staging folder beside where the upload is
    kept; returns (staged file, where it goes). Folders are 0700 and files 0600: they hold document text. The
    kept copy is not touched: `keep_upload` replaces it once the staged one has loaded."""
    target = upload_path(folder, name, groups)
    private_dir(folder)
    private_dir(target.parent)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))  # hidden: a folder sync skips it
    staged = staging / target.name
    with open_private(staged, "wb") as fh:
        fh.write(data)
    if groups:
        atomic_write(sidecar_path(staged), json.dumps({"acl": sorted(set(groups))}), private=True, fsync=False)
    return staged, target


def keep_upload(staged: Path, target: Path) -> None:
    """Move a staged upload (and its sidecar) over the kept copy; the staging folder goes."""
    side = sidecar_path(staged)
    if side.is_file():
        os.replace(side, sidecar_path(target))  # the same groups as the kept copy's: its folder says so
    else:  # the public folder: a sidecar there would restrict what its folder says is public
        sidecar_path(target).unlink(missing_ok=True)
    os.replace(staged, target)
    discard_staged(staged)


def discard_staged(staged: Path) -> None:
    shutil.rmtree(staged.parent, ignore_errors=True)


def remove_upload(path: Path) -> None:
    for p in (path, path.with_name(path.name + SIDECAR_SUFFIX)):
        p.unlink(missing_ok=True)


def parse_groups(text: str) -> list[str]:
    """'hr, it' -> ['hr', 'it'] (a full-width comma too); empty -> [] (everyone may see the document)."""
    return sorted({g.strip() for g in text.replace("，", ",").split(",") if g.strip()})


def document_rows(index: KnowledgeIndex | None, caller: Caller, status: dict[str, str] | None = None
                  ) -> list[dict[str, Any]]:
    """One row per document `caller` may read, by source: title, file, format, chunks, access groups, date
    ingested, status (what the last upload in this session did to it, else "indexed")."""
    if index is None:
        return []
    status = status or {}
    return [{"Title": rec.title, "File": Path(rec.source).name, "Format": rec.format, "Chunks": rec.n_chunks,
             "Access": ", ".join(rec.acl) or "everyone",
             "Ingested": datetime.fromtimestamp(rec.ingested_at).strftime("%Y-%m-%d %H:%M"),
             "Status": status.get(rec.source, "indexed"), "Source": rec.source, "doc_id": rec.doc_id}
            for rec in sorted(index.documents.values(), key=lambda r: r.source) if caller.may_read(rec.acl)]


@dataclass(frozen=True)
class Library:
    """`sync`, uploads and deletes for one index, built from its parts (`app.components.make_library`)."""

    index_dir: Path
    embedder: Embedder
    options: IngestOptions = field(default_factory=IngestOptions)
    opener: IndexOpener = field(default_factory=IndexOpener)  # the vector store and BM25's user dictionary
    upload_dir: Path = Path("data/uploads")

    def sync(self, paths: Sequence[str | Path], delete: bool = True, rebuild: bool = False,
             progress: Progress | None = None) -> IngestReport:
        return sync(paths, self.index_dir, self.embedder, self.options, self.opener, delete, rebuild, progress)

    def put(self, docs: Sequence[Document], delete: Collection[str] = (),
            progress: Progress | None = None) -> IngestReport:
        return put_documents(docs, self.index_dir, self.embedder, delete, self.options, self.opener, progress)

    def ingest_uploads(self, files: Sequence[tuple[str, bytes]], groups: Sequence[str],
                       progress: Progress | None = None) -> IngestReport:
        """Keep the files (name, bytes) for `groups` and put them into the index; nothing else in the index
        changes.

        Each file is kept in the uploads' sub-folder of its group set (`upload_key`): the same name uploaded for
        other groups is another document, and a re-upload never changes the access groups of what is kept. A file
        is first written to a staging folder and loaded there; only a file that loads replaces the kept copy, so a
        broken re-upload leaves the good copy (file and index) as it was and is reported skipped with its reason.
        Unsupported types and unusable names are skipped with their reason without being written. Raises
        IndexLocked / IndexMismatch like `sync` (a file that loaded is then kept, and indexed by the next
        ingest)."""
        started = time.perf_counter()
        report = IngestReport(files_seen=len(files))
        known = {rec.source: rec.content_hash for rec in self.opener.read_documents(Path(self.index_dir))}
        docs: list[Document] = []
        for done, (name, data) in enumerate(files, start=1):
            if progress is not None:
                progress("read", done, len(files))
            if not supported(name):
                report.skipped.append((name, unsupported_reason(name)))
                continue
            try:
                staged, target = stage_upload(Path(self.upload_dir), name, data, groups)
            except ValueError as exc:
                report.skipped.append((name, str(exc)))
                continue
            source = source_of(target)
            try:
                if target.is_file() and known.get(source) == fingerprint(staged):
                    report.unchanged += 1  # the same bytes and groups as the kept copy, which is indexed
                    discard_staged(staged)
                    continue
                doc = load(staged, self.options.max_bytes, self.options.ocr)
            except (IngestError, OSError) as exc:
                discard_staged(staged)  # the kept copy, if any, stays as it was, and so does the index
                report.skipped.append((source, exc.reason if isinstance(exc, IngestError) else str(exc)))
                continue
            keep_upload(staged, target)
            # Loaded from the staging folder; it is the kept file now (same bytes, same sidecar, same mtime).
            docs.append(replace(doc, doc_id=doc_id_for(source), source=source))
            report.pages_not_read += [(source, int(p["page"]), str(p["reason"]))
                                      for p in doc.meta.get("ocr", {}).get("unreadable", [])]
        if docs:
            put = self.put(docs, progress=progress)
            report.added, report.updated, report.unchanged = put.added, put.updated, report.unchanged + put.unchanged
            report.chunks_written, report.reanalyzed = put.chunks_written, put.reanalyzed
            report.total_documents, report.total_chunks, report.index_version = (
                put.total_documents, put.total_chunks, put.index_version)
        report.seconds = round(time.perf_counter() - started, 3)
        return report

    def delete(self, doc_ids: Sequence[str]) -> list[str]:
        """Remove documents from the index (a new version is published) and their uploaded copies; returns
        the sources removed."""
        sources = remove_documents(self.index_dir, self.embedder, doc_ids, self.opener)
        uploads = source_of(Path(self.upload_dir)) + "/"
        for src in sources:
            if src.startswith(uploads):  # an uploaded copy would come back with the next ingest of the folder
                remove_upload(Path(src))
        return sources
