"""The value every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Loaded:
    title: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)
