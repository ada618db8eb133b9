"""Settings: defaults < config file (`kb.toml`, or the file named by `KB_CONFIG`) < `KB_*` environment variables.

Read once with `get_settings()`; `app.components` turns them into parts, and code below `app/` receives values as
arguments, never reads settings itself. Sign-in settings live in `[auth]` of the config file or `KB_AUTH_*`
variables (`KB_AUTH_PROVIDER_URL` is `auth.provider_url`); secrets are `SecretStr`, never printed.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from rerank.params import BACKENDS, BUDGET_MS_RANGE, LONG_PASSAGE_MODES, TOP_N_RANGE
from retrieval.device import DTYPES
from retrieval.types import MODES, TOP_K_RANGE

DEFAULT_CONFIG = "kb.toml"


def config_path() -> Path:
    return Path(os.environ.get("KB_CONFIG", DEFAULT_CONFIG))


class AuthSettings(BaseModel):
    """Sign-in with an OIDC provider (Microsoft Entra ID, Okta, Keycloak, ...): the app requires login, the API
    accepts the provider's tokens beside API keys. Unset `provider_url`: open mode (docs/SECURITY.md)."""

    model_config = ConfigDict(extra="forbid")

    provider_url: str | None = Field(None, description="the OIDC issuer; its discovery document is at "
                                     "PROVIDER_URL/.well-known/openid-configuration")
    client_id: str | None = Field(None, description="this application's client id at the provider (the tokens' "
                                  "audience)")
    client_secret: SecretStr | None = Field(None, description="the client secret (the app's login)")
    groups_claim: str = Field("groups", description="the token claim with the user's groups: a list, or a "
                              "space/comma separated string")
    admin_group: str = Field("kb-admin", description="members of this group may open Library, Tuning and Status "
                             "and ingest or delete through the API")
    cookie_secret: SecretStr | None = Field(None, description="signs the app's login cookie (a long random string)")
    redirect_uri: str | None = Field(None, description="where the provider sends people back after login "
                                     "[default: http://HOST:PORT/oauth2callback of `kb ui`]")
    recheck_s: float = Field(900.0, ge=0, description="the app asks the provider for a signed-in person's groups "
                             "again after this many seconds (and when the ID token expires); a refusal signs them "
                             "out (0: at every page)")

    @property
    def configured(self) -> bool:
        return bool(self.provider_url)

    def missing(self, for_app: bool) -> list[str]:
        """The settings a sign-in still needs, by their environment names (the app needs all four; the API only
        the issuer and the client id). Empty when none is set at all: open mode."""
        needed = {"KB_AUTH_PROVIDER_URL": self.provider_url, "KB_AUTH_CLIENT_ID": self.client_id}
        if for_app:
            needed |= {"KB_AUTH_CLIENT_SECRET": self.client_secret, "KB_AUTH_COOKIE_SECRET": self.cookie_secret}
        given = [v for v in (self.provider_url, self.client_id, self.client_secret, self.cookie_secret) if v]
        return [name for name, value in needed.items() if not value] if given else []

    @property
    def discovery_url(self) -> str:
        return f"{(self.provider_url or '').rstrip('/')}/.well-known/openid-configuration"


class Settings(BaseSettings):
    # populate_by_name: `database_url` is read by its name from arguments and the config file, by its aliases
    # (KB_DATABASE_URL, KB_EVENTS_URL) from the environment, and never from a bare DATABASE_URL of other software
    model_config = SettingsConfigDict(env_prefix="KB_", extra="ignore", validate_default=True,
                                      env_nested_delimiter="_", env_nested_max_split=1, populate_by_name=True)

    index_dir: Path = Field(Path("data/index"), description="where the built index lives (git-ignored)")
    models_dir: Path = Field(Path("models"), description="local model folders, e.g. models/reranker_zh_v2")
    embedder: str = Field("BAAI/bge-m3", description="sentence-transformers model: hub name or local folder")
    reranker: str = Field("BAAI/bge-reranker-v2-m3", description="cross-encoder: hub name, folder, 'none', or the "
                          "URL of a TEI-compatible /rerank server: tei+http://host:8080")
    reranker_api_key: str | None = Field(None, description="bearer token for a remote (TEI) reranker started with "
                                         "--api-key")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    dtype: Literal[DTYPES] = "auto"

    top_k: int = Field(50, ge=TOP_K_RANGE[0], le=TOP_K_RANGE[1], description="recall size K")
    top_n: int = Field(5, ge=TOP_N_RANGE[0], le=TOP_N_RANGE[1], description="results shown N")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="minimum normalised reranker score shown")
    recall_mode: Literal[MODES] = "hybrid"
    dense_weight: float = Field(1.0, ge=0.0)
    lexical_weight: float = Field(1.0, ge=0.0)
    rrf_k: int = Field(60, ge=1, description="reciprocal rank fusion constant")

    chunk_max_tokens: int = Field(512, ge=16, le=8192)
    chunk_overlap: int = Field(32, ge=0)
    chunk_min_tokens: int = Field(48, ge=0, description="a section with fewer tokens joins a neighbouring chunk "
                                  "instead of standing alone (0: every section its own chunks); changing it "
                                  "re-chunks every document at the next ingest")
    max_file_mb: float = Field(20.0, gt=0)
    # ---- OCR of scans and images (docs/INGEST.md) --------------------------------------------------------------
    ocr_enabled: bool = Field(True, description="read images and PDF pages without a text layer by OCR")
    ocr_engine: Literal["rapidocr", "tesseract"] = Field(
        "rapidocr", description="rapidocr (PP-OCRv4 models in the wheel, Chinese + English) or tesseract (Debian "
                                "tesseract-ocr with its language packs)")
    ocr_languages: str = Field("chi_sim+eng", pattern=r"^[a-z_]+(\+[a-z_]+)*$",
                               description="Tesseract language packs joined by '+' (RapidOCR reads both always)")
    ocr_timeout_s: float = Field(60.0, gt=0, le=3600, description="time limit of one page's OCR; a slower page "
                                 "is reported as not read")
    ocr_min_confidence: float = Field(0.6, ge=0.0, le=1.0, description="pages read with a lower mean confidence "
                                      "are reported as unreadable instead of indexed")
    ocr_dpi: int = Field(200, ge=50, le=600, description="resolution PDF scans are rendered at for OCR")
    ann_threshold: int = Field(50_000, ge=0, description="above this many chunks the dense index is HNSW")
    vector_store: Literal["faiss", "milvus"] = Field("faiss", description="where dense vectors live: faiss "
                                                     "(embedded, in the index folder) or milvus (see milvus_uri)")
    milvus_uri: str | None = Field(None, description="unset: a Milvus Lite file milvus.db in the index folder (one "
                                   "process at a time); http://host:19530 for a Milvus standalone or cluster")
    milvus_collection: str = Field("kb_chunks", description="the Milvus collection of this index (one per index)")
    milvus_index: Literal["FLAT", "HNSW", "IVF_FLAT", "DISKANN", "AUTOINDEX"] = "HNSW"
    milvus_token: str | None = Field(None, description="'user:password' or an API key for a secured Milvus")

    @property
    def reranker_dtype(self) -> str:
        """The reranker's dtype: `rerank_dtype` when set, else the shared `dtype`."""
        return self.rerank_dtype or self.dtype

    max_per_doc: int | None = Field(None, ge=1, description="at most this many results per document (None: no cap)")
    merge_adjacent: bool = Field(False, description="join neighbouring chunks of one document into one result")
    cache_size: int = Field(256, ge=0, description="query-result LRU entries (0 disables the cache)")

    rerank_batch_size: int | None = Field(None, ge=1, le=1024, description="pairs per reranker forward pass "
                                          "[8 on a CPU, 2 with onnx/openvino: smaller batches pad less; 32 on a GPU]")
    rerank_max_length: int = Field(512, ge=32, le=8192)
    long_passage: Literal[LONG_PASSAGE_MODES] = "max"
    rerank_backend: Literal[BACKENDS] = Field(
        "auto", description="cross-encoder runtime: auto (torch on a GPU; on a CPU the faster of torch and ONNX "
        "Runtime float32, timed once per model and machine, same top-10), torch (any device), onnx or openvino "
        "(CPU; docs/PERFORMANCE.md)")
    rerank_quantize: bool = Field(False, description="int8 with rerank_backend=onnx, used only if it keeps the "
                                                     "top-10 order on the check set")
    rerank_threads: int | None = Field(None, ge=1, le=1024, description="CPU threads for the reranker [all cores]")
    rerank_dtype: Literal[DTYPES] | None = Field(
        None, description="the reranker's dtype when it should differ from `dtype` (bfloat16: fast on CPUs with "
                          "AMX/AVX512-BF16, checked against float32 at load)")
    rerank_exact_top: int = Field(10, ge=0, le=1000, description="with bfloat16 on a CPU or int8, near-ties in the "
                                  "top N are re-scored in float32, so the top-N order is float32's (0: off)")
    rerank_exact_max_share: float = Field(0.5, ge=0.0, le=1.0, description="with exact re-scoring: a search whose "
                                          "re-scoring would redo more than this share of its candidates (as measured "
                                          "on earlier searches) is scored in float32 directly, never slower than "
                                          "float32 (1.0: always the reduced pass)")
    rerank_allow_remote_code: bool = Field(False, description="let a reranker run model code from its folder "
                                           "(trust_remote_code; bge-reranker-v2-minicpm-layerwise needs it): only for "
                                           "folders you trust")
    rerank_budget_ms: int | None = Field(
        None, ge=BUDGET_MS_RANGE[0], le=BUDGET_MS_RANGE[1], description="rerank only the best-recalled candidates "
        "that fit in this many ms at the reranker's measured speed (at least top_n); the rest follow in recall "
        "order, labelled (unset: 2000 on a CPU, none on a GPU; 0: rerank all K; docs/PERFORMANCE.md)")
    rerank_batching: bool = Field(True, description="a running API or app scores the rerank work of concurrent "
                                  "requests together, sharing forward passes (docs/PERFORMANCE.md)")
    rerank_batch_wait_ms: float = Field(5.0, ge=0, le=100, description="with rerank_batching: how long a request "
                                        "waits at most for others to share its forward passes")
    rerank_batch_tokens: int = Field(16384, ge=1, description="with rerank_batching: tokens of (query, passage) "
                                     "pairs scored together at most (one larger request runs alone)")
    calibration: Path | None = Field(None, description="a calibrator JSON file: scores become calibrated "
                                     "probabilities, and threshold and bands apply to them. `kb tune --write` saves "
                                     "its calibrator (with top_k, top_n, threshold) in the shared database instead, "
                                     "which then wins over this file and the config file (a KB_* variable wins "
                                     "over both)")

    # ---- reranker versions (docs/MODELS.md) ---------------------------------------------------------------------
    rollout_file: Path | None = Field(None, description="deprecated: which reranker serves now lives in the shared "
                                      "database (KB_DATABASE_URL). A rollout file from before (written by an older "
                                      "`kb models promote`) is imported from here once, when the database holds "
                                      "no rollout yet, and never read again [default: rerankers.json beside the "
                                      "index folder]")
    follow_rollout: bool = Field(True, description="serve the promoted reranker (and its canary) rather than the "
                                 "`reranker` setting; a command's --reranker turns it off for that command")
    models_reload_s: float = Field(5.0, ge=0, description="how often a running API or app looks for a promotion, "
                                   "rollback, canary or shadow change, and for settings saved by `kb tune --write`, "
                                   "in the shared database (0: only at start)")
    shadow_queue: int = Field(64, ge=1, description="searches waiting for the shadow model at most; beyond that "
                              "they are counted as dropped, never waited for")

    # ---- the administrators' words (docs/VOCABULARY.md) ----------------------------------------------------
    user_dict: Path | None = Field(None, description="a jieba user dictionary file (`word [frequency] [tag]` a "
                                   "line) imported once into the shared database when it holds no user dictionary "
                                   "yet; from then on the Vocabulary page and `kb vocabulary` edit it there "
                                   "[default: userdict.txt beside the index folder, when present]")
    synonyms: Path | None = Field(None, description="a synonyms file (sets one a line, comma-separated: 年假, "
                                  "年休假, annual leave) imported once into the shared database when it holds no "
                                  "synonyms yet; from then on the Vocabulary page and `kb vocabulary` edit them "
                                  "there [default: synonyms.txt beside the index folder, when present]")
    vocabulary_reload_s: float = Field(5.0, ge=0, description="how often a running API or app looks for changes "
                                       "to the user dictionary and synonyms in the shared database (0: never)")

    # ---- following the published corpus (docs/RELIABILITY.md) ----------------------------------------------------
    index_reload_s: float = Field(2.0, ge=0, description="how often a running API or app looks for a version of the "
                                  "index published by another process (`kb ingest`, `kb watch`, `kb crawl`, the "
                                  "app's Library, another API) and serves it (0: only its own changes)")

    # ---- sign-in (`[auth]`, KB_AUTH_*) -----------------------------------------------------------------------------
    auth: AuthSettings = Field(default_factory=AuthSettings)

    # ---- HTTP API (`kb serve`) ----------------------------------------------------------------------------------
    api_keys: dict[str, list[str]] = Field(
        default_factory=dict, description="API key → access groups; empty: no key needed. A key whose groups "
        "include '*' sees everything and may ingest/delete. TOML table [api_keys] or KB_API_KEYS as JSON")
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed by CORS, e.g. the UI's URL")
    api_max_concurrency: int = Field(2, ge=1, description="searches/reranks computed at once (fits the cores)")
    api_max_queue: int = Field(64, ge=0, description="requests allowed to wait; beyond that the API answers 429")
    api_max_documents: int = Field(1000, ge=1, description="documents per /rerank request (413 above)")
    api_max_query_chars: int = Field(2000, ge=1, description="characters in a query (413 above)")
    api_max_text_chars: int = Field(2_000_000, ge=1, description="characters of documents per /rerank (413 above)")
    api_max_request_mb: float = Field(50.0, gt=0, description="request body size of an upload (POST /ingest; 413 "
                                      "above)")
    api_max_json_mb: float = Field(1.0, gt=0, description="request body size of every other route (413 above); "
                                   "/rerank gets room for api_max_text_chars of UTF-8 text on top")
    allowed_hosts: list[str] = Field(default_factory=list, description="host names (`kb.example.com`, "
                                     "`*.example.com`) the API answers besides localhost, 127.0.0.1 and [::1]. "
                                     "Open mode answers only those; with keys or sign-in, empty means any host")
    metrics_token: SecretStr | None = Field(None, description="a bearer token that may read GET /metrics and nothing "
                                            "else (for Prometheus); without it /metrics is for admins")
    upload_dir: Path = Field(Path("data/uploads"), description="where files uploaded through POST /ingest are kept")
    audit_log: Path | None = Field(None, description="JSON-lines record of admin actions and refused attempts "
                                   "[default: audit.jsonl beside the index folder]")
    audit_max_mb: float = Field(10.0, gt=0, description="the audit log is rotated (audit.jsonl.1, .2, …) once it is "
                                "over this size; the count of entries survives rotation (kb_audit_entries)")
    audit_keep: int = Field(5, ge=0, description="rotated audit logs kept; older ones are deleted")

    # ---- the shared database (docs/SCALING.md) ------------------------------------------------------------------
    database_url: str | None = Field(
        None, validation_alias=AliasChoices("kb_database_url", "kb_events_url"),
        description="an SQLAlchemy URL of the database every process shares: the events, which reranker serves, the "
        "vocabulary and the settings saved by `kb tune --write`; postgresql+psycopg://user:pw@host/kb for several "
        "machines (KB_EVENTS_URL, `events_url`: its old name) [default: SQLite events.db beside the index folder]")

    # ---- the events store: searches and feedback (docs/ANALYTICS.md) ---------------------------------------
    events: bool = Field(True, description="record searches and feedback for analytics (the API and the app)")
    events_store_user: bool = Field(False, description="keep user ids as they are instead of a keyed hash")
    events_key: SecretStr | None = Field(None, description="the key of the user-id hash; replicas sharing one "
                                         "database share it [default: made once in events.key beside the index]")
    events_retention_days: int = Field(90, ge=1, description="searches and their feedback older than this are "
                                       "deleted")
    events_queue: int = Field(10_000, ge=1, description="searches waiting to be written; beyond, they are dropped "
                                                        "(counted), never waited for")
    allow_open: bool = Field(False, description="let `kb ui` / `kb serve` listen beyond loopback with no sign-in "
                             "and no API keys (everyone who reaches it sees every document)")

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data):
        # `events_url` (a config file or an argument from before) is database_url's old name; the new one wins
        if isinstance(data, dict) and "events_url" in data and \
                not {"database_url", "kb_database_url", "kb_events_url"} & set(data):
            data = {**data, "database_url": data["events_url"]}
        return data

    @property
    def events_url(self) -> str | None:
        """`database_url`'s old name (the events store lives in the shared database)."""
        return self.database_url

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource):
        # No .env or secrets files; highest priority first: arguments, KB_* variables, the config file.
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=config_path())


def set_by_environment(name: str) -> bool:
    """Whether a `KB_*` environment variable sets the setting `name` (it then wins over values saved in the shared
    database by `kb tune --write`)."""
    wanted = f"KB_{name}".upper()
    return any(key.upper() == wanted for key in os.environ)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
