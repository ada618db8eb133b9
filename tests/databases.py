"""The shared databases tests run on: SQLite always, PostgreSQL when `KB_TEST_POSTGRES_URL` names one (.ci/run
starts one and sets it). A helper module, not a test module."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytest


def postgres_url(drop: Sequence[str] = ()) -> str:
    """The test PostgreSQL's URL, with the tables `drop` dropped first (a clean start for tests whose tables are
    shared across runs); skips the test when there is none."""
    url = os.environ.get("KB_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL here: KB_TEST_POSTGRES_URL is not set (.ci/run starts one and sets it)")
    if drop:
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {', '.join(drop)} CASCADE"))
        engine.dispose()
    return url
