"""Lexical analysis for BM25: jieba words for Chinese, stemmed lowercase words for English, both in one text."""

from __future__ import annotations

import logging
import re
from functools import lru_cache

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


def has_cjk(text: str) -> bool:
    """Whether the text holds any Chinese character."""
    return _IS_CJK.search(text) is not None


def analyze(text: str) -> list[str]:
    """Tokens for BM25. Chinese runs go through jieba's search mode (words and their sub-words, so 离职手续 matches
    both 离职 and 手续); Latin runs are lowercased, stop-worded and Snowball-stemmed. Punctuation is dropped."""
    out: list[str] = []
    stem = _stemmer().stemWord
    for match in _RUN.finditer(text.lower()):
        run = match.group(0)
        if _IS_CJK.match(run):
            out.extend(w for w in jieba.lcut_for_search(run) if w not in _STOP)
        elif run not in _STOP:
            out.append(stem(run))
    return out
