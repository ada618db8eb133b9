"""Control state shared through the database: a `kb serve` process serves the reranker promoted, the synonyms saved
and the defaults tuned by other `kb` processes, within its reload intervals, with no restart and no file shared
but the database (SQLite here; PostgreSQL too when `KB_TEST_POSTGRES_URL` names one). A rollout file and a synonyms
file of before are imported once at the server's start.

Real processes: `kb serve` and the `kb models | vocabulary | tune` commands are children forked from the preloaded
fork server (`kb_process`). Every wait is on what the server answers, never on a sleep.
"""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest

from app.services import saved_settings
from app.services.control import control_store
from app.services.rollout import Release, RolloutState
from tests.app.api.conftest import free_port
from tests.databases import postgres_url
from tests.tiny_models import build_tiny_cross_encoder

from .kb_process import start_kb, wait_for

RELOAD_S = 0.25
PATIENCE_S = 90
DOCS = {"leave.md": "# Annual leave\n\nEmployees get twenty days of annual leave a year.\n",
        "vpn.md": "# VPN token\n\nTo reset a forgotten VPN token, open the self-service portal.\n"}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return postgres_url(drop=["kb_control", "kb_feedback", "kb_searches", "kb_schema"])


@pytest.mark.slow
def test_a_server_follows_promotions_synonyms_and_tuning_made_by_other_processes(database, tmp_path, kb_env):
    models = tmp_path / "models"
    v1, v2 = (build_tiny_cross_encoder(models / f"v{seed}", arch="bert", seed=seed) for seed in (1, 2))
    kb = tmp_path / "kb"
    kb.mkdir()
    for name, body in DOCS.items():
        (kb / name).write_text(body, encoding="utf-8")
    # files of before, beside the index folder: imported into the database once, when it holds none
    (tmp_path / "synonyms.txt").write_text("WFH, remote work\n", encoding="utf-8")
    before = RolloutState().promoted(Release(str(v1), time.time(), "root (cli)"), "none")
    (tmp_path / "rerankers.json").write_text(json.dumps(before.to_dict()), encoding="utf-8")
    env = dict(kb_env, KB_DATABASE_URL=database, KB_RERANKER="none", KB_MODELS_RELOAD_S=str(RELOAD_S),
               KB_VOCABULARY_RELOAD_S=str(RELOAD_S), KB_INDEX_RELOAD_S="0", KB_EVENTS="false",
               KB_UPLOAD_DIR=str(tmp_path / "uploads"), KB_AUDIT_LOG=str(tmp_path / "audit.jsonl"))
    assert start_kb(["ingest", str(kb)], env, tmp_path / "ingest.log").wait() == 0
    port = free_port()
    server = start_kb(["serve", "--port", str(port), "--log-level", "warning"], env, tmp_path / "serve.log")
    url = f"http://127.0.0.1:{port}"

    def ask(query: str, **body) -> dict:
        try:
            r = httpx.post(url + "/search", json={"query": query, **body}, timeout=60)
        except httpx.TransportError:
            return {}
        return r.json() if r.status_code == 200 else {}

    def until(predicate) -> None:
        wait_for(predicate, server, timeout=PATIENCE_S, step=0.05)

    def kb_run(*argv: str) -> str:
        run = start_kb(list(argv), env, tmp_path / f"{argv[0]}-{time.monotonic_ns()}.log")
        assert run.wait() == 0, run.output()
        return run.output()

    try:
        until(lambda: ask("holiday"))
        first = ask("WFH", mode="lexical", threshold=0.0)
        assert first["reranker"] == str(v1)  # the rollout file of before, imported
        assert first["also_searched"] == ["remote work"]  # the synonyms file of before, imported
        shared = control_store(database)  # the first process to read them (ingest or serve) imported them
        assert shared.read("rollout").updated_by == f"import of {tmp_path / 'rerankers.json'}"
        assert shared.read("synonyms").updated_by == f"import of {tmp_path / 'synonyms.txt'}"

        kb_run("models", "promote", str(v2), "--min-overlap", "0", "--max-shift", "1")
        until(lambda: ask("annual leave").get("reranker") == str(v2))

        (tmp_path / "new-synonyms.txt").write_text("holiday, annual leave\n", encoding="utf-8")
        kb_run("vocabulary", "set", "synonyms", str(tmp_path / "new-synonyms.txt"))
        until(lambda: ask("holiday", mode="lexical", threshold=0.0).get("also_searched") == ["annual leave"])
        assert ask("WFH", mode="lexical", threshold=0.0)["also_searched"] == []  # replaced whole

        saved_settings.save(shared, {"top_n": 1, "threshold": 0.0}, "tester")  # this process
        until(lambda: ask("annual leave").get("params", {}).get("top_n") == 1)
        assert len(ask("leave VPN")["results"]) == 1

        kb_run("models", "rollback")
        until(lambda: ask("annual leave").get("reranker") == str(v1))
        history = json.loads(kb_run("models", "history", "--json").splitlines()[-1])
        assert [h["action"] for h in history["history"]] == ["promote", "promote", "rollback"]
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.process.join(30)
        if server.process.exitcode is None:
            server.process.kill()
