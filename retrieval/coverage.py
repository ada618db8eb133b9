"""Can a model read this text? Judged from its own tokenizer, never from its name.

A tokenizer shows what its model was trained to read: characters of a script it never saw come out as the
unknown token (`[UNK]`, `<unk>`), as byte-fallback pieces (`<0xE4>`), or split into fragments smaller than one
character (byte-level BPE). `coverage(tokenizer, text)` counts, per script, the letters of `text` and those the
tokenizer could not represent as themselves; a model cannot read a script when more than `UNREADABLE_SHARE` of
its letters are lost. This works for any hub name or local folder: all-MiniLM-L6-v2 loses 14 of the 15 letters
of 试用期员工离职需要办理哪些手续, bge-m3 none.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

UNREADABLE_SHARE = 0.3
MIN_LETTERS = 2  # a single stray character does not decide for a whole query
_BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
_UNK = ("[UNK]", "<unk>", "<UNK>", "[unk]")
SCRIPT_NAMES = {"han": "Chinese", "latin": "Latin-script", "cyrillic": "Cyrillic", "arabic": "Arabic",
                "hangul": "Korean", "kana": "Japanese kana", "other": "other-script"}


def script_of(ch: str) -> str | None:
    """The script of a letter (None for digits, punctuation, space and symbols)."""
    if not ch.isalpha():
        return None
    code = ord(ch)
    if 0x3400 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x2FA1F:
        return "han"
    if 0x3040 <= code <= 0x30FF:
        return "kana"
    if 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF:
        return "hangul"
    name = unicodedata.name(ch, "")
    for script in ("LATIN", "CYRILLIC", "ARABIC"):
        if name.startswith(script):
            return script.lower()
    return "other"


@dataclass(frozen=True)
class Coverage:
    letters: dict[str, int] = field(default_factory=dict)  # script → letters in the text
    lost: dict[str, int] = field(default_factory=dict)  # script → letters the tokenizer could not represent

    def share_lost(self, script: str) -> float:
        return self.lost.get(script, 0) / self.letters[script] if self.letters.get(script) else 0.0

    def unreadable(self) -> list[str]:
        """The scripts of the text the model cannot read, most letters first."""
        return [s for s, n in sorted(self.letters.items(), key=lambda kv: -kv[1])
                if n >= MIN_LETTERS and self.share_lost(s) > UNREADABLE_SHARE]

    def describe(self) -> str:
        """e.g. "Chinese (87% of its letters unknown to the tokenizer)"."""
        return ", ".join(f"{SCRIPT_NAMES.get(s, s)} ({self.share_lost(s):.0%} of its letters unknown to the "
                         "tokenizer)" for s in self.unreadable())


def backend(tokenizer: Any):
    """The `tokenizers.Tokenizer` behind a Hugging Face tokenizer (or the tokenizer itself); None when there is
    none (a slow tokenizer, a remote model)."""
    if tokenizer is None:
        return None
    inner = getattr(tokenizer, "backend_tokenizer", None)
    if inner is not None:
        return inner
    return tokenizer if hasattr(tokenizer, "encode") and hasattr(tokenizer, "token_to_id") else None


def coverage(tokenizer: Any, text: str) -> Coverage:
    """What of `text` the tokenizer represents, per script (see the module docstring)."""
    letters = Counter(s for s in map(script_of, text) if s)
    tok = backend(tokenizer)
    if tok is None or not letters:
        return Coverage(dict(letters), {})
    enc = tok.encode(text, add_special_tokens=False)
    unk_ids = {i for i in (tok.token_to_id(u) for u in _UNK) if i is not None}
    lost_at: set[int] = set()
    spans = Counter((a, b) for a, b in enc.offsets)
    for token_id, token, (start, end) in zip(enc.ids, enc.tokens, enc.offsets):
        if token_id in unk_ids or _BYTE_PIECE.match(token) or (end - start == 1 and spans[(start, end)] > 1):
            lost_at.update(range(start, end))  # unknown, a raw byte, or a character split into byte pieces
    lost = Counter(s for i in lost_at if i < len(text) and (s := script_of(text[i])))
    return Coverage(dict(letters), dict(lost))
