"""Every serving process follows the published corpus: a `kb serve` process and the app each serve the version
another process published, within `index_reload_s`, with nothing cached across versions; a killed publish changes
nothing served.

Real processes: the API is `kb serve` in a child process, the ingests are `kb ingest` children (both forked from
the preloaded fork server, `kb_process`), and the app is app/ui/main.py under AppTest in this process. Every wait
is on what the server answers, never on a sleep.
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
from tests.processes import MilvusServer

from .conftest import write_corpus
from .kb_process import KbRun, start_kb, wait_for

KEYS = {"staff-key": ["staff"], "hr-key": ["hr"], "admin-key": ["*"]}
RELOAD_S = 0.25
PUBLIC = "# Relocation allowance\n\nStaff moving offices receive a quokkaberry relocation allowance of 500 euros.\n"
EXTRA = "# Parking permits\n\nPermits for the wombatfield car park are renewed every January.\n"
PATIENCE_S = 90  # a generous bound for a loaded CI machine; the measured figures are in docs/RELIABILITY.md


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory):
    """A real Milvus gRPC endpoint on loopback (`milvus-lite server`) that several processes share."""
    server = MilvusServer(tmp_path_factory.mktemp("milvus")).start()
    yield server.url
    server.stop()


@pytest.fixture(params=["faiss", "milvus"])
def api(request, tmp_path, kb_env):
    """`kb serve` in its own process over tmp_path/index (one public document to start with), API keys for a
    staff member, an hr member and an admin, following publishes every RELOAD_S seconds; vectors in FAISS inside
    the index folder, or in a Milvus server that every process reaches."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "relocation.md").write_text(PUBLIC, encoding="utf-8")
    env = dict(kb_env, KB_INDEX_RELOAD_S=str(RELOAD_S), KB_API_KEYS=json.dumps(KEYS), KB_EVENTS="false",
               KB_UPLOAD_DIR=str(tmp_path / "uploads"))
    if request.param == "milvus":
        env.update(KB_VECTOR_STORE="milvus", KB_MILVUS_URI=request.getfixturevalue("milvus_server"),
                   KB_MILVUS_COLLECTION=f"kb_{time.time_ns()}", KB_MILVUS_INDEX="FLAT")
    assert start_kb(["ingest", str(kb)], env, tmp_path / "first-ingest.log").wait() == 0
    port = free_port()
    server = start_kb(["serve", "--port", str(port), "--log-level", "warning"], env, tmp_path / "serve.log")
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(url + "/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, server, timeout=180, step=0.2)
    yield url, kb, env, server
    os.kill(server.pid, signal.SIGTERM)
    server.process.join(30)
    if server.process.exitcode is None:
        server.process.kill()


def found(url: str, key: str, word: str) -> tuple[set[str], str]:
    """(the file names of the results `key` gets for `word`, the index version that answered)."""
    r = httpx.post(url + "/search", headers={"X-API-Key": key}, timeout=60,
                   json={"query": word, "mode": "lexical", "top_n": 20, "threshold": 0.0})
    assert r.status_code == 200, r.text
    body = r.json()
    return {Path(x["source"]).name for x in body["results"]}, body["index_version"]


def until(predicate, server: KbRun) -> float:
    """Seconds until `predicate()` holds, asking the server again and again (fails if the server dies)."""
    t0 = time.monotonic()
    wait_for(predicate, server, timeout=PATIENCE_S, step=0.05)
    return time.monotonic() - t0


def ingest(kb: Path, env: dict, log: Path) -> None:
    run = start_kb(["ingest", str(kb)], env, log)
    assert run.wait() in (0, 3), run.output()


def test_kb_serve_follows_adds_restrictions_and_deletes_made_by_another_process(api, tmp_path):
    url, kb, env, server = api
    assert found(url, "staff-key", "quokkaberry")[0] == {"relocation.md"}
    assert found(url, "staff-key", "wombatfield")[0] == set()  # asked before it exists: a miss is cached too

    (kb / "parking.md").write_text(EXTRA, encoding="utf-8")
    ingest(kb, env, tmp_path / "add.log")
    added = until(lambda: found(url, "staff-key", "wombatfield")[0] == {"parking.md"}, server)

    (kb / "relocation.md.meta.json").write_text(json.dumps({"acl": ["hr"]}), encoding="utf-8")
    ingest(kb, env, tmp_path / "restrict.log")
    restricted = until(lambda: found(url, "staff-key", "quokkaberry")[0] == set(), server)
    assert found(url, "hr-key", "quokkaberry")[0] == {"relocation.md"}  # restricted, not lost

    (kb / "relocation.md").unlink()
    (kb / "relocation.md.meta.json").unlink()
    ingest(kb, env, tmp_path / "delete.log")
    deleted = until(lambda: found(url, "hr-key", "quokkaberry")[0] == set(), server)
    assert found(url, "admin-key", "quokkaberry")[0] == set()
    assert found(url, "staff-key", "wombatfield")[0] == {"parking.md"}
    print(f"publish seen by kb serve after: add {added:.2f} s, restrict {restricted:.2f} s, delete {deleted:.2f} s")


def published_now(env: dict) -> str | None:
    """The version published now, as every serving process reads it (index folder, or the shared database)."""
    from app.components import published_version
    from app.settings import Settings

    return published_version(Settings(**{k[3:].lower(): v for k, v in env.items()
                                         if k in ("KB_INDEX_DIR", "KB_VECTOR_STORE", "KB_MILVUS_URI",
                                                  "KB_MILVUS_COLLECTION", "KB_DATABASE_URL")}, _env_file=None))


def writing(env: dict) -> bool:
    """Whether an ingest is writing its version now: a version folder being written, or rows of the next revision
    in Milvus."""
    index = Path(env["KB_INDEX_DIR"])
    if env.get("KB_VECTOR_STORE") != "milvus":
        return any(index.glob(".tmp-v-*"))
    from retrieval.catalog import Catalog
    from retrieval.stores.milvus import MilvusCorpus

    current = Catalog.at(f"sqlite:///{index.resolve().parent / 'events.db'}").current(env["KB_MILVUS_COLLECTION"])
    corpus = MilvusCorpus(env["KB_MILVUS_URI"], current.manifest["collection"], 384)
    return bool(corpus._query(f"gen > {current.number}", ("row_id",)))


def test_a_killed_publish_changes_nothing_served(api, tmp_path):
    """SIGKILL while the new version is being written: the published version is still the old one (or, if the kill
    landed just after the publish, the new one, whole), and the server answers from exactly that version, nothing
    half-written."""
    url, kb, env, server = api
    before, version = found(url, "admin-key", "quokkaberry")
    assert before == {"relocation.md"}
    write_corpus(kb, range(150), seed=4, paragraphs=3)  # long enough to be caught while writing
    (kb / "relocation.md").unlink()
    run = start_kb(["ingest", str(kb)], env, tmp_path / "killed.log")
    wait_for(lambda: writing(env), run, timeout=300, step=0.001)  # writing the new version
    os.kill(run.pid, signal.SIGKILL)
    run.process.join(30)
    assert run.process.exitcode in (-signal.SIGKILL, 0), run.output()
    published = published_now(env)
    if published == version:  # the usual case: killed before the publish
        deadline = time.monotonic() + 20 * RELOAD_S  # many reload intervals: it must not move
        while time.monotonic() < deadline:
            assert found(url, "admin-key", "quokkaberry") == (before, version)
    else:
        until(lambda: found(url, "admin-key", "quokkaberry") == (set(), published), server)
    ingest(kb, env, tmp_path / "rerun.log")  # the next complete publish is served
    until(lambda: found(url, "admin-key", "quokkaberry")[0] == set(), server)
    assert found(url, "admin-key", "quokkaberry")[1] == published_now(env)


CANTEEN = "# Canteen\n\nThe platypuscake special is served on Fridays in the canteen.\n"


def app_texts(at, query: str) -> str:
    """Search `query` in the app (recall mode lexical, so only passages holding the word come back) and return the
    text of every card shown."""
    from bs4 import BeautifulSoup

    at.selectbox(key="kb_mode").set_value("lexical")
    at.text_input(key="kb_query").input(query)
    next(b for b in at.button if b.label == "Search").click()
    at.run()
    assert not at.exception, at.exception
    return " ".join(BeautifulSoup(h.value, "html.parser").get_text() for h in at.html if 'class="kb-card"' in h.value)


def test_the_app_follows_kb_ingest_and_the_apis_upload(api, tmp_path, monkeypatch):
    """The app (a process of its own in production, AppTest here) and `kb serve` over one index folder: what a
    separate `kb ingest` adds or deletes, and what is uploaded through the API's /ingest, reaches the app's searches
    within its reload interval."""
    from streamlit.testing.v1 import AppTest

    from app.settings import get_settings
    from app.ui import APP_FILE

    url, kb, env, server = api
    for name, value in env.items():  # the same index, models and store as the API (no API keys: open mode)
        if name.startswith("KB_") and name != "KB_API_KEYS":
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("KB_INDEX_RELOAD_S", str(RELOAD_S))
    monkeypatch.setenv("KB_EVENTS", "false")
    get_settings.cache_clear()
    try:
        at = AppTest.from_file(str(APP_FILE), default_timeout=120).run()
        assert "quokkaberry" in app_texts(at, "quokkaberry")
        assert "wombatfield" not in app_texts(at, "wombatfield")

        (kb / "parking.md").write_text(EXTRA, encoding="utf-8")
        ingest(kb, env, tmp_path / "add.log")
        until(lambda: "wombatfield" in app_texts(at, "wombatfield"), server)

        r = httpx.post(url + "/ingest", headers={"X-API-Key": "admin-key"}, timeout=120,
                       files={"files": ("canteen.md", CANTEEN.encode(), "text/markdown")})
        assert r.status_code == 200, r.text
        until(lambda: "platypuscake" in app_texts(at, "platypuscake"), server)

        (kb / "relocation.md").unlink()
        ingest(kb, env, tmp_path / "delete.log")
        until(lambda: "quokkaberry" not in app_texts(at, "quokkaberry"), server)
        assert "wombatfield" in app_texts(at, "wombatfield")
    finally:
        get_settings.cache_clear()
