"""The administrators' words: a user dictionary (how BM25 cuts Chinese text) and synonyms (what a query also
searches), which may change while the engine runs.

`parse_vocabulary` makes a `Vocabulary` of their texts (the app keeps them in its shared database) and
`load_vocabulary` of two files; `Vocabulary.stamp` says which versions it was made from (whatever the caller
compares: entry versions, or `file_stamp(...)` for files), so a watcher can tell a change. A missing text or file
means none of those words; a line that cannot be read is reported in `problems` (where and line number) and
skipped, never failing the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .analyzer import DEFAULT, Analyzer, parse_user_dict, read_user_dict
from .synonyms import NONE, Synonyms, parse_synonyms, read_synonyms

Stamp = tuple[object, object]  # (user dictionary, synonyms): equal when neither changed; None: there is none


def file_stamp(user_dict: Path | None, synonyms: Path | None) -> Stamp:
    """(modification time in ns, size) of each file; None for a file that is not there."""
    def one(path: Path | None) -> tuple[int, int] | None:
        try:
            st = Path(path).stat() if path is not None else None
        except OSError:
            return None
        return None if st is None else (st.st_mtime_ns, st.st_size)

    return one(user_dict), one(synonyms)


@dataclass(frozen=True)
class Vocabulary:
    analyzer: Analyzer = DEFAULT
    synonyms: Synonyms = NONE
    user_dict_path: Path | None = None
    synonyms_path: Path | None = None
    problems: tuple[str, ...] = ()
    stamp: Stamp = (None, None)

    @property
    def counts(self) -> dict[str, int]:
        """How many user dictionary words and synonym rules (sets and one-way rules) are in use."""
        return {"user_dict": len(self.analyzer.entries), "synonyms": len(self.synonyms.rules)}

    def key(self) -> tuple[str, str]:
        """What search results depend on (for the query cache)."""
        return self.analyzer.fingerprint, self.synonyms.fingerprint


def _read(path: Path | None, there: bool, reader, empty, problems: list[str], what: str):
    """What `reader` makes of the file (its bad lines added to `problems`), or `empty` when there is none or it
    cannot be read (said in `problems`)."""
    if path is None or not there:
        return empty
    try:
        value, bad = reader(path)
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: cannot be read ({exc}); save it as UTF-8 text. No {what} are used")
        return empty
    problems += bad
    return value


def parse_vocabulary(user_dict: str, synonyms: str, stamp: Stamp = (None, None),
                     where: tuple[str, str] = ("user_dict", "synonyms")) -> Vocabulary:
    """Both texts parsed (either may be empty: none of those words); bad lines are in `problems`, named by
    `where` and their line number. `stamp` says which versions the texts are."""
    entries, problems = parse_user_dict(user_dict, where[0]) if user_dict.strip() else ([], [])
    sets, bad = parse_synonyms(synonyms, where[1]) if synonyms.strip() else (NONE, [])
    return Vocabulary(Analyzer(entries) if entries else DEFAULT, sets, problems=tuple(problems + bad), stamp=stamp)


def load_vocabulary(user_dict: Path | None, synonyms: Path | None) -> Vocabulary:
    """Both files read (either may be None or absent: none of those words); bad lines are in `problems`."""
    stamp = file_stamp(user_dict, synonyms)  # before reading: a change while reading is seen next time
    problems: list[str] = []
    entries = _read(user_dict, stamp[0] is not None, read_user_dict, [], problems, "user dictionary words")
    sets = _read(synonyms, stamp[1] is not None, read_synonyms, NONE, problems, "synonyms")
    return Vocabulary(Analyzer(entries) if entries else DEFAULT, sets, user_dict, synonyms, tuple(problems), stamp)
