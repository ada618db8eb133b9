"""Browser tests drive Debian's Chromium through Playwright against a real `kb ui` server.

They never skip silently: without Chromium they fail with how to install it. Set KB_SKIP_BROWSER=1 to skip
them on purpose (a machine where no browser may be installed); `.ci/run` installs Chromium, so CI runs them.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest


def chromium_path() -> str:
    if os.environ.get("KB_SKIP_BROWSER") == "1":
        pytest.skip("KB_SKIP_BROWSER=1: browser tests skipped on purpose")
    given = os.environ.get("KB_CHROMIUM")
    found = given or next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
                          None)
    if not found or not os.path.exists(found):
        pytest.fail("Chromium not found for the browser tests: `apt-get install -y chromium` (.ci/run does it), or "
                    "point KB_CHROMIUM at a Chrome/Chromium binary; KB_SKIP_BROWSER=1 skips them on purpose")
    return found


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@contextmanager
def served_app(root: Path, index: Path):
    """`kb ui` over `index` in its own process, with a tiny BERT reranker (seed 2: scores fall on both sides of 0.5
    on the sample knowledge base, so both colours show) and the packaged MiniLM; yields its URL, stops it after."""
    from tests.processes import free_port, kb_command, start, stop, wait_healthy
    from tests.tiny_models import build_tiny_cross_encoder

    reranker = build_tiny_cross_encoder(root / "reranker", arch="bert", seed=2)
    env = dict(os.environ, HF_HUB_OFFLINE="1", KB_CONFIG=str(root / "absent.toml"),
               KB_EMBEDDER="packaged:all-MiniLM-L6-v2", KB_UPLOAD_DIR=str(root / "uploads"))
    port = free_port()
    log = root / "ui.log"
    proc = start(kb_command("ui", "--port", str(port), "--index", str(index), "--reranker", str(reranker)), env, log)
    try:
        wait_healthy(proc, port, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
