"""How long `kb watch` takes to bring a change into the index: the figures in docs/INGEST.md.

Starts the real `kb watch` (offline MiniLM, no reranker) on a copy of the sample knowledge base in a temporary
folder, then, `--rounds` times each, creates a file, changes it, renames it and deletes it, and measures the
wall time from the file operation until the index's live version shows it (polling every 20 ms). The figure
includes the debounce (`--debounce-ms`, 1000 by default in `kb watch`), the sync and the publish.

    python scripts/watch_latency.py [--rounds 5] [--debounce-ms 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retrieval.index import KnowledgeIndex  # noqa: E402


def names(index_dir: Path) -> dict[str, str]:
    return {Path(r.source).name: r.content_hash for r in KnowledgeIndex.read_documents(index_dir)}


def timed(action: Callable[[], None], done: Callable[[], bool], limit_s: float = 120.0) -> float:
    start = time.perf_counter()
    action()
    while not done():
        if time.perf_counter() - start > limit_s:
            raise TimeoutError("the change did not reach the index in time")
        time.sleep(0.02)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--debounce-ms", type=int, default=1000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kb-watch-latency-"))
    folder, index = work / "docs", work / "index"
    shutil.copytree(ROOT / "data" / "samples" / "docs", folder)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "KB_CONFIG": str(work / "kb.toml"),
           "KB_EMBEDDER": "packaged:all-MiniLM-L6-v2", "KB_RERANKER": "none"}
    log = open(work / "watch.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", "from app.cli import main; main()", "watch", str(folder),
                             "--index", str(index), "--debounce-ms", str(args.debounce_ms)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    figures: dict[str, list[float]] = {"create": [], "change": [], "rename": [], "delete": []}
    try:
        started = time.perf_counter()
        while not (index / "CURRENT").exists() or len(names(index)) == 0:
            time.sleep(0.1)
        print(f"first sync: {len(names(index))} documents {time.perf_counter() - started:.1f} s after start "
              "(model load included)")
        time.sleep(12)  # past the catch-up round that follows the first sync
        for i in range(args.rounds):
            a, b = folder / f"note-{i}.md", folder / f"renamed-{i}.md"
            figures["create"].append(timed(lambda a=a, i=i: a.write_text(f"# Note {i}\n\nRoom {i} has a printer.\n"),
                                           lambda a=a: a.name in names(index)))
            before = names(index)[a.name]
            figures["change"].append(timed(lambda a=a, i=i: a.write_text(f"# Note {i}\n\nRoom {i} has no printer.\n"),
                                           lambda a=a, before=before: names(index).get(a.name) not in (None, before)))
            figures["rename"].append(timed(lambda a=a, b=b: a.rename(b),
                                           lambda a=a, b=b: b.name in names(index) and a.name not in names(index)))
            figures["delete"].append(timed(lambda b=b: b.unlink(), lambda b=b: b.name not in names(index)))
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    for kind, values in figures.items():
        print(f"{kind:7s} median {statistics.median(values):.2f} s, max {max(values):.2f} s over {len(values)}")
    print(f"kb watch exited with {code} on Ctrl+C (SIGINT)")


if __name__ == "__main__":
    main()
