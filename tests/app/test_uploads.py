"""Uploads (issue 32, finding 14): one folder per set of access groups, groups never dropped, a broken re-upload
never replaces the good copy; kept private. The real Library, index and MiniLM embedder on real files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from app.identity import Caller
from app.services.library import Library, upload_key
from retrieval.index import KnowledgeIndex

PAY_HR = b"# Pay\n\nThe salary bands for 2026 are confidential to HR.\n"
PAY_PUBLIC = b"# Pay\n\nPay day is the 25th of each month.\n"
PAY_FINANCE = b"# Pay\n\nPayroll runs on the finance system.\n"


@pytest.fixture
def library(tmp_path, embedder):
    return Library(tmp_path / "index", embedder, upload_dir=tmp_path / "uploads")


def docs(library: Library) -> dict[str, tuple[list[str], str]]:
    """source → (acl, text) of the live version."""
    index = KnowledgeIndex.open(library.index_dir, library.embedder.info(), {}, create=False)
    return {rec.source: (rec.acl, " ".join(c.text for c in index.chunks.values() if c.doc_id == rec.doc_id))
            for rec in index.documents.values()}


def visible_to(library: Library, caller: Caller) -> str:
    return " ".join(text for acl, text in docs(library).values() if caller.may_read(acl))


def test_a_re_upload_without_groups_never_makes_a_restricted_document_public(library):
    library.ingest_uploads([("pay.md", PAY_HR)], ["hr"])
    report = library.ingest_uploads([("pay.md", PAY_PUBLIC)], [])
    assert len(report.added) == 1 and report.updated == []  # another document, not a replacement
    anyone = Caller("bob", ())
    assert "25th" in visible_to(library, anyone) and "confidential" not in visible_to(library, anyone)
    hr = Caller("alice", ("hr",))
    assert "confidential" in visible_to(library, hr)
    assert sorted(acl for acl, _ in docs(library).values()) == [[], ["hr"]]
    assert (Path(library.upload_dir) / upload_key(["hr"]) / "pay.md.meta.json").is_file()


def test_another_departments_file_of_the_same_name_does_not_replace_it(library):
    library.ingest_uploads([("pay.md", PAY_HR)], ["hr"])
    library.ingest_uploads([("pay.md", PAY_FINANCE)], ["finance"])
    held = docs(library)
    assert sorted(acl for acl, _ in held.values()) == [["finance"], ["hr"]]
    assert "confidential" in visible_to(library, Caller("alice", ("hr",)))
    assert "finance system" in visible_to(library, Caller("carol", ("finance",)))
    assert upload_key(["it", "hr", "hr"]) == "groups-hr+it" and upload_key([]) == "public"
    assert upload_key(["../x"]).startswith("hash-") and upload_key(["public"]) != upload_key([])


def test_a_broken_re_upload_keeps_the_good_copy_and_says_why(library):
    library.ingest_uploads([("pay.md", PAY_HR)], ["hr"])
    kept = Path(library.upload_dir) / "groups-hr" / "pay.md"
    version = KnowledgeIndex.read_manifest(library.index_dir)["updated"]
    report = library.ingest_uploads([("pay.md", b"")], ["hr"])
    assert [(Path(f).name, "empty" in why) for f, why in report.skipped] == [("pay.md", True)]
    assert kept.read_bytes() == PAY_HR and (kept.parent / "pay.md.meta.json").is_file()
    assert KnowledgeIndex.read_manifest(library.index_dir)["updated"] == version  # nothing published
    assert "confidential" in visible_to(library, Caller("alice", ("hr",)))
    assert sorted(p.name for p in kept.parent.iterdir()) == ["pay.md", "pay.md.meta.json"]  # no staging left
    # a good re-upload updates it in place; the same bytes again are a no-op
    assert library.ingest_uploads([("pay.md", PAY_HR + b"\nUpdated.\n")], ["hr"]).updated == [kept.as_posix()]
    assert library.ingest_uploads([("pay.md", PAY_HR + b"\nUpdated.\n")], ["hr"]).unchanged == 1


def test_uploads_are_private(library):
    old = os.umask(0o022)
    try:
        library.ingest_uploads([("pay.md", PAY_HR)], ["hr"])
    finally:
        os.umask(old)
    root = Path(library.upload_dir)
    assert stat.S_IMODE(root.stat().st_mode) == stat.S_IMODE((root / "groups-hr").stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*") if p.is_file()} == {0o600}
