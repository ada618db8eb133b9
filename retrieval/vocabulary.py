"""The administrators' words: a user dictionary (how BM25 cuts Chinese text) and synonyms (what a query also
searches), read from two files that may change while the engine runs.

`load_vocabulary` reads both; `Vocabulary.stamp` says which versions of the files it read, so a watcher can tell
a change by comparing `file_stamp(...)` with it. A missing file means none of those words; a line that cannot be
read is reported in `problems` (file and line number) and skipped, never failing the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .analyzer import DEFAULT, Analyzer, read_user_dict
from .synonyms import NONE, Synonyms, read_synonyms

Stamp = tuple[tuple[int, int] | None, tuple[int, int] | None]


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
    counts: dict[str, int] = field(default_factory=dict)  # user_dict entries, synonym sets

    def key(self) -> tuple[str, str]:
        """What search results depend on (for the query cache)."""
        return self.analyzer.fingerprint, self.synonyms.fingerprint


def load_vocabulary(user_dict: Path | None, synonyms: Path | None) -> Vocabulary:
    """Both files read (either may be None or absent: none of those words); bad lines are in `problems`."""
    stamp = file_stamp(user_dict, synonyms)  # before reading: a change while reading is seen next time
    problems: list[str] = []
    entries = []
    if user_dict is not None and stamp[0] is not None:
        try:
            entries, bad = read_user_dict(user_dict)
            problems += bad
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{user_dict}: cannot be read ({exc}); save it as UTF-8 text. No user dictionary is used")
    sets = NONE
    if synonyms is not None and stamp[1] is not None:
        try:
            sets, bad = read_synonyms(synonyms)
            problems += bad
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{synonyms}: cannot be read ({exc}); save it as UTF-8 text. No synonyms are used")
    return Vocabulary(Analyzer(entries) if entries else DEFAULT, sets, user_dict, synonyms, tuple(problems), stamp,
                      {"user_dict": len(entries), "synonyms": len(sets.sets)})
