"""`load(path) -> Document`: pick a loader by suffix, read, clean, identify. Every failure is an `IngestError`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .clean import clean_text
from .errors import IngestError
from .files import LINK_REASON, LinkRefused, read_nofollow
from .identity import content_hash, doc_id_for, source_of
from .loaders import LOADERS, OCR_LOADERS, LoaderFn
from .ocr import OcrOptions
from .types import Document

SUPPORTED_SUFFIXES = frozenset(LOADERS)
SIDECAR_SUFFIX = ".meta.json"
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
# A thousand-page book on one line. Longer lines are minified data or pasted blobs, not something a person reads:
# chunking one would cost minutes of tokenizing and fill the index with thousands of chunks of noise.
MAX_LINE_CHARS = 1_000_000


def sidecar_path(path: Path) -> Path:
    """`policy.pdf` → `policy.pdf.meta.json`: optional JSON metadata (``acl``, ``title``) next to a file."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


def fingerprint(path: Path) -> str:
    """Hash of the file's bytes and its sidecar's: what `meta["content_hash"]` of the loaded Document will be.

    Cheap (no parsing), so a sync can tell an unchanged file without loading it; a changed sidecar (new access
    groups) counts as a change.
    """
    data = read_nofollow(path)
    side = _sidecar_bytes(path)
    return content_hash(data + side) if side is not None else content_hash(data)


def _sidecar_bytes(path: Path) -> bytes | None:
    """The sidecar's bytes (None: there is none). IngestError when it is a symbolic link: never read through."""
    side = sidecar_path(path)
    if not side.is_symlink() and not side.is_file():
        return None
    try:
        return read_nofollow(side)
    except LinkRefused:
        raise IngestError(side, LINK_REASON) from None
    except OSError as exc:
        raise IngestError(side, f"cannot read sidecar ({exc.strerror or exc})") from exc


def _read_sidecar(path: Path) -> dict[str, Any]:
    raw = _sidecar_bytes(path)
    side = sidecar_path(path)
    if raw is None:
        return {}
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise IngestError(side, f"sidecar metadata is not valid JSON ({exc}); fix it or delete it") from exc
    if not isinstance(meta, dict):
        raise IngestError(side, 'sidecar metadata must be a JSON object such as {"acl": ["hr"]}')
    return meta


BUILT_IN_FIELDS = frozenset({"acl", "title", "format", "path", "updated"})  # what every document has


def normalise_fields(values: dict[str, Any]) -> dict[str, str | list[str]]:
    """A document's own metadata (front-matter or sidecar keys) as filterable values: scalars (dates, numbers,
    booleans too) become strings, lists of scalars lists of strings. The built-in keys (`acl`, `title`, `format`,
    `path`, `updated`) are the document's own and are not repeated here; a nested mapping cannot be filtered on
    and is left out."""
    out: dict[str, str | list[str]] = {}
    for key, value in values.items():
        name = str(key).strip()
        if not name or name.lower() in BUILT_IN_FIELDS or value is None or isinstance(value, dict):
            continue
        if isinstance(value, list | tuple):
            if all(isinstance(v, str | int | float | bool) or hasattr(v, "isoformat") for v in value):
                out[name] = [_as_text(v) for v in value]
        else:
            out[name] = _as_text(value)
    return out


def document_date(values: dict[str, Any]) -> str | None:
    """The `updated` date the document states about itself (front-matter or sidecar), as an ISO string."""
    value = values.get("updated")
    if value is None:
        return None
    return _as_text(value)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value.isoformat() if hasattr(value, "isoformat") else str(value).strip()


def normalise_acl(value: Any, where: str) -> list[str]:
    """Access groups as a sorted list of non-empty strings; ``"hr, it"`` and ``["hr", "it"]`` both work."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise IngestError(where, f"acl must be a list of group names, got {value!r}")
    return sorted({v.strip() for v in value if v.strip()})


def _check_size(source: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise IngestError(source, f"file is {size / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB limit; "
                                  "split it or raise KB_MAX_FILE_MB")


def load_bytes(name: str, data: bytes, source: str, extra_meta: dict[str, Any] | None = None,
               max_bytes: int = DEFAULT_MAX_BYTES, *, loader: LoaderFn | None = None,
               ocr: OcrOptions | None = None) -> Document:
    """Build a Document from a file's name (for the suffix and a fallback title) and bytes, read by `loader`
    (None: the loader of the name's suffix); scans and images are read with `ocr` (None: the defaults,
    `OcrOptions()`)."""
    suffix = Path(name).suffix.lower()
    reader = OCR_LOADERS.get(suffix) if loader is None else None  # a loader given reads the bytes itself
    loader = loader if loader is not None else LOADERS.get(suffix)
    if loader is None:
        raise IngestError(source, f"unsupported file type '{suffix or name}'; supported: "
                                  f"{', '.join(sorted(SUPPORTED_SUFFIXES))}")
    if not data:
        raise IngestError(source, "empty file (0 bytes)")
    _check_size(source, len(data), max_bytes)
    try:
        loaded = reader(name, data, ocr if ocr is not None else OcrOptions()) if reader else loader(name, data)
    except ValueError as exc:
        raise IngestError(source, str(exc)) from exc
    text = clean_text(loaded.text)
    if not text:
        raise IngestError(source, "no text found in the file")
    longest = max(map(len, text.split("\n")))
    if longest > MAX_LINE_CHARS:
        raise IngestError(source, f"a single line of {longest:,} characters, over the {MAX_LINE_CHARS:,} limit: "
                                  "minified data or an embedded blob, not a document; add line breaks or remove it")
    meta: dict[str, Any] = {"format": suffix.lstrip("."), "content_hash": content_hash(data), "bytes": len(data)}
    meta.update(loaded.meta)
    extra = dict(extra_meta or {})
    fields = {**loaded.meta.get("fields", {}), **extra.pop("fields", {})}  # the sidecar wins over front-matter
    meta.update(extra)
    meta["acl"] = normalise_acl(meta.get("acl"), source)
    meta["fields"] = normalise_fields(fields)
    if document_date(fields) is not None:
        meta["updated"] = document_date(fields)
    title = clean_text(str(meta.pop("title", "") or loaded.title)).replace("\n", " ")
    return Document(doc_id=doc_id_for(source), source=source, title=title, text=text, meta=meta)


def load(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES, ocr: OcrOptions | None = None) -> Document:
    """Load one local file. Raises IngestError naming the file for anything unsupported, empty, too big or broken,
    and for a file or sidecar that is a symbolic link (never read through: it could lead anywhere)."""
    path = Path(path)
    source = source_of(path)
    if path.is_symlink():
        raise IngestError(source, LINK_REASON)
    if not path.is_file():
        raise IngestError(source, "no such file")
    size = path.stat().st_size
    _check_size(source, size, max_bytes)  # before reading 50 MB into memory
    try:
        data = read_nofollow(path)  # O_NOFOLLOW: a link swapped in since the check above is refused too
    except LinkRefused:
        raise IngestError(source, LINK_REASON) from None
    except OSError as exc:
        raise IngestError(source, f"cannot read file ({exc.strerror})") from exc
    side_meta = _read_sidecar(path)
    extra = {k: v for k, v in side_meta.items() if k in ("acl", "title")}
    extra["fields"] = {k: v for k, v in side_meta.items() if k not in ("acl", "title")}
    extra["mtime"] = path.stat().st_mtime
    side = _sidecar_bytes(path)
    if side is not None:
        extra["content_hash"] = content_hash(data + side)  # as fingerprint(path) computes it
    return load_bytes(path.name, data, source, extra, max_bytes, ocr=ocr)
