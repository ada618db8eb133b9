"""Uploaded files land in one flat folder under a cleaned name: nothing a client sends can escape it."""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path, PurePosixPath

from ingest.load import SIDECAR_SUFFIX
from ingest.loaders import LOADERS

from .errors import ApiError


def safe_name(name: str | None) -> str:
    """The file name part of `name`, refused when empty, hidden, a sidecar, or carrying control characters.

    Directory parts are dropped whichever separator they use, so `../../etc/passwd` and `C:\\x\\y.pdf` become
    `passwd` and `y.pdf`.
    """
    base = PurePosixPath((name or "").replace("\\", "/")).name
    base = unicodedata.normalize("NFC", base).strip()
    if not base or base in {".", ".."} or base.startswith("."):
        raise ApiError(400, f"upload file name {name!r} is not usable: give the file a plain name like policy.pdf",
                       "bad_request")
    if any(unicodedata.category(ch).startswith("C") for ch in base) or len(base.encode()) > 255:
        raise ApiError(400, f"upload file name {name!r} has control characters or is too long", "bad_request")
    if base.endswith(SIDECAR_SUFFIX):
        raise ApiError(400, f"{base}: sidecar files are written by the server; send access groups in `groups`",
                       "bad_request")
    return base


def supported(name: str) -> bool:
    return Path(name).suffix.lower() in LOADERS


def save_upload(folder: Path, name: str, data: bytes, groups: list[str] | None) -> Path:
    """Write `data` as `folder/name` (atomically) with a sidecar holding `groups` as its acl."""
    folder.mkdir(parents=True, exist_ok=True)
    target = (folder / name).resolve()
    if target.parent != folder.resolve():  # belt and braces after safe_name
        raise ApiError(400, f"upload file name {name!r} escapes the upload folder", "bad_request")
    tmp = target.with_name(f".{target.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    side = target.with_name(target.name + SIDECAR_SUFFIX)
    if groups:
        side.write_text(json.dumps({"acl": groups}), encoding="utf-8")
    elif side.exists():
        side.unlink()
    return target


def remove_upload(path: Path) -> None:
    for p in (path, path.with_name(path.name + SIDECAR_SUFFIX)):
        p.unlink(missing_ok=True)
