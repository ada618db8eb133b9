"""The composition root: `Settings` → parts (embedder, vector store factory, index, reranker, calibrator) →
services (`SearchService`, `Library`). The CLI, the API, the app, evaluation, tuning and benchmarks all build here,
so a setting means the same everywhere and is read in one place.

Parts are built once and handed over whole; a service never loads anything itself. Command-line overrides
(`--index`, `--embedder`, `--reranker`) are applied to the settings first (`Settings.model_copy(update=...)`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path

from ingest import OcrOptions
from ingest.files import private_dir
from rerank.engines.factory import get_reranker, is_disabled, release
from rerank.protocol import Reranker
from rerank.types import RerankerOptions
from retrieval.analyzer import Analyzer
from retrieval.embedder import Embedder
from retrieval.index import IndexNotFound, KnowledgeIndex
from retrieval.storage import current_version
from retrieval.stores.base import StoreFactory
from retrieval.stores.faiss import FaissStoreFactory
from retrieval.vocabulary import Vocabulary, file_stamp, load_vocabulary

from .errors import KbError
from .quality.calibration import Calibrator, load_calibrator
from .services.audit import AuditLog
from .services.events import EventLog, who_key
from .services.library import IngestOptions, Library
from .services.model_stats import ModelStats
from .services.rollout import RolloutState, RolloutStore, check_promoted_weights, model_id
from .services.rollout import stamp as rollout_stamp
from .services.search import QueryCache, SearchDefaults, SearchService
from .services.shadow import ShadowRunner
from .settings import Settings

log = logging.getLogger(__name__)


# ---- options: settings unpacked once ---------------------------------------------------------------------------
def reranker_options(s: Settings) -> RerankerOptions:
    """How the reranker loads and runs, from the settings (the reranker's own dtype when set)."""
    return RerankerOptions(device=s.device, dtype=s.reranker_dtype, batch_size=s.rerank_batch_size,
                           max_length=s.rerank_max_length, long_passage=s.long_passage, backend=s.rerank_backend,
                           quantize=s.rerank_quantize, threads=s.rerank_threads, exact_top=s.rerank_exact_top,
                           models_dir=str(s.models_dir), api_key=s.reranker_api_key,
                           allow_remote_code=s.rerank_allow_remote_code)


def search_defaults(s: Settings) -> SearchDefaults:
    return SearchDefaults(top_k=s.top_k, top_n=s.top_n, threshold=s.threshold, mode=s.recall_mode,
                          max_per_doc=s.max_per_doc, merge=s.merge_adjacent, dense_weight=s.dense_weight,
                          lexical_weight=s.lexical_weight, rrf_k=s.rrf_k, rerank_budget_ms=s.rerank_budget_ms)


def ocr_options(s: Settings) -> OcrOptions:
    return OcrOptions(enabled=s.ocr_enabled, engine=s.ocr_engine, languages=tuple(s.ocr_languages.split("+")),
                      timeout_s=s.ocr_timeout_s, min_confidence=s.ocr_min_confidence, dpi=s.ocr_dpi)


def ingest_options(s: Settings) -> IngestOptions:
    return IngestOptions(max_tokens=s.chunk_max_tokens, overlap=s.chunk_overlap, max_bytes=int(s.max_file_mb * 2**20),
                         ocr=ocr_options(s))


def store_factory(s: Settings) -> StoreFactory:
    """FAISS inside each index version, or one Milvus collection (`vector_store = "milvus"`)."""
    if s.vector_store == "faiss":
        return FaissStoreFactory(s.ann_threshold)
    from retrieval.stores.milvus import MilvusConfig, MilvusStoreFactory

    return MilvusStoreFactory(MilvusConfig(s.milvus_uri, s.milvus_collection, s.milvus_index, s.milvus_token))


def vocabulary_paths(s: Settings) -> tuple[Path, Path]:
    """(user dictionary, synonyms): the files the settings name, else userdict.txt and synonyms.txt beside the
    index folder (where the app's Vocabulary page saves them)."""
    home = Path(s.index_dir).parent
    return (s.user_dict if s.user_dict is not None else home / "userdict.txt",
            s.synonyms if s.synonyms is not None else home / "synonyms.txt")


def rollout_store(s: Settings) -> RolloutStore:
    """The rollout file: the `rollout_file` setting, else rerankers.json beside the index folder."""
    return RolloutStore(s.rollout_file if s.rollout_file is not None else Path(s.index_dir).parent / "rerankers.json")


def read_rollout(s: Settings) -> tuple[RolloutState, str | None]:
    """(what the rollout file says, None), or (an empty state, why the file cannot be read: the `reranker`
    setting then serves). With `follow_rollout` off the file is not read."""
    if not s.follow_rollout:
        return RolloutState(), None
    try:
        return rollout_store(s).read(), None
    except KbError as exc:
        log.warning("%s", exc.message)
        return RolloutState(), exc.message


def serving_reranker(s: Settings) -> str:
    """The name of the reranker that serves: the last promoted one, else the `reranker` setting."""
    return read_rollout(s)[0].serving_model(s.reranker)


# ---- parts -----------------------------------------------------------------------------------------------------
def load_embedder(s: Settings) -> Embedder:
    """The embedder the settings name, loaded (ModelNotAvailable / ValueError when it cannot be)."""
    return Embedder(s.embedder, s.device, s.dtype, str(s.models_dir)).load()


def load_vocab(s: Settings) -> Vocabulary:
    """The user dictionary and synonyms the settings name, read now; each line skipped is logged with its file and
    line number. A file that names no file that exists is a warning too (an absent default file is not)."""
    user_dict, synonyms = vocabulary_paths(s)
    vocab = load_vocabulary(user_dict, synonyms)
    for given, stamp in ((s.user_dict, vocab.stamp[0]), (s.synonyms, vocab.stamp[1])):
        if given is not None and stamp is None:
            log.warning("%s does not exist: create it, or unset the setting that names it", given)
    for problem in vocab.problems:
        log.warning(problem)
    return vocab


def open_index(s: Settings, embedder: Embedder, create: bool = False,
               analyzer: Analyzer | None = None) -> KnowledgeIndex:
    """The live version of the index at `s.index_dir` (IndexNotFound unless `create`, IndexMismatch when built
    with another embedder or vector store), its BM25 read with `analyzer` (default: the settings' user
    dictionary)."""
    analyzer = analyzer if analyzer is not None else load_vocab(s).analyzer
    return KnowledgeIndex.open(Path(s.index_dir), embedder.info(), {}, store_factory(s), create=create,
                               analyzer=analyzer)


def load_reranker(s: Settings, options: RerankerOptions | None = None,
                  name: str | None = None) -> tuple[Reranker | None, str | None]:
    """(the process-wide loaded reranker `name` — default: the one serving, `serving_reranker` —, None) or (None,
    why not). "none" is (None, None): switched off. A load failure is logged and returned, never raised: search
    then serves recall-only results and says so."""
    name = name if name is not None else serving_reranker(s)
    if is_disabled(name):
        return None, None
    model, cause = _try_load(s, name, options)
    if cause is None:
        return model, None
    error = f"{cause}; serving recall-only results (scores are not reranker scores)"
    log.warning(error)
    return None, error


def _try_load(s: Settings, name: str, options: RerankerOptions | None = None) -> tuple[Reranker | None, str | None]:
    """(the shared loaded reranker, None) or (None, "reranker NAME could not be loaded (why)")."""
    try:
        check_promoted_weights(read_rollout(s)[0], name)  # a promoted folder changed since: refused, named
        return get_reranker(name, options if options is not None else reranker_options(s)), None
    except Exception as exc:  # noqa: BLE001 — any load failure is reported by the caller, never raised
        return None, f"reranker {name!r} could not be loaded ({exc})"


def load_calibration(s: Settings, reranker: Reranker | None) -> tuple[Calibrator | None, str | None]:
    """(the calibrator `s.calibration` names, None) or (None, why it is not used: sigmoid scores are served). A
    calibrator fitted on another reranker's scores is not used: its scale is not this model's."""
    if s.calibration is None or reranker is None:
        return None, None
    try:
        calibrator = load_calibrator(s.calibration)
    except ValueError as exc:
        error = f"{exc}; serving uncalibrated (sigmoid) scores"
        log.warning(error)
        return None, error
    fitted_on = calibrator.info.get("reranker")
    if fitted_on and model_id(str(fitted_on)) != model_id(reranker.name):
        error = (f"calibration {s.calibration} was fitted on the scores of {fitted_on}, not of {reranker.name} that "
                 "serves now; serving uncalibrated (sigmoid) scores until `kb tune --write` fits it again")
        log.warning(error)
        return None, error
    return calibrator, None


# ---- services --------------------------------------------------------------------------------------------------
def make_search(s: Settings, embedder: Embedder, index: KnowledgeIndex | None,
                reranker: tuple[Reranker | None, str | None] | None = None,
                cache: QueryCache | None = None, events: EventLog | None = None,
                vocabulary: Vocabulary | None = None, trials: bool = False) -> SearchService:
    """A `SearchService` over these parts; the reranker (and its calibrator) is loaded here unless given as the
    (reranker, error) pair `load_reranker` returns, and the vocabulary read unless given. With `events` its
    searches are recorded. The serving reranker is the promoted one (`read_rollout`); with `trials` a canary
    reranks its share of searches too (what people are served: `kb search`, and the API and app through
    `LiveSearch`) — never for tuning, evaluation or benchmarks, whose figures belong to the serving model."""
    state, rollout_error = read_rollout(s)
    if rollout_error:
        log.warning("serving the reranker setting %r", s.reranker)
    name = state.serving_model(s.reranker)
    model, error = reranker if reranker is not None else load_reranker(s, name=name)
    calibrator, calibration_error = load_calibration(s, model)
    canary = None
    if trials and state.canary is not None and model is not None:
        canary, canary_error = _try_load(s, state.canary.model)
        if canary_error:  # the canary waits; every search is served by the serving model
            log.warning("canary not started: %s", canary_error)
    return SearchService(embedder, index, model, calibrator, search_defaults(s),
                         cache=cache if cache is not None else QueryCache(s.cache_size),
                         index_dir=Path(s.index_dir), reranker_name=name if reranker is None else s.reranker,
                         reranker_error=error, calibration_error=calibration_error, events=events,
                         vocabulary=vocabulary if vocabulary is not None else load_vocab(s), canary=canary,
                         canary_share=state.canary.share if canary is not None else 0.0)


def build_search(s: Settings, embedder: Embedder | None = None, need_index: bool = True,
                 trials: bool = False) -> SearchService:
    """Everything a search needs, loaded from the settings: the embedder (unless given), the vocabulary, the live
    index (IndexNotFound when there is none and `need_index`), the reranker and its calibrator (and, with
    `trials`, a canary: see `make_search`)."""
    embedder = embedder if embedder is not None else load_embedder(s)
    vocab = load_vocab(s)
    try:
        index = open_index(s, embedder, analyzer=vocab.analyzer)
    except IndexNotFound:
        if need_index:
            raise
        index = None
    return make_search(s, embedder, index, vocabulary=vocab, trials=trials)


def eval_root(s: Settings) -> Path:
    """Where labelled sets keep their eval indexes: beside the main index (INDEX/../eval), shared by `kb eval`,
    `kb tune` and the Tuning page."""
    return Path(s.index_dir).parent / "eval"


def oidc_verifier(s: Settings):
    """The API's check of the sign-in provider's bearer tokens, or None without a provider (open mode or API keys
    only)."""
    if not s.auth.configured:
        return None
    from .oidc import OidcVerifier

    secret = s.auth.client_secret.get_secret_value() if s.auth.client_secret is not None else None
    return OidcVerifier(s.auth.provider_url, s.auth.client_id or "", s.auth.groups_claim, s.auth.admin_group,
                        client_secret=secret)  # the secret: for token introspection (opaque access tokens)


def audit_log(s: Settings) -> AuditLog:
    return AuditLog(s.audit_log if s.audit_log is not None else Path(s.index_dir).parent / "audit.jsonl",
                    int(s.audit_max_mb * 2**20), s.audit_keep)


def read_index(s: Settings) -> KnowledgeIndex | None:
    """The live index for reading its documents and chunks without loading the embedder (the embedder it was
    built with is taken from its manifest); None when there is none."""
    manifest = KnowledgeIndex.read_manifest(Path(s.index_dir))
    if manifest is None:
        return None
    return KnowledgeIndex.open(Path(s.index_dir), manifest["embedder"], {}, store_factory(s), create=False,
                               analyzer=load_vocab(s).analyzer)


def events_url(s: Settings) -> str:
    if s.events_url:
        return s.events_url
    path = Path(s.index_dir).resolve().parent / "events.db"
    private_dir(path.parent, chmod=False)  # a folder made here is 0700: the database holds everyone's questions
    return f"sqlite:///{path}"


def open_events(s: Settings) -> EventLog | None:
    """The opened events store (None when `events` is off, or when it cannot be opened: a warning says why, and
    searches are served unrecorded)."""
    if not s.events:
        return None
    key = s.events_key.get_secret_value().encode() if s.events_key is not None else \
        who_key(Path(s.index_dir).resolve().parent / "events.key")
    store = EventLog(events_url(s), key, s.events_store_user, s.events_retention_days, s.events_queue)
    try:
        return store.open()
    except KbError as exc:
        log.warning("%s; searches are not recorded", exc.message)
        return None


def make_library(s: Settings, embedder: Embedder, analyzer: Analyzer | None = None) -> Library:
    """Ingest and delete for the index at `s.index_dir`; BM25 analysed with `analyzer` (default: the settings'
    user dictionary)."""
    analyzer = analyzer if analyzer is not None else load_vocab(s).analyzer
    return Library(Path(s.index_dir), embedder, ingest_options(s), store_factory(s), Path(s.upload_dir), analyzer)



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

    def __init__(self, settings: Settings, service: SearchService):
        self.settings = settings
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
        return make_library(self.settings, self._service.embedder, self._service.vocabulary.analyzer)

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
        from retrieval.index import IndexMismatch

        with self._lock:
            current = self._service
            published = self.published_version()
            failure: Exception | None = None
            try:
                index = open_index(self.settings, current.embedder, create=create,
                                   analyzer=current.vocabulary.analyzer)
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
        return file_stamp(*vocabulary_paths(self.settings)) != self._service.vocabulary.stamp

    def reload_vocabulary(self) -> SearchService:
        """Reread both files and swap in a service that uses them. A changed user dictionary re-analyses the
        served index's BM25 from its stored text (no re-embedding) before the swap; searches meanwhile are served
        by the old one."""
        with self._lock:
            current = self._service
            vocab = load_vocab(self.settings)
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
        return rollout_stamp(rollout_store(self.settings).path) != self._models_stamp

    def reload_models(self) -> SearchService:
        """Serve what the rollout file says: the serving model, the canary and the shadow. A model that is not
        loaded yet is loaded beside the one serving, then the service is swapped (with an emptied query cache:
        its results name the models that scored them); a model no longer used is released. A model that fails to
        load changes nothing of its role (the old one keeps serving, a shadow keeps running) and `models_error`
        says why (as do `/info`, the Status page and the log); it is tried again at the next check. A rollout file
        that cannot be read changes nothing at all."""
        s = self.settings
        with self._models_lock:
            path = rollout_store(s).path
            self._models_stamp = rollout_stamp(path)
            state, error = read_rollout(s)
            if error is not None:
                self.models_error = f"{error}; the models serving now stay"
                log.warning("%s", self.models_error)
                return self._service
            errors: list[str] = []
            current = self._service
            changes: dict = {}
            want = state.serving_model(s.reranker)
            if want != current.reranker_name:
                model, load_error = (None, None) if is_disabled(want) else _try_load(s, want)
                if load_error is None:
                    model = self._batched(model)
                    calibrator, calibration_error = load_calibration(s, model)
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
                    _try_load(s, trial.model)
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
                model, load_error = _try_load(s, want_shadow)
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
        options = reranker_options(self.settings)
        for m in (old.reranker, old.canary, old.shadow.reranker if old.shadow else None):
            if m is not None and m.name not in in_use:
                release(m.name, options)

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
