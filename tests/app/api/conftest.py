"""API fixtures: a real index (MiniLM), a tiny local cross-encoder, the FastAPI app over both, and a real uvicorn."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.services.library import sync
from app.services.search import SearchService
from app.settings import Settings
from tests.conftest import search_service

DOCS = {
    "vpn.md": "# VPN token\n\nTo reset a forgotten VPN token, open the self-service portal and choose Reset.\n",
    "laptop.md": "# Laptops\n\nNew employees receive a laptop from the IT desk on their first day.\n",
    "leave.md": "# Annual leave\n\nEmployees get twenty days of annual leave a year.\n",
    "probation.md": "# 试用期离职\n\n试用期员工离职应当提前三日通知公司，并办理工作交接手续。\n",
    "salary.md": "---\nacl: [hr]\n---\n# Salary bands\n\nBand B3 pays between 60k and 80k a year.\n",
    "firewall.md": "---\nacl: [it-admins]\n---\n# Firewall runbook\n\nThe VPN gateway firewall is reset from the admin console.\n",
}


@dataclass(frozen=True)
class Served:
    """What an API under test serves: its settings and the SearchService built from them."""

    settings: Settings
    service: SearchService

    def app(self, settings: Settings | None = None):
        from app.api import create_app

        return create_app(settings if settings is not None else self.settings, self.service, background=False)


def make_service(root: Path, embedder, reranker: Path | str, **overrides) -> Served:
    """Settings and a loaded SearchService over DOCS ingested into `root/index`, sharing the session's MiniLM."""
    (root / "kb").mkdir(parents=True, exist_ok=True)
    for name, text in DOCS.items():
        (root / "kb" / name).write_text(text, encoding="utf-8")
    # TestClient calls itself "testserver": named like any host an operator serves under (open mode answers only
    # loopback names otherwise)
    overrides = {"allowed_hosts": ["testserver"]} | overrides
    settings = Settings(index_dir=root / "index", embedder=embedder.name, reranker=str(reranker),
                        upload_dir=root / "uploads", **overrides)
    sync([root / "kb"], settings.index_dir, embedder)
    return Served(settings, search_service(settings, embedder))


@pytest.fixture(scope="module")
def served(tmp_path_factory, embedder, tiny_reranker) -> Served:
    return make_service(tmp_path_factory.mktemp("api"), embedder, tiny_reranker)


@pytest.fixture(scope="module")
def service(served) -> SearchService:
    return served.service


@pytest.fixture(scope="module")
def client(served):
    from fastapi.testclient import TestClient

    with TestClient(served.app()) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(app, timeout: float = 30.0) -> Iterator[str]:
    """Run `app` on a real uvicorn in a thread on a free loopback port; yields its base URL."""
    import httpx
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"server on {url} did not become ready in {timeout} s")
        time.sleep(0.1)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
