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
from rerank.engines.factory import get_reranker, is_disabled
from rerank.protocol import Reranker
from rerank.types import RerankerOptions
from retrieval.analyzer import Analyzer
from retrieval.embedder import Embedder
from retrieval.index import IndexNotFound, KnowledgeIndex
from retrieval.stores.base import StoreFactory
from retrieval.stores.faiss import FaissStoreFactory
from retrieval.vocabulary import Vocabulary, file_stamp, load_vocabulary

from .errors import KbError
from .quality.calibration import Calibrator, load_calibrator
from .services.audit import AuditLog
from .services.events import EventLog, who_key
from .services.library import IngestOptions, Library
from .services.search import QueryCache, SearchDefaults, SearchService
from .settings import Settings

log = logging.getLogger(__name__)


# ---- options: settings unpacked once ---------------------------------------------------------------------------
def reranker_options(s: Settings) -> RerankerOptions:
    """How the reranker loads and runs, from the settings (the reranker's own dtype when set)."""
    return RerankerOptions(device=s.device, dtype=s.reranker_dtype, batch_size=s.rerank_batch_size,
                           max_length=s.rerank_max_length, long_passage=s.long_passage, backend=s.rerank_backend,
                           quantize=s.rerank_quantize, threads=s.rerank_threads, exact_top=s.rerank_exact_top,
                           models_dir=str(s.models_dir), api_key=s.reranker_api_key)


def search_defaults(s: Settings) -> SearchDefaults:
    return SearchDefaults(top_k=s.top_k, top_n=s.top_n, threshold=s.threshold, mode=s.recall_mode,
                          max_per_doc=s.max_per_doc, merge=s.merge_adjacent, dense_weight=s.dense_weight,
                          lexical_weight=s.lexical_weight, rrf_k=s.rrf_k)


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


def load_reranker(s: Settings, options: RerankerOptions | None = None) -> tuple[Reranker | None, str | None]:
    """(the process-wide loaded reranker, None) or (None, why not). "none" is (None, None): switched off. A load
    failure is logged and returned, never raised: search then serves recall-only results and says so."""
    if is_disabled(s.reranker):
        return None, None
    try:
        return get_reranker(s.reranker, options if options is not None else reranker_options(s)), None
    except Exception as exc:  # noqa: BLE001 — any load failure means recall-only, said loudly
        error = (f"reranker {s.reranker!r} could not be loaded ({exc}); serving recall-only results (scores are "
                 "not reranker scores)")
        log.warning(error)
        return None, error


def load_calibration(s: Settings, reranker: Reranker | None) -> tuple[Calibrator | None, str | None]:
    """(the calibrator `s.calibration` names, None) or (None, why it is not used: sigmoid scores are served)."""
    if s.calibration is None or reranker is None:
        return None, None
    try:
        return load_calibrator(s.calibration), None
    except ValueError as exc:
        error = f"{exc}; serving uncalibrated (sigmoid) scores"
        log.warning(error)
        return None, error


# ---- services --------------------------------------------------------------------------------------------------
def make_search(s: Settings, embedder: Embedder, index: KnowledgeIndex | None,
                reranker: tuple[Reranker | None, str | None] | None = None,
                cache: QueryCache | None = None, events: EventLog | None = None,
                vocabulary: Vocabulary | None = None) -> SearchService:
    """A `SearchService` over these parts; the reranker (and its calibrator) is loaded here unless given as the
    (reranker, error) pair `load_reranker` returns, and the vocabulary read unless given. With `events` its
    searches are recorded."""
    model, error = reranker if reranker is not None else load_reranker(s)
    calibrator, calibration_error = load_calibration(s, model)
    return SearchService(embedder, index, model, calibrator, search_defaults(s),
                         cache=cache if cache is not None else QueryCache(s.cache_size),
                         index_dir=Path(s.index_dir), reranker_name=s.reranker, reranker_error=error,
                         calibration_error=calibration_error, events=events,
                         vocabulary=vocabulary if vocabulary is not None else load_vocab(s))


def build_search(s: Settings, embedder: Embedder | None = None, need_index: bool = True) -> SearchService:
    """Everything a search needs, loaded from the settings: the embedder (unless given), the vocabulary, the live
    index (IndexNotFound when there is none and `need_index`), the reranker and its calibrator."""
    embedder = embedder if embedder is not None else load_embedder(s)
    vocab = load_vocab(s)
    try:
        index = open_index(s, embedder, analyzer=vocab.analyzer)
    except IndexNotFound:
        if need_index:
            raise
        index = None
    return make_search(s, embedder, index, vocabulary=vocab)


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

    return OidcVerifier(s.auth.provider_url, s.auth.client_id or "", s.auth.groups_claim, s.auth.admin_group)


def audit_log(s: Settings) -> AuditLog:
    return AuditLog(s.audit_log if s.audit_log is not None else Path(s.index_dir).parent / "audit.jsonl")


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
    path.parent.mkdir(parents=True, exist_ok=True)
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


class LiveSearch:
    """The `SearchService` a long-running process (API, app) serves. `reload_index` opens the index's newest
    version and `reload_vocabulary` rereads the user dictionary and synonyms; either swaps in a new service with
    the same models and cache, so a search running meanwhile finishes on what it started with and nobody sees a
    half-changed service. `watch()` rereads the vocabulary files whenever they change (`vocabulary_reload_s`)."""

    def __init__(self, settings: Settings, service: SearchService):
        self.settings = settings
        self._service = service
        self._lock = threading.Lock()
        self.index_error: str | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def service(self) -> SearchService:
        return self._service

    @property
    def vocabulary(self) -> Vocabulary:
        return self._service.vocabulary

    def library(self) -> Library:
        """Ingest and delete with the embedder and user dictionary being served."""
        return make_library(self.settings, self._service.embedder, self._service.vocabulary.analyzer)

    def reload_index(self, create: bool = False, quiet: bool = True) -> SearchService:
        """Swap in the live index version (an empty new index when there is none and `create`); returns the new
        service. When the index cannot be opened the service has none and `index_error` says why; unless `quiet`
        the error (IndexNotFound, IndexMismatch) is raised too."""
        from retrieval.index import IndexMismatch

        with self._lock:
            current = self._service
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
            except IndexMismatch as exc:
                index, failure = None, exc
                self.index_error = str(exc)
            self._service = current.with_index(index)
        if failure is not None and not quiet:
            raise failure
        return self._service

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
        if not self.vocabulary_changed():
            return False
        try:
            self.reload_vocabulary()
        except Exception:  # noqa: BLE001 — a watcher must outlive one bad reload
            log.exception("could not reload the user dictionary and synonyms; the previous ones stay in use")
            return False
        return True

    def watch(self) -> None:
        """Look for changes to the vocabulary files every `vocabulary_reload_s` seconds, in a daemon thread, until
        `stop()` (no thread when the interval is 0)."""
        interval = self.settings.vocabulary_reload_s
        if interval <= 0 or self._watcher is not None:
            return

        def run() -> None:
            while not self._stop.wait(interval):
                self.check_vocabulary()

        self._watcher = threading.Thread(target=run, name="kb-vocabulary", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None
