"""Which reranker serves, which one is on trial, and what served when: the rollout state.

One JSON document, the entry "rollout" of the shared database (`app.services.control`, KB_DATABASE_URL), written
under a lock by `kb models promote | rollback | canary | shadow`, the API and the Status page, and read by every API
and app process on every machine, which follow its version without a restart (`app.services.live.LiveSearch`).
A rollout file from before (`rollout_file`, default INDEX/../rerankers.json) is imported once, when the database has
no rollout entry yet. It holds:

- `serving`: a stack of promoted models; the last one serves, `rollback` pops it and the one below serves again
  (with an empty stack the `reranker` setting serves, as before any promotion);
- `canary`: a candidate that reranks a share of searches, chosen per query text (`canary_share`);
- `shadow`: a candidate that scores every search off the critical path, for comparison only;
- `history`: every change, newest last, with who made it, when, and the gate's figures.

A second change while one is under way (a promotion runs its gate for a while) is refused, never queued or
half-applied.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ..errors import KbError
from .control import ControlStore

log = logging.getLogger(__name__)

FORMAT = "kb-rerankers"
TrialKind = Literal["canary", "shadow"]


@dataclass(frozen=True)
class Release:
    """A model as it was promoted: what, when, by whom, its weights' digest and the gate's figures."""

    model: str
    at: float
    by: str
    digest: str | None = None
    checks: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Trial:
    """A candidate scoring real searches: a canary (a `share` of them) or a shadow (all, off the critical path)."""

    model: str
    at: float
    by: str
    share: float | None = None


@dataclass(frozen=True)
class RolloutState:
    serving: tuple[Release, ...] = ()
    canary: Trial | None = None
    shadow: Trial | None = None
    history: tuple[dict[str, Any], ...] = ()

    @property
    def current(self) -> Release | None:
        return self.serving[-1] if self.serving else None

    def serving_model(self, default: str) -> str:
        """The model that serves: the last promoted, else `default` (the `reranker` setting)."""
        return self.current.model if self.current is not None else default

    # ---- transitions (pure: each returns a new state) -----------------------------------------------------
    def _logged(self, action: str, model: str | None, previous: str | None, at: float, by: str,
                **detail: Any) -> tuple[dict[str, Any], ...]:
        entry = {"action": action, "model": model, "previous": previous, "at": at, "by": by, **detail}
        return (*self.history, entry)

    def promoted(self, release: Release, default: str) -> RolloutState:
        """`release` serves; a canary or shadow of the same model ends (it has been promoted)."""
        previous = self.serving_model(default)
        return replace(self, serving=(*self.serving, release),
                       canary=None if self.canary and self.canary.model == release.model else self.canary,
                       shadow=None if self.shadow and self.shadow.model == release.model else self.shadow,
                       history=self._logged("promote", release.model, previous, release.at, release.by,
                                            digest=release.digest, checks=release.checks))

    def rolled_back(self, at: float, by: str, default: str) -> RolloutState:
        """The model promoted before the current one serves again (the setting's, before the first); a canary or
        shadow of that model ends (it serves)."""
        if not self.serving:
            raise KbError("conflict", "nothing to roll back: no promotion is on record (`kb models history`)")
        state = replace(self, serving=self.serving[:-1])
        model = state.serving_model(default)
        return replace(state, history=self._logged("rollback", model, self.current.model, at, by),
                       canary=None if self.canary and self.canary.model == model else self.canary,
                       shadow=None if self.shadow and self.shadow.model == model else self.shadow)

    def with_trial(self, kind: TrialKind, trial: Trial) -> RolloutState:
        """`trial` runs as the canary or the shadow (`kind`), replacing the one running."""
        old: Trial | None = getattr(self, kind)
        share = {"share": trial.share} if trial.share is not None else {}
        return replace(self, **{kind: trial}, history=self._logged(
            kind, trial.model, old.model if old else None, trial.at, trial.by, **share))

    def without_trial(self, kind: TrialKind, at: float, by: str) -> RolloutState:
        """The canary or the shadow (`kind`) ends. KbError conflict when none is running."""
        old: Trial | None = getattr(self, kind)
        if old is None:
            raise KbError("conflict", f"no {kind} is running")
        return replace(self, **{kind: None}, history=self._logged(f"{kind}_off", None, old.model, at, by))

    # ---- the stored form ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": 1, "serving": [asdict(r) for r in self.serving],
                "canary": asdict(self.canary) if self.canary else None,
                "shadow": asdict(self.shadow) if self.shadow else None, "history": list(self.history)}

    @classmethod
    def parse(cls, text: str, where: str) -> RolloutState:
        """The state in `text` (the JSON of `to_dict`). KbError (unprocessable) naming `where` and the fix when it is
        not a rollout document."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise KbError("unprocessable", f"{where} is not valid JSON ({exc}); restore it from a backup") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise KbError("unprocessable", f"{where} is not a rollout document ('format' is not {FORMAT!r}); "
                                           "restore it from a backup")
        try:
            return cls(serving=tuple(Release(**r) for r in data.get("serving") or ()),
                       canary=Trial(**data["canary"]) if data.get("canary") else None,
                       shadow=Trial(**data["shadow"]) if data.get("shadow") else None,
                       history=tuple(data.get("history") or ()))
        except TypeError as exc:
            raise KbError("unprocessable", f"{where}: a serving, canary or shadow entry is malformed ({exc}); "
                                           "restore it from a backup") from None

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n"


KEY = "rollout"  # the entry in the shared database
LOCK = "rollout"


class RolloutStore:
    """The rollout state in the shared database (`control`, entry "rollout"): read it any time; change it only
    inside `locked()`. `legacy_file`, a rollout file from before, is imported once, when the database has no entry
    yet (the log says so), and never read again."""

    def __init__(self, control: ControlStore, legacy_file: Path | None = None):
        self.control = control
        self.legacy_file = Path(legacy_file) if legacy_file is not None else None
        self._expect: int | None = None  # inside locked(): the version the change is based on
        self._locked = False

    @property
    def where(self) -> str:
        """Where the state lives, for messages."""
        return f"the rollout entry of {self.control.where}"

    def stamp(self) -> int | None:
        """What changes with every write (the entry's version; None before the first): what watchers poll."""
        return self.control.version(KEY)

    def read(self) -> RolloutState:
        """The state now (empty before any change). KbError when it cannot be read: the database is unreachable
        (not_ready), or the entry or the file to import is damaged (unprocessable, naming it)."""
        entry = self.control.read(KEY)
        if entry is None:
            entry = self._import()
        if entry is None:
            return RolloutState()
        return RolloutState.parse(entry.body, self.where)

    def _import(self):
        """The entry made from the rollout file of before, when there is one (None otherwise)."""
        path = self.legacy_file
        if path is None or not path.is_file():
            return None
        try:
            body = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise KbError("unprocessable", f"rollout file {path} cannot be read ({exc}); fix it, or move it away to "
                                           "serve the `reranker` setting") from None
        state = RolloutState.parse(body, f"rollout file {path} (to import)")
        try:
            entry = self.control.write(KEY, state.dumps(), f"import of {path}", expect=None)
        except KbError as exc:
            if exc.kind != "conflict":
                raise
            return self.control.read(KEY)  # another process imported it first
        log.warning("imported the rollout state (serving %s) from %s into %s; that file is no longer read: promote, "
                    "roll back and start trials with `kb models` or the Status page",
                    state.current.model if state.current else "the reranker setting", path, self.where)
        return entry

    @contextmanager
    def locked(self) -> Iterator[RolloutStore]:
        """Be the one process changing the rollout, on any machine, until the block ends (never waits: KbError
        conflict when another change is under way). `write` inside it applies only if nobody changed the state
        since the block began."""
        busy = ("another promotion, rollback, canary or shadow change is under way (in this or another process); "
                "wait for it to finish, then try again")
        with self.control.lock(LOCK, busy):
            self.read()  # imports a file from before first, so the change builds on it
            self._expect, self._locked = self.control.version(KEY), True
            try:
                yield self
            finally:
                self._expect, self._locked = None, False

    def write(self, state: RolloutState) -> None:
        """Store `state` (every reader sees the old state or the new one, never a part). Inside `locked()` it is
        based on the version read there; else on the version now. KbError conflict when someone else wrote first:
        nothing is written."""
        expect = self._expect if self._locked else self.control.version(KEY)
        entry = self.control.write(KEY, state.dumps(), _who(state), expect)
        if self._locked:
            self._expect = entry.version


def _who(state: RolloutState) -> str:
    """Who made the last change (from the history), for the entry's `updated_by`."""
    return str(state.history[-1].get("by", "unknown")) if state.history else "unknown"


def weights_digest(folder: str | Path) -> str | None:
    """SHA-256 (first 16 hex digits) of a model folder's weight files, so the history names the exact weights even
    if the folder is overwritten later; None when the name is not a local folder."""
    root = Path(folder)
    if not root.is_dir():
        return None
    files = sorted(p for pattern in ("*.safetensors", "*.bin") for p in root.glob(pattern))
    if not files:
        return None
    h = hashlib.sha256()
    for p in files:
        with open(p, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()[:16]


def check_promoted_weights(state: RolloutState, name: str) -> None:
    """Before the model `name` loads to serve: when it is a promoted model whose weights' digest was recorded,
    the folder must still hash to it. KbError (conflict) naming the folder, both digests and the fix when it does
    not: a folder changed after its promotion serves weights no gate has seen. Other names (the `reranker`
    setting, a hub name, a canary or shadow never promoted) are not checked."""
    release = next((r for r in reversed(state.serving) if r.model == name), None)
    if release is None or release.digest is None:
        return
    found = weights_digest(name)
    if found != release.digest:
        raise KbError("conflict", f"reranker folder {name} was promoted with weights digest {release.digest} but "
                                  f"now has {found or 'no weight files'}: its weights changed after the promotion "
                                  "and are refused. Restore the folder's weights, or check and record the new ones "
                                  f"with `kb models promote {name}` (or `kb models rollback`)")


def model_id(name: str) -> str:
    """A local folder as its absolute path (what every process can load, whatever its working folder); a hub
    name or URL as given."""
    local = Path(name).expanduser()
    return str(local.resolve()) if local.is_dir() else name


def now() -> float:
    return time.time()
