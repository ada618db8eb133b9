"""The composition root: `Settings` → parts (embedder, vector store factory, index, reranker, calibrator) →
services (`SearchService`, `Library`). The CLI, the API, the app, evaluation, tuning and benchmarks all build here,
so a setting means the same everywhere and is read in one place.

Parts are built once and handed over whole; a service never loads anything itself. Command-line overrides
(`--index`, `--embedder`, `--reranker`) are applied to the settings first (`Settings.model_copy(update=...)`).
Nothing outside this module constructs an embedder, a reranker or the serving supervisor (`build_live`): every
reranker a process loads is held by its one `POOL`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ingest import OcrOptions
from rerank.calibration import Calibrator, load_calibrator
from rerank.engines.factory import create_reranker, is_disabled
from rerank.engines.pool import ModelPool
from rerank.protocol import Reranker
from rerank.types import RerankerOptions
from retrieval.analyzer import Analyzer
from retrieval.embedder import Embedder
from retrieval.index import IndexNotFound, IndexOpener, KnowledgeIndex
from retrieval.shared import SharedIndex, SharedOpener
from retrieval.stores.base import StoreFactory
from retrieval.stores.faiss import FaissStoreFactory
from retrieval.vocabulary import Vocabulary

from .errors import KbError
from .services.audit import AuditLog
from .services.bestbets import BestBetsSource, BestBetsStore
from .services.control import ControlStore, control_store
from .services.events import EventLog, who_key
from .services.library import IngestOptions, Library
from .services.live import LiveSearch
from .services.request import SearchDefaults
from .services.rollout import RolloutState, RolloutStore, check_promoted_weights, model_id
from .services.saved_settings import KEY as SAVED_KEY
from .services.saved_settings import SavedSettings
from .services.saved_settings import read as read_saved
from .services.search import QueryCache, SearchService
from .services.vocabulary import VocabularyStore
from .settings import Settings, set_by_environment

log = logging.getLogger(__name__)

# The rerankers this process has loaded, shared by every search built here and released only by the serving
# supervisor (a model no role uses any more): one owner of model lifetime per process.
POOL = ModelPool()


# ---- options: settings unpacked once ---------------------------------------------------------------------------
def reranker_options(s: Settings) -> RerankerOptions:
    """How the reranker loads and runs, from the settings (the reranker's own dtype when set)."""
    return RerankerOptions(device=s.device, dtype=s.reranker_dtype, batch_size=s.rerank_batch_size,
                           max_length=s.rerank_max_length, long_passage=s.long_passage, backend=s.rerank_backend,
                           quantize=s.rerank_quantize, threads=s.rerank_threads, exact_top=s.rerank_exact_top,
                           exact_max_share=s.rerank_exact_max_share,
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
                         ocr=ocr_options(s), min_tokens=s.chunk_min_tokens)


def store_factory(s: Settings) -> StoreFactory:
    """Where a folder index keeps its vectors: FAISS inside each version."""
    return FaissStoreFactory(s.ann_threshold)


def milvus_config(s: Settings):
    from retrieval.stores.milvus import MilvusConfig

    return MilvusConfig(s.milvus_uri, s.milvus_collection, s.milvus_index, s.milvus_token)


# ---- the shared database: events and control state (docs/SCALING.md) -----------------------------------------
def database_url(s: Settings) -> str:
    """The shared database: `database_url` (KB_DATABASE_URL, or its old name KB_EVENTS_URL), else the SQLite file
    events.db beside the index folder (one machine needs no setup)."""
    if s.database_url:
        return s.database_url
    # its folder is made (0700) where the database is opened (`retrieval.database.open_engine`), not at each call:
    # serving processes ask for the URL every few seconds
    return f"sqlite:///{Path(s.index_dir).resolve().parent / 'events.db'}"


def control(s: Settings) -> ControlStore:
    """The shared control state (rollout, vocabulary, saved tuning) in the shared database."""
    return control_store(database_url(s))


def vocabulary_paths(s: Settings) -> tuple[Path, Path]:
    """(user dictionary, synonyms): the files from before that are imported into the shared database when it holds
    none yet: the files the settings name, else userdict.txt and synonyms.txt beside the index folder."""
    home = Path(s.index_dir).parent
    return (s.user_dict if s.user_dict is not None else home / "userdict.txt",
            s.synonyms if s.synonyms is not None else home / "synonyms.txt")


def vocabulary_store(s: Settings) -> VocabularyStore:
    """The user dictionary and synonyms in the shared database, importing the settings' files when it has none."""
    user_dict, synonyms = vocabulary_paths(s)
    return VocabularyStore(control(s), {"user_dict": user_dict, "synonyms": synonyms})


def best_bets_store(s: Settings) -> BestBetsStore:
    """The best bets in the shared database (the Vocabulary page, `kb bestbets`, /bestbets)."""
    return BestBetsStore(control(s))


def decisions(s: Settings):
    """Accepting and dismissing what the search log suggests (`app.services.suggestion_decisions`)."""
    from .services.suggestion_decisions import Decisions

    return Decisions(control(s), vocabulary_store(s), best_bets_store(s))


def rollout_store(s: Settings) -> RolloutStore:
    """The rollout state in the shared database; the `rollout_file` setting (else rerankers.json beside the index
    folder) is imported once when the database has none."""
    legacy = s.rollout_file if s.rollout_file is not None else Path(s.index_dir).parent / "rerankers.json"
    return RolloutStore(control(s), legacy)


def saved_settings(s: Settings) -> SavedSettings:
    """The settings saved by `kb tune --write` in the shared database (none when it cannot be read: a warning
    says why, and the configured values serve)."""
    try:
        return read_saved(control(s))
    except KbError as exc:
        log.warning("%s; serving the configured top_k, top_n, threshold and calibration", exc.message)
        return SavedSettings()


def tuned(s: Settings, saved: SavedSettings | None = None) -> Settings:
    """`s` with the saved settings (`saved`, default: read now) applied where no `KB_*` variable sets them: they
    win over the config file, as `kb tune --write` meant them to."""
    saved = saved if saved is not None else saved_settings(s)
    update = {k: v for k, v in saved.values.items() if not set_by_environment(k)}
    return s.model_copy(update=update) if update else s


def read_rollout(s: Settings) -> tuple[RolloutState, str | None]:
    """(the rollout state, None), or (an empty state, why it cannot be read: the `reranker` setting then serves).
    With `follow_rollout` off it is not read."""
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
    """The user dictionary and synonyms in the shared database, read now (a file from before imported first); each
    line skipped is logged with its line number. A database that cannot be read is a warning, and none of those
    words are used until it can be (the watcher tries again)."""
    try:
        vocab = vocabulary_store(s).load()
    except KbError as exc:
        log.warning("%s; no user dictionary or synonyms are used", exc.message)
        return Vocabulary(problems=(exc.message,))
    for problem in vocab.problems:
        log.warning(problem)
    return vocab


def index_opener(s: Settings, analyzer: Analyzer | None = None) -> IndexOpener | SharedOpener:
    """How the corpus is made and opened here: versions in the index folder with FAISS (`vector_store = "faiss"`),
    or a shared corpus in Milvus and the shared database (`"milvus"`: `retrieval.shared`); BM25 terms made with
    `analyzer` (default: the settings' user dictionary). Everything that reads or writes the corpus gets one from
    here."""
    analyzer = analyzer if analyzer is not None else load_vocab(s).analyzer
    if s.vector_store == "milvus":
        return SharedOpener(milvus_config(s), database_url(s), analyzer)
    return IndexOpener(store_factory(s), analyzer)


def apply_user_dictionary(s: Settings) -> str | None:
    """With a corpus in Milvus, make its BM25 terms again with the user dictionary now stored (a new collection,
    the alias moved: `retrieval.shared`), under the writer's lease; the name of the revision published, or None
    when there is nothing to do (FAISS: every process re-analyses its own BM25 when it rereads the vocabulary; or no
    corpus yet; or the terms already use it). WriterBusy while an ingest runs (that ingest applies it)."""
    if s.vector_store != "milvus":
        return None
    opener = index_opener(s)
    root = Path(s.index_dir)
    manifest = opener.read_manifest(root)
    if manifest is None:
        return None
    with opener.writing(root):
        index = opener.open(root, manifest["embedder"], manifest.get("chunker", {}))
        if not index.reanalyzed:
            return None
        return index.save()


def published_version(s: Settings) -> str | None:
    """The name of the version published now, whoever published it (None: none yet): what serving processes poll,
    cheap (no vocabulary read, one small query or one file read)."""
    if s.vector_store == "milvus":
        return SharedOpener(milvus_config(s), database_url(s)).published(Path(s.index_dir))
    return IndexOpener().published(Path(s.index_dir))


def eval_opener(s: Settings, analyzer: Analyzer | None = None) -> IndexOpener:
    """How labelled sets' eval indexes are made and opened (`kb eval`, `kb tune`, the Tuning page): FAISS in their
    own folders whatever the serving store (they must never write into a shared Milvus collection), BM25 read
    with the user dictionary in use."""
    return IndexOpener(None, analyzer if analyzer is not None else load_vocab(s).analyzer)


def open_index(s: Settings, embedder: Embedder, create: bool = False,
               analyzer: Analyzer | None = None) -> KnowledgeIndex | SharedIndex:
    """The live version of the index at `s.index_dir` (IndexNotFound unless `create`, IndexMismatch when built
    with another embedder or vector store), its BM25 read with `analyzer` (default: the settings' user
    dictionary)."""
    return index_opener(s, analyzer).open(Path(s.index_dir), embedder.info(), {}, create=create)


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


def open_reranker(s: Settings, name: str | None = None, options: RerankerOptions | None = None) -> Reranker:
    """The loaded reranker `name` (default: the one serving) with `options` (default: the settings'), from the
    process's `POOL`: loaded once, shared. Raises what the load raises (ModelNotAvailable, RerankerLoadError,
    RerankerParameterError; KbError for a promoted folder whose weights changed since), for a caller that must
    not go on without it (`kb rerank`)."""
    name = name if name is not None else serving_reranker(s)
    # a promoted folder changed since: refused, named; hashed when its weights are read, not for a model held
    return POOL.get(name, options if options is not None else reranker_options(s),
                    before_load=lambda: check_promoted_weights(read_rollout(s)[0], name))


def load_unshared(name: str, options: RerankerOptions) -> Reranker:
    """The reranker `name` loaded for one use and not kept in the pool: the promotion gate's comparison with the
    serving model, on the gate's own (CPU) options, freed once the gate is done."""
    return create_reranker(name, options).load()


def _try_load(s: Settings, name: str, options: RerankerOptions | None = None) -> tuple[Reranker | None, str | None]:
    """(the shared loaded reranker, None) or (None, "reranker NAME could not be loaded: why"), the model named once."""
    try:
        return open_reranker(s, name, options), None
    except Exception as exc:  # noqa: BLE001 — any load failure is reported by the caller, never raised
        why = str(exc)
        # the engines' own messages already name the model ("reranker 'X' cannot be loaded: …"): not said twice
        if why.startswith(f"reranker {name!r} cannot be loaded: "):
            why = why.replace(" cannot be loaded: ", " could not be loaded: ", 1)
        return None, why if why.startswith(f"reranker {name!r}") else f"reranker {name!r} could not be loaded: {why}"


def load_calibration(s: Settings, reranker: Reranker | None,
                     saved: SavedSettings | None = None) -> tuple[Calibrator | None, str | None]:
    """(the calibrator, None) or (None, why it is not used: sigmoid scores are served). The calibrator is the one
    `kb tune --write` saved in the shared database (`saved`, default: read now), unless KB_CALIBRATION names a
    file; else the file `s.calibration` names. A calibrator fitted on another reranker's scores is not used: its
    scale is not this model's."""
    if reranker is None:
        return None, None
    saved = saved if saved is not None else saved_settings(s)
    try:
        if saved.calibrator is not None and not set_by_environment("calibration"):
            where, calibrator = "the calibrator saved by `kb tune --write`", saved.calibrator_obj()
        elif s.calibration is not None:
            where, calibrator = f"calibration {s.calibration}", load_calibrator(s.calibration)
        else:
            return None, None
    except ValueError as exc:
        error = f"{exc}; serving uncalibrated (sigmoid) scores"
        log.warning(error)
        return None, error
    fitted_on = calibrator.info.get("reranker")
    if fitted_on and model_id(str(fitted_on)) != model_id(reranker.name):
        error = (f"{where} was fitted on the scores of {fitted_on}, not of {reranker.name} that "
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
    `LiveSearch`) — never for tuning, evaluation or benchmarks, whose figures belong to the serving model. Its best
    bets are followed from the shared database (reread when changed, asked at most every `vocabulary_reload_s`)."""
    state, rollout_error = read_rollout(s)
    if rollout_error:
        log.warning("serving the reranker setting %r", s.reranker)
    name = state.serving_model(s.reranker)
    model, error = reranker if reranker is not None else load_reranker(s, name=name)
    saved = saved_settings(s)
    calibrator, calibration_error = load_calibration(s, model, saved)
    canary = None
    if trials and state.canary is not None and model is not None:
        canary, canary_error = _try_load(s, state.canary.model)
        if canary_error:  # the canary waits; every search is served by the serving model
            log.warning("canary not started: %s", canary_error)
    return SearchService(embedder, index, model, calibrator, search_defaults(tuned(s, saved)),
                         cache=cache if cache is not None else QueryCache(s.cache_size),
                         index_dir=Path(s.index_dir), reranker_name=name if reranker is None else s.reranker,
                         reranker_error=error, calibration_error=calibration_error, events=events,
                         vocabulary=vocabulary if vocabulary is not None else load_vocab(s), canary=canary,
                         canary_share=state.canary.share if canary is not None else 0.0,
                         # reread when changed, checked at most every vocabulary_reload_s: every replica follows
                         best_bets=BestBetsSource(best_bets_store(s), s.vocabulary_reload_s))


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


def read_index(s: Settings) -> KnowledgeIndex | SharedIndex | None:
    """The live index for reading its documents and chunks without loading the embedder (the embedder it was
    built with is taken from its manifest); None when there is none."""
    opener = index_opener(s)
    manifest = opener.read_manifest(Path(s.index_dir))
    if manifest is None:
        return None
    return opener.open(Path(s.index_dir), manifest["embedder"], {}, create=False)


def events_url(s: Settings) -> str:
    """Where the events store lives: the shared database."""
    return database_url(s)


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
    return Library(Path(s.index_dir), embedder, ingest_options(s), index_opener(s, analyzer), Path(s.upload_dir))


# ---- the serving supervisor ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LiveParts:
    """What `LiveSearch` builds with (`app.services.live.Parts`): this module's builders over one settings object,
    rerankers from the process's `POOL`."""

    s: Settings

    def open_index(self, embedder: Embedder, create: bool, analyzer: Analyzer) -> KnowledgeIndex | SharedIndex:
        return open_index(self.s, embedder, create, analyzer)

    def published_version(self) -> str | None:
        return published_version(self.s)

    def load_vocabulary(self) -> Vocabulary:
        return load_vocab(self.s)

    def vocabulary_stamp(self) -> tuple[int | None, int | None]:
        return vocabulary_store(self.s).stamp()

    def tuning_stamp(self) -> int | None:
        return control(self.s).version(SAVED_KEY)

    def search_defaults(self) -> SearchDefaults:
        return search_defaults(tuned(self.s))

    def rollout(self) -> RolloutStore:
        return rollout_store(self.s)

    def read_rollout(self) -> tuple[RolloutState, str | None]:
        return read_rollout(self.s)

    def load_reranker(self, name: str) -> tuple[Reranker | None, str | None]:
        return _try_load(self.s, name)

    def release_reranker(self, name: str) -> None:
        POOL.release(name, reranker_options(self.s))

    def load_calibration(self, reranker: Reranker | None) -> tuple[Calibrator | None, str | None]:
        return load_calibration(self.s, reranker)

    def library(self, embedder: Embedder, analyzer: Analyzer) -> Library:
        return make_library(self.s, embedder, analyzer)


def live_search(s: Settings, service: SearchService) -> LiveSearch:
    """The serving supervisor over `service`, not started: nothing reloaded or watched yet (`build_live` starts
    one; tests drive its checks by hand). The service's events store stays its owner's to close."""
    return LiveSearch(s, service, LiveParts(s))


def build_live(s: Settings, service: SearchService | None = None, embedder: Embedder | None = None,
               create: bool = False, quiet: bool = True) -> LiveSearch:
    """What a long-running process serves (the API, the app), started: `service` when given (its events store is
    its owner's), else one built here over the embedder (loaded unless given), the events store (closed by the
    supervisor's `stop()`) and the serving reranker; then the index's live version (an empty new index with
    `create`; without one the service has none and `index_error` says why, raised too unless `quiet`), followed
    from now on with the vocabulary, the rollout and the saved settings (`LiveSearch.watch`). When it raises nothing
    is left running."""
    events = None
    if service is None:
        embedder = embedder if embedder is not None else load_embedder(s)
        events = open_events(s)
        service = make_search(s, embedder, None, events=events)
    live = LiveSearch(s, service, LiveParts(s), owns_events=events is not None)
    try:
        live.reload_index(create=create, quiet=quiet)
    except BaseException:
        live.stop()
        raise
    live.watch()
    return live
