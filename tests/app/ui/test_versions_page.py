"""The Status page's reranker versions (admins): promote through the gate, roll back, canary and shadow, with the
same code as `kb models ...`; this app follows at once."""

from __future__ import annotations

import json

import pytest

from app.components import rollout_store
from app.settings import get_settings
from tests.app.ui.helpers import cards, search, set_threshold
from tests.tiny_models import build_tiny_cross_encoder

pytestmark = pytest.mark.slow  # promotion and rollback through the app: several seconds on 2 cores


@pytest.fixture
def versions(tmp_path, monkeypatch):
    monkeypatch.setenv("KB_ROLLOUT_FILE", str(tmp_path / "rerankers.json"))
    monkeypatch.setenv("KB_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("KB_MODELS_RELOAD_S", "0")
    v2 = build_tiny_cross_encoder(tmp_path / "reranker_v2", arch="bert", seed=6)
    broken = build_tiny_cross_encoder(tmp_path / "broken", arch="bert", seed=7)
    (broken / "config.json").unlink()
    return tmp_path, v2, broken


def submit(at, form_button: str):
    return next(b for b in at.button if b.label == form_button).click().run()


def serving_line(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**Serving:**"))


def test_promote_refusal_promotion_and_rollback_from_the_status_page(app_test, kb, versions):
    tmp, v2, broken = versions
    at = app_test()
    at.switch_page("views/status.py").run()
    assert not at.exception and str(kb.reranker) in serving_line(at) and "the `reranker` setting" in serving_line(at)

    at.text_input(key="kb-promote-path").input(str(broken))
    at = submit(at, "Check and promote")
    assert any("Not promoted" in e.value and "config.json" in e.value for e in at.error)
    assert rollout_store(get_settings()).stamp() is None  # nothing written

    at.text_input(key="kb-promote-path").input(str(v2))
    at.text_input(key="kb-promote-golden").input(str(tmp / "no-such-golden.jsonl"))
    at = submit(at, "Check and promote")
    assert not at.exception and any("golden" in e.value and "no-such-golden" in e.value for e in at.error)
    at.text_input(key="kb-promote-golden").input("")
    at.number_input(key="kb-promote-overlap").set_value(0.0)
    at.number_input(key="kb-promote-shift").set_value(1.0)
    at = submit(at, "Check and promote")
    assert not at.exception
    assert any("now serves" in s.value for s in at.success) and str(v2) in serving_line(at)
    assert rollout_store(get_settings()).read().serving[0].model == str(v2)

    at.switch_page("views/search.py").run()
    at = search(set_threshold(at, 0.0), "annual leave")
    shown = cards(at)
    assert shown and all(c.select_one(".kb-model").get_text() == "scored by reranker_v2" for c in shown)

    at.switch_page("views/status.py").run()
    at = next(b for b in at.button if b.label == "Roll back to the previous model").click().run()
    assert any("Rolled back" in s.value for s in at.success) and str(kb.reranker) in serving_line(at)
    actions = [json.loads(line)["action"] for line in (tmp / "audit.jsonl").read_text().splitlines()]
    assert actions == ["reranker promote", "reranker promote", "reranker rollback"]
