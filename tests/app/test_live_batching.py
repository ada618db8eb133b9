"""`LiveSearch` with cross-request batching: the serving and canary rerankers are wrapped in a `BatchingReranker`,
a model swap (promotion, canary) wraps the new engine and drains the old wrapper, `stop()` closes them, and the
CLI's plain `make_search` is never wrapped."""

from __future__ import annotations

import pytest

from app.components import live_search, load_unshared, make_search, open_index, rollout_store
from app.identity import OPERATOR, Caller
from app.services import promotion
from app.services.request import SearchRequest
from app.settings import Settings
from rerank.coalesce import BatchingReranker
from rerank.validation.gate import GateLimits
from tests.conftest import index_docs
from tests.tiny_models import build_tiny_cross_encoder

ROOT_ONLY = Caller("root", None, admin=True, via="cli")
PERMISSIVE = GateLimits(min_top_overlap=0.0, max_score_shift=1.0)


@pytest.fixture(scope="module")
def kb(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("live_batching")
    index_docs(root, embedder, {"vpn.md": "# VPN\n\nReset a forgotten VPN token in the self-service portal.\n",
                                "leave.md": "# Leave\n\nEmployees get twenty days of annual leave a year.\n"})
    models = [build_tiny_cross_encoder(root / "models" / f"v{seed}", arch="bert", seed=seed) for seed in (1, 2, 3)]
    return root, models


@pytest.fixture
def settings(kb, tmp_path):
    root, models = kb
    return Settings(index_dir=root / "index", embedder="packaged:all-MiniLM-L6-v2", reranker=str(models[0]),
                    rollout_file=tmp_path / "rerankers.json", database_url=f"sqlite:///{tmp_path / 'kb.db'}",
                    cache_size=0, models_reload_s=0, _env_file=None)


@pytest.mark.slow
def test_swaps_wrap_the_new_engine_and_retire_the_old_wrapper(kb, settings, embedder):
    _, models = kb
    plain = make_search(settings, embedder, open_index(settings, embedder))
    assert not isinstance(plain.reranker, BatchingReranker)  # the CLI and evaluation score unbatched
    live = live_search(settings, plain)
    try:
        first = live.service.reranker
        assert isinstance(first, BatchingReranker) and first.engine is plain.reranker
        assert live.service.search(SearchRequest.of("vpn token", threshold=0.0), OPERATOR).results
        assert first.stats().requests == 1

        store = rollout_store(settings)
        promotion.start_canary(store, models[2], 0.5, settings.reranker, ROOT_ONLY)
        assert live.check_models()
        canary = live.service.canary
        assert isinstance(canary, BatchingReranker) and canary.name == str(models[2])

        promotion.promote(store, models[1], settings.reranker, ROOT_ONLY, load=load_unshared, limits=PERMISSIVE)
        assert live.check_models()
        second = live.service.reranker
        assert isinstance(second, BatchingReranker) and second.name == str(models[1])
        assert first.closed and not second.closed  # drained: a search begun on it still finishes on it
        assert len(first.score("vpn", ["Reset the token."])) == 1
        assert live.service.search(SearchRequest.of("annual leave"), OPERATOR).reranker in (str(models[1]), str(models[2]))
    finally:
        live.stop()
    assert second.closed and canary.closed
    # after stop a late request is still answered, by the engine alone
    assert live.service.search(SearchRequest.of("annual leave", top_k=3), OPERATOR).results


def test_batching_off_serves_the_engine_itself(settings, embedder):
    off = settings.model_copy(update={"rerank_batching": False})
    plain = make_search(off, embedder, open_index(off, embedder))
    live = live_search(off, plain)
    assert live.service.reranker is plain.reranker
    live.stop()
