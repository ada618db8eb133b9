"""Candidate text as the reranker reads it: HTML removed with the ingest cleaner."""

from __future__ import annotations

from collections.abc import Sequence

from ingest.clean import strip_markup


def prepare_texts(texts: Sequence[str]) -> list[str]:
    """Clean each candidate (tags, entities, control characters, runs of spaces). Raises TypeError on non-str."""
    out = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a str; got {type(text).__name__}")
        out.append(strip_markup(text))
    return out


def check_query(query: object) -> str:
    from rerank.errors import RerankerParameterError

    if not isinstance(query, str) or not query.strip():
        raise RerankerParameterError("query", query, "a non-empty string", "pass the question to rank against")
    return query.strip()
