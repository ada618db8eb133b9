"""The `Reranker` protocol: what the service, the API and the CLI rely on, whatever engine is behind it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from rerank.types import RerankerInfo
from retrieval.device import DeviceChoice


@runtime_checkable
class Reranker(Protocol):
    """Scores (query, text) pairs. Device and dtype are fixed at `load()`, never changed inside `score()`
    (except the announced CPU fallback after CUDA runs out of memory at batch size 1)."""

    @property
    def name(self) -> str: ...

    @property
    def loaded(self) -> bool: ...

    @property
    def device_choice(self) -> DeviceChoice | None:
        """The device and dtype chosen at load, with the reason (None before)."""
        ...

    def load(self) -> Reranker: ...

    def score(self, query: str, texts: Sequence[str]) -> list[tuple[float, float]]:
        """(raw_score, score) per text, Python floats, in input order; score = sigmoid(raw_score)."""
        ...

    def info(self) -> RerankerInfo:
        """What is loaded, where, in which dtype and why (the same fields for every engine)."""
        ...
