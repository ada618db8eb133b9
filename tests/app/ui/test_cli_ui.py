"""`kb ui` and `kb demo` as a user runs them: a real `streamlit run` server process on a free local port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import urllib.request

import pytest

from retrieval.index import KnowledgeIndex
from tests.processes import free_port, kb_command, start, stop, wait_healthy


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ, HF_HUB_OFFLINE="1", KB_CONFIG=str(tmp_path / "absent.toml"),
             KB_EMBEDDER="packaged:all-MiniLM-L6-v2", KB_UPLOAD_DIR=str(tmp_path / "uploads"))
    e.pop("KB_INDEX_DIR", None)
    return e


@pytest.mark.slow
def test_kb_ui_serves_the_app(tmp_path, env, kb):
    port = free_port()
    log = tmp_path / "ui.log"
    proc = start(kb_command("ui", "--port", str(port), "--index", str(kb.index), "--reranker", "none"), env, log)
    try:
        wait_healthy(proc, port, log)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
        proc.send_signal(signal.SIGTERM)  # to `kb ui` alone, as a supervisor would: the server itself stops
        proc.wait(timeout=30)
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        stop(proc)
    assert f"http://localhost:{port}" in log.read_text()


@pytest.mark.slow
def test_kb_demo_ingests_new_files_skips_unchanged_ones_then_serves(tmp_path, env, kb, embedder):
    from app.services.library import sync

    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("vpn.md", "leave.md"):
        (docs / name).write_text((kb.docs / name).read_text())
    index = tmp_path / "index"
    sync([docs], index, embedder)  # an earlier demo
    (docs / "laptop.md").write_text((kb.docs / "laptop.md").read_text())
    port = free_port()
    log = tmp_path / "demo.log"
    proc = start(kb_command("demo", "--docs", str(docs), "--index", str(index), "--port", str(port),
                            "--reranker", "none"), env, log)
    try:
        wait_healthy(proc, port, log)
    finally:
        stop(proc)
    assert "1 added, 0 updated, 2 unchanged" in log.read_text()
    assert KnowledgeIndex.read_manifest(index)["counts"]["documents"] == 3


def test_kb_ui_rejects_a_bad_port(env):
    out = subprocess.run(kb_command("ui", "--port", "70000"), env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--port" in out.stderr


@pytest.mark.slow
def test_kb_demo_names_a_missing_docs_folder(env, tmp_path):
    out = subprocess.run(kb_command("demo", "--docs", str(tmp_path / "nope"), "--index", str(tmp_path / "i")),
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--docs" in out.stderr and "nope" in out.stderr
