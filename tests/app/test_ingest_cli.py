"""`kb ingest` end to end on real files with the real MiniLM embedder: skips with reasons, sync semantics."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from retrieval.index import KnowledgeIndex
from retrieval.storage import current_version

runner = CliRunner()


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "kb"
    root.mkdir()
    (root / "vpn.md").write_text("# VPN\n\nTo reset your VPN token open the self-service portal and choose Reset.\n")
    (root / "leave.html").write_text("<html><title>Leave</title><body><h1>Annual leave</h1>"
                                     "<p>Employees get 20 days of annual leave.</p><script>x()</script></body></html>")
    (root / "离职.txt").write_bytes("离职手续\n试用期员工离职应提前三日通知，并交还电脑和门禁卡。".encode("gbk"))
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.txt").write_bytes(b"")
    (bad / "random.pdf").write_bytes(b"%PDF-1.4\n" + os.urandom(2000))
    (bad / "notzip.docx").write_bytes(b"not a zip at all")
    (bad / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (bad / "image.png").write_bytes(b"\x89PNG\r\n")
    return root


def ingest(*args):
    return runner.invoke(app, ["ingest", *map(str, args), "--json"])


def test_bad_files_are_skipped_with_reasons_and_the_rest_ingested(corpus, isolated_settings):
    result = ingest(corpus)
    assert result.exit_code == 3, result.output  # documented: some files skipped
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report["added"]) == 3 and report["total_documents"] == 3
    reasons = {os.path.basename(s["file"]): s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"empty.txt", "random.pdf", "notzip.docx", "binary.txt", "image.png"}
    assert "empty" in reasons["empty.txt"] and "zip" in reasons["notzip.docx"]
    assert "binary" in reasons["binary.txt"] and "not a readable image" in reasons["image.png"]
    assert "Traceback" not in result.output


def test_paths_that_do_not_exist_are_a_user_error_unless_some_others_do(corpus, isolated_settings, tmp_path):
    missing = tmp_path / "nowhere"
    refused = ingest(missing)
    assert refused.exit_code == 2 and f"{missing}: no such file or folder" in refused.stderr, refused.output
    assert not isolated_settings.index_dir.exists()  # refused before anything was opened
    partial = ingest(corpus / "vpn.md", missing)  # what exists is ingested, the rest reported skipped
    assert partial.exit_code == 3, partial.output
    report = json.loads(partial.stdout.strip().splitlines()[-1])
    assert len(report["added"]) == 1 and report["skipped"] == [{"file": str(missing), "reason": "no such file or folder"}]


@pytest.mark.slow
def test_reingest_is_a_no_op_then_sync_updates_and_deletes(corpus, isolated_settings, tmp_path):
    index_dir = isolated_settings.index_dir
    ingest(corpus)
    version = KnowledgeIndex.read_manifest(index_dir)["updated"]
    again = json.loads(ingest(corpus).stdout.strip().splitlines()[-1])
    assert again["added"] == again["updated"] == again["deleted"] == [] and again["unchanged"] == 3
    assert KnowledgeIndex.read_manifest(index_dir)["updated"] == version  # nothing rewritten

    (corpus / "vpn.md").write_text("# VPN\n\nTokens are now reset by the IT helpdesk at extension 4410.\n")
    (corpus / "leave.html").unlink()
    kept = json.loads(runner.invoke(app, ["ingest", str(corpus), "--no-delete", "--json"]).stdout.splitlines()[-1])
    assert [os.path.basename(s) for s in kept["updated"]] == ["vpn.md"] and kept["deleted"] == []
    synced = json.loads(ingest(corpus).stdout.strip().splitlines()[-1])
    assert [os.path.basename(s) for s in synced["deleted"]] == ["leave.html"]
    assert synced["total_documents"] == 2
    found = runner.invoke(app, ["search", "helpdesk extension", "--json", "--mode", "lexical"])
    assert found.exit_code == 0, found.output
    top = json.loads(found.stdout.strip().splitlines()[-1])["results"][0]
    assert "4410" in top["text"] and top["score"] is None and top["raw_score"] is None  # recall-only


def test_missing_index_and_bad_arguments_are_clear_errors(isolated_settings):
    result = runner.invoke(app, ["search", "anything"])
    assert result.exit_code == 2 and "kb ingest" in result.output
    assert runner.invoke(app, ["search"]).exit_code == 2
    for name in ("serve", "ui", "demo", "bench", "tune", "eval", "rerank", "models"):  # the DESIGN's commands, real
        helped = runner.invoke(app, [name, "--help"])
        assert helped.exit_code == 0 and "not implemented" not in helped.output.lower(), name


def test_symbolic_links_are_skipped_with_their_reason_and_never_indexed(tmp_path, isolated_settings):
    """Issue 32: share/notes.txt → kb.toml (0600, a client secret) was indexed as a public document."""
    secret = tmp_path / "kb-secret.toml"
    secret.write_text('[auth]\nclient_secret = "s3cr3t-value"\n')
    secret.chmod(0o600)
    outside = tmp_path / "hr-only"
    outside.mkdir()
    (outside / "salaries.md").write_text("# Salaries\n\nThe salary bands are confidential.\n")
    share = tmp_path / "share"
    share.mkdir()
    (share / "vpn.md").write_text("# VPN\n\nReset your VPN token in the self-service portal.\n")
    (share / "notes.txt").symlink_to(secret)
    (share / "more").symlink_to(outside, target_is_directory=True)
    result = ingest(share)
    assert result.exit_code == 3, result.output  # some files skipped
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["added"] == [(share / "vpn.md").resolve().as_posix()]
    reasons = {os.path.basename(s["file"]): s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"notes.txt", "more"} and all("symbolic link" in r for r in reasons.values())
    texts = (current_version(isolated_settings.index_dir) / "chunks.jsonl").read_text(encoding="utf-8")
    assert "s3cr3t" not in texts and "salary" not in texts.lower()
    assert [Path(r.source).name for r in KnowledgeIndex.read_documents(isolated_settings.index_dir)] == ["vpn.md"]


@pytest.mark.slow
def test_a_changed_short_section_rule_rechunks_unchanged_files(tmp_path, isolated_settings, monkeypatch):
    """KB_CHUNK_MIN_TOKENS is part of what the chunks were made with: changing it re-chunks every document at the
    next ingest, though no file changed, and a one-line section no longer stands alone."""
    from app.settings import get_settings

    share = tmp_path / "share"
    share.mkdir()
    steps = "\n".join(f"- Step {i}: open the portal, choose Security, then VPN token, then confirm with code {i}."
                      for i in range(1, 5))
    (share / "vpn.md").write_text(f"# Reset your VPN token\n\n## Steps\n\n{steps}\n\n## Related\n\n"
                                  "New employees need nothing: see the onboarding guide.\n")

    def related_chunk() -> dict:
        found = runner.invoke(app, ["search", "onboarding guide", "--json", "--mode", "lexical"])
        assert found.exit_code == 0, found.output
        return json.loads(found.stdout.strip().splitlines()[-1])["results"][0]

    monkeypatch.setenv("KB_CHUNK_MIN_TOKENS", "0")
    get_settings.cache_clear()
    assert ingest(share).exit_code == 0
    alone = related_chunk()
    assert alone["section"] == "Related" and alone["text"] == "New employees need nothing: see the onboarding guide."

    monkeypatch.delenv("KB_CHUNK_MIN_TOKENS")
    get_settings.cache_clear()
    again = ingest(share)
    report = json.loads(again.stdout.strip().splitlines()[-1])
    assert again.exit_code == 0 and [os.path.basename(s) for s in report["updated"]] == ["vpn.md"]
    assert report["total_chunks"] == 1
    joined = related_chunk()
    assert joined["section"] == "Steps · Related" and joined["text"].startswith("- Step 1")
