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


def test_the_shared_database_url_and_its_old_name(tmp_path, monkeypatch):
    from app.components import database_url

    config = tmp_path / "kb.toml"
    monkeypatch.setenv("KB_CONFIG", str(config))
    for name in ("KB_DATABASE_URL", "KB_EVENTS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://someone-elses")  # other software's variable: never read
    s = Settings(index_dir=tmp_path / "data" / "index")
    assert s.database_url is None and database_url(s) == f"sqlite:///{tmp_path / 'data' / 'events.db'}"
    config.write_text('events_url = "sqlite:///old.db"\n')  # a config file from before
    assert Settings().database_url == Settings().events_url == "sqlite:///old.db"
    config.write_text('events_url = "sqlite:///old.db"\ndatabase_url = "sqlite:///new.db"\n')
    assert Settings().database_url == "sqlite:///new.db"
    monkeypatch.setenv("KB_EVENTS_URL", "sqlite:///env-old.db")
    assert Settings().database_url == "sqlite:///env-old.db"  # the environment wins over the file
    monkeypatch.setenv("KB_DATABASE_URL", "sqlite:///env-new.db")
    assert Settings().database_url == "sqlite:///env-new.db"  # the new name wins over the old
    assert Settings(database_url="sqlite:///arg.db").database_url == "sqlite:///arg.db"
