"""Scores never tell a restricted caller what restricted documents say (docs/SECURITY.md, issue 32 finding 5).

BM25's term statistics cover every chunk, so a raw lexical score of a public chunk moves when an hr document
contains the query's word. Two real indexes differ only in whether the hr document holds the probe word; a caller
outside hr must get the same answer from both, through the API and `kb search --json --groups`."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.api import create_app
from app.cli import app as kb
from app.settings import Settings
from tests.conftest import index_docs, search_service

PUBLIC = {
    "news.md": "# Company news\n\nThe merger with Contoso is expected to close in May.\n",
    "vpn.md": "# VPN token\n\nTo reset a forgotten VPN token, open the self-service portal and choose Reset.\n",
    "leave.md": "# Annual leave\n\nEmployees get twenty days of annual leave a year.\n",
}
# the same length either way: only the probe word differs
HR = {True: "---\nacl: [hr]\n---\n# Board notes\n\nThe merger talks stay confidential until the board votes.\n",
      False: "---\nacl: [hr]\n---\n# Board notes\n\nThe budget talks stay confidential until the board votes.\n"}
KEYS = {"it-key": ["it"], "admin-key": ["*"]}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory, embedder) -> dict[bool, Settings]:
    """Settings over two indexes: the hr document with the probe word (True) and without it (False)."""
    out = {}
    for probe in (True, False):
        root = tmp_path_factory.mktemp(f"probe-{probe}")
        out[probe] = Settings(index_dir=index_docs(root, embedder, {**PUBLIC, "board.md": HR[probe]}),
                              embedder=embedder.name, reranker="none", upload_dir=root / "up", api_keys=KEYS,
                              events=False, _env_file=None)
    return out


def news(results: list[dict]) -> dict:
    """The public news chunk's entry, less what names its folder (each corpus lives in its own)."""
    [entry] = [r for r in results if r["source"].endswith("news.md")]
    return {k: v for k, v in entry.items() if k not in ("chunk_id", "doc_id", "source")}


def api_search(settings: Settings, embedder, key: str, mode: str) -> list[dict]:
    with TestClient(create_app(settings, search_service(settings, embedder), background=False)) as c:
        r = c.post("/search", json={"query": "merger", "mode": mode, "top_n": 5}, headers={"X-API-Key": key})
    assert r.status_code == 200, r.text
    return r.json()["results"]


@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
def test_a_public_chunk_scores_the_same_for_a_restricted_caller_whatever_hr_documents_say(corpora, embedder, mode):
    admin = {probe: news(api_search(s, embedder, "admin-key", mode)) for probe, s in corpora.items()}
    if mode == "lexical":  # the leak is real: an admin's raw BM25 score moves with the hr document
        assert admin[True]["retrieval_score"] != pytest.approx(admin[False]["retrieval_score"])
    seen = {probe: news(api_search(s, embedder, "it-key", mode)) for probe, s in corpora.items()}
    assert seen[True] == seen[False]
    assert seen[True]["retrieval_score"] == pytest.approx(1.0 / seen[True]["rank"])  # the order, nothing more


def test_kb_search_json_with_groups_gives_no_raw_scores(corpora, monkeypatch):
    outs = {}
    for probe, s in corpora.items():
        monkeypatch.setenv("KB_CONFIG", str(s.index_dir.parent / "none.toml"))
        monkeypatch.setenv("KB_INDEX_DIR", str(s.index_dir))
        monkeypatch.setenv("KB_EMBEDDER", s.embedder)
        monkeypatch.setenv("KB_RERANKER", "none")
        monkeypatch.setenv("KB_EVENTS", "false")
        from app.settings import get_settings

        get_settings.cache_clear()
        result = CliRunner().invoke(kb, ["search", "merger", "--mode", "lexical", "--groups", "it", "--json"])
        get_settings.cache_clear()
        assert result.exit_code == 0, result.output
        outs[probe] = news(json.loads(result.stdout.strip().splitlines()[-1])["results"])
    assert outs[True] == outs[False]
