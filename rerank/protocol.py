"""The `Reranker` protocol: what the service, the API and the CLI rely on, whatever engine is behind it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Reranker(Protocol):
    """Scores (query, text) pairs. Device and dtype are fixed at `load()`, never changed inside `score()`
    (except the announced CPU fallback after CUDA runs out of memory at batch size 1)."""

    @property
    def name(self) -> str: ...

    @property
    def loaded(self) -> bool: ...

    @property
    def device_choice(self) -> Any:
        """The `retrieval.device.DeviceChoice` made at load (None before)."""
        ...

    def load(self) -> None: ...

    def score(self, query: str, texts: Sequence[str]) -> list[tuple[float, float]]:
        """(raw_score, score) per text, Python floats, in input order; score = sigmoid(raw_score)."""
        ...

    def info(self) -> dict[str, Any]:
        """What is loaded, where, in which dtype and why (for the CLI, the API's /info and the UI)."""
        ...
