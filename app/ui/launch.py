"""The app's server process, which `kb ui` and `kb demo` become: Streamlit's own `streamlit run`, plus the models
and the index loaded while the server starts instead of at the first visit, and one line on stderr,
`Ready: ADDRESS`, once the server answers its health check and they are loaded, so the address printed is one
that shows a page at once.

    python -m app.ui.launch ADDRESS HEALTH_URL streamlit-run-arguments...

ADDRESS is the one address people should open (printed as is: with sign-in, the one sign-in returns to);
HEALTH_URL is where this machine reaches the server (`/_stcore/health`). A failure to load the models is not
fatal here: the app says why on its pages, as it would have at the first visit.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import urllib.request

WARM_THREAD = "kb-warm"
READY_WAIT_S = 120.0  # how long the server may take to answer its health check after the models are loaded


def _answers(health_url: str) -> bool:
    try:
        with urllib.request.urlopen(health_url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def warm(address: str, health_url: str) -> None:
    """Load what the first page needs into the process-wide caches the pages read (`st.cache_resource` is shared
    by every session of this process), wait for the server to answer, then print the ready line."""
    # outside a page run Streamlit warns "missing ScriptRunContext": expected in this thread (a filter, because
    # Streamlit resets its loggers' levels when it reads its configuration)
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(
        lambda record: record.threadName != WARM_THREAD)
    t0 = time.monotonic()
    note = ""
    try:
        from app.ui import resources

        resources.live()
    except Exception as exc:  # noqa: BLE001 — the pages say it again, in full, at the first visit
        note = f" (models not loaded at start: {type(exc).__name__}: {str(exc)[:200]})"
    deadline = time.monotonic() + READY_WAIT_S
    while not _answers(health_url) and time.monotonic() < deadline:
        time.sleep(0.3)
    print(f"Ready in {time.monotonic() - t0:.0f} s: {address} (Ctrl+C stops it){note}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> None:
    address, health_url, *streamlit_args = argv
    threading.Thread(target=warm, args=(address, health_url), name=WARM_THREAD, daemon=True).start()
    from streamlit.web import cli

    sys.argv = ["streamlit", *streamlit_args]
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main(sys.argv[1:])
