"""Lexical analysis for BM25: jieba words for Chinese, stemmed lowercase words for English, both in one text.

An `Analyzer` may carry a user dictionary (jieba's format: `word [frequency] [tag]` a line) so that product and
system names, and the company's own terms, stay one word; it then has its own jieba tokenizer (jieba's default one
is shared by the whole process). Its `fingerprint` names the dictionary's content: an index records it, and a
changed dictionary means the BM25 token lists are made again from the stored text (no re-embedding).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jieba
from bm25s.stopwords import STOPWORDS_CHINESE, STOPWORDS_EN

jieba.setLogLevel(logging.WARNING)

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RUN = re.compile(rf"[{_CJK}]+|[a-z0-9]+(?:[._'-][a-z0-9]+)*")
_IS_CJK = re.compile(rf"[{_CJK}]")
_STOP = frozenset(STOPWORDS_EN) | frozenset(STOPWORDS_CHINESE)


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer  # PyStemmer: the Snowball English stemmer that Lucene's English analyzer also uses

    return Stemmer.Stemmer("english")


_CJK_RUN = re.compile(rf"[{_CJK}]+")


def cjk_bigrams(text: str) -> list[str]:
    """The Chinese text of `text` as overlapping character bigrams, each run of Chinese characters on its own (a
    one-character run is itself), as Elasticsearch's `cjk_bigram` makes them; Latin text gives none. A second
    lexical field beside jieba's words: it matches a word however jieba cut it in the question and the document."""
    out: list[str] = []
    for match in _CJK_RUN.finditer(text):
        run = match.group(0)
        out.extend([run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)])
    return out


def has_cjk(text: str) -> bool:
    """Whether the text holds any Chinese character."""
    return _IS_CJK.search(text) is not None


@dataclass(frozen=True)
class DictEntry:
    word: str
    freq: int | None = None
    tag: str | None = None


def parse_user_dict(text: str, where: str = "user dictionary") -> tuple[list[DictEntry], list[str]]:
    """The entries of a jieba user dictionary (`word [frequency] [tag]` a line, `#` comments) and, for each line
    that is not one, a problem naming `where` and the line number (that line is skipped)."""
    entries, problems = [], []
    for n, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = stripped.split()
        freq = tag = None
        rest = parts[1:]
        if rest and rest[0].isdigit():
            freq, rest = int(rest[0]), rest[1:]
        if len(rest) == 1 and re.fullmatch(r"[A-Za-z]+", rest[0]):
            tag, rest = rest[0], []
        if rest:
            problems.append(f"{where}:{n}: {stripped!r} is not `word [frequency] [tag]` (a word has no spaces, the "
                            "frequency is a whole number, the tag is letters); skipped")
            continue
        entries.append(DictEntry(parts[0], freq, tag))
    return entries, problems


def read_user_dict(path: Path) -> tuple[list[DictEntry], list[str]]:
    """`parse_user_dict` of the file at `path` (UTF-8, a byte-order mark allowed)."""
    return parse_user_dict(Path(path).read_text(encoding="utf-8-sig"), str(path))


class Analyzer:
    """`analyze(text)` for BM25, with the user dictionary `entries` (none: jieba's own words only)."""

    def __init__(self, entries: list[DictEntry] | None = None):
        self.entries = list(entries or [])
        if self.entries:
            self._jieba = jieba.Tokenizer()
            for e in self.entries:
                self._jieba.add_word(e.word, e.freq, e.tag)
        else:
            self._jieba = jieba.dt
        text = "\n".join(f"{e.word} {e.freq or ''} {e.tag or ''}".rstrip() for e in self.entries)
        self.fingerprint = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16] if self.entries else ""

    def analyze(self, text: str) -> list[str]:
        """Tokens for BM25. Chinese runs go through jieba's search mode (words and their sub-words, so 离职手续
        matches both 离职 and 手续); Latin runs are lowercased, stop-worded and Snowball-stemmed. Punctuation is
        dropped."""
        out: list[str] = []
        stem = _stemmer().stemWord
        for match in _RUN.finditer(text.lower()):
            run = match.group(0)
            if _IS_CJK.match(run):
                out.extend(w.lower() for w in self._jieba.lcut_for_search(run) if w not in _STOP)
            elif run not in _STOP:
                out.append(stem(run))
        return out


DEFAULT = Analyzer()


def analyze(text: str) -> list[str]:
    """The default analyzer's tokens (no user dictionary)."""
    return DEFAULT.analyze(text)
