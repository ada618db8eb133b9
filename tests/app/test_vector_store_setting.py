"""`KB_VECTOR_STORE=milvus` end to end through `kb ingest` and `kb search` (real MiniLM, Milvus Lite in the index
folder): the same results as the FAISS default, and an index is never read through the other store."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.settings import get_settings
from retrieval.catalog import Catalog
from retrieval.index import KnowledgeIndex

pytestmark = pytest.mark.slow  # Milvus Lite beside FAISS: several seconds on 2 cores


runner = CliRunner()
DOCS = {
    "vpn.md": "# VPN token\n\nTo reset a forgotten VPN token, open the self-service portal and choose Reset.\n",
    "laptop.md": "# Laptops\n\nNew employees receive a laptop from the IT desk on their first day.\n",
    "leave.md": "# Annual leave\n\nEmployees get twenty days of annual leave a year.\n",
}


def kb(monkeypatch, index_dir, store, *args):
    monkeypatch.setenv("KB_INDEX_DIR", str(index_dir))
    monkeypatch.setenv("KB_VECTOR_STORE", store)
    monkeypatch.setenv("KB_MILVUS_INDEX", "FLAT")  # exact, to compare with FAISS flat
    get_settings.cache_clear()
    result = runner.invoke(app, [*map(str, args)])
    get_settings.cache_clear()
    return result


def test_milvus_setting_serves_the_same_results_as_faiss(isolated_settings, tmp_path, monkeypatch):
    corpus = tmp_path / "kb"
    corpus.mkdir()
    for name, text in DOCS.items():
        (corpus / name).write_text(text)
    out = {}
    for store in ("faiss", "milvus"):
        index_dir = tmp_path / store
        ingested = kb(monkeypatch, index_dir, store, "ingest", corpus, "--json")
        assert ingested.exit_code == 0, ingested.output
        found = kb(monkeypatch, index_dir, store, "search", "how do I get a new VPN token", "--mode", "dense", "--json")
        assert found.exit_code == 0, found.output
        out[store] = json.loads(found.stdout.strip().splitlines()[-1])["results"]
    assert KnowledgeIndex.read_manifest(tmp_path / "faiss")["vector_store"] == "faiss"
    # the whole corpus is in Milvus (a Lite file here) and its revision in the shared database: no version folder
    assert sorted(p.name for p in (tmp_path / "milvus").iterdir()) == ["milvus.db"]
    assert not (tmp_path / "faiss" / "milvus.db").exists()
    published = Catalog.at(f"sqlite:///{tmp_path / 'events.db'}").current(f"kb_chunks@{(tmp_path / 'milvus').resolve()}")
    assert published.number == 1 and published.manifest["counts"] == {"documents": 3, "chunks": 3}
    assert out["milvus"][0]["source"].endswith("vpn.md")
    assert [r["chunk_id"] for r in out["milvus"]] == [r["chunk_id"] for r in out["faiss"]]

    # a new user dictionary is applied to the corpus in Milvus at once: its terms are made again (a new revision)
    (tmp_path / "userdict.txt").write_text("self-service-portal\n", encoding="utf-8")
    applied = kb(monkeypatch, tmp_path / "milvus", "milvus", "vocabulary", "set", "user_dict",
                 tmp_path / "userdict.txt", "--json")
    assert applied.exit_code == 0, applied.output
    assert json.loads(applied.stdout.strip().splitlines()[-1])["revision"] == "r2"
    assert Catalog.at(f"sqlite:///{tmp_path / 'events.db'}").current(
        f"kb_chunks@{(tmp_path / 'milvus').resolve()}").manifest["collection"] == "kb_chunks__2"

    wrong = kb(monkeypatch, tmp_path / "milvus", "faiss", "search", "VPN", "--json")
    assert wrong.exit_code != 0 and "KB_VECTOR_STORE=milvus" in wrong.output  # never read through the other store
    back = kb(monkeypatch, tmp_path / "faiss", "milvus", "search", "VPN", "--json")
    assert back.exit_code != 0 and "KB_VECTOR_STORE=faiss" in back.output
    moved = kb(monkeypatch, tmp_path / "milvus", "faiss", "ingest", corpus, "--rebuild", "--json")
    assert moved.exit_code == 0, moved.output  # --rebuild is how an index changes store
    assert KnowledgeIndex.read_manifest(tmp_path / "milvus")["vector_store"] == "faiss"
