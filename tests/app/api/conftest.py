"""API fixtures: a real index (MiniLM), a tiny local cross-encoder, the FastAPI app over both, and a real uvicorn."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.services.search import SearchService
from tests.conftest import Served, serve
from tests.processes import free_port, live_server

__all__ = ["DOCS", "Served", "free_port", "live_server", "make_service"]

DOCS = {
    "vpn.md": "# VPN token\n\nTo reset a forgotten VPN token, open the self-service portal and choose Reset.\n",
    "laptop.md": "# Laptops\n\nNew employees receive a laptop from the IT desk on their first day.\n",
    "leave.md": "# Annual leave\n\nEmployees get twenty days of annual leave a year.\n",
    "probation.md": "# 试用期离职\n\n试用期员工离职应当提前三日通知公司，并办理工作交接手续。\n",
    "salary.md": "---\nacl: [hr]\n---\n# Salary bands\n\nBand B3 pays between 60k and 80k a year.\n",
    "firewall.md": "---\nacl: [it-admins]\n---\n# Firewall runbook\n\nThe VPN gateway firewall is reset from the admin console.\n",
}


def make_service(root: Path, embedder, reranker: Path | str, **overrides) -> Served:
    """Settings and a loaded SearchService over DOCS ingested into `root/index`, sharing the session's MiniLM; a
    fresh corpus, the caller's own to change."""
    # TestClient calls itself "testserver": named like any host an operator serves under (open mode answers only
    # loopback names otherwise)
    return serve(root, embedder, DOCS, reranker, **({"allowed_hosts": ["testserver"]} | overrides))


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
