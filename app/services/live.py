"""The serving supervisor: `LiveSearch`, the `SearchService` a long-running process (the API, the app) serves, swapped
whole whenever the published index version, the vocabulary, the rollout or the saved settings change (the last
three live in the shared database: every process on every machine follows the same versions).

It is built in one place (`app.components.build_live`) and builds nothing itself: every part it needs (an index
version, the vocabulary, a reranker, its calibrator, a library) comes through the `Parts` it was given, which
`app.components` makes over the settings and the process's one `ModelPool`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Protocol

from rerank.calibration import Calibrator
from rerank.engines.factory import is_disabled
from rerank.protocol import Reranker
from retrieval.analyzer import Analyzer
from retrieval.embedder import Embedder
from retrieval.index import IndexMismatch, IndexNotFound, KnowledgeIndex
from retrieval.vocabulary import Vocabulary

from ..errors import KbError
from ..settings import Settings
from .library import Library
from .model_stats import ModelStats
from .request import SearchDefaults
from .rollout import RolloutState, RolloutStore
from .search import SearchService
from .shadow import ShadowRunner

log = logging.getLogger(__name__)

_UNREAD = object()  # a stamp never equal to a version read: the next check reads again


class Parts(Protocol):
    """What `LiveSearch` builds with, each read from the settings it was made with (`app.components.LiveParts`)."""

    def open_index(self, embedder: Embedder, create: bool, analyzer: Analyzer) -> KnowledgeIndex:
        """The live index version (IndexNotFound unless `create`, IndexMismatch for another embedder or store)."""

    def load_vocabulary(self) -> Vocabulary:
        """The user dictionary and synonyms, read now."""

    def published_version(self) -> str | None:
        """The name of the version published now, whoever published it (None: none yet)."""

    def vocabulary_stamp(self) -> tuple[int | None, int | None]:
        """The versions of the user dictionary and synonyms stored now (what `Vocabulary.stamp` holds)."""

    def rollout(self) -> RolloutStore:
        """The rollout state's store."""

    def read_rollout(self) -> tuple[RolloutState, str | None]:
        """(the rollout state, None) or (an empty state, why it cannot be read)."""

    def tuning_stamp(self) -> int | None:
        """The version of the settings saved by `kb tune --write` (None: none saved)."""

    def search_defaults(self) -> SearchDefaults:
        """The search defaults: the settings with the saved ones applied, read now."""

    def load_reranker(self, name: str) -> tuple[Reranker | None, str | None]:
        """(the shared loaded reranker `name`, None) or (None, why it could not be loaded)."""

    def release_reranker(self, name: str) -> None:
        """Forget the shared reranker `name`: no role uses it any more."""

    def load_calibration(self, reranker: Reranker | None) -> tuple[Calibrator | None, str | None]:
        """(the calibrator for `reranker`'s scores, None) or (None, why none is used)."""

    def library(self, embedder: Embedder, analyzer: Analyzer) -> Library:
        """Ingest and delete for the index, with this embedder and user dictionary."""


def _when_changed(changed, reload, what: str) -> bool:
    """`reload()` when `changed()`; whether it did. A watcher must outlive one bad reload and a store that does not
    answer (the shared database down): a failure of either is logged ("could not <what>") and reported as False."""
    try:
        if not changed():
            return False
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
    version, `reload_vocabulary` rereads the user dictionary and synonyms, `reload_models` follows the rollout
    (promotion, rollback, canary, shadow); each swaps in a new service, so a search running meanwhile finishes on
    what it started with and nobody sees a half-changed service. `watch()` does all three whenever something
    changes, whoever changed it: a version published by any process (`index_reload_s`), the vocabulary
    (`vocabulary_reload_s`), the rollout and the saved settings (`models_reload_s`), the last three in the shared
    database. `stats` holds the per-model figures of this process. With `rerank_batching` the serving and canary
    rerankers are wrapped here (`batched`), and a wrapper swapped out is closed once what was queued on it is
    scored."""

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
        self.models_error: str | None = None  # why the rollout's choice is not (all) being served
        self._models_stamp: object = _UNREAD
        self._stamp_error: str | None = None  # the last failure to poll the shared database (logged once)
        self._tuning_stamp: object = self._stamp(parts.tuning_stamp)  # the service was built with these
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
        """The version published now (the index folder's CURRENT, or the shared database's newest revision),
        whoever published it (None: no index yet)."""
        return self.parts.published_version()

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
            try:
                published = self.published_version()
            except Exception as exc:
                if getattr(exc, "kind", None) != "not_ready":
                    raise
                published = None  # the shared database does not answer: opening says so below
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
            except Exception as exc:
                if getattr(exc, "kind", None) != "not_ready" or current.index is not None:
                    raise  # a version that cannot be read now: the one served stays, tried again next tick
                # the shared database or Milvus does not answer at start: serve 503s saying why, and keep trying
                index, failure, published = None, exc, None
                self.index_error = f"the corpus cannot be read yet: {exc}"
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

    def _stamp(self, read) -> object:
        """`read()` (a version in the shared database), or _UNREAD when the database cannot be read: logged once
        per outage; the watcher keeps what it serves and tries again."""
        try:
            found = read()
        except KbError as exc:
            if exc.message != self._stamp_error:
                log.warning("%s; what is served stays until it can be read", exc.message)
            self._stamp_error = exc.message
            return _UNREAD
        if self._stamp_error is not None:
            log.warning("the shared database can be read again")
            self._stamp_error = None
        return found

    def vocabulary_changed(self) -> bool:
        """Whether the user dictionary or synonyms were saved (by any process) since they were read."""
        stamp = self._stamp(self.parts.vocabulary_stamp)
        return stamp is not _UNREAD and stamp != self._service.vocabulary.stamp

    def reload_vocabulary(self) -> SearchService:
        """Reread both from the shared database and swap in a service that uses them. A changed user dictionary
        re-analyses the served index's BM25 from its stored text (no re-embedding) before the swap; searches
        meanwhile are served by the old one."""
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
        """Reload the vocabulary when it changed; whether it did. Never raises: a failure is logged and the
        current vocabulary stays."""
        return _when_changed(self.vocabulary_changed, self.reload_vocabulary,
                             "reload the user dictionary and synonyms; the previous ones stay in use")

    # ---- reranker versions ----------------------------------------------------------------------------------
    def models_changed(self) -> bool:
        """Whether the rollout changed (its version in the shared database) since it was last applied."""
        stamp = self._stamp(self.parts.rollout().stamp)
        return stamp is not _UNREAD and stamp != self._models_stamp

    def reload_models(self) -> SearchService:
        """Serve what the rollout says: the serving model, the canary and the shadow. A model that is not
        loaded yet is loaded beside the one serving, then the service is swapped (with an emptied query cache:
        its results name the models that scored them); a model no longer used is released. A model that fails to
        load changes nothing of its role (the old one keeps serving, a shadow keeps running) and `models_error`
        says why (as do `/info`, the Status page and the log); it is tried again at the next check. A rollout that
        cannot be read changes nothing at all."""
        s = self.settings
        with self._models_lock:
            store = self.parts.rollout()
            self._models_stamp = self._stamp(store.stamp)
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
                self._models_stamp = _UNREAD  # try again at the next check (a load may fail for want of memory)
                log.warning("%s: %s", store.where, self.models_error)
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
        """Follow the rollout when it changed; whether it did. Never raises (a failure is logged)."""
        return _when_changed(self.models_changed, self.reload_models,
                             "apply the rollout; the models serving stay")

    # ---- settings saved by `kb tune --write` -----------------------------------------------------------------
    def tuning_changed(self) -> bool:
        """Whether the saved settings changed (by any process) since they were applied."""
        stamp = self._stamp(self.parts.tuning_stamp)
        return stamp is not _UNREAD and stamp != self._tuning_stamp

    def reload_tuning(self) -> SearchService:
        """Serve the saved settings now: the search defaults (top_k, top_n, threshold) and the calibrator of the
        reranker serving; the query cache is emptied (its results were cut at the old threshold)."""
        with self._models_lock:
            self._tuning_stamp = self._stamp(self.parts.tuning_stamp)
            defaults = self.parts.search_defaults()
            calibrator, calibration_error = self.parts.load_calibration(self._service.reranker)
            with self._lock:
                self._service = replace(self._service, defaults=defaults, calibrator=calibrator,
                                        calibration_error=calibration_error)
            self._service.cache.clear()
            log.info("saved settings applied: top_k %d, top_n %d, threshold %g, %s", defaults.top_k, defaults.top_n,
                     defaults.threshold, "calibrated" if calibrator is not None else "sigmoid scores")
            return self._service

    def check_tuning(self) -> bool:
        """Apply the saved settings when they changed; whether it did. Never raises (a failure is logged)."""
        return _when_changed(self.tuning_changed, self.reload_tuning,
                             "apply the saved settings; the ones in use stay")

    def check_control(self) -> None:
        """Follow the rollout and the saved settings (what the models watcher does every `models_reload_s`)."""
        self.check_models()
        self.check_tuning()

    def watch(self) -> None:
        """Apply the rollout now (a shadow starts only in a long-running process), then look for a newly
        published index version every `index_reload_s` seconds, for changes to the rollout and the saved settings
        every `models_reload_s` and to the vocabulary every `vocabulary_reload_s`, in daemon threads, until
        `stop()` (no thread for an interval of 0)."""
        if self._watchers:
            return
        self.check_models()
        for interval, check, name in ((self.settings.index_reload_s, self.check_index, "kb-index"),
                                      (self.settings.vocabulary_reload_s, self.check_vocabulary, "kb-vocabulary"),
                                      (self.settings.models_reload_s, self.check_control, "kb-models")):
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
