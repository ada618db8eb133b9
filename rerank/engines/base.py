"""What every engine shares: its name and `RerankerOptions`, the protocol's properties (`loaded`, `device_choice`,
`device`, `dtype`), `info()` as one `RerankerInfo`, and turning window scores back into one score per text."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from rerank.errors import RerankerParameterError
from rerank.types import RerankerInfo, RerankerOptions
from rerank.windows import Window, aggregate
from retrieval.coverage import Coverage, coverage
from retrieval.device import DeviceChoice


class EngineBase:
    """Base of the engines in this package. Subclasses set `kind`, say whether they are `loaded` and add what only
    they know to `info()` through `_describe()`."""

    kind = ""

    def __init__(self, name: str, options: RerankerOptions | None = None):
        if not isinstance(name, str) or not name.strip() or name.strip().lower() == "none":
            raise RerankerParameterError("reranker", name, "a hub name, a local folder or models/<name>",
                                         "pass e.g. --reranker BAAI/bge-reranker-v2-m3 or a fine-tuned folder")
        self._name = name
        self.options = options if options is not None else RerankerOptions()
        self._lock = threading.RLock()
        self._choice: DeviceChoice | None = None
        self._load_ms: float | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def loaded(self) -> bool:
        raise NotImplementedError

    @property
    def device_choice(self) -> DeviceChoice | None:
        """The device and dtype chosen at load, with the reason (None before)."""
        return self._choice

    @property
    def device(self) -> str | None:
        return self._choice.device if self._choice else None

    @property
    def dtype(self) -> str | None:
        return self._choice.dtype if self._choice else None

    def info(self) -> RerankerInfo:
        return RerankerInfo(name=self._name, kind=self.kind, loaded=self.loaded, device=self.device, dtype=self.dtype,
                            device_choice=self._choice, load_ms=self._load_ms, **self._describe())

    def _describe(self) -> dict[str, Any]:
        """This engine's own `RerankerInfo` fields (and `details`)."""
        return {}

    def _tokenizer(self) -> Any:
        """The loaded model's tokenizer (None when this engine has none here, e.g. a remote one)."""
        return None

    def coverage(self, text: str) -> Coverage | None:
        """What of `text` this model's tokenizer can represent, per script (`retrieval.coverage`); None when that
        cannot be told here (not loaded, or no local tokenizer)."""
        if not self.loaded:
            return None
        tok = self._tokenizer()
        if tok is None:
            return None
        with self._lock:  # a fast tokenizer is not safe to share between threads ("Already borrowed")
            return coverage(tok, text)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r}, device={self.device!r}, loaded={self.loaded})"


def score_windows(per_text: Sequence[Sequence[Window]], run: Callable[[list[Window]], list[float]],
                  how: str) -> list[float]:
    """One raw score per text: every window scored by `run` (in one call, so batches mix texts) and each text's
    window scores combined by `how` (max, mean, first)."""
    return aggregate_windows(per_text, run([w for ws in per_text for w in ws]), how)


def aggregate_windows(per_text: Sequence[Sequence[Window]], raws: Sequence[float], how: str) -> list[float]:
    """One raw score per text from `raws`, the scores of every window of `per_text` flattened in order (each
    text's windows together), each text's window scores combined by `how` (max, mean, first)."""
    out, start = [], 0
    for ws in per_text:
        out.append(float(aggregate(raws[start:start + len(ws)], how)))
        start += len(ws)
    return out
