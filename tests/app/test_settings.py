"""Settings precedence: defaults < config file < KB_* environment; bad values name the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.settings import Settings


def test_config_file_then_environment(tmp_path, monkeypatch):
    config = tmp_path / "kb.toml"
    config.write_text('top_n = 3\nthreshold = 0.6\nreranker = "models/reranker_zh_v2"\n')
    monkeypatch.setenv("KB_CONFIG", str(config))
    monkeypatch.setenv("KB_TOP_N", "8")
    s = Settings()
    assert (s.top_k, s.top_n, s.threshold, s.reranker) == (50, 8, 0.6, "models/reranker_zh_v2")
    assert Settings(threshold=0.0).threshold == 0.0  # an explicit zero is a real value


def test_out_of_range_values_are_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("KB_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("KB_THRESHOLD", "1.5")
    with pytest.raises(ValidationError, match="threshold"):
        Settings()
