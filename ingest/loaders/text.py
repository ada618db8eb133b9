"""Plain text with encoding detection: UTF-8 (with or without BOM), UTF-16 with BOM, GB18030/GBK, Big5."""

from __future__ import annotations

import codecs
from pathlib import PurePath

from .base import Loaded

# Chinese policy files are often GBK (a subset of GB18030) or Big5; charset-normalizer decides between them.
_CANDIDATES = ["utf_8", "gb18030", "big5", "cp1252"]


def looks_binary(data: bytes) -> bool:
    """NUL bytes, or many C0 control bytes, in the first 8 KB: not a text file whatever its name says."""
    head = data[:8192]
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    return controls > 0.05 * max(1, len(head))


def decode_text(data: bytes) -> tuple[str, str]:
    """Return (text, encoding name). Raises ValueError for binary data or an undecidable encoding."""
    for bom, enc in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            return data.decode(enc, errors="replace"), enc
    if looks_binary(data):
        raise ValueError("binary data, not text (NUL or control bytes); check the file or give it its real suffix")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data, cp_isolation=_CANDIDATES).best()
    if best is None or best.chaos > 0.3:
        raise ValueError("unknown text encoding (tried UTF-8, GB18030/GBK, Big5, CP1252); save the file as UTF-8")
    return str(best), best.encoding


def load_text(name: str, data: bytes) -> Loaded:
    text, encoding = decode_text(data)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    # A short first line is the title in nearly every policy text file; a long one is already body text.
    title = first if 0 < len(first) <= 60 else PurePath(name).stem
    return Loaded(title=title, text=text, meta={"encoding": encoding})
