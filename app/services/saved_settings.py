"""Settings saved by `kb tune --write` and the Tuning page: the defaults they chose (`top_k`, `top_n`,
`threshold`) and the fitted calibrator, kept as the entry "tuning" of the shared database (`app.services.control`),
so every process on every machine serves the same ones and a running API or app follows a change within
`models_reload_s` (`LiveSearch.check_tuning`).

They sit above the config file and below `KB_*` variables: a saved value is used unless a variable sets that
setting (`app.components.tuned`); the saved calibrator is used unless KB_CALIBRATION names a file. `forget`
removes them (the config file's values serve again).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from rerank.calibration import Calibrator, calibrator_from_dict

from ..errors import KbError
from ..settings import Settings
from .control import ControlStore

KEY = "tuning"
FIELDS = ("top_k", "top_n", "threshold")  # the settings `kb tune --write` chooses (besides the calibrator)
FORMAT = "kb-tuning"


@dataclass(frozen=True)
class SavedSettings:
    values: dict[str, Any] = field(default_factory=dict)  # settings fields → value
    calibrator: dict[str, Any] | None = None  # `Calibrator.to_dict()`; None: serve sigmoid scores
    version: int | None = None  # the entry's version (None: nothing saved)
    by: str | None = None
    at: float | None = None

    def calibrator_obj(self) -> Calibrator | None:
        """The saved calibrator, or None. ValueError naming the entry when it is damaged."""
        if self.calibrator is None:
            return None
        return calibrator_from_dict(self.calibrator, f"the calibrator saved by `kb tune --write` (entry {KEY!r})")


def check_values(values: dict[str, Any]) -> dict[str, Any]:
    """`values` checked as settings: KbError (validation) naming the field, its value and the allowed range."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise KbError("validation", f"not settings that can be saved: {', '.join(unknown)}; one of {', '.join(FIELDS)}")
    try:
        checked = Settings.model_validate(values)  # the fields' own checks; no environment read
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(x) for x in first["loc"])
        raise KbError("validation", f"{name}: {first['msg']} (got {first.get('input')!r})") from None
    return {k: getattr(checked, k) for k in values}


def read(control: ControlStore) -> SavedSettings:
    """What is saved (empty when nothing is). KbError: unreachable database (not_ready), damaged entry
    (unprocessable)."""
    entry = control.read(KEY)
    if entry is None:
        return SavedSettings()
    try:
        data = json.loads(entry.body)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"'format' is not {FORMAT!r}")
        values = check_values(dict(data.get("values") or {}))
    except (ValueError, KbError) as exc:
        message = exc.message if isinstance(exc, KbError) else str(exc)
        raise KbError("unprocessable", f"the settings saved by `kb tune --write` (entry {KEY!r} of {control.where}) "
                                       f"are damaged ({message}); save them again with `kb tune --write`, or "
                                       "remove them with `kb tune --forget`") from None
    return SavedSettings(values, data.get("calibrator"), entry.version, entry.updated_by, entry.updated_at)


KEEP = object()  # `save(calibrator=KEEP)`: the calibrator saved before stays (the Tuning page saves values only)


def save(control: ControlStore, values: dict[str, Any], by: str, calibrator: Calibrator | None | object = KEEP,
         source: dict[str, Any] | None = None) -> SavedSettings:
    """Replace what is saved with `values` (checked: KbError validation naming the field) and `calibrator`
    (None: none, sigmoid scores are served; KEEP: the one saved before); `source` says what they were fitted on.
    Based on the version read here: KbError conflict when someone else saved meanwhile."""
    values = check_values(values)
    before = read(control)
    cal = before.calibrator if calibrator is KEEP else (calibrator.to_dict() if calibrator is not None else None)
    body = json.dumps({"format": FORMAT, "values": values, "calibrator": cal, "source": source or {}},
                      ensure_ascii=False, sort_keys=True)
    entry = control.write(KEY, body, by, before.version)
    return SavedSettings(values, cal, entry.version, entry.updated_by, entry.updated_at)


def forget(control: ControlStore, by: str) -> bool:
    """Remove what is saved (an empty entry: the config file's values serve again); whether anything was."""
    before = read(control)
    if before.version is None or (not before.values and before.calibrator is None):
        return False
    control.write(KEY, json.dumps({"format": FORMAT, "values": {}, "calibrator": None, "source": {}}), by,
                  before.version)
    return True
