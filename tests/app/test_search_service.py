"""`SearchService` end to end: real files ingested with MiniLM, reranked by a tiny cross-encoder loaded from a
folder exactly as a user's fine-tuned model would be."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.components import make_search, open_index
from app.errors import KbError
from app.identity import OPERATOR, Caller
from app.services.library import IngestOptions, sync
from app.services.request import SearchRequest

DOCS = {
    "vpn.md": "# VPN token\n\nTo reset a forgotten VPN token, open the self-service portal and choose Reset.\n",
    "laptop.md": "# Laptops\n\nNew employees receive a laptop from the IT desk on their first day.\n",
    "leave.md": "# Annual leave\n\nEmployees get twenty days of annual leave a year.\n",
    "salary.md": "---\nacl: [hr]\n---\n# Salary bands\n\nBand B3 pays between 60k and 80k a year.\n",
}


def test_results_carry_reranker_scores(service):
    res = service.search(SearchRequest.of("how do I reset my VPN token", top_k=10, top_n=10, threshold=0.0), OPERATOR)
    assert res.reranker and res.embedder and res.device == "cpu" and res.dtype == "float32"
    assert set(res.timings_ms) == {"embed", "recall", "rerank", "total"} and res.timings_ms["rerank"] > 0
    scores = [r.score for r in res.results]
    assert scores == sorted(scores, reverse=True)
    for r in res.results:
        assert math.isclose(r.score, 1 / (1 + math.exp(-r.raw_score)), rel_tol=1e-6)
        assert r.band == ("strong" if r.score > 0.7 else "review" if r.score >= 0.5 else "weak")
    assert [r.rank for r in res.results] == list(range(1, len(res.results) + 1))


def test_threshold_and_top_n(service):
    everything = service.search(SearchRequest.of("annual leave days", top_k=10, top_n=10, threshold=0.0), OPERATOR)
    cut = sorted(r.score for r in everything.results)[len(everything.results) // 2]
    res = service.search(SearchRequest.of("annual leave days", top_k=10, top_n=10, threshold=cut), OPERATOR)
    assert all(r.score >= cut for r in res.results)
    assert len(res.results) + len(res.below_threshold) == len(everything.results)
    assert len(service.search(SearchRequest.of("annual leave days", top_k=10, top_n=1, threshold=0.0), OPERATOR).results) == 1


def test_groups_are_enforced(service):
    public = service.search(SearchRequest.of("salary band B3", top_k=10, top_n=10, threshold=0.0), Caller.member_of([]))
    assert all("Band B3" not in r.hit.chunk.text for r in public.results + public.below_threshold)
    hr = service.search(SearchRequest.of("salary band B3", top_k=10, top_n=10, threshold=0.0), Caller.member_of(["hr"]))
    assert any("Band B3" in r.hit.chunk.text for r in hr.results)


@pytest.mark.parametrize("kwargs", [{"top_k": 0}, {"top_n": 0}, {"threshold": 1.5}, {"threshold": -0.1}])
def test_bad_parameters_name_themselves(kwargs):
    """Checked where the request is built, before any model or index is needed."""
    name = next(iter(kwargs))
    with pytest.raises(KbError, match=name) as bad:
        SearchRequest.of("vpn", **kwargs)
    assert bad.value.kind == "validation"
    with pytest.raises(KbError, match="empty") as empty:
        SearchRequest.of("   ")
    assert empty.value.kind == "validation"


def test_unloadable_reranker_is_loud_and_recall_only(settings, service):
    broken = make_search(settings.model_copy(update={"reranker": "models/does_not_exist"}), service.embedder,
                         service.index)
    assert broken.reranker is None and "could not be loaded" in broken.reranker_error
    res = broken.search(SearchRequest.of("vpn token", top_n=3), OPERATOR)
    assert res.reranker is None and res.warnings
    assert all(r.score is None and r.raw_score is None and r.band is None for r in res.results)


def test_cli_search_json_contract(settings, monkeypatch):
    s = settings
    monkeypatch.setenv("KB_CONFIG", str(s.index_dir.parent / "none.toml"))
    monkeypatch.setenv("KB_INDEX_DIR", str(s.index_dir))
    monkeypatch.setenv("KB_EMBEDDER", s.embedder)
    monkeypatch.setenv("KB_RERANKER", s.reranker)
    from app.settings import get_settings

    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["search", "reset VPN token", "--json", "--threshold", "0", "--top-n", "3"])
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"query", "query_id", "embedder", "reranker", "device", "dtype", "timings_ms", "results"} <= set(out)
    first = out["results"][0]
    assert {"rank", "chunk_id", "doc_id", "source", "title", "section", "text", "retrieval_score", "raw_score",
            "score", "band"} <= set(first)
    assert len(out["results"]) == 3


def _long_doc(tmp_path):
    """A document of many short sections, so that neighbouring chunks exist."""
    sections = [f"## Step {i}\n\nStep {i} of the VPN token reset: " + ("check the device and the portal. " * 30)
                for i in range(1, 7)]
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "vpn-reset.md").write_text("# VPN token reset procedure\n\n" + "\n\n".join(sections))
    (tmp_path / "kb" / "leave.md").write_text("# Leave\n\nVPN access is not needed to request leave.\n")


@pytest.fixture(scope="module")
def long_service(tmp_path_factory, embedder, settings, service):
    root = tmp_path_factory.mktemp("long")
    _long_doc(root)
    settings = settings.model_copy(update={"index_dir": root / "index", "chunk_max_tokens": 128})
    sync([root / "kb"], settings.index_dir, embedder, IngestOptions(max_tokens=128))
    return make_search(settings, embedder, open_index(settings, embedder), (service.reranker, None))


def test_max_per_doc_caps_each_document(long_service):
    everything = long_service.search(SearchRequest.of("VPN token reset step", top_k=20, top_n=20, threshold=0.0), OPERATOR)
    per_doc = {}
    for r in everything.results:
        per_doc[r.hit.chunk.doc_id] = per_doc.get(r.hit.chunk.doc_id, 0) + 1
    assert max(per_doc.values()) > 2  # the long document has several chunks
    capped = long_service.search(SearchRequest.of("VPN token reset step", top_k=20, top_n=20, threshold=0.0, max_per_doc=2), OPERATOR)
    counts = {}
    for r in capped.results:
        counts[r.hit.chunk.doc_id] = counts.get(r.hit.chunk.doc_id, 0) + 1
    assert max(counts.values()) == 2 and set(counts) == set(per_doc)
    assert [r.rank for r in capped.results] == list(range(1, len(capped.results) + 1))
    kept = [r.hit.chunk.chunk_id for r in capped.results]  # the best two of each document, in score order
    assert kept == [r.hit.chunk.chunk_id for r in everything.results
                    if r.hit.chunk.chunk_id in set(kept)]


def test_merge_joins_neighbouring_chunks_in_document_order(long_service):
    plain = long_service.search(SearchRequest.of("VPN token reset step", top_k=20, top_n=20, threshold=0.0), OPERATOR)
    merged = long_service.search(SearchRequest.of("VPN token reset step", top_k=20, top_n=20, threshold=0.0, merge=True), OPERATOR)
    assert len(merged.results) < len(plain.results)
    big = max(merged.results, key=lambda r: len(r.hit.chunk.meta.get("merged", [])))
    members = big.hit.chunk.meta["merged"]
    positions = [int(cid.split("-")[1]) for cid in members]
    assert len(members) > 1 and positions == sorted(positions)
    assert all(b - a == 1 for a, b in zip(positions, positions[1:]))
    texts = {r.hit.chunk.chunk_id: r.hit.chunk.text for r in plain.results}
    assert big.hit.chunk.text == "\n".join(texts[c] for c in members)
    best_member = max((r for r in plain.results if r.hit.chunk.chunk_id in members), key=lambda r: r.score)
    assert big.score == best_member.score
    shown = sum(len(r.hit.chunk.meta.get("merged", [r.hit.chunk.chunk_id])) for r in merged.results)
    assert shown == len(plain.results)  # nothing lost, nothing doubled


def test_cache_hits_and_invalidation_by_index_version(tmp_path, embedder, settings, service):
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "a.md").write_text("# Parking\n\nStaff park in garage P2.\n")
    settings = settings.model_copy(update={"index_dir": tmp_path / "index"})
    sync([tmp_path / "kb"], settings.index_dir, embedder)
    svc = make_search(settings, embedder, open_index(settings, embedder), (service.reranker, None))
    first = svc.search(SearchRequest.of("where do staff park", threshold=0.0), OPERATOR)
    again = svc.search(SearchRequest.of("where do staff park", threshold=0.0), OPERATOR)
    assert not first.cached and again.cached and again.results == first.results
    assert not svc.search(SearchRequest.of("where do staff park", threshold=0.0, top_n=1), OPERATOR).cached  # other parameters, other key
    (tmp_path / "kb" / "b.md").write_text("# Visitors\n\nVisitors park in garage P1 after registering.\n")
    sync([tmp_path / "kb"], settings.index_dir, embedder)
    svc = svc.with_index(open_index(settings, embedder))  # what a running API does after an ingest
    after = svc.search(SearchRequest.of("where do staff park", threshold=0.0), OPERATOR)
    assert not after.cached and after.index_version != first.index_version
    assert any("garage P1" in r.hit.chunk.text for r in after.results)


def test_calibration_from_kb_tune_maps_scores_and_bands(tmp_path, settings, service):
    from rerank.calibration import Calibrator

    path = Calibrator("platt", {"a": 2.0, "b": -1.0}).save(tmp_path / "cal.json")
    svc = make_search(settings.model_copy(update={"calibration": path}), service.embedder, service.index)
    assert svc.calibrator is not None and svc.calibration_error is None
    plain = service.search(SearchRequest.of("how do I reset my VPN token", top_k=10, top_n=10, threshold=0.0), OPERATOR)
    cal = svc.search(SearchRequest.of("how do I reset my VPN token", top_k=10, top_n=10, threshold=0.0), OPERATOR)
    assert cal.calibrated and not plain.calibrated
    assert [r.hit.chunk.chunk_id for r in cal.results] == [r.hit.chunk.chunk_id for r in plain.results]
    for r in cal.results:
        assert math.isclose(r.score, 1 / (1 + math.exp(-(2.0 * r.raw_score - 1.0))), rel_tol=1e-9)
        assert r.band == ("strong" if r.score > 0.7 else "review" if r.score >= 0.5 else "weak")
    cut = sorted(r.score for r in cal.results)[len(cal.results) // 2]
    assert all(r.score >= cut for r in svc.search(SearchRequest.of("how do I reset my VPN token", top_k=10, top_n=10, threshold=cut), OPERATOR).results)


def test_unreadable_calibration_is_loud_and_falls_back_to_sigmoid(tmp_path, settings, service):
    (tmp_path / "cal.json").write_text("{not json")
    svc = make_search(settings.model_copy(update={"calibration": tmp_path / "cal.json"}), service.embedder, service.index)
    res = svc.search(SearchRequest.of("vpn token", top_k=5, threshold=0.0), OPERATOR)
    assert not res.calibrated and any("cal.json" in w and "kb tune" in w for w in res.warnings)
    assert all(math.isclose(r.score, 1 / (1 + math.exp(-r.raw_score)), rel_tol=1e-6) for r in res.results)


def test_every_recalled_chunk_is_accounted_for(service):
    """shown + cut by N + under the threshold = every chunk recalled, each once (the app's raw table needs it)."""
    res = service.search(SearchRequest.of("annual leave VPN laptop", top_k=10, top_n=2, threshold=0.3), OPERATOR)
    ids = [r.hit.chunk.chunk_id for r in res.results + res.not_shown + res.below_threshold]
    assert len(ids) == len(set(ids)) == res.candidates
    assert all(r.score >= 0.3 for r in res.not_shown) and len(res.results) == 2
    assert [r.rank for r in res.results + res.not_shown] == list(range(1, len(res.results) + len(res.not_shown) + 1))
    d = res.to_dict(include_hidden=True)
    assert d["more"] == len(res.not_shown) and len(d["not_shown"]) == len(res.not_shown)


@pytest.mark.slow
def test_rerank_backend_setting_reaches_the_reranker(settings, service):
    pytest.importorskip("onnxruntime")
    svc = make_search(settings.model_copy(update={"rerank_backend": "onnx", "rerank_threads": 1}), service.embedder, service.index)
    assert svc.reranker_error is None and svc.reranker.info().backend == "onnx"
    a = svc.search(SearchRequest.of("how do I reset my VPN token", top_k=10, top_n=10, threshold=0.0), OPERATOR)
    b = service.search(SearchRequest.of("how do I reset my VPN token", top_k=10, top_n=10, threshold=0.0), OPERATOR)
    assert [r.hit.chunk.chunk_id for r in a.results] == [r.hit.chunk.chunk_id for r in b.results]
    assert all(math.isclose(x.score, y.score, abs_tol=1e-4) for x, y in zip(a.results, b.results))


def test_rerank_dtype_setting_gives_bfloat16_with_float32_order(settings, service, monkeypatch):
    from app.settings import Settings

    monkeypatch.setenv("KB_RERANK_DTYPE", "bfloat16")
    monkeypatch.setenv("KB_RERANK_EXACT_TOP", "5")
    env = Settings()
    assert (env.reranker_dtype, env.rerank_exact_top, env.dtype) == ("bfloat16", 5, "auto")  # embedder unchanged
    svc = make_search(settings.model_copy(update={"rerank_dtype": "bfloat16", "rerank_exact_top": 5}), service.embedder, service.index)
    info = svc.reranker.info()
    assert svc.reranker_error is None and (info.dtype, info.exact_top) == ("bfloat16", 5)
    a = svc.search(SearchRequest.of("how do I reset my VPN token", top_k=10, top_n=5, threshold=0.0), OPERATOR)
    b = service.search(SearchRequest.of("how do I reset my VPN token", top_k=10, top_n=5, threshold=0.0), OPERATOR)
    assert [r.hit.chunk.chunk_id for r in a.results] == [r.hit.chunk.chunk_id for r in b.results]
    assert all(abs(x.score - y.score) <= info.exact_margin for x, y in zip(a.results, b.results))
