"""Checks shared by the Office Open XML formats (DOCX, XLSX, PPTX) before a parser sees the bytes.

An OOXML file is a zip archive. Refused here, each with the fix: a password-protected file (Office encrypts it
into an OLE compound file holding an ``EncryptionInfo`` stream, so it is no zip at all), a legacy Office 97-2003
file given the new suffix (OLE too), anything else that is not a zip, an archive without the format's main part,
and archives that would unpack to an absurd size (zip bombs).
"""

from __future__ import annotations

import io
import zipfile

import olefile

MAX_UNPACKED_BYTES = 256 * 1024 * 1024
# Apache POI's zip-bomb rule: a part over 100 KB may not expand more than 100 times. Office XML compresses about
# 5-20 times; a 340 KB file holding 100 MB of repeated paragraphs (300 times) would keep a parser busy for many
# minutes and gigabytes while staying under MAX_UNPACKED_BYTES.
MAX_RATIO = 100
RATIO_GRACE_BYTES = 100 * 1024

_APP = {"DOCX": "Word", "XLSX": "Excel", "PPTX": "PowerPoint"}
_LEGACY = {"DOCX": ".doc", "XLSX": ".xls", "PPTX": ".ppt"}


def check_package(data: bytes, kind: str, main_part: str) -> None:
    """Raise ValueError naming the problem and the fix unless `data` is a sane zip holding `main_part`.

    `kind` is the format's name as a person knows it ("DOCX", "XLSX", "PPTX").
    """
    app = _APP.get(kind, "Office")
    if olefile.isOleFile(data=data):
        with olefile.OleFileIO(data) as ole:
            encrypted = ole.exists("EncryptionInfo") or ole.exists("EncryptedPackage")
        if encrypted:
            raise ValueError(f"password-protected {kind}; save an unprotected copy in {app} "
                             "(File > Info > Protect > remove the password) and ingest that")
        raise ValueError(f"a legacy Office 97-2003 file ({_LEGACY.get(kind, 'binary')} format), not a {kind}; "
                         f"open it in {app} or LibreOffice and save it as .{kind.lower()}")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ValueError(f"not a valid {kind} (not a zip archive); re-save it from {app} or LibreOffice "
                         f"as .{kind.lower()}")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ValueError(f"damaged {kind} (broken zip archive: {exc}); re-save it from {app} or LibreOffice") from exc
    unpacked = sum(info.file_size for info in infos)
    if unpacked > MAX_UNPACKED_BYTES:
        raise ValueError(f"{kind} unpacks to {unpacked / 2**20:.0f} MB, over the "
                         f"{MAX_UNPACKED_BYTES // 2**20} MB limit (a zip bomb?)")
    for info in infos:
        if info.file_size > RATIO_GRACE_BYTES and info.file_size > MAX_RATIO * max(1, info.compress_size):
            raise ValueError(f"{kind} part {info.filename} expands {info.file_size // max(1, info.compress_size)} "
                             f"times ({info.compress_size} bytes to {info.file_size / 2**20:.0f} MB), over the "
                             f"{MAX_RATIO}x limit (a zip bomb?); re-save it from {app} or LibreOffice")
    if main_part not in {info.filename for info in infos}:
        raise ValueError(f"zip archive without {main_part}: not a {kind}")
