"""Calibration and threshold tuning (`app.quality.tune`, `rerank.calibration`, `kb tune`).

Synthetic scores: relevant and non-relevant logits drawn from two Gaussians of equal spread, where the true
probability of relevance is known in closed form (a logistic in the score), so a calibrator can be checked
against the truth and a threshold against fresh draws. End to end: a real MiniLM index, a tiny cross-encoder
loaded from a folder, `kb tune --write`, then `kb search` reading what it saved in the shared database.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from app.cli import app
from app.components import make_search
from app.errors import KbError
from app.identity import OPERATOR
from app.quality.evaluate import evaluate_set, open_dataset
from app.quality.tune import (
    answer_effect,
    choose_k,
    collect,
    recommend_threshold,
    sigmoid,
    sweep_k,
    threshold_curve,
    time_k,
)
from app.services import saved_settings
from app.services.control import control_store
from app.services.request import SearchRequest
from app.settings import Settings, get_settings
from rerank.calibration import fit_isotonic, fit_platt, load_calibrator
from tests.tiny_models import build_tiny_cross_encoder

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

MU, SIGMA, N_NEG, N_POS = 2.0, 1.5, 5000, 1000


def draw(seed: int, scale: float = 1.0, n_neg: int = N_NEG, n_pos: int = N_POS):
    rng = np.random.default_rng(seed)
    x = np.r_[rng.normal(-MU, SIGMA, n_neg), rng.normal(MU, SIGMA, n_pos)] * scale
    return x, np.r_[np.zeros(n_neg, int), np.ones(n_pos, int)]


def true_posterior(x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """P(relevant | x) for the two Gaussians: log-odds = 2·MU/SIGMA² · x/scale + log(N_POS/N_NEG)."""
    return sigmoid(2 * MU / SIGMA**2 * x / scale + math.log(N_POS / N_NEG))


# ---- calibration ---------------------------------------------------------------------------------------------
def test_platt_recovers_the_true_posterior():
    x, y = draw(0)
    cal = fit_platt(x, y)
    assert cal.params["a"] == pytest.approx(2 * MU / SIGMA**2, rel=0.1)
    assert cal.params["b"] == pytest.approx(math.log(N_POS / N_NEG), abs=0.2)
    grid = np.linspace(-6, 6, 121)
    assert np.all(np.diff(cal.apply(grid)) > 0)  # strictly increasing: the ordering is the raw score's
    assert np.max(np.abs(cal.apply(grid) - true_posterior(grid))) < 0.05


def test_isotonic_is_monotone_and_beats_an_overconfident_sigmoid():
    x, y = draw(1, scale=3.0)  # logits three times too large: the sigmoid is far too sure of itself
    cal = fit_isotonic(x, y)
    grid = np.linspace(x.min() - 1, x.max() + 1, 500)
    probs = cal.apply(grid)
    assert np.all(np.diff(probs) >= 0) and probs.min() >= 0 and probs.max() <= 1
    xt, yt = draw(2, scale=3.0)
    brier_sigmoid = np.mean((sigmoid(xt) - yt) ** 2)
    brier_iso = np.mean((cal.apply(xt) - yt) ** 2)
    brier_truth = np.mean((true_posterior(xt, 3.0) - yt) ** 2)
    assert brier_iso < brier_sigmoid and brier_iso < brier_truth + 0.005


def test_constant_scores_calibrate_to_the_base_rate():
    x = np.zeros(200)
    y = np.r_[np.ones(50, int), np.zeros(150, int)]
    cal = fit_platt(x, y)
    assert not cal.informative
    assert cal.apply(3.0) == pytest.approx(cal.apply(-3.0)) == pytest.approx(0.25, abs=0.01)
    with pytest.raises(ValueError, match="both relevant and non-relevant"):
        fit_platt([1.0, 2.0], [1, 1])


@pytest.mark.parametrize("fit", [fit_platt, fit_isotonic])
def test_recommended_threshold_holds_on_held_out_data(fit):
    x, y = draw(3)
    cal = fit(x, y)
    rec = recommend_threshold(cal.apply(x), y, target_precision=0.9)
    assert rec is not None and rec.precision >= 0.9 and rec.precision_low < rec.precision
    xt, yt = draw(4, n_neg=50_000, n_pos=10_000)
    shown = cal.apply(xt) >= rec.threshold
    assert yt[shown].mean() >= 0.88  # the target, less sampling noise of the 6,000 fitted pairs
    assert yt[shown].sum() / yt.sum() == pytest.approx(rec.recall, abs=0.05)

    by_recall = recommend_threshold(cal.apply(x), y, target_recall=0.95)
    assert by_recall.recall >= 0.95 and by_recall.threshold <= rec.threshold


def test_threshold_curve_by_hand():
    scores = [0.9, 0.8, 0.7, 0.3, 0.2]
    labels = [1, 0, 1, 0, 1]
    curve = {round(p.threshold, 2): p for p in threshold_curve(scores, labels)}
    assert curve[0.7].shown == 3 and curve[0.7].precision == pytest.approx(2 / 3)
    assert curve[0.7].recall == pytest.approx(2 / 3) and curve[0.7].f1 == pytest.approx(2 / 3)
    assert curve[0.2].precision == pytest.approx(3 / 5) and curve[0.2].shown_fraction == 1.0
    empty = threshold_curve(scores, labels, thresholds=[0.95])[0]
    assert empty.shown == 0 and empty.precision is None and empty.recall == 0.0
    rec = recommend_threshold(scores, labels, target_precision=0.6)
    assert rec.threshold == pytest.approx(0.2)  # the lowest threshold at 0.6: all five shown, 3 relevant
    assert recommend_threshold(scores, labels, target_recall=0.6).threshold == pytest.approx(0.7)
    assert recommend_threshold([0.9, 0.1], [0, 1], target_precision=0.9) is None


def test_calibrator_round_trip_and_bad_files(tmp_path):
    x, y = draw(5)
    for cal in (fit_platt(x, y, {"reranker": "r"}), fit_isotonic(x, y)):
        back = load_calibrator(cal.save(tmp_path / f"{cal.method}.json"))
        assert back.method == cal.method and np.allclose(back.apply(x[:50]), cal.apply(x[:50]))
    (tmp_path / "bad.json").write_text(json.dumps({"format": "kb-calibration", "method": "platt",
                                                   "params": {"a": -1, "b": 0}}))
    with pytest.raises(ValueError, match="bad.json.*'a' >= 0"):
        load_calibrator(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="does not exist"):
        load_calibrator(tmp_path / "missing.json")


# ---- saved settings ---------------------------------------------------------------------------------------------
def test_saved_settings_win_over_the_config_file_and_lose_to_the_environment(tmp_path, monkeypatch):
    from app.components import control, load_calibration, search_defaults, tuned
    from app.components import saved_settings as saved_now

    (tmp_path / "kb.toml").write_text("top_k = 80\nthreshold = 0.6\n")
    monkeypatch.setenv("KB_CONFIG", str(tmp_path / "kb.toml"))
    for name in ("KB_TOP_K", "KB_TOP_N", "KB_THRESHOLD", "KB_CALIBRATION"):
        monkeypatch.delenv(name, raising=False)
    s = Settings(index_dir=tmp_path / "index", database_url=f"sqlite:///{tmp_path / 'kb.db'}")
    store = control(s)
    assert tuned(s) is s and search_defaults(tuned(s)).top_k == 80  # nothing saved: the config file's
    with pytest.raises(KbError, match="threshold: Input should be less than or equal to 1 .got 1.5."):
        saved_settings.save(store, {"threshold": 1.5}, "alice")
    with pytest.raises(KbError, match="not settings that can be saved: thresold"):
        saved_settings.save(store, {"thresold": 0.5}, "alice")
    assert store.version(saved_settings.KEY) is None  # refused saves write nothing

    x, y = draw(7)
    cal = fit_platt(x, y, {"reranker": "tiny"})
    saved_settings.save(store, {"top_k": 20, "threshold": 0.42}, "alice", cal)
    d = search_defaults(tuned(s))
    assert (d.top_k, d.threshold, d.top_n) == (20, 0.42, 5)  # saved > config file > defaults

    class Scorer:
        name = "tiny"

    served, error = load_calibration(s, Scorer())
    assert error is None and served.to_dict() == cal.to_dict()
    monkeypatch.setenv("KB_THRESHOLD", "0.3")
    env = Settings(index_dir=tmp_path / "index", database_url=f"sqlite:///{tmp_path / 'kb.db'}")
    assert search_defaults(tuned(env)).threshold == 0.3 and search_defaults(tuned(env)).top_k == 20  # env wins
    monkeypatch.delenv("KB_THRESHOLD")
    other = fit_platt(x, y, {"reranker": "tiny"}).save(tmp_path / "other.json")
    monkeypatch.setenv("KB_CALIBRATION", str(other))
    assert load_calibration(s.model_copy(update={"calibration": other}), Scorer())[0].params == cal.params
    monkeypatch.delenv("KB_CALIBRATION")

    saved_settings.save(store, {"top_n": 3}, "bob")  # the Tuning page: values only, the calibrator stays
    assert saved_now(s).values == {"top_n": 3} and saved_now(s).calibrator == cal.to_dict()
    assert saved_settings.forget(store, "bob") and not saved_settings.forget(store, "bob")
    assert search_defaults(tuned(s)).top_k == 80 and load_calibration(s, Scorer()) == (None, None)

    store.write(saved_settings.KEY, "{broken", "mallory", store.version(saved_settings.KEY))
    with pytest.raises(KbError) as damaged:
        saved_settings.read(store)
    assert damaged.value.kind == "unprocessable" and "kb tune --forget" in damaged.value.message
    assert tuned(s).top_k == 80  # a damaged entry: said, the configured values serve


# ---- on a real index with a real (tiny) cross-encoder -----------------------------------------------------------
DOCS = {
    "d1": ("VPN token", "To reset a forgotten VPN token, open the self-service portal and choose Reset token."),
    "d2": ("VPN for new hires", "New hires receive their VPN token from the IT desk in their first week."),
    "d3": ("Annual leave", "Employees get twenty days of annual leave a year, booked in the HR system."),
    "d4": ("Sick leave", "Report sick leave to your manager before 10am; a doctor's note is needed after three days."),
    "d5": ("Expenses", "Submit expense claims within thirty days with receipts attached."),
    "d6": ("Travel booking", "Book flights and hotels through the travel portal; economy class under six hours."),
    "d7": ("Passwords", "Passwords must have at least twelve characters and are changed every ninety days."),
    "d8": ("Laptops", "Request a replacement laptop through the IT portal; old laptops are wiped before reuse."),
}
QUERIES = {"q1": ("how do I reset my VPN token", ["d1"]), "q2": ("how many days of annual leave", ["d3"]),
           "q3": ("when is a doctor's note needed for sick leave", ["d4"]),
           "q4": ("deadline for expense claims", ["d5", "d6"]), "q5": ("password length rules", ["d7"]),
           "q6": ("get a new laptop", ["d8"])}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A BEIR folder, the same documents as files, and a tiny cross-encoder folder."""
    root = tmp_path_factory.mktemp("tune")
    beir = root / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": k, "title": t, "text": x})
                                                 for k, (t, x) in DOCS.items()))
    (beir / "queries.jsonl").write_text("\n".join(json.dumps({"_id": k, "text": t}) for k, (t, _) in QUERIES.items()))
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{k}\t{d}\t1\n" for k, (_, ds) in QUERIES.items() for d in ds))
    (root / "kb").mkdir()
    for k, (t, x) in DOCS.items():
        (root / "kb" / f"{k}.md").write_text(f"# {t}\n\n{x}\n")
    model = build_tiny_cross_encoder(root / "models" / "tiny", arch="bert", seed=3)
    return {"root": root, "beir": beir, "docs": root / "kb", "reranker": str(model)}


@pytest.fixture(scope="module")
def labelled_service(world, embedder):
    labelled = open_dataset(world["beir"], embedder, world["root"] / "eval")
    settings = Settings(index_dir=labelled.index.root, embedder=embedder.name, reranker=world["reranker"],
                        _env_file=None)
    svc = make_search(settings, embedder, labelled.index)
    assert svc.reranker_error is None
    return labelled, svc


def test_collect_keeps_every_recalled_chunk_with_served_scores(labelled_service):
    labelled, svc = labelled_service
    collected = collect(svc, labelled, top_k=8)
    assert [q.qid for q in collected.queries] == list(QUERIES)
    for q in collected.queries:
        direct = svc.search(SearchRequest.of(QUERIES[q.qid][0], top_k=8, top_n=8, threshold=0.0, max_per_doc=8, merge=False), OPERATOR)
        assert [(c.chunk_id, c.raw_score) for c in q.candidates] == \
            [(r.hit.chunk.chunk_id, r.raw_score) for r in direct.results]
        assert sorted(c.recall_rank for c in q.candidates) == list(range(1, len(q.candidates) + 1))
        assert all(c.grade == (1 if c.unit in QUERIES[q.qid][1] else 0) for c in q.candidates)
    raw, grades, qidx = collected.pairs()
    assert raw.size == grades.size == qidx.size == sum(len(q.candidates) for q in collected.queries)
    with pytest.raises(ValueError, match="top_k for tuning"):
        collect(svc, labelled, top_k=101)


def test_k_sweep_agrees_with_kb_eval(labelled_service, embedder):
    labelled, svc = labelled_service
    collected = collect(svc, labelled, top_k=8)
    points = sweep_k(collected, [1, 2, 4, 8], top_n=3)
    recalls = [p.recall for p in points]
    assert recalls == sorted(recalls) and recalls[-1] == 1.0  # 8 documents, one chunk each: K=8 finds all
    # Reranking the top 8 from the collection must equal kb eval's recall + rerank of the top 8.
    direct = evaluate_set(labelled, embedder, "hybrid", top_k=8, reranker=svc.reranker, rerank_k=8, hit_ns=[3])
    assert points[-1].hit == direct["rerank"]["metrics"]["hit@3"]
    assert points[-1].ndcg == direct["rerank"]["metrics"]["ndcg@10"]
    assert choose_k(points) in (1, 2, 4, 8)
    effect = answer_effect(collected, sigmoid, 0.0, 3)
    assert effect["answerable"] == 6 and effect["answerable_empty"] == 0
    assert answer_effect(collected, sigmoid, 1.0, 3)["answerable_empty"] == 6  # a sigmoid never reaches 1.0


@pytest.fixture
def tune_env(world, tmp_path, monkeypatch):
    monkeypatch.setenv("KB_CONFIG", str(tmp_path / "kb.toml"))
    monkeypatch.setenv("KB_INDEX_DIR", str(world["root"] / "index"))
    monkeypatch.setenv("KB_EMBEDDER", "packaged:all-MiniLM-L6-v2")
    monkeypatch.setenv("KB_RERANKER", world["reranker"])
    monkeypatch.setenv("KB_DATABASE_URL", f"sqlite:///{tmp_path / 'kb.db'}")
    for name in ("KB_TOP_K", "KB_TOP_N", "KB_THRESHOLD", "KB_CALIBRATION"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "kb.toml").write_text('recall_mode = "hybrid"\n')
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.mark.slow
def test_kb_tune_write_is_what_kb_search_then_uses(world, tune_env):
    runner = CliRunner()
    ingest = runner.invoke(app, ["ingest", str(world["docs"]), "--json"])
    assert ingest.exit_code == 0, ingest.output
    result = runner.invoke(app, ["tune", str(world["beir"]), "--target-recall", "0.5", "--k-values", "2,4,8",
                                 "--latency-queries", "2", "--top-n", "3", "--write", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    chosen = report["chosen"]
    assert report["recommendation"]["recall"] >= 0.5 and chosen["top_k"] in (2, 4, 8) and chosen["top_n"] == 3
    assert [p["k"] for p in report["k_sweep"]] == [2, 4, 8] and all("latency" in p for p in report["k_sweep"])
    assert (tune_env / "kb.toml").read_text() == 'recall_mode = "hybrid"\n'  # the config file is left alone
    written = report["written"]
    assert written["values"] == chosen and written["version"] == 1 and written["calibrator_file"] is None
    assert written["store"] == f"sqlite:///{tune_env / 'kb.db'}"
    saved = saved_settings.read(control_store(written["store"]))
    assert saved.values == chosen and saved.calibrator["method"] == "platt" and saved.by.endswith("(cli)")

    search = runner.invoke(app, ["search", "reset my VPN token", "--json"])
    assert search.exit_code == 0, search.output
    out = json.loads(search.stdout.strip().splitlines()[-1])
    assert out["params"]["threshold"] == chosen["threshold"] and out["params"]["top_k"] == chosen["top_k"]
    assert out["params"]["top_n"] == 3 and out["calibrated"] is True
    assert all(r["score"] >= chosen["threshold"] for r in out["results"])

    forgot = runner.invoke(app, ["tune", "--forget"])
    assert forgot.exit_code == 0 and "removed the saved" in forgot.stdout
    plain = json.loads(runner.invoke(app, ["search", "reset my VPN token", "--json"]).stdout.strip().splitlines()[-1])
    assert plain["params"]["top_k"] == 50 and plain["params"]["top_n"] == 5 and plain["calibrated"] is False


def test_kb_tune_refuses_bad_requests(world, tune_env, monkeypatch):
    runner = CliRunner()
    both = runner.invoke(app, ["tune", str(world["beir"]), "--target-precision", "0.9", "--target-recall", "0.5"])
    assert both.exit_code == 2 and "not both" in both.output
    bad_k = runner.invoke(app, ["tune", str(world["beir"]), "--k-values", "10,500"])
    assert bad_k.exit_code == 2 and "--k-values" in bad_k.output
    monkeypatch.setenv("KB_RERANKER", "none")
    get_settings.cache_clear()
    none = runner.invoke(app, ["tune", str(world["beir"]), "--k-values", "4", "--latency-queries", "0"])
    assert none.exit_code == 2 and "needs reranker scores" in none.output
    assert tomllib.loads((tune_env / "kb.toml").read_text()) == {"recall_mode": "hybrid"}  # nothing written


def test_tuning_searches_are_not_recorded_as_peoples(labelled_service, tmp_path):
    """`kb tune`, the Tuning page and judgments search labelled queries: none of them is a person's question, so the
    events store (analytics, content gaps) never sees them; a person's search through the same service is."""
    from dataclasses import replace

    from app.services.events import EventLog
    from app.services.search import QueryCache

    labelled, svc = labelled_service
    log = EventLog(f"sqlite:///{tmp_path / 'events.db'}", b"k" * 32).open()
    try:
        recorded = replace(svc, events=log, cache=QueryCache(0))
        collect(recorded, labelled, top_k=8)
        time_k(recorded, labelled, [4, 8], n_queries=2)
        log.flush()
        assert log.analytics()["searches"] == 0
        recorded.search(SearchRequest.of(QUERIES[next(iter(QUERIES))][0]), OPERATOR)
        log.flush()
        assert log.analytics()["searches"] == 1
    finally:
        log.close()
