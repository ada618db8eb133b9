"""The index folder: manifest refusal, one writer at a time, and crash safety under kill -9 at random points."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ingest.types import Chunk, Document
from retrieval.index import IndexMismatch, IndexNotFound, KnowledgeIndex
from retrieval.storage import IndexLocked, writer_lock

EMB = {"name": "test-embedder", "dim": 8, "path": None}
REPO = Path(__file__).resolve().parents[2]


def add_docs(index, n_docs, per_doc=3, dim=8, seed=0, tag="v1"):
    rng = np.random.default_rng(seed)
    for d in range(n_docs):
        doc = Document(doc_id=f"doc{d}", source=f"/kb/{d}.md", title=f"Doc {d}", text=f"{tag} text {d}",
                       meta={"content_hash": f"{tag}-{d}", "format": "md", "acl": []})
        chunks = [Chunk(chunk_id=f"doc{d}-{i}-{tag}", doc_id=doc.doc_id, text=f"{tag} chunk {d} {i}",
                        meta={"acl": [], "position": i}) for i in range(per_doc)]
        v = rng.standard_normal((per_doc, dim)).astype(np.float32)
        index.replace_document(doc, chunks, v / np.linalg.norm(v, axis=1, keepdims=True))


def test_round_trip_and_manifest(tmp_path):
    index = KnowledgeIndex(tmp_path, EMB, {"max_tokens": 64})
    add_docs(index, 4)
    index.save()
    again = KnowledgeIndex.open(tmp_path, EMB, {})
    assert again.stats()["documents"] == 4 and again.stats()["chunks"] == 12
    manifest = KnowledgeIndex.read_manifest(tmp_path)
    assert manifest["embedder"]["name"] == "test-embedder" and manifest["embedder"]["dim"] == 8
    assert manifest["chunker"] == {"max_tokens": 64} and manifest["counts"] == {"documents": 4, "chunks": 12}


def test_other_embedder_is_refused_with_a_fix(tmp_path):
    index = KnowledgeIndex(tmp_path, EMB, {})
    add_docs(index, 1)
    index.save()
    with pytest.raises(IndexMismatch, match="--rebuild"):
        KnowledgeIndex.open(tmp_path, {"name": "other", "dim": 8}, {})
    with pytest.raises(IndexMismatch, match="8-d"):
        KnowledgeIndex.open(tmp_path, {"name": "test-embedder", "dim": 16}, {})
    with pytest.raises(IndexNotFound, match="kb ingest"):
        KnowledgeIndex.open(tmp_path / "none", EMB, {}, create=False)


def test_second_writer_is_refused(tmp_path):
    with writer_lock(tmp_path):
        code = "from retrieval.storage import writer_lock; import sys\n" \
               f"with writer_lock(__import__('pathlib').Path({str(tmp_path)!r})): pass"
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode != 0 and "being written by another process" in proc.stderr
    with pytest.raises(IndexLocked):
        with writer_lock(tmp_path):
            with writer_lock(tmp_path):
                pass


WRITER = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from retrieval.index import KnowledgeIndex
    from retrieval.storage import writer_lock
    from test_index import EMB, add_docs
    root = Path(sys.argv[1])
    with writer_lock(root):
        index = KnowledgeIndex.open(root, EMB, {{}})
        add_docs(index, 3000, per_doc=4, seed=1, tag="v2")
        print("saving", flush=True)
        index.save()
    print("done", flush=True)
""")


@pytest.mark.slow
def test_kill_9_mid_save_leaves_old_or_new_index(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(tests=str(Path(__file__).parent)))
    rng = np.random.default_rng(7)
    outcomes = set()
    for attempt in range(6):
        root = tmp_path / f"idx{attempt}"
        old = KnowledgeIndex(root, EMB, {})
        add_docs(old, 10, tag="v1")
        old.save()
        proc = subprocess.Popen([sys.executable, str(script), str(root)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.stdout.readline().strip() == "saving"
        time.sleep(float(rng.uniform(0.0, 0.6)))  # somewhere inside the save
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        index = KnowledgeIndex.open(root, EMB, {})  # always loads
        n = index.stats()["documents"]
        assert n in (10, 3000), n  # old (v1 docs only) or new (v1 ids replaced by v2, 3000 docs), never half
        assert len(index.chunks) == index.dense.count() == len(index.lexical.chunk_ids)
        outcomes.add(n)
        add_docs(index, 1, tag="v3")  # a later writer proceeds and cleans up the debris
        with writer_lock(root):
            index.save()
        assert not list(root.glob(".tmp-*"))
    assert outcomes  # at least one kill landed; which state survived depends on timing


def test_lexical_masks_are_kept_for_a_bounded_number_of_group_sets(tmp_path):
    """With sign-in every distinct set of a user's groups asks for its own lexical mask (one float per chunk): the
    index keeps the most recently used MASKS_KEPT of them, so memory follows the corpus, not the organisation."""
    from retrieval.index import MASKS_KEPT

    index = KnowledgeIndex(tmp_path, EMB, {})
    rng = np.random.default_rng(0)
    for d, acl in enumerate([[], ["g1"], ["g2"]]):
        doc = Document(doc_id=f"d{d}", source=f"/kb/{d}.md", title="t", text="x",
                       meta={"content_hash": f"h{d}", "format": "md", "acl": acl})
        index.replace_document(doc, [Chunk(chunk_id=f"d{d}-0", doc_id=doc.doc_id, text=f"text {d}",
                                           meta={"acl": acl, "position": 0})], rng.standard_normal((1, 8)))
    index.save()
    for i in range(MASKS_KEPT + 50):
        index.lexical_mask([f"user-set-{i}"])
    assert len(index._masks) == MASKS_KEPT
    by_id = dict(zip(index.lexical.chunk_ids, index.lexical_mask(["g1", "other"])))
    assert by_id == {"d0-0": 1.0, "d1-0": 1.0, "d2-0": 0.0}  # a mask made again after eviction is still right
