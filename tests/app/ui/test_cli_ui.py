"""`kb ui` and `kb demo` as a user runs them: a real `streamlit run` server process on a free local port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
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
        wait_ready(proc, log)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
        proc.send_signal(signal.SIGTERM)  # to `kb ui` alone, as a supervisor would: the server itself stops
        proc.wait(timeout=30)
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        stop(proc)
    printed = log.read_text()
    # one address, printed once the models are loaded; not Streamlit's own "URL: http://127.0.0.1:…"
    assert f"s: http://localhost:{port} (Ctrl+C stops it)" in printed and "127.0.0.1" not in printed


def wait_ready(proc, log, seconds: float = 120) -> None:
    """Until the server prints its ready line (the models loaded)."""
    deadline = time.monotonic() + seconds
    while "Ready in" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.3)


def test_one_address_the_one_sign_in_returns_to():
    from app.cli.ui import app_address
    from app.settings import AuthSettings

    open_mode = AuthSettings()
    assert app_address(open_mode, "127.0.0.1", 8501) == "http://localhost:8501"
    assert app_address(open_mode, "10.0.0.5", 8501) == "http://10.0.0.5:8501"
    signed = AuthSettings(provider_url="https://idp.example.com", client_id="kb", client_secret="s",
                          cookie_secret="c" * 64)
    assert signed.configured
    assert app_address(signed, "0.0.0.0", 8600) == "http://localhost:8600"  # its default redirect URI's host
    behind = signed.model_copy(update={"redirect_uri": "https://kb.example.com/oauth2callback"})
    assert app_address(behind, "0.0.0.0", 8600) == "https://kb.example.com"


def test_the_uploader_limit_is_the_max_file_mb_setting():
    """Issue 29: Streamlit's uploader said "200MB per file" beside the Library's "up to 20 MB each"."""
    from app.cli.ui import streamlit_command

    def limit(mb: float) -> str:
        cmd = streamlit_command(8501, "127.0.0.1", max_upload_mb=mb)
        return cmd[cmd.index("--server.maxUploadSize") + 1]

    assert (limit(20.0), limit(0.5), limit(20.5)) == ("20", "1", "21")  # Streamlit takes whole megabytes
    cmd = streamlit_command(8501, "127.0.0.1", max_upload_mb=20.0)
    assert cmd[cmd.index("--logger.hideWelcomeMessage") + 1] == "true"


@pytest.mark.parametrize(("opened", "expected"), [
    ("http://localhost:8501/", None),
    ("http://LOCALHOST:8501/search", None),
    ("http://127.0.0.1:8501/", "http://localhost:8501/"),
    ("http://localhost:8502/", "http://localhost:8501/"),
    (None, None),
])
def test_the_sign_in_page_knows_when_it_was_opened_elsewhere(opened, expected):
    from app.ui.session import sign_in_address

    assert sign_in_address(opened, "http://localhost:8501/oauth2callback") == expected
    assert sign_in_address("http://10.0.0.5/", "https://kb.example.com/oauth2callback") == "https://kb.example.com/"
    assert sign_in_address("https://kb.example.com/", "https://kb.example.com:443/oauth2callback") is None


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
