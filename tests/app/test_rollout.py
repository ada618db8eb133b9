"""Reranker versions: promotion through its gate, history, rollback, canary and shadow, on a real index with two
tiny real-architecture cross-encoders (different seeds) standing in for two fine-tunes; the state lives in the
shared database (a SQLite file of each test's own), a rollout file from before is imported once."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.components import live_search, load_unshared, make_search, open_index, rollout_store
from app.errors import KbError
from app.identity import OPERATOR, Caller
from app.services import promotion
from app.services.events import EventLog
from app.services.request import SearchRequest
from app.services.rollout import Release, RolloutState
from app.services.search import in_canary
from app.settings import Settings
from rerank.validation.gate import GateLimits
from tests.conftest import index_docs
from tests.tiny_models import build_tiny_cross_encoder

DOCS = {
    "vpn.md": "# VPN token\n\nTo reset a forgotten VPN token, open the self-service portal and choose Reset.\n",
    "laptop.md": "# Laptops\n\nNew employees receive a laptop from the IT desk on their first day.\n",
    "leave.md": "# Annual leave\n\nEmployees get twenty days of annual leave a year.\n",
    "probation.md": "# 试用期离职\n\n试用期员工离职应当提前三日通知公司，并办理工作交接手续。\n",
    "expenses.md": "# Travel\n\nHotel costs are reimbursed up to 600 yuan a night with receipts.\n",
}
QUERIES = ["how do I reset my VPN token", "annual leave days", "laptop on the first day", "试用期离职要提前几天",
           "hotel reimbursement limit", "who approves travel", "vpn portal", "leave carry over", "IT desk",
           "离职手续", "receipts for hotels", "self-service portal"]
ROOT_ONLY = Caller("root", None, admin=True, via="cli")
PERMISSIVE = GateLimits(min_top_overlap=0.0, max_score_shift=1.0)
runner = CliRunner()


@pytest.fixture(scope="module")
def kb(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("rollout")
    index_docs(root, embedder, DOCS)
    models = {seed: build_tiny_cross_encoder(root / "models" / f"reranker_v{seed}", arch="bert", seed=seed)
              for seed in (1, 2)}
    broken = build_tiny_cross_encoder(root / "models" / "broken", arch="bert", seed=3)
    (broken / "model.safetensors").unlink()
    return root, models, broken


@pytest.fixture
def settings(kb, tmp_path):
    root, models, _ = kb
    return Settings(index_dir=root / "index", embedder="packaged:all-MiniLM-L6-v2", reranker=str(models[1]),
                    rollout_file=tmp_path / "rerankers.json", database_url=f"sqlite:///{tmp_path / 'kb.db'}",
                    cache_size=0, models_reload_s=0, _env_file=None)


def golden_from(model, path, queries=QUERIES[:4]) -> None:
    """Labels that rank each query's passages the way `model` does: that model agrees with them fully."""
    from rerank.engines.cross_encoder import CrossEncoderReranker

    scorer = CrossEncoderReranker(str(model)).load()
    passages = [body.split("\n\n", 1)[1].strip() for body in DOCS.values()]
    with open(path, "w", encoding="utf-8") as fh:
        for q in queries:
            for p, (raw, _) in zip(passages, scorer.score(q, passages), strict=True):
                fh.write(json.dumps({"query": q, "passage": p, "label": raw}, ensure_ascii=False) + "\n")


@pytest.mark.slow
def test_promote_refuses_a_broken_folder_and_a_golden_regression_and_changes_nothing(kb, settings, tmp_path):
    _, models, broken = kb
    store = rollout_store(settings)
    refused = promotion.promote(store, broken, settings.reranker, ROOT_ONLY, load=load_unshared)
    assert refused.state is None and store.stamp() is None
    assert any("weights_file" in r and "model.safetensors" in r for r in refused.report.reasons)

    golden = tmp_path / "golden.jsonl"
    golden_from(models[1], golden)  # the serving model agrees with these labels fully; the candidate cannot
    regression = promotion.promote(store, models[2], settings.reranker, ROOT_ONLY, load=load_unshared, golden=golden, limits=PERMISSIVE)
    g = regression.report.golden
    assert g.current_agreement == 1.0 and g.candidate_agreement < 1.0 - g.tolerance  # the premise of this test
    assert regression.state is None and any(r.startswith("golden regression") for r in regression.report.reasons)
    assert store.stamp() is None

    too_different = promotion.promote(store, models[2], settings.reranker, ROOT_ONLY, load=load_unshared,
                                      limits=GateLimits(min_top_overlap=1.0, max_score_shift=1.0))
    c = too_different.report.comparison
    assert c is not None and c.on == "built-in check set" and c.pairs == 48
    assert (too_different.state is None) == (c.top_overlap < 1.0)
    assert store.stamp() is None or too_different.state is not None


@pytest.mark.slow
def test_promote_history_and_rollback_through_the_cli(kb, settings, tmp_path, monkeypatch):
    _, models, broken = kb
    for key, value in (("KB_INDEX_DIR", settings.index_dir), ("KB_RERANKER", settings.reranker),
                       ("KB_ROLLOUT_FILE", settings.rollout_file), ("KB_CONFIG", tmp_path / "none.toml"),
                       ("KB_DATABASE_URL", settings.database_url),
                       ("KB_AUDIT_LOG", tmp_path / "audit.jsonl")):
        monkeypatch.setenv(key, str(value))
    from app.settings import get_settings

    get_settings.cache_clear()
    refused = runner.invoke(app, ["models", "promote", str(broken)])
    assert refused.exit_code == 1 and "NOT promoted" in refused.stdout and "model.safetensors" in refused.stdout
    golden = tmp_path / "golden.jsonl"
    golden_from(models[2], golden)  # now the candidate is the one the labels agree with
    done = runner.invoke(app, ["models", "promote", str(models[2]), "--golden", str(golden), "--min-overlap", "0",
                               "--max-shift", "1", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["promoted"] and report["passed"] and report["golden"]["verdict"] == "pass"
    assert report["comparison"]["on"] == f"golden {golden}" and report["serving"] == str(models[1])

    searched = json.loads(runner.invoke(app, ["search", "annual leave", "--json"]).stdout)
    assert searched["reranker"] == str(models[2]) and {r["reranker"] for r in searched["results"]} == {str(models[2])}
    pinned = json.loads(runner.invoke(app, ["search", "annual leave", "--json", "--reranker", str(models[1])]).stdout)
    assert pinned["reranker"] == str(models[1])  # a command's own --reranker wins over the promoted one

    history = json.loads(runner.invoke(app, ["models", "history", "--json"]).stdout)
    assert history["serving"] == str(models[2]) and history["source"] == "promoted"
    [entry] = history["history"]
    assert entry["action"] == "promote" and entry["previous"] == str(models[1]) and entry["by"].endswith("(cli)")
    assert entry["checks"]["golden"]["verdict"] == "pass" and len(entry["digest"]) == 16

    back = runner.invoke(app, ["models", "rollback"])
    assert back.exit_code == 0 and f"{models[1]} serves again" in back.stdout
    assert json.loads(runner.invoke(app, ["search", "annual leave", "--json"]).stdout)["reranker"] == str(models[1])
    again = runner.invoke(app, ["models", "rollback"])
    assert again.exit_code == 2 and "nothing to roll back" in again.stderr
    actions = [json.loads(line)["action"] for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert actions == ["reranker promote", "reranker promote", "reranker rollback"]  # the refusal is audited too
    get_settings.cache_clear()


def test_a_promotion_racing_another_is_refused_and_never_half_applied(kb, settings):
    _, models, _ = kb
    store = rollout_store(settings)
    holding, release = threading.Event(), threading.Event()

    def other_promotion():
        with store.locked():  # the other promotion is running its gate
            holding.set()
            release.wait(30)

    t = threading.Thread(target=other_promotion)
    t.start()
    try:
        assert holding.wait(30)
        with pytest.raises(KbError) as busy:
            promotion.promote(store, models[2], settings.reranker, ROOT_ONLY, load=load_unshared, limits=PERMISSIVE)
        assert busy.value.kind == "conflict" and "under way" in busy.value.message
        assert store.stamp() is None
    finally:
        release.set()
        t.join()
    assert promotion.promote(store, models[2], settings.reranker, ROOT_ONLY, load=load_unshared, limits=PERMISSIVE).state is not None


@pytest.mark.slow
def test_canary_routes_a_stable_share_of_queries_and_every_result_names_its_model(kb, settings, embedder, tmp_path):
    _, models, _ = kb
    assert in_canary("vpn token", 0.5) == in_canary("  VPN token ", 0.5)  # the same question, the same model
    share = sum(in_canary(f"question {i}", 0.3) for i in range(4000)) / 4000
    assert abs(share - 0.3) < 0.03 and not any(in_canary(f"q{i}", 0.0) for i in range(100))

    store = rollout_store(settings)
    with pytest.raises(KbError, match="serving reranker already"):
        promotion.start_canary(store, models[1], 0.5, settings.reranker, ROOT_ONLY)
    with pytest.raises(KbError, match="between 0 and 1"):
        promotion.start_canary(store, models[2], 1.5, settings.reranker, ROOT_ONLY)
    promotion.start_canary(store, models[2], 0.5, settings.reranker, ROOT_ONLY)
    events = EventLog(f"sqlite:///{tmp_path / 'events.db'}", b"k" * 32).open()
    try:
        service = make_search(settings, embedder, open_index(settings, embedder), events=events, trials=True)
        tuning = make_search(settings, embedder, open_index(settings, embedder))  # tuning, evaluation: no canary
        assert {tuning.search(SearchRequest.of(q), OPERATOR).reranker for q in QUERIES} == {str(models[1])}
        seen = {}
        for q in QUERIES:
            res = service.search(SearchRequest.of(q, threshold=0.0), OPERATOR)
            want = str(models[2]) if in_canary(q, 0.5) else str(models[1])
            assert res.reranker == want and res.reranker_role == ("canary" if want == str(models[2]) else "serving")
            assert {r["reranker"] for r in res.to_dict()["results"]} == {want}
            seen[want] = res
        assert set(seen) == {str(models[1]), str(models[2])}  # both models served some of these questions
        for model, res in seen.items():  # a thumb on each model's answer
            events.record_feedback(OPERATOR, res.query_id, res.results[0].hit.chunk.chunk_id, model == str(models[2]))
        events.flush()
        by_model = {m["reranker"]: m for m in events.analytics(30)["by_reranker"]}
        assert by_model[str(models[2])]["up"] == 1 and by_model[str(models[2])]["down"] == 0
        assert by_model[str(models[1])]["down"] == 1
        assert sum(m["searches"] for m in by_model.values()) == len(QUERIES)
    finally:
        events.close()
    promotion.stop_canary(store, ROOT_ONLY)
    plain = make_search(settings, embedder, open_index(settings, embedder), trials=True)
    assert {plain.search(SearchRequest.of(q), OPERATOR).reranker for q in QUERIES} == {str(models[1])}


@pytest.mark.slow
def test_shadow_scores_every_search_and_accumulates_agreement(kb, settings, embedder):
    _, models, _ = kb
    store = rollout_store(settings)
    promotion.start_shadow(store, models[2], settings.reranker, ROOT_ONLY)
    live = live_search(settings, make_search(settings, embedder, open_index(settings, embedder)))
    try:
        live.watch()  # a long-running process starts the shadow
        shadow = live.service.shadow
        assert shadow is not None and shadow.name == str(models[2])
        for q in QUERIES:
            res = live.service.search(SearchRequest.of(q, threshold=0.0), OPERATOR)
            assert res.reranker == str(models[1])  # the shadow never serves
        assert shadow.join(60)
        snap = live.stats.snapshot()
        [agreement] = snap["shadow"]
        assert agreement["serving"] == str(models[1]) and agreement["candidate"] == str(models[2])
        assert agreement["searches"] == len(QUERIES) and 0.0 <= agreement["top5_overlap"] <= 1.0
        assert agreement["rank_correlation"] is not None and -1.0 <= agreement["rank_correlation"] <= 1.0
        assert agreement["score_shift"] >= 0
        roles = {(m["model"], m["role"]): m["searches"] for m in snap["models"]}
        assert roles == {(str(models[1]), "serving"): len(QUERIES), (str(models[2]), "shadow"): len(QUERIES)}

        promotion.stop_shadow(store, ROOT_ONLY)
        assert live.check_models() and live.service.shadow is None
    finally:
        live.stop()


@pytest.mark.slow
def test_a_model_that_fails_to_load_leaves_the_old_one_serving(kb, settings, embedder):
    _, models, _ = kb
    store = rollout_store(settings)
    promotion.promote(store, models[2], settings.reranker, ROOT_ONLY, load=load_unshared, limits=PERMISSIVE)
    live = live_search(settings, make_search(settings, embedder, open_index(settings, embedder)))
    assert live.service.reranker_name == str(models[2])
    gone = models[2].parent / "reranker_deleted"  # promoted, then its folder was deleted
    with store.locked():
        store.write(store.read().promoted(Release(str(gone), time.time(), "root"), settings.reranker))
    assert live.check_models()
    assert live.service.reranker_name == str(models[2])
    assert "reranker_deleted" in live.models_error and "keeps serving" in live.models_error
    assert live.service.search(SearchRequest.of("annual leave"), OPERATOR).reranker == str(models[2])
    promotion.rollback(store, settings.reranker, ROOT_ONLY)  # back to what serves: nothing left to report
    assert live.check_models() and live.models_error is None


def test_a_calibration_fitted_on_another_model_is_not_applied_to_the_promoted_one(kb, settings, embedder, tmp_path):
    from rerank.calibration import fit_platt

    _, models, _ = kb
    cal = fit_platt([-2.0, -1.0, 1.0, 2.0], [0, 0, 1, 1], {"reranker": str(models[1])}).save(tmp_path / "cal.json")
    s = settings.model_copy(update={"calibration": cal})
    assert make_search(s, embedder, open_index(s, embedder)).search(SearchRequest.of("annual leave"), OPERATOR).calibrated
    promotion.promote(rollout_store(s), models[2], s.reranker, ROOT_ONLY, load=load_unshared, limits=PERMISSIVE)
    promoted = make_search(s, embedder, open_index(s, embedder))
    assert promoted.calibrator is None and "fitted on the scores of" in promoted.calibration_error
    assert not promoted.search(SearchRequest.of("annual leave"), OPERATOR).calibrated


def test_a_rollout_file_of_before_is_imported_once(kb, settings, embedder, caplog):
    _, models, _ = kb
    before = RolloutState().promoted(Release(str(models[2]), time.time(), "root (cli)"), settings.reranker)
    settings.rollout_file.write_text(json.dumps(before.to_dict()), encoding="utf-8")
    store = rollout_store(settings)
    assert store.stamp() is None  # nothing in the database yet
    with caplog.at_level(logging.WARNING, logger="app.services.rollout"):
        service = make_search(settings, embedder, open_index(settings, embedder))
        assert store.read() == before
    assert service.reranker_name == str(models[2]) and store.stamp() == 1
    [said] = [r.message for r in caplog.records if r.message.startswith("imported")]
    assert str(settings.rollout_file) in said and "no longer read" in said
    assert store.control.read("rollout").updated_by == f"import of {settings.rollout_file}"
    settings.rollout_file.write_text(json.dumps(RolloutState().to_dict()), encoding="utf-8")
    assert store.read() == before and store.stamp() == 1  # the file is never read again
    promotion.rollback(store, settings.reranker, ROOT_ONLY)
    assert store.read().serving == () and store.stamp() == 2


def test_a_damaged_rollout_file_is_named_and_the_setting_serves(kb, settings, embedder):
    settings.rollout_file.write_text("{not json", encoding="utf-8")
    with pytest.raises(KbError) as bad:
        rollout_store(settings).read()
    assert bad.value.kind == "unprocessable" and str(settings.rollout_file) in bad.value.message
    service = make_search(settings, embedder, open_index(settings, embedder))
    assert service.reranker_name == settings.reranker  # searches keep being served
    live = live_search(settings, service)
    live.reload_models()
    assert str(settings.rollout_file) in live.models_error and live.service.reranker_name == settings.reranker


@pytest.mark.slow
def test_a_promoted_folder_whose_weights_changed_is_refused_loudly_and_the_old_model_keeps_serving(
        kb, settings, embedder, tmp_path):
    """Issue 32: weights were hashed at promotion but never checked at load, so a swapped folder served."""
    import shutil

    _, models, _ = kb
    folder = shutil.copytree(models[2], tmp_path / "reranker_prod")
    store = rollout_store(settings)
    live = live_search(settings, make_search(settings, embedder, open_index(settings, embedder)))
    assert live.service.reranker_name == str(models[1])
    promoted = promotion.promote(store, folder, settings.reranker, ROOT_ONLY, load=load_unshared, limits=PERMISSIVE)
    digest = promoted.state.current.digest
    shutil.copyfile(models[1] / "model.safetensors", folder / "model.safetensors")  # swapped after promotion

    assert live.check_models()  # the rollout file changed: the promoted model would load now
    assert live.service.reranker_name == str(models[1])  # refused: what served keeps serving
    why = live.models_error
    assert str(folder) in why and digest in why and "kb models promote" in why and "keeps serving" in why
    assert live.service.search(SearchRequest.of("annual leave"), OPERATOR).reranker == str(models[1])

    fresh = make_search(settings, embedder, open_index(settings, embedder))  # a process starting now
    assert fresh.reranker is None and str(folder) in fresh.reranker_error and digest in fresh.reranker_error

    again = promotion.promote(store, folder, settings.reranker, ROOT_ONLY, load=load_unshared, limits=PERMISSIVE)  # the fix it names
    assert again.state is not None and again.state.current.digest != digest
    assert [r.model for r in again.state.serving] == [str(folder)]  # its entry replaced, not stacked
    assert live.check_models() and live.service.reranker_name == str(folder) and live.models_error is None
    with pytest.raises(KbError, match="already the serving reranker"):
        promotion.promote(store, folder, settings.reranker, ROOT_ONLY, load=load_unshared, limits=PERMISSIVE)
