"""The app in a real browser: `kb ui` serving the sample knowledge base (37 documents, Chinese and English),
reranked by a tiny cross-encoder so that every card has a score. A person's path: search in Chinese and in
English, read the cards (rank, score colour, band word, bar), open the hidden results, check the raw table and
its CSV, try the playground, look at the status page. Screenshots go to KB_SCREENSHOT_DIR (docs/screenshots/
when refreshing the documentation), else to a temporary folder."""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import pytest

from tests.app.ui.conftest import SAMPLE_SET
from tests.browser.conftest import served_app

pytestmark = pytest.mark.browser

GREEN, RED = "rgb(26, 127, 55)", "rgb(207, 34, 46)"
ZH_QUERY = "试用期员工离职需要办理哪些手续？"
EN_QUERY = "How do I reset my VPN token?"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, embedder, browser):
    from app.services.library import sync

    root = tmp_path_factory.mktemp("browser")
    report = sync([SAMPLE_SET / "docs"], root / "index", embedder)
    assert not report.skipped and report.total_documents == 37
    with served_app(root, root / "index") as url:
        yield url


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("KB_SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def page(browser, app_url):
    context = browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(90_000)  # the first search loads the models
    pg.goto(app_url)
    pg.get_by_label("Question").wait_for()
    yield pg
    context.close()


def snap(page, path: Path, height: int = 1500, anchor=None) -> None:
    """A screenshot of a taller window (Streamlit scrolls inside the page, so a full-page shot is the window),
    scrolled to the page title or to `anchor`."""
    page.set_viewport_size({"width": 1366, "height": height})
    (anchor or page.locator("h1").first).scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1366, "height": 900})


def settle(page) -> None:
    """Wait until Streamlit has finished the current run (its status widget goes away)."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached")


def ask(page, query: str) -> None:
    first = ".kb-card .kb-text"
    before = page.locator(first).first.inner_text() if page.locator(first).count() else None
    box = page.get_by_label("Question")
    box.fill(query)
    box.press("Enter")
    page.locator(first).first.wait_for()
    page.wait_for_function("([sel, old]) => document.querySelector(sel).innerText !== old", arg=[first, before])
    # the recall preview (its summary says "reranking…") comes first; the reranked results replace it
    page.wait_for_function("() => !document.body.innerText.includes('reranking…')")
    settle(page)


def read_cards(page) -> list[dict]:
    return page.locator(".kb-card").evaluate_all("""cards => cards.map(c => {
        const bar = c.querySelector('.kb-bar'), fill = c.querySelector('.kb-fill');
        const score = c.querySelector('.kb-score');
        return {rank: c.querySelector('.kb-rank').innerText, score: score.innerText,
                colour: getComputedStyle(score).color, band: c.querySelector('.kb-band').innerText,
                raw: c.querySelector('.kb-raw').innerText, rawSize: parseFloat(getComputedStyle(c.querySelector('.kb-raw')).fontSize),
                scoreSize: parseFloat(getComputedStyle(score).fontSize),
                ratio: fill.getBoundingClientRect().width / bar.getBoundingClientRect().width,
                visible: c.checkVisibility(), hidden: c.closest('[data-testid="stExpander"]') !== null, text: c.querySelector('.kb-text').innerText,
                marks: Array.from(c.querySelectorAll('.kb-text mark')).map(m => m.innerText)};
    })""")


def read_metrics(page, *needed: str) -> dict[str, str]:
    """{label: value} of the page's metrics, once those `needed` are drawn and the run is over. Each label is the
    metric's own text (not its help icon), paired with the value of the same element; Streamlit draws a page
    while its script runs, so a heading further down can be there before the metrics are."""
    for label in needed:
        page.get_by_test_id("stMetric").filter(has=page.get_by_test_id("stMetricLabel").get_by_text(
            label, exact=True)).first.wait_for()
    settle(page)
    return page.get_by_test_id("stMetric").evaluate_all("""els => Object.fromEntries(els.map(e => [
        e.querySelector('[data-testid="stMetricLabel"] [data-testid="stMarkdownContainer"]').textContent.trim(),
        e.querySelector('[data-testid="stMetricValue"]').textContent.trim()]))""")


def check_card(card: dict) -> None:
    score = float(card["score"])
    assert len(card["score"].split(".")[1]) == 4
    assert card["colour"] == (GREEN if score > 0.5 else RED)
    assert card["band"] == ("strong" if score > 0.7 else "review" if score >= 0.5 else "weak")
    assert card["raw"].startswith("raw ") and card["rawSize"] < card["scoreSize"]
    assert card["ratio"] == pytest.approx(score, abs=0.005)  # the bar is as wide as the score


def test_chinese_search_cards_colours_bands_and_hidden_results(page, shots):
    ask(page, ZH_QUERY)
    cards = read_cards(page)
    shown = [c for c in cards if not c["hidden"]]
    assert all(c["visible"] for c in shown) and not any(c["visible"] for c in cards if c["hidden"])
    assert 1 <= len(shown) <= 5
    assert [c["rank"] for c in shown] == ["1st", "2nd", "3rd", "4th", "5th"][:len(shown)]
    for c in shown:
        check_card(c)
        assert float(c["score"]) >= 0.5  # the default threshold (balanced)
    assert any(m in ("试用期", "员工", "离职", "手续", "办理") for c in shown for m in c["marks"])
    snap(page, shots / "search-zh.png")

    expander = page.locator('[data-testid="stExpander"]').filter(has_text="below the threshold")
    label = expander.locator("summary").inner_text()
    hidden = int(label.split("keyboard_arrow_right")[-1].strip().split()[0])
    assert hidden >= 1
    expander.locator("summary").click()
    page.wait_for_timeout(500)
    below = [c for c in read_cards(page) if c["hidden"]]
    assert len(below) == hidden and all(c["visible"] for c in below)
    for c in below:
        check_card(c)
        assert c["colour"] == RED and c["band"] == "weak"
    snap(page, shots / "below-threshold.png", height=1000, anchor=expander)


def test_english_search_then_raw_table_and_csv(page, shots):
    ask(page, EN_QUERY)
    shown = [c for c in read_cards(page) if not c["hidden"]]
    assert shown
    for c in shown:
        check_card(c)
    for c in shown:  # a query word in a card's text is marked there, whatever case it is written in
        if re.search(r"\bvpn\b", c["text"], re.IGNORECASE):
            assert "vpn" in [m.lower() for m in c["marks"]]
    snap(page, shots / "search-en.png")

    page.get_by_role("link", name="Raw data").click()
    page.locator('[data-testid="stDataFrame"]').first.wait_for()
    settle(page)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").first.click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8-sig"))))
    assert [int(r["ID"]) for r in rows] == list(range(1, len(rows) + 1))
    by_rank = {int(r["Rank"]): r for r in rows if r["Shown"] == "True"}
    assert [f"{float(by_rank[i + 1]['Normalized Score']):.4f}" for i in range(len(shown))] == \
        [c["score"] for c in shown]
    snap(page, shots / "raw-table.png")


def test_playground_scores_the_example(page, shots):
    page.get_by_role("link", name="Rerank playground").click()
    page.get_by_role("button", name="Rerank").wait_for()
    page.get_by_role("button", name="Rerank").click()
    page.locator(".kb-card").first.wait_for()
    settle(page)
    cards = [c for c in read_cards(page) if not c["hidden"]]
    assert cards
    for c in cards:
        check_card(c)
    snap(page, shots / "playground.png")


def test_status_page_reports_device_precision_and_latency(page, shots):
    page.get_by_role("link", name="Status").click()
    metrics = read_metrics(page, "Device", "P95")
    assert metrics["Device"] == "CPU" and metrics["Precision"] == "FP32", metrics
    assert int(metrics["Searches"]) >= 2 and metrics["P95"].endswith(" ms")
    snap(page, shots / "status.png")


def test_thumbs_up_then_the_analytics_page_shows_it(page, shots):
    page.get_by_role("link", name="Search").click()
    ask(page, EN_QUERY)
    page.get_by_test_id("stFeedback").first.get_by_role("radio", name="Thumbs up").click()  # on the first card
    page.get_by_text("Thank you").wait_for()
    settle(page)
    page.get_by_role("link", name="Analytics").click()
    page.get_by_text("Thumbs per document").wait_for()
    metrics = read_metrics(page, "Searches", "Thumbs up / down")
    assert metrics["Thumbs up / down"] == "1 / 0" and int(metrics["Searches"]) >= 1, metrics
    snap(page, shots / "analytics.png")
