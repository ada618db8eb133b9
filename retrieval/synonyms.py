"""Synonyms: sets of words that mean the same to the people who search (年假, 年休假, annual leave).

A synonyms file holds one set a line, its terms separated by commas (`,` or `，`), in any language; a term may be
several words ("annual leave"); `#` starts a comment line. `expand(query)` gives, for each set one of whose terms
the query contains, the set's other terms: the lexical leg searches them too, weighted below the user's own words
(`retrieval.lexical.EXPANSION_WEIGHT`), and the result lists them ("also searched: 年休假").
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

_SEPARATORS = re.compile(r"[,，、]")
_LATIN_EDGE = re.compile(r"[0-9A-Za-z]")


def _pattern(term: str) -> re.Pattern[str]:
    """A term found in a query: any case, spaces as any run of spaces, and a Latin word only as a whole word
    (WFH is not found in WFHX; 年假 is found in 我的年假)."""
    body = r"\s+".join(re.escape(w) for w in term.split())
    start = r"(?<![0-9A-Za-z])" if _LATIN_EDGE.match(term[0]) else ""
    end = r"(?![0-9A-Za-z])" if _LATIN_EDGE.match(term[-1]) else ""
    return re.compile(start + body + end, re.IGNORECASE)


@dataclass(frozen=True)
class Synonyms:
    sets: tuple[tuple[str, ...], ...] = ()
    _patterns: tuple[tuple[re.Pattern[str], ...], ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_patterns", tuple(tuple(_pattern(t) for t in s) for s in self.sets))

    @property
    def fingerprint(self) -> str:
        """Names the sets' content ("" when there are none): part of the query cache's key."""
        if not self.sets:
            return ""
        return hashlib.sha256("\n".join(",".join(s) for s in self.sets).encode("utf-8")).hexdigest()[:16]

    def expand(self, query: str) -> list[str]:
        """The terms to search besides the query's own: the other members of every set the query names, in file
        order, without those the query already contains."""
        out: list[str] = []
        for terms, patterns in zip(self.sets, self._patterns):
            if not any(p.search(query) for p in patterns):
                continue
            for term, p in zip(terms, patterns):
                if not p.search(query) and term not in out:
                    out.append(term)
        return out


def parse_synonyms(text: str, where: str = "synonyms") -> tuple[Synonyms, list[str]]:
    """The sets in `text` (the synonyms file's format) and, for each line that is not one, a problem naming
    `where` and the line number (that line is skipped)."""
    sets, problems = [], []
    for n, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        terms = list(dict.fromkeys(" ".join(t.split()) for t in _SEPARATORS.split(stripped) if t.strip()))
        if len(terms) < 2:
            problems.append(f"{where}:{n}: {stripped!r} has one term; a set needs two or more, separated by commas "
                            "(年假, 年休假, annual leave); skipped")
            continue
        sets.append(tuple(terms))
    return Synonyms(tuple(sets)), problems


def read_synonyms(path: Path) -> tuple[Synonyms, list[str]]:
    """`parse_synonyms` of the file at `path` (UTF-8, a byte-order mark allowed)."""
    return parse_synonyms(Path(path).read_text(encoding="utf-8-sig"), str(path))


NONE = Synonyms()
