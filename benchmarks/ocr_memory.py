"""Memory of OCR on a long scan stays at one page's worth: peak RSS of `kb ingest` on image-only PDFs of 10 and
300 pages, for docs/PERFORMANCE.md.

Each page is A4 at 200 dpi with a heading and a paragraph of Chinese and English policy text (drawn with Noto Sans
CJK SC, `tests/ingest/scans.py`); the PDF holds the page images only, as a scanner writes it. Each `kb ingest`
runs in a fresh process with the packaged MiniLM embedder, the default OCR settings and no reranker; its peak RSS
comes from the kernel (`ru_maxrss` of the finished child). If memory grew with the pages, the 300-page run would
show it.

Run: `PYTHONPATH=. python benchmarks/ocr_memory.py --pages 10 300` (needs fonts-noto-cjk). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.ingest.scans import image_only_pdf, render_page

TEXT = ("第{n}页 员工手册\n第{n}条 员工因公出差，住宿费每晚不超过六百元，交通费凭票据实报实销。\n"
        "Page {n}. Employees must lock their laptop screen and report lost devices within one hour.")


def build_scan(pages: int, path: Path) -> Path:
    """An image-only PDF of `pages` pages, made one page image at a time."""
    path.write_bytes(image_only_pdf(render_page(TEXT.format(n=n)) for n in range(1, pages + 1)))
    return path


def ingest_peak(folder: Path, index: Path) -> dict:
    """`kb ingest folder` in a child process: its exit code, seconds and peak RSS."""
    env = {**os.environ, "KB_EMBEDDER": "packaged:all-MiniLM-L6-v2", "KB_RERANKER": "none",
           "KB_INDEX_DIR": str(index), "KB_CONFIG": str(index.parent / "none.toml"), "HF_HUB_OFFLINE": "1"}
    kb = Path(sys.executable).with_name("kb")
    t0 = time.perf_counter()
    proc = subprocess.run([str(kb), "ingest", str(folder), "--json"], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    report = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
    return {"exit_code": proc.returncode, "seconds": round(seconds, 1),
            "chunks": report.get("chunks_written"), "pages_not_read": len(report.get("pages_not_read", [])),
            "skipped": report.get("skipped"), "stderr_tail": proc.stderr[-300:] if proc.returncode else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pages", type=int, nargs="+", default=[10, 300])
    args = ap.parse_args()
    out: dict = {"cpus": os.cpu_count(), "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for pages in args.pages:
            folder = Path(tmp) / f"scan{pages}"
            folder.mkdir()
            pdf = build_scan(pages, folder / f"scan-{pages}-pages.pdf")
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            run = ingest_peak(folder, Path(tmp) / f"index{pages}")
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            # ru_maxrss of children is the largest child so far: runs go from small to large, so a larger
            # value belongs to this run; an equal one means this run peaked no higher than the earlier one.
            run.update(pages=pages, pdf_mb=round(pdf.stat().st_size / 2**20, 2),
                       peak_rss_mb=round(peak / 1024, 1), peaked_above_previous_run=peak > before,
                       pages_per_s=round(pages / run["seconds"], 3))
            out["runs"][str(pages)] = run
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
