"""A small real knowledge base for the app tests: Markdown files ingested with MiniLM into a temporary index, a
tiny cross-encoder as the reranker, and `KB_*` variables pointing the app at them (and at a shared database of
each test's own: what one test promotes or saves is never another's)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from app.ui import APP_FILE

SAMPLE_SET = Path(__file__).resolve().parents[3] / "data" / "samples"  # docs/ and queries.jsonl

DOCS = {
    "vpn.md": "# VPN token\n\nTo reset a forgotten VPN token, open the self-service portal and choose Reset.\n",
    "laptop.md": "# Laptops\n\nNew employees receive a laptop from the IT desk on their first day.\n",
    "leave.md": "# Annual leave\n\nEmployees get twenty days of annual leave a year.\n\n"
                "Unused leave expires at the end of March of the next year.\n",
    "salary.md": "---\nacl: [hr]\n---\n# Salary bands\n\nBand B3 pays between 60k and 80k a year.\n",
    "probation-zh.md": "# 试用期离职\n\n试用期员工主动离职的，应当提前三日通知公司，并办理离职手续。\n",
    "script.md": "# Browser security\n\nNever paste <script>alert('x')</script> tags & other code into the wiki.\n",
}


@dataclass(frozen=True)
class KB:
    root: Path
    docs: Path
    index: Path
    reranker: Path
    uploads: Path


@pytest.fixture(scope="package")
def kb(tmp_path_factory, embedder) -> KB:
    from tests.conftest import index_docs
    from tests.tiny_models import build_tiny_cross_encoder

    root = tmp_path_factory.mktemp("ui")
    reranker = build_tiny_cross_encoder(root / "models" / "tiny", arch="bert", seed=5)
    return KB(root, root / "kb", index_docs(root, embedder, DOCS), reranker, root / "uploads")


def point_app_at(monkeypatch, kb: KB, index: Path | None = None, reranker: str | None = None) -> None:
    """Settings for the app under test: this index and models, no config file, uploads in a temp folder."""
    from app.settings import get_settings

    monkeypatch.setenv("KB_CONFIG", str(kb.root / "absent.toml"))
    monkeypatch.setenv("KB_INDEX_DIR", str(index if index is not None else kb.index))
    monkeypatch.setenv("KB_EMBEDDER", "packaged:all-MiniLM-L6-v2")
    monkeypatch.setenv("KB_RERANKER", reranker if reranker is not None else str(kb.reranker))
    monkeypatch.setenv("KB_UPLOAD_DIR", str(kb.uploads))
    get_settings.cache_clear()


@pytest.fixture
def app_test(kb, monkeypatch, tmp_path):
    """A function that starts the real app (app/ui/main.py) under AppTest, pointed at `kb` (or another index or
    reranker) and the test's own database (KB_DATABASE_URL, tmp_path/kb.db), and runs it once."""
    from streamlit.testing.v1 import AppTest

    from app.settings import get_settings

    monkeypatch.setenv("KB_DATABASE_URL", f"sqlite:///{tmp_path / 'kb.db'}")

    def start(index: Path | None = None, reranker: str | None = None) -> AppTest:
        point_app_at(monkeypatch, kb, index, reranker)
        at = AppTest.from_file(str(APP_FILE), default_timeout=60)
        return at.run()

    yield start
    get_settings.cache_clear()


@pytest.fixture
def service(kb, embedder, monkeypatch):
    """A SearchService on the same index and reranker, to compare the app's numbers with."""
    from app.settings import get_settings
    from tests.conftest import search_service

    point_app_at(monkeypatch, kb)
    svc = search_service(get_settings(), embedder)
    assert svc.reranker_error is None
    return svc
