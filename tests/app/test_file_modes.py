"""Security review (issue 32): what holds secrets, document text or people's questions is never readable by others
(findings 3 and 15), and the audit log is bounded with its refusals still counted (finding 17). Real files written
by the real components, under the usual umask 022 (where a default-mode file is world-readable)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from app.api.metrics import AuditCollector
from app.components import audit_log, open_events, rollout_store
from app.identity import Caller
from app.services.audit import AuditLog
from app.services.library import sync
from app.services.rollout import RolloutState
from app.settings import Settings
from rerank.calibration import fit_platt
from retrieval.storage import CURRENT, current_version


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(autouse=True)
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_every_other_atomic_write_keeps_the_files_mode(tmp_path):
    calibration = tmp_path / "cal.json"
    calibration.write_text("{}")
    calibration.chmod(0o600)
    fit_platt([-2.0, -1.0, 1.0, 2.0], [0, 0, 1, 1], {}).save(calibration)
    assert mode(calibration) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_the_index_folder_its_versions_and_files_are_private(tmp_path, embedder):
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "pay.md").write_text("# Pay\n\nThe salary bands are confidential.\n")
    index = tmp_path / "data" / "index"
    sync([tmp_path / "kb"], index, embedder)
    version = current_version(index)
    assert mode(index) == mode(version) == 0o700
    assert mode(index / CURRENT) == 0o600
    files = [p for p in version.rglob("*") if p.is_file()]
    assert files and {mode(p) for p in files} == {0o600}, {p.name: oct(mode(p)) for p in files}
    assert {mode(p) for p in version.rglob("*") if p.is_dir()} <= {0o700}


def test_the_shared_database_its_lock_and_the_events_key_are_private(tmp_path):
    s = Settings(index_dir=tmp_path / "data" / "index", _env_file=None)
    with rollout_store(s).locked():  # the control state may make the database first (and its lock file)
        rollout_store(s).write(RolloutState())
    events = open_events(s)
    assert events is not None
    try:
        events.flush(5)
    finally:
        events.close()
    data = tmp_path / "data"
    assert mode(data) == 0o700
    made = [p for p in data.iterdir() if p.name.startswith(("events.db", "events.key"))]
    assert {p.name for p in made} >= {"events.db", "events.key", "events.db.rollout.lock"}
    assert {mode(p) for p in made} == {0o600}, {p.name: oct(mode(p)) for p in made}


def test_the_audit_log_rotates_and_still_counts_every_refusal(tmp_path):
    s = Settings(index_dir=tmp_path / "data" / "index", audit_max_mb=0.001, audit_keep=2, _env_file=None)
    audit = audit_log(s)
    assert isinstance(audit, AuditLog) and audit.max_bytes == int(0.001 * 2**20) and audit.keep == 2
    mallory = Caller("mallory", ("sales",), via="oidc")
    for n in range(200):  # each entry is about 200 bytes: far more than three files of 1 KiB hold
        audit.record(mallory, "upload", "refused", attempt=n)
    audit.record(Caller("root", None, admin=True), "delete", doc_ids=["x"])
    logs = sorted(p.name for p in audit.path.parent.glob("audit.jsonl*") if not p.name.endswith((".lock", ".counts")))
    assert logs == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert all(p.stat().st_size <= audit.max_bytes + 400 for p in audit.path.parent.glob("audit.jsonl*"))
    assert {mode(p) for p in audit.path.parent.glob("audit.jsonl*")} == {0o600}
    assert audit.counts() == {"refused": 200, "done": 1}  # the rotated-away refusals too
    kept = list(audit.entries())
    assert kept[-1]["action"] == "delete" and [e["attempt"] for e in kept[:-1]] == \
        sorted(e["attempt"] for e in kept[:-1])  # oldest first, across files
    registry = CollectorRegistry()
    registry.register(AuditCollector(audit))
    text = generate_latest(registry).decode()
    assert 'kb_audit_entries_total{outcome="refused"} 200.0' in text
    assert json.loads(audit.counts_path.read_text()) == {"done": 1, "refused": 200}
