"""Browser tests drive Debian's Chromium through Playwright against a real `kb ui` server.

They never skip silently: without Chromium they fail with how to install it. Set KB_SKIP_BROWSER=1 to skip
them on purpose (a machine where no browser may be installed); `.ci/run` installs Chromium, so CI runs them.
"""

from __future__ import annotations

import os
import shutil

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
