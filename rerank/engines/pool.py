"""`ModelPool`: the one owner of the rerankers a process has loaded.

`app.components` makes one pool per process and loads every reranker through it (`load_reranker`, the searches it
builds, the serving supervisor), so a model used in two roles (serving and shadow, the API's search and a page of
the app) is loaded once. Only the serving supervisor releases: a model that no role uses any more is forgotten here
and its memory freed once the last search holding it is done. A pool is an object, not a module global: two pools
(two tests, two settings) never hand each other's models out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from rerank.protocol import Reranker
from rerank.types import RerankerOptions

from .factory import create_reranker


class ModelPool:
    """Loaded rerankers by (name, options): `get` loads one on first use and hands the same object to every later
    caller; `release` forgets it."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, RerankerOptions], Reranker] = {}
        self._lock = threading.Lock()

    def get(self, name: str, options: RerankerOptions, before_load: Callable[[], None] | None = None) -> Reranker:
        """The loaded reranker `name` with `options`, loaded now if no one holds it (the load's errors are
        raised: RerankerLoadError, ModelNotAvailable, RerankerParameterError). `before_load` runs only when the
        model is read from disk (a check of its files; what it raises stops the load), never for a model already
        held. Loads one at a time: two callers asking for the same model wait for one load instead of making
        two."""
        key = (name, options)
        with self._lock:
            model = self._models.get(key)
            if model is None:
                if before_load is not None:
                    before_load()
                model = create_reranker(name, options)
                model.load()
                self._models[key] = model
            return model

    def release(self, name: str, options: RerankerOptions) -> None:
        """Forget the reranker `name` with `options` (a model no longer used); the next `get` loads it again."""
        with self._lock:
            self._models.pop((name, options), None)

    def loaded(self) -> list[str]:
        """The names of the rerankers held now (a name twice when held with two sets of options)."""
        with self._lock:
            return [name for name, _ in self._models]

    def clear(self) -> None:
        """Forget every reranker (tests)."""
        with self._lock:
            self._models.clear()
