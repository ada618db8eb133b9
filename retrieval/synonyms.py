"""Synonyms: words that mean the same to the people who search (年假, 年休假, annual leave), with the semantics of
a search engine's synonym files (Solr's and Elasticsearch's `synonym_graph` format).

A synonyms file holds one rule a line, in any language; `#` starts a comment line; terms are separated by commas
(`,` `，` `、`) and a term may be several words ("annual leave").
- `年假, 年休假, annual leave`: an equivalence set. A question naming any of its terms is searched for all of
  them as ONE term.
- `wfh, work from home => 远程办公`: a one-way rule. A question naming a term on the left is searched for the terms
  on the right instead (write `wfh => wfh, 远程办公` to keep the left term too); a question naming 远程办公 is not
  widened.

`expansions(query)` gives, for each rule the query names, the terms it said and the terms to search in their place;
the lexical leg (`retrieval.lexical`) scores each as Lucene's `SynonymQuery` does: one term, one document
frequency, term frequencies summed, a multi-word term matched as a phrase, the user's own words not counted again.
`expand(query)` gives the terms searched that the query does not contain: what a result lists as "also searched".
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

_SEPARATORS = re.compile(r"[,，、]")
_ARROW = "=>"
_LATIN_EDGE = re.compile(r"[0-9A-Za-z]")


def _pattern(term: str) -> re.Pattern[str]:
    """A term found in a query: any case, spaces as any run of spaces, and a Latin word only as a whole word
    (WFH is not found in WFHX; 年假 is found in 我的年假)."""
    body = r"\s+".join(re.escape(w) for w in term.split())
    start = r"(?<![0-9A-Za-z])" if _LATIN_EDGE.match(term[0]) else ""
    end = r"(?![0-9A-Za-z])" if _LATIN_EDGE.match(term[-1]) else ""
    return re.compile(start + body + end, re.IGNORECASE)


@dataclass(frozen=True)
class Rule:
    """One line of the file: a query naming a term of `match` is searched for `searched` in its place (for an
    equivalence set both are its terms)."""

    match: tuple[str, ...]
    searched: tuple[str, ...]

    @property
    def one_way(self) -> bool:
        return self.match != self.searched

    def __str__(self) -> str:
        return ", ".join(self.match) + (f" => {', '.join(self.searched)}" if self.one_way else "")


@dataclass(frozen=True)
class Expansion:
    """What one rule does to a query: the terms of the query it stands for (`said`), the terms searched in their
    place as one term (`searched`), and those of them the query does not contain (`also`, what results list)."""

    said: tuple[str, ...]
    searched: tuple[str, ...]
    also: tuple[str, ...]


@dataclass(frozen=True)
class Synonyms:
    rules: tuple[Rule, ...] = ()
    _patterns: tuple[dict[str, re.Pattern[str]], ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_patterns", tuple({t: _pattern(t) for t in (*r.match, *r.searched)}
                                                    for r in self.rules))

    @property
    def fingerprint(self) -> str:
        """Names the rules' content ("" when there are none): part of the query cache's key."""
        if not self.rules:
            return ""
        return hashlib.sha256("\n".join(str(r) for r in self.rules).encode("utf-8")).hexdigest()[:16]

    def expansions(self, query: str) -> list[Expansion]:
        """For each rule, in file order, one of whose `match` terms the query contains: what it said and what is
        searched in its place."""
        out: list[Expansion] = []
        for rule, patterns in zip(self.rules, self._patterns):
            said = tuple(t for t in rule.match if patterns[t].search(query))
            if said:
                also = tuple(t for t in rule.searched if not patterns[t].search(query))
                out.append(Expansion(said, rule.searched, also))
        return out

    def expand(self, query: str) -> list[str]:
        """The terms searched besides the query's own: the `also` of every expansion, in file order, once each."""
        return list(dict.fromkeys(t for e in self.expansions(query) for t in e.also))


def _terms(text: str) -> list[str]:
    return list(dict.fromkeys(" ".join(t.split()) for t in _SEPARATORS.split(text) if t.strip()))


def parse_synonyms(text: str, where: str = "synonyms") -> tuple[Synonyms, list[str]]:
    """The rules in `text` (the synonyms file's format) and, for each line that is not one, a problem naming
    `where` and the line number (that line is skipped)."""
    rules, problems = [], []
    for n, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if _ARROW in stripped:
            sides = stripped.split(_ARROW)
            left, right = (_terms(sides[0]), _terms(sides[1])) if len(sides) == 2 else ([], [])
            if not left or not right:
                problems.append(f"{where}:{n}: {stripped!r} is not a rule `terms => terms` (wfh, work from home "
                                "=> 远程办公): one '=>' with a term or more on each side; skipped")
                continue
            rules.append(Rule(tuple(left), tuple(right)))
            continue
        terms = _terms(stripped)
        if len(terms) < 2:
            problems.append(f"{where}:{n}: {stripped!r} has one term; a set needs two or more, separated by commas "
                            "(年假, 年休假, annual leave); skipped")
            continue
        rules.append(Rule(tuple(terms), tuple(terms)))
    return Synonyms(tuple(rules)), problems


def read_synonyms(path: Path) -> tuple[Synonyms, list[str]]:
    """`parse_synonyms` of the file at `path` (UTF-8, a byte-order mark allowed)."""
    return parse_synonyms(Path(path).read_text(encoding="utf-8-sig"), str(path))


NONE = Synonyms()
