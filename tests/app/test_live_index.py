"""`LiveSearch` follows versions published by anyone: a search holding the old service keeps its version, the next
search gets the new one, nothing is answered from the cache across versions, and a version that cannot be read
leaves the served one in place."""

from __future__ import annotations

import shutil

import pytest

from app.components import live_search, make_search, open_index
from app.identity import OPERATOR
from app.services.library import sync
from app.services.request import SearchRequest
from app.settings import Settings


def sources(result) -> set[str]:
    return {r.hit.chunk.doc_id for r in result.results}


def published(tmp_path, embedder) -> tuple:
    """(a folder with one document, settings over an index of it, published by this process's own sync)."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# Alpha\n\nThe quokkaberry allowance is paid monthly.\n", encoding="utf-8")
    s = Settings(index_dir=tmp_path / "index", embedder=embedder.name, reranker="none", index_reload_s=0,
                 _env_file=None)
    sync([kb], s.index_dir, embedder)
    return kb, s


def test_live_search_serves_the_version_another_writer_published(tmp_path, embedder):
    kb, s = published(tmp_path, embedder)
    live = live_search(s, make_search(s, embedder, open_index(s, embedder)))
    live.reload_index()
    old = live.service
    first = old.search(SearchRequest.of("quokkaberry", mode="lexical"), OPERATOR)
    assert len(sources(first)) == 1 and not live.index_changed()
    assert old.search(SearchRequest.of("quokkaberry", mode="lexical"), OPERATOR).cached

    (kb / "a.md").unlink()  # another writer (here: this process's sync, not through `live`) deletes it
    sync([kb], s.index_dir, embedder)
    assert live.index_changed()
    assert live.check_index() is True
    new = live.service
    assert new.index.version != old.index.version
    after = new.search(SearchRequest.of("quokkaberry", mode="lexical"), OPERATOR)
    assert sources(after) == set() and not after.cached and after.index_version == new.index.version
    # a search that began on the old service finishes on the old version
    assert sources(old.search(SearchRequest.of("quokkaberry", mode="lexical"), OPERATOR)) == sources(first)
    assert live.check_index() is False  # nothing new published


@pytest.mark.slow
def test_a_version_that_cannot_be_read_leaves_the_served_one(tmp_path, embedder):
    kb, s = published(tmp_path, embedder)
    live = live_search(s, make_search(s, embedder, None))
    live.reload_index()
    served = live.service.index.version
    (kb / "b.md").write_text("# Beta\n\nParking permits.\n", encoding="utf-8")
    sync([kb], s.index_dir, embedder)
    newest = live.published_version()
    (s.index_dir / newest / "chunks.jsonl").unlink()  # damaged after publishing
    assert live.check_index() is False
    assert live.service.index.version == served
    shutil.rmtree(s.index_dir / newest)
    (kb / "c.md").write_text("# Gamma\n\nCanteen hours.\n", encoding="utf-8")
    sync([kb], s.index_dir, embedder)  # a later, whole publish is taken at the next check
    assert live.check_index() is True and live.service.index.version == live.published_version()


def test_a_replica_started_while_the_shared_database_is_down_serves_once_it_answers(tmp_path, embedder):
    """A corpus in Milvus (a Lite file here) whose shared database cannot be opened when the process starts: the
    process comes up, searches answer 503 saying why, and the next check after the database answers serves the
    published revision, with no restart."""
    from app.components import index_opener, make_library

    database = tmp_path / "shared.db"
    database.write_bytes(b"not a database yet " * 512)  # SQLite refuses it as it refuses a server that is down
    s = Settings(index_dir=tmp_path / "index", embedder=embedder.name, reranker="none", index_reload_s=0,
                 vector_store="milvus", milvus_index="FLAT", database_url=f"sqlite:///{database}", _env_file=None)
    live = live_search(s, make_search(s, embedder, None))
    live.reload_index(create=True)
    assert live.service.index is None and "cannot be read yet" in live.index_error
    with pytest.raises(Exception) as refused:
        live.service.search(SearchRequest.of("quokkaberry", mode="lexical"), OPERATOR)
    assert getattr(refused.value, "kind", None) == "not_ready"
    assert live.check_index() is False  # still down: the check fails quietly and is made again

    database.unlink()  # the database answers again
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# Alpha\n\nThe quokkaberry allowance is paid monthly.\n", encoding="utf-8")
    make_library(s, embedder).sync([kb])  # another process publishes revision 1
    assert index_opener(s).published(s.index_dir) == "r1"
    assert live.check_index() is True
    found = live.service.search(SearchRequest.of("quokkaberry", mode="lexical"), OPERATOR)
    assert found.index_version == "r1" and sources(found) == {r.hit.chunk.doc_id for r in found.results} != set()
