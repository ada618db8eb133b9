"""One corpus, many processes: two `kb serve` replicas that hold models only, each over an empty, read-only index
folder, serve one corpus kept in a shared Milvus (`milvus-lite server` on loopback: the same gRPC protocol as a
Milvus server) and a shared database; separate `kb ingest` processes are the writer.

Both replicas answer identically; what an ingest adds, restricts or deletes shows on both within their reload
interval, with no restart; a promotion made by another process is served by both; stopping Milvus makes searches
answer 503 with the reason (and /health say so) and an ingest stop with a clear error, and everything resumes by
itself when Milvus is back. Real processes, and every wait is on what the servers answer, never on a sleep.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.app.api.conftest import free_port
from tests.databases import postgres_url
from tests.processes import MilvusServer
from tests.tiny_models import build_tiny_cross_encoder

from .kb_process import KbRun, start_kb, wait_for

pytestmark = pytest.mark.slow  # a Milvus server and two API processes

KEYS = {"staff-key": ["staff"], "hr-key": ["hr"], "admin-key": ["*"]}
RELOAD_S = 0.25
PATIENCE_S = 90  # a generous bound for a loaded CI machine
PUBLIC = "# Relocation allowance\n\nStaff moving offices receive a quokkaberry relocation allowance of 500 euros.\n"
EXTRA = "# Parking permits\n\nPermits for the wombatfield car park are renewed every January.\n"


@pytest.fixture
def milvus(tmp_path):
    server = MilvusServer(tmp_path / "milvus").start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path) -> str:
    """The shared database: SQLite on this machine, and PostgreSQL (what several machines share) when
    KB_TEST_POSTGRES_URL names one (.ci/run starts one)."""
    return f"sqlite:///{tmp_path / 'shared.db'}" if request.param == "sqlite" else postgres_url()


@pytest.fixture
def cluster(tmp_path, kb_env, milvus, database):
    """Two replicas and the writer's environment over one corpus: (replica URLs, replica processes, the writer's
    env, the documents folder, the replicas' index folders)."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "relocation.md").write_text(PUBLIC, encoding="utf-8")
    shared = dict(kb_env, KB_VECTOR_STORE="milvus", KB_MILVUS_URI=milvus.url,
                  KB_MILVUS_COLLECTION=f"kb_{time.time_ns()}",  # a corpus of its own in a database kept across runs
                  KB_MILVUS_INDEX="FLAT", KB_DATABASE_URL=database,
                  KB_INDEX_RELOAD_S=str(RELOAD_S), KB_MODELS_RELOAD_S=str(RELOAD_S), KB_API_KEYS=json.dumps(KEYS),
                  KB_EVENTS="false")
    writer = dict(shared, KB_INDEX_DIR=str(tmp_path / "writer" / "index"), KB_UPLOAD_DIR=str(tmp_path / "uploads"))
    assert start_kb(["ingest", str(kb)], writer, tmp_path / "first-ingest.log").wait() == 0
    urls, servers, folders = [], [], []
    for n in (1, 2):
        home = tmp_path / f"replica{n}"
        folder = home / "index"
        folder.mkdir(parents=True)
        folder.chmod(0o500)  # empty and read-only: a replica holds models only
        env = dict(shared, KB_INDEX_DIR=str(folder), KB_AUDIT_LOG=str(home / "audit.jsonl"),
                   KB_UPLOAD_DIR=str(home / "uploads"))
        port = free_port()
        servers.append(start_kb(["serve", "--port", str(port), "--log-level", "warning"], env, home / "serve.log"))
        urls.append(f"http://127.0.0.1:{port}")
        folders.append(folder)
    for url, server in zip(urls, servers):
        wait_for(lambda url=url: status(url) == 200, server, timeout=180, step=0.2)
    yield urls, servers, writer, kb, folders
    for server in servers:
        os.kill(server.pid, signal.SIGTERM)
        server.process.join(30)
        if server.process.exitcode is None:
            server.process.kill()
    for folder in folders:
        folder.chmod(0o700)


def status(url: str) -> int | None:
    try:
        return httpx.get(url + "/health", timeout=5).status_code
    except httpx.TransportError:
        return None


def search(url: str, key: str, word: str) -> httpx.Response:
    return httpx.post(url + "/search", headers={"X-API-Key": key}, timeout=60,
                      json={"query": word, "mode": "lexical", "top_n": 20, "threshold": 0.0})


def found(url: str, key: str, word: str) -> tuple[set[str], str, list[str]]:
    """(the file names of the results, the version that answered, the chunk ids in order)."""
    r = search(url, key, word)
    assert r.status_code == 200, r.text
    body = r.json()
    return {Path(x["source"]).name for x in body["results"]}, body["index_version"], \
        [x["chunk_id"] for x in body["results"]]


def on_both(urls: list[str], servers: list[KbRun], predicate) -> float:
    """Wait until `predicate(url)` holds on every replica; the seconds it took."""
    t0 = time.monotonic()
    for url, server in zip(urls, servers):
        wait_for(lambda url=url: predicate(url), server, timeout=PATIENCE_S, step=0.05)
    return time.monotonic() - t0


def ingest(kb: Path, env: dict, log: Path) -> KbRun:
    run = start_kb(["ingest", str(kb)], env, log)
    run.wait()
    return run


def test_two_replicas_serve_one_corpus_and_follow_every_change(cluster, tmp_path):
    urls, servers, writer, kb, folders = cluster
    for key in ("staff-key", "hr-key"):
        answers = [found(url, key, "quokkaberry") for url in urls]
        assert answers[0] == answers[1] and answers[0][0] == {"relocation.md"}  # identical, same revision

    (kb / "parking.md").write_text(EXTRA, encoding="utf-8")
    assert ingest(kb, writer, tmp_path / "add.log").process.exitcode == 0
    added = on_both(urls, servers, lambda url: found(url, "staff-key", "wombatfield")[0] == {"parking.md"})

    (kb / "relocation.md.meta.json").write_text(json.dumps({"acl": ["hr"]}), encoding="utf-8")
    assert ingest(kb, writer, tmp_path / "restrict.log").process.exitcode == 0
    restricted = on_both(urls, servers, lambda url: found(url, "staff-key", "quokkaberry")[0] == set())
    assert all(found(url, "hr-key", "quokkaberry")[0] == {"relocation.md"} for url in urls)  # restricted, not lost

    (kb / "relocation.md").unlink()
    (kb / "relocation.md.meta.json").unlink()
    assert ingest(kb, writer, tmp_path / "delete.log").process.exitcode == 0
    deleted = on_both(urls, servers, lambda url: found(url, "admin-key", "quokkaberry")[0] == set())
    answers = [found(url, "staff-key", "wombatfield") for url in urls]
    assert answers[0] == answers[1] and answers[0][0] == {"parking.md"}
    assert [sorted(p.iterdir()) for p in folders] == [[], []]  # nothing was written beside either replica

    # a promotion made by another process (here `kb models promote`, through the shared database) reaches both
    model = build_tiny_cross_encoder(tmp_path / "models" / "v1", arch="bert", seed=1)
    run = start_kb(["models", "promote", str(model), "--min-overlap", "0", "--max-shift", "1"], writer,
                   tmp_path / "promote.log")
    assert run.wait() == 0, run.output()
    promoted = on_both(urls, servers,
                       lambda url: search(url, "staff-key", "wombatfield").json().get("reranker") == str(model))
    print(f"seen by both replicas after: add {added:.2f} s, restrict {restricted:.2f} s, delete {deleted:.2f} s, "
          f"promotion {promoted:.2f} s")


def test_milvus_going_away_gives_503s_and_service_resumes_by_itself(cluster, milvus, tmp_path):
    urls, servers, writer, kb, _ = cluster
    before = [found(url, "staff-key", "quokkaberry") for url in urls]
    milvus.stop()

    for url in urls:  # a question not asked before (an answer already given may come from the query cache)
        r = search(url, "staff-key", "relocation allowance")
        assert r.status_code == 503 and "Milvus" in r.json()["error"], r.text  # the reason, not a traceback
    on_both(urls, servers, lambda url: status(url) == 503)
    (kb / "parking.md").write_text(EXTRA, encoding="utf-8")
    down = ingest(kb, writer, tmp_path / "ingest-down.log")
    assert down.process.exitcode not in (0, 1) and "Milvus" in down.output() and "Traceback" not in down.output()

    milvus.start()  # the same data: nothing was lost, and nobody was restarted
    back = on_both(urls, servers, lambda url: status(url) == 200 and search(url, "staff-key", "relocation allowance")
            .status_code == 200)
    assert [found(url, "staff-key", "relocation allowance")[0] for url in urls] == [b[0] for b in before]
    assert ingest(kb, writer, tmp_path / "ingest-again.log").process.exitcode == 0  # the ingest resumes
    on_both(urls, servers, lambda url: found(url, "staff-key", "wombatfield")[0] == {"parking.md"})
    print(f"both replicas answered again {back:.2f} s after Milvus listened again")
