"""Hostile input: `kb ingest` of a folder of zip bombs, huge, deep, binary, encrypted, truncated and awkward files
finishes within memory, skips each bad file with its reason, ingests the good ones intact and exits 3.
Chunking stays linear in the length of a document, whatever its lines look like."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ingest.chunker import MAX_CHARS_PER_TOKEN, chunk
from ingest.types import Document

from .conftest import index_state, last_json_line
from .hostile import BAD, GOOD, write_hostile_corpus
from .kb_process import KbRun, start_kb

PEAK_RSS_BUDGET_MB = 3072  # a kb process with torch and MiniLM loaded is about 1 GB; a bomb would take many


def _peak_rss_mb(run: KbRun) -> float:
    """Poll the child's VmHWM (its peak resident memory) until it exits; the last reading is the peak so far."""
    peak = 0.0
    while run.process.exitcode is None:
        try:
            with open(f"/proc/{run.pid}/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) / 1024)
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.05)
    return peak


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory) -> Path:
    return write_hostile_corpus(tmp_path_factory.mktemp("hostile") / "kb")


def test_kb_ingest_of_hostile_files_skips_each_with_a_reason_and_keeps_the_good_ones(hostile_dir, tmp_path,
                                                                                      kb_env):
    index = tmp_path / "index"
    run = start_kb(["ingest", str(hostile_dir), "--index", str(index), "--json"], kb_env, tmp_path / "kb.log")
    peak = _peak_rss_mb(run)
    code = run.wait()
    out = run.output()
    assert code == 3, out  # documented: finished, some files skipped
    assert "Traceback" not in out and "RecursionError" not in out and "MemoryError" not in out
    assert peak < PEAK_RSS_BUDGET_MB, f"peak resident memory {peak:.0f} MB"

    report = last_json_line(out)
    reasons = {Path(s["file"]).name: s["reason"] for s in report["skipped"]}
    print(f"peak RSS {peak:.0f} MB, {report['seconds']} s; skipped: {reasons}")  # shown with -s
    assert set(reasons) == set(BAD), reasons
    for name, words in BAD.items():
        assert words.lower() in reasons[name].lower(), (name, reasons[name])
    assert {Path(s).name for s in report["added"]} == set(GOOD)

    state = index_state(index)  # one whole, consistent version
    assert len(state["documents"]) == len(GOOD)
    from retrieval.index import KnowledgeIndex

    idx = KnowledgeIndex.open(index, KnowledgeIndex.read_manifest(index)["embedder"], {}, create=False)
    texts = {Path(idx.documents[c.doc_id].source).name: [] for c in idx.chunks.values()}
    for c in idx.chunks.values():
        texts[Path(idx.documents[c.doc_id].source).name].append(c.text)
    for name, passage in GOOD.items():
        assert any(passage in t for t in texts[name]), (name, texts[name][:2])
    assert not any("\x00" in t for ts in texts.values() for t in ts)
    pages = [c.page for c in idx.chunks.values() if idx.documents[c.doc_id].source.endswith("pages_2000.pdf")]
    assert pages and min(pages) >= 1 and max(pages) <= 2000 and max(pages) > 1500


def _tokens(text: str) -> int:
    """A stand-in tokenizer: words and full stops, plus two special tokens."""
    return 2 + len(text.replace(".", " . ").split())


@pytest.mark.parametrize("unit", ["leave policy vpn token ", "Leave is paid. ", "0123456789abcdef"],
                         ids=["words without sentence ends", "short sentences", "no spaces at all"])
def test_chunking_a_long_line_reads_each_character_a_bounded_number_of_times(unit):
    """Doubling a line doubles the characters handed to the tokenizer (a cut searching the whole remaining line
    would quadruple them), and no chunk holds more than max_tokens * MAX_CHARS_PER_TOKEN characters."""
    read = []
    for size in (100_000, 200_000):
        seen = [0]

        def count(text: str, seen: list[int] = seen) -> int:
            seen[0] += len(text)
            return _tokens(text)

        text = (unit * (size // len(unit) + 1))[:size]
        chunks = chunk(Document(doc_id="d", source="/kb/long.txt", title="Long", text=text, meta={}), count,
                       max_tokens=128, overlap=8)
        assert max(len(c.text) for c in chunks) <= 128 * MAX_CHARS_PER_TOKEN
        assert max(_tokens(c.context_text()) for c in chunks) <= 128
        assert sum(len(c.text) for c in chunks) >= 0.95 * len(text.strip())  # nothing lost (overlap adds some)
        read.append(seen[0])
    assert read[1] < 2.5 * read[0], read
    assert read[0] < 60 * 100_000, read


def test_loader_limits_are_documented_in_the_reasons(tmp_path):
    """Each guard names its limit so that a person knows what to change (checked on the loader directly)."""
    from ingest import IngestError, load
    from ingest.load import MAX_LINE_CHARS

    path = tmp_path / "line.md"
    path.write_text("x" * (MAX_LINE_CHARS + 1), encoding="ascii")
    with pytest.raises(IngestError, match=f"{MAX_LINE_CHARS:,}"):
        load(path)
    ok = tmp_path / "ok.md"
    ok.write_text("# Fine\n\n" + "y" * (MAX_LINE_CHARS - 10), encoding="ascii")
    assert len(load(ok).text) > MAX_LINE_CHARS - 20
    assert os.path.getsize(ok) < 2 * MAX_LINE_CHARS
