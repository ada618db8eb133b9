"""The sample knowledge base in data/samples ingests cleanly and its labelled queries agree with the documents."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pytest

from ingest import Document, IngestError, discover, load

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "data" / "samples"
DOCS = SAMPLES / "docs"  # the knowledge base; README.md and queries.jsonl sit beside it, never ingested
QUERIES = SAMPLES / "queries.jsonl"
BUILD_SCRIPT = ROOT / "scripts" / "build_samples.py"
FORMATS = {"html", "pdf", "docx", "md", "txt"}
GBK_FILE = "docs/hr/attendance-overtime-zh.txt"
_CJK = re.compile(r"[\u4e00-\u9fff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{3,}")


def _rel(path: Path) -> str:
    return path.resolve().relative_to(SAMPLES.resolve()).as_posix()


@lru_cache(maxsize=1)
def _discovery():
    return discover([DOCS])


@lru_cache(maxsize=1)
def _documents() -> dict[str, Document]:
    return {_rel(path): load(path) for path in _discovery().files}


@lru_cache(maxsize=1)
def _queries() -> list[dict]:
    lines = QUERIES.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _lang(doc: Document) -> str:
    cjk = len(_CJK.findall(doc.text))
    return "zh" if cjk > len(_LATIN_WORD.findall(doc.text)) else "en"


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_only_documents_under_docs():
    outside = sorted(_rel(p) for p in SAMPLES.rglob("*") if p.is_file() and DOCS not in p.parents)
    assert outside == ["README.md", "queries.jsonl"]


def test_every_sample_file_ingests():
    found = _discovery()
    assert found.unsupported == []
    assert found.missing == []
    failures = []
    for path in found.files:
        try:
            load(path)
        except IngestError as exc:
            failures.append(str(exc))
    assert failures == []


def test_corpus_size_formats_and_languages():
    docs = _documents()
    assert len(docs) >= 30
    formats = Counter(doc.meta["format"] for doc in docs.values())
    assert FORMATS <= set(formats), formats
    langs = Counter(_lang(doc) for doc in docs.values())
    assert langs["zh"] >= 12 and langs["en"] >= 12, langs
    assert all(doc.title for doc in docs.values())


def test_html_boilerplate_is_dropped():
    for rel, doc in _documents().items():
        if doc.meta["format"] != "html":
            continue
        for junk in ("dataLayer", "Was this page helpful", "本文对您有帮助吗", "隐私声明", "Lattice Hub\n"):
            assert junk not in doc.text, (rel, junk)


def test_gbk_text_file_is_detected():
    doc = _documents()[GBK_FILE]
    raw = (SAMPLES / GBK_FILE).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert raw.decode("gbk").startswith("考勤与加班管理规定")
    assert doc.meta["encoding"].lower().replace("-", "").replace("_", "") in {"gb18030", "gbk"}
    assert "第九条" in doc.text


def test_chinese_pdf_text_is_extractable():
    doc = _documents()["docs/hr/resignation-management-zh.pdf"]
    assert doc.meta["pages"] >= 3
    assert "第一章 总则" in doc.text and "第三十一条" in doc.text
    assert "内部制度文件" not in doc.text  # the running header is dropped on a PDF of three pages or more


def test_docx_keeps_headings_and_tables():
    doc = _documents()["docs/it/laptop-software-request-en.docx"]
    assert "# Requesting a Laptop, Accessories or Software" in doc.text
    assert "| Engineering | MacBook Pro 14 or ThinkPad P16 | 32 GB / 1 TB |" in doc.text


def test_access_groups():
    acl = {rel: doc.meta["acl"] for rel, doc in _documents().items() if doc.meta["acl"]}
    assert acl == {
        "docs/hr/salary-bands-2024-zh.docx": ["hr"],
        "docs/it/account-deprovisioning-runbook-en.html": ["it-admins"],
        "docs/it/vpn-gateway-runbook-zh.md": ["it-admins"],
    }


def test_query_file_shape():
    queries = _queries()
    assert len(queries) >= 80
    ids = [q["_id"] for q in queries]
    assert len(ids) == len(set(ids))
    assert len({q["text"] for q in queries}) == len(queries)
    assert sum(not q["answerable"] for q in queries) >= 10
    assert {q["lang"] for q in queries} == {"zh", "en"}
    for q in queries:
        assert set(q) == {"_id", "text", "lang", "answerable", "groups", "relevant"}, q["_id"]
        assert isinstance(q["groups"], list)
        assert q["answerable"] == bool(q["relevant"]), q["_id"]
        for rel in q["relevant"]:
            assert rel["grade"] in (1, 2), q["_id"]
            assert 10 <= len(rel["evidence"]) <= 80, q["_id"]
            assert "\n" not in rel["evidence"], q["_id"]
        if q["answerable"]:
            assert any(rel["grade"] == 2 for rel in q["relevant"]), q["_id"]


def test_query_evidence_is_in_the_document():
    docs = _documents()
    missing = []
    for q in _queries():
        for rel in q["relevant"]:
            doc = docs.get(rel["doc"])
            if doc is None:
                missing.append(f"{q['_id']}: no document {rel['doc']}")
            elif rel["evidence"] not in doc.text and _squash(rel["evidence"]) not in _squash(doc.text):
                missing.append(f"{q['_id']}: evidence not in {rel['doc']}: {rel['evidence']}")
    assert missing == []


def test_query_groups_can_see_their_documents():
    docs = _documents()
    for q in _queries():
        for rel in q["relevant"]:
            acl = docs[rel["doc"]].meta["acl"]
            assert not acl or set(acl) & set(q["groups"]), (q["_id"], rel["doc"], acl)


def test_generated_files_match_their_sources():
    """Every PDF/DOCX has a source in scripts/sample_sources, and the source's headings survive the round trip.

    (Byte equality is `python scripts/build_samples.py --check`: not tested here, as other reportlab or
    python-docx versions may lay out the same text differently.)
    """
    spec = importlib.util.spec_from_file_location("build_samples", BUILD_SCRIPT)
    build = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_samples", build)  # dataclasses look their module up there
    spec.loader.exec_module(build)
    sources = sorted(build.SOURCES.glob("*.md"))
    outputs = set()
    for path in sources:
        src = build.parse_source(path)
        rel = src.output.relative_to(SAMPLES).as_posix()
        outputs.add(rel)
        doc = _documents()[rel]
        assert doc.title == src.meta["title"], rel
        flat = re.sub(r"\s+", "", doc.text)
        for block in src.blocks:
            if block.kind == "heading":
                assert re.sub(r"\s+", "", block.text) in flat, (rel, block.text)
    generated = {rel for rel, doc in _documents().items() if doc.meta["format"] in ("pdf", "docx")}
    assert generated == outputs
