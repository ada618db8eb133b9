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
