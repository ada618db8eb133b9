"""The other pages under AppTest on a real index: raw data, rerank playground, library, tuning, status."""

from __future__ import annotations

import json

import pytest

from app.components import control
from app.identity import OPERATOR
from app.services import saved_settings
from app.services.library import sync
from app.services.request import SearchRequest
from app.settings import get_settings
from rerank.rank import rerank
from tests.app.ui.helpers import QUERY, cards, search, set_threshold


def test_raw_table_lists_every_scored_passage_in_input_order(app_test, service):
    at = search(set_threshold(app_test(), 0.6), QUERY)
    at.switch_page("views/raw_table.py").run()
    assert not at.exception
    [df] = [d.value for d in at.dataframe]
    expected = service.search(SearchRequest.of(QUERY, top_k=50, top_n=5, threshold=0.6), OPERATOR)
    every = expected.results + expected.below_threshold
    assert len(df) == len(every)
    assert list(df["ID"]) == sorted(df["ID"]) == list(range(1, len(every) + 1))
    by_text = {r.hit.chunk.text: r for r in every}
    for _, row in df.iterrows():
        r = by_text[row["Text"]]
        assert row["Normalized Score"] == pytest.approx(r.score) and row["Raw Score"] == pytest.approx(r.raw_score)
        assert row["Retrieval Score"] == pytest.approx(r.hit.retrieval_score) and row["Leg"] == r.hit.leg
    # ID is the recall order: the reranker's input order, best retrieval score first
    assert list(df.sort_values("ID")["Retrieval Score"]) == sorted(df["Retrieval Score"], reverse=True)
    assert any(b.label == "Download CSV" for b in at.get("download_button"))


def test_playground_scores_candidates_like_the_reranker(app_test, service):
    at = set_threshold(app_test(), 0.0)
    at.switch_page("views/playground.py").run()
    query = "how many days of annual leave"
    lines = ["Employees get twenty days of annual leave a year.", "试用期员工主动离职的，应当提前三日通知公司。",
             "Reset the VPN token in the portal.", "if a < b && c > d then"]
    at.text_input(key="kb_pg_query").input(query)
    at.text_area(key="kb_pg_candidates").input("\n".join(lines) + "\n\n")
    next(b for b in at.button if b.label == "Rerank").click()
    at.run()
    assert not at.exception
    expected = rerank(query, lines, service.reranker)
    shown = cards(at)
    assert len(shown) == len(lines)
    for card, sc in zip(shown, expected):
        assert card.select_one(".kb-score").text == f"{sc.score:.4f}"
        assert card.select_one(".kb-text").text == sc.text
    assert "a < b && c > d" in "".join(c.text for c in shown)  # comparison signs shown as text
    [df] = [d.value for d in at.dataframe]
    assert list(df["ID"]) == [1, 2, 3, 4] and list(df["Text"]) == lines


def test_playground_without_reranker_says_why(app_test):
    at = app_test(reranker="none")
    at.switch_page("views/playground.py").run()
    assert any("needs a reranker" in e.value for e in at.error)


def test_library_uploads_lists_skips_and_deletes(app_test, kb, embedder, tmp_path):
    index = tmp_path / "index"
    sync([kb.docs / "vpn.md"], index, embedder)
    at = app_test(index=index)
    at.switch_page("views/library.py").run()
    [docs] = [d.value for d in at.dataframe]
    assert list(docs["File"]) == ["vpn.md"]

    uploader = at.file_uploader[0]
    uploader.set_value([("wifi.md", b"# Wi-Fi\n\nThe guest Wi-Fi password changes every Monday.\n", "text/markdown"),
                        ("broken.pdf", b"%PDF-1.4 not really a pdf", "application/pdf"),
                        ("empty.txt", b"", "text/plain"),
                        ("tool.exe", b"MZ\x00\x00", "application/octet-stream")])
    at.text_input[0].input("it, ops")
    next(b for b in at.button if b.label == "Ingest").click()
    at.run()
    assert not at.exception
    assert any("1 added" in w.value and "3 skipped" in w.value for w in at.warning)
    skipped, docs = [d.value for d in at.dataframe]
    assert set(skipped["File"]) == {"broken.pdf", "empty.txt", "tool.exe"}
    assert all(reason for reason in skipped["Reason"])
    assert "unsupported" in skipped.set_index("File").loc["tool.exe", "Reason"]
    row = docs.set_index("File").loc["wifi.md"]
    assert row["Chunks"] >= 1 and row["Status"] == "added" and row["Access"] == "it, ops"
    assert [p.name for p in kb.uploads.iterdir()] == ["groups-it+ops"]  # one folder per set of access groups
    assert sorted(p.name for p in (kb.uploads / "groups-it+ops").iterdir()) == ["wifi.md", "wifi.md.meta.json"]

    # the new document is searchable at once, for its groups only
    at.switch_page("views/search.py").run()
    at.toggle(key="kb_restrict").set_value(True).run()
    at.multiselect(key="kb_groups").set_value(["it"]).run()
    at = search(set_threshold(at, 0.0), "guest wifi password")
    assert any("guest Wi-Fi" in c.text for c in cards(at))

    at.switch_page("views/library.py").run()
    doc_id = next(d for d, rec in ((d, r) for d, r in _index(index, embedder).documents.items())
                  if rec.source.endswith("wifi.md"))
    at.multiselect(key="kb_delete").set_value([doc_id]).run()
    next(b for b in at.button if b.label == "Delete").click()
    at.run()
    assert not at.exception
    docs = at.dataframe[-1].value
    assert list(docs["File"]) == ["vpn.md"]
    assert not (kb.uploads / "groups-it+ops" / "wifi.md").exists()
    assert [r.source for r in _index(index, embedder).documents.values()][0].endswith("vpn.md")


def _index(path, embedder):
    from retrieval.index import KnowledgeIndex

    return KnowledgeIndex.open(path, embedder.info(), {}, create=False)


def test_status_shows_device_precision_models_index_and_latency(app_test, kb):
    at = search(app_test(), QUERY)
    at = search(at, "annual leave")
    at.switch_page("views/status.py").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Device"] == "CPU" and metrics["Precision"] == "FP32"
    assert metrics["Searches"] == "2" and all(metrics[p].endswith(" ms") for p in ("P50", "P95", "P99"))
    models = at.dataframe[0].value
    assert list(models["Role"]) == ["embedder", "reranker"]
    assert models.set_index("Role").loc["reranker", "Path"] == str(kb.reranker)
    assert any("loaded" in s.value for s in at.success)


@pytest.mark.slow
def test_status_says_bfloat16_and_its_float32_re_scoring(app_test, monkeypatch):
    monkeypatch.setenv("KB_RERANK_DTYPE", "bfloat16")
    at = search(app_test(), QUERY)
    at.switch_page("views/status.py").run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Precision"] == "BF16"
    details = at.dataframe[0].value.set_index("Role").loc["reranker", "Details"]
    assert "bfloat16 with float32 re-scoring of top-10 near-ties" in details and "candidates so far" in details


def test_status_says_recall_only_serves_when_the_reranker_cannot_load(app_test):
    """Issue 29: the models table and "Reranker versions" agree: recall-only serves, and why."""
    at = app_test(reranker="models/missing-reranker")
    at.switch_page("views/status.py").run()
    assert not at.exception
    [error] = at.error
    assert "No reranker serves" in error.value and "serving recall-only results" in error.value
    assert "models/missing-reranker" in error.value
    reranker = at.dataframe[0].value.set_index("Role").loc["reranker"]
    assert reranker["Model"] == "none (recall-only)" and reranker["Requested"] == "models/missing-reranker"
    [serving] = [m.value for m in at.markdown if m.value.startswith("**Serving:**")]
    assert "no reranker, recall-only results" in serving and "could not be loaded" in serving


@pytest.fixture
def beir_set(kb):
    """A tiny labelled set in the BEIR layout: the app's test documents and four judged questions."""
    corpus = {name.split(".")[0]: (kb.docs / name).read_text(encoding="utf-8")
              for name in ("vpn.md", "laptop.md", "leave.md", "probation-zh.md")}
    queries = {"q1": ("reset my VPN token", "vpn"), "q2": ("when do new hires get a laptop", "laptop"),
               "q3": ("how many days of annual leave", "leave"), "q4": ("试用期离职提前几天通知", "probation-zh")}
    return [("corpus.jsonl", "".join(json.dumps({"_id": d, "title": "", "text": t}, ensure_ascii=False) + "\n"
                                     for d, t in corpus.items()).encode(), "application/json"),
            ("queries.jsonl", "".join(json.dumps({"_id": q, "text": t}, ensure_ascii=False) + "\n"
                                      for q, (t, _) in queries.items()).encode(), "application/json"),
            ("test.tsv", ("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, (_, d) in
                                                                    queries.items())).encode(), "text/plain")]


def test_tuning_histogram_curves_and_saving_defaults(app_test, kb, beir_set):
    at = search(app_test(), QUERY)
    at.switch_page("views/tuning.py").run()
    assert not at.exception
    assert any("passages recalled" in c.value for c in at.caption)  # the histogram of the current query

    at.radio(key="kb_tune_source").set_value("upload a set").run()
    at.file_uploader(key="kb_tune_upload").set_value(beir_set).run()
    at.slider(key="kb_tune_kmax").set_value(10)
    at.number_input(key="kb_tune_timed").set_value(1)
    next(b for b in at.button if b.label == "Evaluate").click()
    at.run(timeout=120)
    assert not at.exception
    assert any("4 queries" in c.value for c in at.caption)
    labels = {m.label for m in at.metric}
    assert {"Precision at 0.50", "Recall at 0.50", "Passages shown"} <= labels
    assert len(at.get("vega_lite_chart")) == 4  # histogram, precision/recall, quality and latency vs K

    next(b for b in at.button if b.label == "Save K, N and threshold as defaults").click()
    at.run()
    assert any("Saved (version 1)" in s.value for s in at.success)
    assert not (kb.root / "absent.toml").exists()  # the config file is left alone
    saved = saved_settings.read(control(get_settings()))
    chosen = {"top_k": at.slider(key="kb_top_k").value, "top_n": at.slider(key="kb_top_n").value,
              "threshold": at.slider(key="kb_threshold").value}
    assert saved.values == chosen and saved.calibrator is None


def test_an_uploaded_sample_format_set_is_judged_against_the_sample_documents(tmp_path):
    from app.quality.evaluate import save_uploaded_set
    from tests.app.ui.conftest import SAMPLE_SET

    rows = (SAMPLE_SET / "queries.jsonl").read_bytes().splitlines(keepends=True)[:3]
    folder = save_uploaded_set([("my-queries.jsonl", b"".join(rows))], tmp_path, SAMPLE_SET / "docs")
    assert (folder / "queries.jsonl").read_bytes() == b"".join(rows)
    assert (folder / "docs").resolve() == (SAMPLE_SET / "docs").resolve()
    with pytest.raises(ValueError, match="BEIR set needs"):
        save_uploaded_set([("corpus.jsonl", b"{}"), ("queries.jsonl", b"{}")], tmp_path, SAMPLE_SET / "docs")


@pytest.mark.parametrize("page", ["views/search.py", "views/raw_table.py", "views/playground.py",
                                  "views/library.py", "views/tuning.py", "views/status.py"])
def test_open_mode_says_on_every_page_that_everyone_sees_every_document(app_test, page):
    at = app_test()
    at.switch_page(page).run()
    assert not at.exception
    assert at.main.expander[0].label.startswith("Open mode: everyone sees every document")


def test_a_judgment_is_recorded_and_the_analytics_page_shows_it(app_test, tmp_path, monkeypatch):
    from app.services.events import EventLog

    url = f"sqlite:///{tmp_path / 'events.db'}"
    monkeypatch.setenv("KB_DATABASE_URL", url)
    at = search(set_threshold(app_test(), 0.0), QUERY)
    assert len(at.get("feedback")) == len(cards(at)) > 0  # thumbs on every shown card
    next(b for b in at.button if b.label == "None of these answers my question").click()
    at.run()
    assert not at.exception and any("Thank you" in t.value for t in at.toast)
    at.switch_page("views/analytics.py").run()
    assert not at.exception
    shown = {m.label: m.value for m in at.metric}
    assert shown["Searches"] == "1" and shown["'None answers'"] == "1"
    # one figure per metric (issue 29: "793 / 134…" was cut off)
    assert shown["Latency P50"].endswith(" ms") and shown["Latency P95"].endswith(" ms")
    store = EventLog(url, b"unused").open()
    try:
        [judged] = list(store.judgments())
        assert judged["query"] == QUERY and judged["chunk_id"] is None and judged["useful"] is False
    finally:
        store.close()
