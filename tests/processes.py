"""Child processes and servers for tests: a shared Milvus (`MilvusServer`), `kb` as a user runs it (a real `streamlit run` server for `kb ui` /
`kb demo`), an app on a real uvicorn (`live_server`), free loopback ports, waiting on a server's health endpoint,
and stopping a process group. A test that uses any of these is an integration test (the rule in tests/conftest.py).
A helper module, not a test module: tests and conftest files import from here, never from each other's tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MilvusServer:
    """`milvus-lite server` (a real Milvus gRPC endpoint) on a free loopback port over the folder `data`: what
    several processes share as their Milvus in tests. `start()` waits until it listens; it can be stopped and
    started again on the same port and data."""

    def __init__(self, data: Path):
        import shutil

        exe = shutil.which("milvus-lite")
        assert exe is not None, "milvus-lite is a dev dependency: pip install -e '.[dev]'"
        self.exe, self.data, self.port = exe, Path(data), free_port()
        self.data.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> MilvusServer:
        self.proc = subprocess.Popen([self.exe, "server", "--data-dir", str(self.data), "--host", "127.0.0.1",
                                      "--port", str(self.port)],
                                     stdout=open(self.data / "server.log", "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                assert self.proc.poll() is None, (self.data / "server.log").read_text(errors="replace")
                assert time.monotonic() < deadline, "milvus-lite server did not listen within 120 s"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def kb_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from app.cli import main; main()", *args]


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_healthy(proc: subprocess.Popen, port: int, log: Path, seconds: float = 120) -> None:
    """Poll the server's health endpoint until it answers, the process dies, or time runs out (then fail)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the app exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the app did not answer on port {port} within {seconds} s:\n{log.read_text()}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the kb process and the streamlit server it started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def live_server(app, timeout: float = 30.0) -> Iterator[str]:
    """Run `app` on a real uvicorn in a thread on a free loopback port; yields its base URL."""
    import httpx
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"server on {url} did not become ready in {timeout} s")
        time.sleep(0.1)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
