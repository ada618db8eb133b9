"""The serving supervisor: `LiveSearch`, the `SearchService` a long-running process (the API, the app) serves, swapped
whole whenever the published index version, the vocabulary files or the rollout file change.

It is built in one place (`app.components.build_live`) and builds nothing itself: every part it needs (an index
version, the vocabulary, a reranker, its calibrator, a library) comes through the `Parts` it was given, which
`app.components` makes over the settings and the process's one `ModelPool`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from rerank.calibration import Calibrator
from rerank.engines.factory import is_disabled
from rerank.protocol import Reranker
from retrieval.analyzer import Analyzer
from retrieval.embedder import Embedder
from retrieval.index import IndexMismatch, IndexNotFound, KnowledgeIndex
from retrieval.storage import current_version
from retrieval.vocabulary import Vocabulary, file_stamp

from ..settings import Settings
from .library import Library
from .model_stats import ModelStats
from .rollout import RolloutState, RolloutStore
from .rollout import stamp as rollout_stamp
from .search import SearchService
from .shadow import ShadowRunner

log = logging.getLogger(__name__)


class Parts(Protocol):
    """What `LiveSearch` builds with, each read from the settings it was made with (`app.components.LiveParts`)."""

    def open_index(self, embedder: Embedder, create: bool, analyzer: Analyzer) -> KnowledgeIndex:
        """The live index version (IndexNotFound unless `create`, IndexMismatch for another embedder or store)."""

    def load_vocabulary(self) -> Vocabulary:
        """The user dictionary and synonyms, read now."""

    def vocabulary_paths(self) -> tuple[Path, Path]:
        """(user dictionary, synonyms): the files `load_vocabulary` reads."""

    def rollout(self) -> RolloutStore:
        """The rollout file."""

    def read_rollout(self) -> tuple[RolloutState, str | None]:
        """(what the rollout file says, None) or (an empty state, why it cannot be read)."""

    def load_reranker(self, name: str) -> tuple[Reranker | None, str | None]:
        """(the shared loaded reranker `name`, None) or (None, why it could not be loaded)."""

    def release_reranker(self, name: str) -> None:
        """Forget the shared reranker `name`: no role uses it any more."""

    def load_calibration(self, reranker: Reranker | None) -> tuple[Calibrator | None, str | None]:
        """(the calibrator for `reranker`'s scores, None) or (None, why none is used)."""

    def library(self, embedder: Embedder, analyzer: Analyzer) -> Library:
        """Ingest and delete for the index, with this embedder and user dictionary."""


def _when_changed(changed, reload, what: str) -> bool:
    """`reload()` when `changed()`; whether it did. A watcher must outlive one bad reload: a failure is logged
    ("could not <what>") and reported as False."""
    if not changed():
        return False
    try:
        reload()
    except Exception:  # noqa: BLE001
        log.exception("could not %s", what)
        return False
    return True


def batched(s: Settings, model: Reranker | None) -> Reranker | None:
    """What a long-running process (API, app) serves for `model`: with `rerank_batching`, a `BatchingReranker`
    over it, so the rerank work of concurrent requests shares forward passes (`rerank.coalesce`); else, or for an
    engine that cannot batch (LLM, remote TEI: it batches on its own side), `model` itself."""
    from rerank.coalesce import BatchingReranker, can_batch

    if model is None or not s.rerank_batching or not can_batch(model):
        return model
    return BatchingReranker(model, s.rerank_batch_wait_ms, s.rerank_batch_tokens)


class LiveSearch:
    """The `SearchService` a long-running process (API, app) serves. `reload_index` opens the index's newest
    version, `reload_vocabulary` rereads the user dictionary and synonyms, `reload_models` follows the rollout file
    (promotion, rollback, canary, shadow); each swaps in a new service, so a search running meanwhile finishes on
    what it started with and nobody sees a half-changed service. `watch()` does all three whenever something
    changes, whoever changed it: a version published by any process (`index_reload_s`), the vocabulary files
    (`vocabulary_reload_s`), the rollout file (`models_reload_s`). `stats` holds the per-model figures of this
    process. With `rerank_batching` the serving and canary rerankers are wrapped here (`batched`), and a wrapper
    swapped out is closed once what was queued on it is scored."""

    def __init__(self, settings: Settings, service: SearchService, parts: Parts, owns_events: bool = False):
        """Serve `service`, building what changes with `parts`; with `owns_events` the service's events store was
        opened for this supervisor and `stop()` closes it (a store that came with a given service is its owner's)."""
        self.settings = settings
        self.parts = parts
        self._owns_events = owns_events
        self.stats = service.stats if service.stats is not None else ModelStats()
        self._batchers: list = []  # the BatchingRerankers made here, closed when swapped out or at stop()
        self._service = replace(service, stats=self.stats, reranker=self._batched(service.reranker),
                                canary=self._batched(service.canary))
        self._lock = threading.Lock()
        self._models_lock = threading.Lock()
        self.index_error: str | None = None
        self.models_error: str | None = None  # why the rollout file's choice is not (all) being served
        self._models_stamp: tuple[int, ...] | None = None
        self._index_stamp: str | None = None  # the published version last served (or tried)
        self._stop = threading.Event()
        self._watchers: list[threading.Thread] = []

    @property
    def service(self) -> SearchService:
        return self._service

    def _batched(self, model: Reranker | None) -> Reranker | None:
        wrapped = batched(self.settings, model)
        if wrapped is not model:
            self._batchers.append(wrapped)
        return wrapped

    @property
    def vocabulary(self) -> Vocabulary:
        return self._service.vocabulary

    def library(self) -> Library:
        """Ingest and delete with the embedder and user dictionary being served."""
        return self.parts.library(self._service.embedder, self._service.vocabulary.analyzer)

    def published_version(self) -> str | None:
        """The version the index folder's CURRENT pointer names now, whoever published it (None: no index yet)."""
        folder = current_version(Path(self.settings.index_dir))
        return folder.name if folder is not None else None

    def index_changed(self) -> bool:
        """Whether a version other than the one served (or last tried) has been published since."""
        return self.published_version() != self._index_stamp

    def reload_index(self, create: bool = False, quiet: bool = True) -> SearchService:
        """Swap in the live index version (an empty new index when there is none and `create`); returns the new
        service. When the index cannot be opened the service has none and `index_error` says why; unless `quiet`
        the error (IndexNotFound, IndexMismatch) is raised too. Any other failure (a version removed while it was
        read, because two more were published meanwhile) raises and changes nothing served. The query cache is
        emptied on a new version: its keys name the version, so nothing of the old one could be served again, and
        its memory is freed at once."""
        with self._lock:
            current = self._service
            published = self.published_version()
            failure: Exception | None = None
            try:
                index = self.parts.open_index(current.embedder, create, current.vocabulary.analyzer)
                self.index_error = None
            except IndexNotFound as exc:
                index, failure = None, exc
                self.index_error = (f"No index at {self.settings.index_dir} yet. Upload documents on the Library "
                                    f"page, or run `kb ingest PATH --index {self.settings.index_dir}` "
                                    "(or `kb demo`).")
            except IndexMismatch as exc:  # a rebuild with another embedder: nothing of the old version is served
                index, failure = None, exc
                self.index_error = str(exc)
            self._index_stamp = index.version if index is not None and index.version else published
            self._service = current.with_index(index)
            if (index.version if index else None) != (current.index.version if current.index else None):
                self._service.cache.clear()
                log.info("index version %s now serves (was %s)", index.version if index else None,
                         current.index.version if current.index else None)
        if failure is not None and not quiet:
            raise failure
        return self._service

    def check_index(self) -> bool:
        """Serve the version published last when it is not the one served; whether it did. Never raises: a version
        that cannot be read is logged, the one served stays, and it is tried again at the next check."""
        return _when_changed(self.index_changed, self.reload_index,
                             "open the newly published index version; the version served stays")

    def vocabulary_changed(self) -> bool:
        """Whether the user dictionary or synonyms file changed (or appeared, or went) since it was read."""
        return file_stamp(*self.parts.vocabulary_paths()) != self._service.vocabulary.stamp

    def reload_vocabulary(self) -> SearchService:
        """Reread both files and swap in a service that uses them. A changed user dictionary re-analyses the
        served index's BM25 from its stored text (no re-embedding) before the swap; searches meanwhile are served
        by the old one."""
        with self._lock:
            current = self._service
            vocab = self.parts.load_vocabulary()
            index = current.index
            if index is not None and index.analyzer.fingerprint != vocab.analyzer.fingerprint:
                index = index.with_analyzer(vocab.analyzer)
            self._service = replace(current, index=index, vocabulary=vocab)
            log.info("vocabulary reloaded: %d user dictionary words, %d synonym sets, %d lines skipped",
                     vocab.counts["user_dict"], vocab.counts["synonyms"], len(vocab.problems))
        return self._service

    def check_vocabulary(self) -> bool:
        """Reload the vocabulary when its files changed; whether it did. Never raises: a failure is logged and the
        current vocabulary stays."""
        return _when_changed(self.vocabulary_changed, self.reload_vocabulary,
                             "reload the user dictionary and synonyms; the previous ones stay in use")

    # ---- reranker versions ----------------------------------------------------------------------------------
    def models_changed(self) -> bool:
        """Whether the rollout file changed (or appeared, or went) since it was last applied."""
        return rollout_stamp(self.parts.rollout().path) != self._models_stamp

    def reload_models(self) -> SearchService:
        """Serve what the rollout file says: the serving model, the canary and the shadow. A model that is not
        loaded yet is loaded beside the one serving, then the service is swapped (with an emptied query cache:
        its results name the models that scored them); a model no longer used is released. A model that fails to
        load changes nothing of its role (the old one keeps serving, a shadow keeps running) and `models_error`
        says why (as do `/info`, the Status page and the log); it is tried again at the next check. A rollout file
        that cannot be read changes nothing at all."""
        s = self.settings
        with self._models_lock:
            path = self.parts.rollout().path
            self._models_stamp = rollout_stamp(path)
            state, error = self.parts.read_rollout()
            if error is not None:
                self.models_error = f"{error}; the models serving now stay"
                log.warning("%s", self.models_error)
                return self._service
            errors: list[str] = []
            current = self._service
            changes: dict = {}
            want = state.serving_model(s.reranker)
            if want != current.reranker_name:
                model, load_error = (None, None) if is_disabled(want) else self.parts.load_reranker(want)
                if load_error is None:
                    model = self._batched(model)
                    calibrator, calibration_error = self.parts.load_calibration(model)
                    changes.update(reranker=model, reranker_name=want, reranker_error=None, calibrator=calibrator,
                                   calibration_error=calibration_error)
                    log.info("reranker %s now serves (was %s)", want, current.reranker_name)
                else:
                    errors.append(f"{load_error}; {current.reranker_name} keeps serving")
            trial = state.canary
            canary_name = current.canary.name if current.canary is not None else None
            if trial is None and canary_name is not None:
                changes.update(canary=None, canary_share=0.0)
            elif trial is not None and (trial.model != canary_name or trial.share != current.canary_share):
                model, load_error = (current.canary, None) if trial.model == canary_name else \
                    self.parts.load_reranker(trial.model)
                if load_error is None and model is not current.canary:
                    model = self._batched(model)
                if load_error is None:
                    changes.update(canary=model, canary_share=trial.share)
                else:
                    errors.append(f"canary not started: {load_error}")
            shadow_name = current.shadow.name if current.shadow is not None else None
            want_shadow = state.shadow.model if state.shadow is not None else None
            if want_shadow is None and shadow_name is not None:
                changes["shadow"] = None
            elif want_shadow is not None and want_shadow != shadow_name:
                model, load_error = self.parts.load_reranker(want_shadow)
                if load_error is None:
                    changes["shadow"] = ShadowRunner(model, self.stats, s.shadow_queue)
                else:
                    errors.append(f"shadow not started: {load_error}")
            if changes:
                with self._lock:
                    self._service = replace(self._service, **changes)
                self._service.cache.clear()  # cached results name the models that scored them
                self._release(current, self._service)
            self.models_error = "; ".join(errors) or None
            if errors:
                self._models_stamp = None  # try again at the next check (a load may fail for want of memory)
                log.warning("rollout file %s: %s", path, self.models_error)
            return self._service

    def _release(self, old: SearchService, new: SearchService) -> None:
        """Free what `old` used and `new` does not: a stopped shadow's thread, and the shared model instances
        (called under the models lock, so a concurrent reload cannot be handed a model being released)."""
        if old.shadow is not None and old.shadow is not new.shadow:
            old.shadow.stop()
        for m in (old.reranker, old.canary):  # a swapped-out batcher: what began on it finishes on it
            if m in self._batchers and m is not new.reranker and m is not new.canary:
                self._batchers.remove(m)
                m.close(drain=True)
        in_use = {m.name for m in (new.reranker, new.canary, new.shadow.reranker if new.shadow else None) if m}
        for m in (old.reranker, old.canary, old.shadow.reranker if old.shadow else None):
            if m is not None and m.name not in in_use:
                self.parts.release_reranker(m.name)

    def check_models(self) -> bool:
        """Follow the rollout file when it changed; whether it did. Never raises (a failure is logged)."""
        return _when_changed(self.models_changed, self.reload_models,
                             "apply the rollout file; the models serving stay")

    def watch(self) -> None:
        """Apply the rollout file now (a shadow starts only in a long-running process), then look for a newly
        published index version every `index_reload_s` seconds, for changes to the rollout file every
        `models_reload_s` and to the vocabulary files every `vocabulary_reload_s`, in daemon threads, until
        `stop()` (no thread for an interval of 0)."""
        if self._watchers:
            return
        self.check_models()
        for interval, check, name in ((self.settings.index_reload_s, self.check_index, "kb-index"),
                                      (self.settings.vocabulary_reload_s, self.check_vocabulary, "kb-vocabulary"),
                                      (self.settings.models_reload_s, self.check_models, "kb-models")):
            if interval <= 0:
                continue

            def run(interval: float = interval, check=check) -> None:
                while not self._stop.wait(interval):
                    check()

            thread = threading.Thread(target=run, name=name, daemon=True)
            thread.start()
            self._watchers.append(thread)

    @property
    def watching(self) -> bool:
        """Whether a watcher thread is running."""
        return any(t.is_alive() for t in self._watchers)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._watchers:
            thread.join(timeout=5)
        self._watchers = []
        if self._service.shadow is not None:
            self._service.shadow.stop()
        # drained, not failed: a request that still reaches this service (an in-process client that runs the
        # app's lifespan once per request, a search begun during shutdown) is scored by the engine alone
        for batcher in self._batchers:
            batcher.close(drain=True)
        self._batchers = []
        if self._owns_events and self._service.events is not None:
            self._service.events.close()  # what it holds queued is written
