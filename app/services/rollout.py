"""Which reranker serves, which one is on trial, and what served when: the rollout file.

One JSON file beside the index (`rollout_file`, default INDEX/../rerankers.json), written atomically under a lock
by `kb models promote | rollback | canary | shadow` and the Status page, and read by every API and app process,
which follow it without a restart (`app.services.live.LiveSearch`). It holds:

- `serving`: a stack of promoted models; the last one serves, `rollback` pops it and the one below serves again
  (with an empty stack the `reranker` setting serves, as before any promotion);
- `canary`: a candidate that reranks a share of searches, chosen per query text (`canary_share`);
- `shadow`: a candidate that scores every search off the critical path, for comparison only;
- `history`: every change, newest last, with who made it, when, and the gate's figures.

A second change while one is under way (a promotion runs its gate for a while) is refused, never queued or
half-applied.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ingest.files import atomic_write

from ..errors import KbError

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

    # ---- the file ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": 1, "serving": [asdict(r) for r in self.serving],
                "canary": asdict(self.canary) if self.canary else None,
                "shadow": asdict(self.shadow) if self.shadow else None, "history": list(self.history)}

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> RolloutState:
        """Raises KbError naming the file when it is not a rollout file."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise KbError("unprocessable", f"{path} is not a rollout file ('format' is not {FORMAT!r}); restore it "
                                           "from a backup, or delete it to serve the `reranker` setting again")
        try:
            return cls(serving=tuple(Release(**r) for r in data.get("serving") or ()),
                       canary=Trial(**data["canary"]) if data.get("canary") else None,
                       shadow=Trial(**data["shadow"]) if data.get("shadow") else None,
                       history=tuple(data.get("history") or ()))
        except TypeError as exc:
            raise KbError("unprocessable", f"{path}: a serving, canary or shadow entry is malformed ({exc}); restore "
                                           "the file from a backup") from None


def stamp(path: Path) -> tuple[int, ...] | None:
    """What changes when the file is rewritten (inode — every write replaces the file —, mtime in ns, size); None
    when there is none."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class RolloutStore:
    """The rollout file at `path`: read it any time; change it only inside `locked()`."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self) -> RolloutState:
        """The state on disk (empty when there is no file). KbError when it is unreadable."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return RolloutState()
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise KbError("unprocessable", f"{self.path} is not valid JSON ({exc}); restore it from a backup, or "
                                           "delete it to serve the `reranker` setting again") from None
        return RolloutState.from_dict(data, self.path)

    @contextmanager
    def locked(self) -> Iterator[RolloutStore]:
        """Hold the file's lock (never waits: KbError conflict when another change is under way)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        with open(lock, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise KbError("conflict", f"another promotion, rollback, canary or shadow change is under way "
                                          f"({lock} is locked); wait for it to finish, then try again") from None
            try:
                yield self
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def write(self, state: RolloutState) -> None:
        """Replace the file atomically (a reader sees the old state or the new one, never a part); it keeps its
        mode."""
        atomic_write(self.path, json.dumps(state.to_dict(), ensure_ascii=False, indent=2) + "\n")


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
