"""What an administrator decides about a suggestion (`app.services.suggestions`): accept it (a synonym pair becomes
a line of the synonyms; a best bet is pinned, `exact` on the question) or dismiss it (its id is kept in the
"suggestions_dismissed" entry of the shared control state, so it is not suggested again, on any machine). The face
that calls these records the decision in the audit log.
"""

from __future__ import annotations

import json

from ..errors import KbError
from .bestbets import BestBetsStore, new_bet
from .control import ControlStore
from .events import SearchEvent
from .suggestions import Suggestion, suggest
from .vocabulary import VocabularyStore, normalized

DISMISSED_KEY = "suggestions_dismissed"
DISMISSED_MAX = 5000  # the oldest dismissals go first past this: their searches have long aged out
LABEL = "suggested by the search log"


class Decisions:
    """Accept and dismiss over the shared stores."""

    def __init__(self, control: ControlStore, vocabulary: VocabularyStore, bets: BestBetsStore):
        self.control, self.vocabulary, self.bets = control, vocabulary, bets

    def open(self, history: list[SearchEvent]) -> list[Suggestion]:
        """The suggestions `history` supports that are still open: not in the synonyms or best bets stored now,
        not dismissed."""
        return suggest(history, self.vocabulary.load().synonyms, self.bets.load(), self.dismissed())

    def dismissed(self) -> list[str]:
        """The ids dismissed, oldest first."""
        entry = self.control.read(DISMISSED_KEY)
        return list(json.loads(entry.body)) if entry is not None and entry.body.strip() else []

    def dismiss(self, suggestion_id: str, by: str) -> None:
        """Never suggest `suggestion_id` again (a second dismissal changes nothing)."""
        entry = self.control.read(DISMISSED_KEY)
        ids = list(json.loads(entry.body)) if entry is not None and entry.body.strip() else []
        if suggestion_id in ids:
            return
        ids = [*ids, suggestion_id][-DISMISSED_MAX:]
        self.control.write(DISMISSED_KEY, json.dumps(ids), by, expect=entry.version if entry is not None else None)

    def accept(self, s: Suggestion, by: str, doc_id: str | None = None, label: str = LABEL) -> dict:
        """Apply `s`: a synonym pair appended to the synonyms (on top of the version stored now), or a best bet on
        its question pinned to `doc_id` (default: the suggestion's). Returns what was written, for the audit log.
        KbError validation when a best bet has no document; conflict when someone saved the synonyms meanwhile."""
        if s.kind == "synonyms":
            text, version = self.vocabulary.text("synonyms")
            line = ", ".join(s.terms)
            entry, _ = self.vocabulary.save("synonyms", normalized(text) + line + "\n", by, expect=version)
            return {"kind": "synonyms", "line": line, "version": entry.version}
        doc_id = doc_id or s.doc_id
        if not doc_id:
            raise KbError("validation", f"suggestion {s.suggestion_id} names no document: choose the document that "
                                        "answers it (doc_id)")
        bet = new_bet(list(s.terms), "exact", label, doc_id, None, by)
        self.bets.add(bet, by)
        return {"kind": "best_bet", "bet_id": bet.bet_id, "doc_id": doc_id, "phrases": list(bet.phrases)}
