"""API fuzzing from the OpenAPI spec (schemathesis) against the ASGI app, plus hand-made hostile bodies.

Every operation is called with schema-valid and schema-invalid data; every answer must be no 500, carry a status
the spec documents, the content type it declares and a body matching its schema; invalid data must be refused.
The one check left out, `positive_data_acceptance`, would demand 2xx for any schema-valid body, but an empty
query, an over-long query or an unsupported upload is refused by design (400/413/422, documented).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.app.api.conftest import Served, make_service

KEYS = {"reader": ["hr"], "admin": ["*"]}


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory, embedder, tiny_reranker):
    from app.components import open_events

    base = make_service(tmp_path_factory.mktemp("fuzz"), embedder, tiny_reranker, api_keys=KEYS)
    svc = Served(base.settings, replace(base.service, events=open_events(base.settings)))  # feedback, analytics too
    app = svc.app()
    with TestClient(app):  # runs the lifespan: loaded and ready
        yield app
    svc.service.events.close()


@pytest.fixture(scope="module")
def api_schema(fuzz_app):
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)


schema = schemathesis.pytest.from_fixture("api_schema")


FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@schema.parametrize()
@FUZZ
@pytest.mark.filterwarnings("ignore")
def test_every_operation_answers_within_its_spec_for_an_admin_key(case):
    case.call_and_validate(headers={"X-API-Key": "admin"}, excluded_checks=[positive_data_acceptance])


@schema.parametrize()
@FUZZ
@pytest.mark.filterwarnings("ignore")
def test_every_operation_answers_within_its_spec_for_a_restricted_key(case):
    case.call_and_validate(headers={"X-API-Key": "reader"}, excluded_checks=[positive_data_acceptance])


HOSTILE_BODIES = [
    ("/search", "[" * 100_000 + "]" * 100_000),  # nesting past the JSON parser's recursion limit
    ("/search", '{"query": ' + "[" * 50_000 + "]" * 50_000 + "}"),
    ("/search", '{"query": "x", "top_k": ' + "9" * 5_000 + "}"),  # past Python's int-parsing digit limit
    ("/search", '{"query": "x", "threshold": NaN}'),
    ("/search", '{"query": "x", "threshold": -Infinity}'),
    ("/search", b'{"query": "\xff\xfe\xfa"}'),  # not UTF-8
    ("/search", '{"query": "\\ud800"}'),  # a lone surrogate: valid JSON, not encodable text
    ("/search", '{"query": "x", "groups": ["\\udfff"]}'),
    ("/search", '{"query": "x", "\\ud800": 1}'),
    ("/search", '{"query": ["not", "a", "string"]}'),
    ("/search", '{"query": "x", "top_k": "many"}'),
    ("/search", '"just a string"'),
    ("/search", "null"),
    ("/search", ""),
    ("/rerank", '{"query": "\\ud800", "texts": ["a"]}'),
    ("/rerank", '{"query": "q", "texts": ["a\\udfff"]}'),
    ("/rerank", '{"query": "q", "documents": [{"text": "\\ud800"}]}'),
    ("/rerank", '{"query": "q", "documents": [{"no_text": 1}]}'),
    ("/rerank", '{"query": "q", "documents": ["a"], "texts": ["b"]}'),
    ("/v2/rerank", '{"query": "q", "documents": [' + ",".join(['"x"'] * 5000) + "]}"),
    ("/v1/rerank", '{"query": "q", "documents": ["a"], "top_n": 0}'),
]


@pytest.mark.parametrize("path, raw", HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
def test_hostile_json_bodies_get_a_4xx_json_error(fuzz_app, path, raw):
    with TestClient(fuzz_app, raise_server_exceptions=False) as c:
        r = c.post(path, content=raw, headers={"content-type": "application/json", "X-API-Key": "admin"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json")
    assert set(r.json()) >= {"error", "error_type"} and r.json()["error"]


def test_an_oversized_upload_is_413_before_anything_is_written(fuzz_app, tmp_path):
    """The body limit holds for multipart uploads too, declared (Content-Length) or streamed (chunked)."""
    from app.api.server import create_app as build

    state = fuzz_app.state.kb
    settings = state.settings.model_copy(update={"api_max_request_mb": 0.25, "upload_dir": tmp_path / "uploads"})
    with TestClient(build(settings, state.live.service, background=False)) as c:
        files = [("files", ("big.md", b"# Big\n\n" + b"word " * 100_000, "text/markdown"))]
        r = c.post("/ingest", files=files, headers={"X-API-Key": "admin"})
        assert r.status_code == 413 and r.json()["error_type"] == "payload_too_large", r.text[:200]

        def stream():
            for _ in range(100):
                yield b"x" * 4096

        r = c.post("/ingest", content=stream(), headers={"X-API-Key": "admin",
                                                         "content-type": "multipart/form-data; boundary=b"})
        assert r.status_code == 413
    assert not (tmp_path / "uploads").exists() or not any((tmp_path / "uploads").iterdir())
