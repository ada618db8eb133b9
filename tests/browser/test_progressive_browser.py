"""Progressive results in a real browser: a search shows the recall results first (cards marked not reranked) and
replaces them with the reranked ones. A MutationObserver, installed before the app loads, records every state
the results area passes through, so the preview is seen however quickly reranking finishes; nothing waits on a
clock."""

from __future__ import annotations

import pytest

from tests.app.ui.conftest import DOCS
from tests.browser.conftest import served_app

pytestmark = pytest.mark.browser

# Each distinct state of the results: the cards' data-reranked flags in page order, and whether the page says it
# is reranking (the preview's summary line).
RECORDER = """
(() => {
  window.__kbSeen = [];
  const snapshot = () => {
    const cards = Array.from(document.querySelectorAll('.kb-card')).map(c => c.dataset.reranked).join(',');
    const text = document.body ? document.body.innerText : '';
    const state = cards + '|' + (text.includes('reranking…') ? 'preview' : '');
    const seen = window.__kbSeen;
    if (seen[seen.length - 1] !== state) seen.push(state);
  };
  new MutationObserver(snapshot).observe(document, {childList: true, subtree: true, characterData: true,
                                                    attributes: true});
})();
"""


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, embedder, browser):
    from tests.conftest import index_docs

    root = tmp_path_factory.mktemp("progressive")
    with served_app(root, index_docs(root, embedder, DOCS)) as url:
        yield url


def test_recall_results_come_first_then_the_reranked_ones_replace_them(browser, app_url):
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(90_000)  # the first search loads the models
        page.add_init_script(RECORDER)
        page.goto(app_url)
        box = page.get_by_label("Question")
        box.wait_for()
        box.fill("How do I reset my VPN token?")
        box.press("Enter")
        page.get_by_text("Timings — embed").wait_for()  # the last line of the final results
        page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached")
        seen = page.evaluate("window.__kbSeen")
    finally:
        context.close()
    states = [s.split("|") for s in seen]
    previews = [i for i, (cards, flag) in enumerate(states) if flag == "preview" and cards
                and set(cards.split(",")) == {"false"}]
    assert previews, f"no recall preview was ever shown: {seen}"
    final_cards, final_flag = states[-1]
    assert final_flag == "" and "false" not in final_cards.split(","), seen  # every card now reranked
    reranked = [i for i, (cards, _) in enumerate(states) if "true" in cards.split(",")]
    if reranked:  # the threshold may hide every result of a random model; when some show, they came after
        assert previews[0] < reranked[0]
