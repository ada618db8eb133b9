"""Security review, issue 32, over real HTTP against a real uvicorn: credentials checked before a body is read and
body limits by route (finding 2), open mode answering loopback host names only and no state-changing request from
another site's page (4), API keys identified by a hash of the whole key (9), the shared cache's `cached` for admins
only (10), /health, /info and /metrics telling others nothing of the index (12)."""

from __future__ import annotations

import http.client
import json
import socket
from urllib.parse import urlsplit

import httpx
import pytest
from typer.testing import CliRunner

from app.cli import app as kb
from app.components import audit_log, make_search, open_events, open_index
from app.identity import key_id
from app.settings import get_settings
from tests.app.api.conftest import Served, live_server, make_service

ALICE, BOB, ADMIN = "team-alice-111", "team-bob-222", "admin-key-333"  # alice and bob: same prefix, same groups
KEYS = {ALICE: ["hr"], BOB: ["hr"], ADMIN: ["*"]}
METRICS_TOKEN = "scrape-only-token"
NEW_DOC = b"# Parking\n\nStaff park in garage P2 on level minus three.\n"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, embedder, tiny_reranker):
    """An API with keys (and an events store, for feedback ownership) on a real uvicorn: (base URL, settings)."""
    base = make_service(tmp_path_factory.mktemp("sec-keys"), embedder, tiny_reranker, api_keys=KEYS,
                        metrics_token=METRICS_TOKEN)
    served = Served(base.settings, make_search(base.settings, embedder, open_index(base.settings, embedder),
                                               events=open_events(base.settings)))
    with live_server(served.app()) as url:
        yield url, served
    served.service.events.close()


@pytest.fixture(scope="module")
def open_api(tmp_path_factory, embedder, tiny_reranker):
    """An API in open mode (no keys, no provider) on a real uvicorn at 127.0.0.1, no extra host names."""
    served = make_service(tmp_path_factory.mktemp("sec-open"), embedder, tiny_reranker, allowed_hosts=[])
    with live_server(served.app()) as url:
        yield url, served


def raw(url: str, head: str, body: bytes = b"", timeout: float = 30.0) -> tuple[int, dict]:
    """Send a request line and headers (and `body`, maybe only the start of what they announce) over a plain
    socket, and read the answer without sending anything more: (status, JSON body). A server that waited for the
    rest of the body would never answer (a socket timeout fails the test)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return answer.status, json.loads(answer.read() or b"null")


def key(k: str) -> dict[str, str]:
    return {"X-API-Key": k}


# ---- 2: credentials before the body; body limits by route ----------------------------------------------------------
def test_a_huge_body_without_a_credential_is_401_before_it_is_read(keyed):
    url, _ = keyed
    host = urlsplit(url).netloc
    # 45 MB announced, none of it sent: the answer comes from the headers alone
    status, body = raw(url, f"POST /search HTTP/1.1\nHost: {host}\nContent-Type: application/json\n"
                            f"Content-Length: {45 * 2**20}\n")
    assert status == 401 and body["error_type"] == "unauthorized"
    # chunked: one chunk sent, the rest never comes
    status, body = raw(url, f"POST /search HTTP/1.1\nHost: {host}\nContent-Type: application/json\n"
                            "Transfer-Encoding: chunked\n", b"400\r\n" + b" " * 1024 + b"\r\n")
    assert status == 401 and body["error_type"] == "unauthorized"
    # a wrong key is no better
    status, _ = raw(url, f"POST /ingest HTTP/1.1\nHost: {host}\nX-API-Key: nope\n"
                         f"Content-Type: multipart/form-data; boundary=b\nContent-Length: {45 * 2**20}\n")
    assert status == 401


def test_json_routes_take_1_mb_and_uploads_their_own_limit(keyed):
    url, _ = keyed
    host = urlsplit(url).netloc
    status, body = raw(url, f"POST /search HTTP/1.1\nHost: {host}\nX-API-Key: {ALICE}\n"
                            f"Content-Type: application/json\nContent-Length: {2 * 2**20}\n")
    assert status == 413 and body["error_type"] == "payload_too_large"
    assert "1 MB" in body["error"] and "api_max_json_mb" in body["error"]
    # the upload route keeps api_max_request_mb (50 MB): 2 MB announced is read (and refused only as not admin)
    r = httpx.post(url + "/ingest", headers=key(ALICE), timeout=60,
                   files=[("files", ("big.md", b"# Big\n\n" + b"word " * 400_000, "text/markdown"))])
    assert r.status_code == 403


@pytest.mark.slow
def test_a_chunked_body_is_counted_while_it_streams(served):
    settings = served.settings.model_copy(update={"api_max_json_mb": 0.01, "api_keys": KEYS})
    with live_server(served.app(settings)) as url:
        host = urlsplit(url).netloc
        chunk = b" " * 4096
        body = b"".join(b"1000\r\n" + chunk + b"\r\n" for _ in range(5)) + b"0\r\n\r\n"  # 20 KB, no length said
        status, answer = raw(url, f"POST /search HTTP/1.1\nHost: {host}\nX-API-Key: {ALICE}\n"
                                  "Content-Type: application/json\nTransfer-Encoding: chunked\n", body)
        assert status == 413 and "0.01 MB" in answer["error"] and "api_max_json_mb" in answer["error"]
        # an upload of the same size is under its own limit
        r = httpx.post(url + "/ingest", headers=key(ADMIN), timeout=60,
                       files=[("files", ("parking.md", NEW_DOC + b"word " * 4000, "text/markdown"))])
        assert r.status_code == 200, r.text


# ---- 4: open mode answers loopback names only; no state change from another site ------------------------------
def test_open_mode_answers_loopback_host_names_only(open_api):
    url, _ = open_api
    port = urlsplit(url).port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "localhost"):
        assert httpx.get(url + "/documents", headers={"Host": host}).status_code == 200, host
    for host in ("rebind.example", f"rebind.example:{port}", "localhost.rebind.example", "", "[::1"):
        r = httpx.get(url + "/documents", headers={"Host": host})
        assert r.status_code == 403 and r.json()["error_type"] == "forbidden", host
        assert "KB_ALLOWED_HOSTS" in r.json()["error"] and "open mode" in r.json()["error"]
    assert httpx.get(url + "/health", headers={"Host": "rebind.example"}).status_code == 403


def test_allowed_hosts_adds_names(served):
    settings = served.settings.model_copy(update={"allowed_hosts": ["kb.example.com", "*.corp.example"]})
    with live_server(served.app(settings)) as url:
        for host, status in (("kb.example.com", 200), ("search.corp.example:8000", 200), ("rebind.example", 403)):
            assert httpx.get(url + "/documents", headers={"Host": host}).status_code == status, host


def test_a_cross_site_upload_is_refused_and_plants_nothing(open_api):
    url, served = open_api
    files = [("files", ("planted.md", NEW_DOC, "text/markdown"))]
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                    {"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://localhost.evil.example"}):
        r = httpx.post(url + "/ingest", files=files, headers=headers)
        assert r.status_code == 403 and "KB_CORS_ORIGINS" in r.json()["error"], headers
        assert httpx.delete(url + "/documents/whatever", headers=headers).status_code == 403
    assert not list(served.settings.upload_dir.rglob("planted.md"))  # in no group's folder
    found = httpx.post(url + "/search", json={"query": "garage P2 level minus three", "threshold": 0.0}).json()
    assert all("garage" not in r["text"] for r in found["results"])
    # the same origin (the browser on this server's own page) and no Origin at all (curl) are fine
    same = httpx.post(url + "/search", json={"query": "vpn"}, headers={"Origin": url, "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200
    assert httpx.post(url + "/search", json={"query": "vpn"}).status_code == 200


def test_cross_site_is_refused_with_keys_too_unless_a_cors_origin(served):
    settings = served.settings.model_copy(update={"api_keys": KEYS, "cors_origins": ["https://ui.example.com"]})
    with live_server(served.app(settings)) as url:
        ask = {"query": "vpn"}
        r = httpx.post(url + "/search", json=ask, headers=key(ALICE) | {"Origin": "https://evil.example"})
        assert r.status_code == 403
        r = httpx.post(url + "/search", json=ask, headers=key(ALICE) | {"Origin": "https://ui.example.com"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://ui.example.com"
        # reads are not state changes: CORS decides what a page may see of them
        assert httpx.get(url + "/documents", headers=key(ALICE) | {"Origin": "https://evil.example"}).status_code == 200


# ---- 9: an API key is named by a hash of all of it -------------------------------------------------------------
def test_keys_with_the_same_prefix_are_different_callers(keyed):
    url, served = keyed
    res = httpx.post(url + "/search", json={"query": "salary band B3", "threshold": 0.0}, headers=key(ALICE),
                     timeout=60).json()
    chunk = res["results"][0]["chunk_id"]
    bob = httpx.post(url + "/feedback", json={"query_id": res["query_id"], "chunk_id": chunk, "useful": False},
                     headers=key(BOB))
    assert bob.status_code == 403 and bob.json()["error_type"] == "forbidden"
    alice = httpx.post(url + "/feedback", json={"query_id": res["query_id"], "chunk_id": chunk, "useful": True},
                       headers=key(ALICE))
    assert alice.status_code == 201
    # the audit log names a key by its hash, never by (a part of) the key
    assert httpx.post(url + "/ingest", headers=key(BOB), files=[("files", ("x.md", NEW_DOC, "text/markdown"))]
                      ).status_code == 403
    refused = [e for e in audit_log(served.settings).entries() if e["outcome"] == "refused"]
    assert refused[-1]["who"] == key_id(BOB) != key_id(ALICE) and key_id(BOB).startswith("key:")
    assert all("team" not in json.dumps(e) for e in audit_log(served.settings).entries())


# ---- 10: "cached" for admins only ---------------------------------------------------------------------------------
def test_the_shared_cache_is_not_told_to_others(keyed):
    url, _ = keyed
    ask = {"query": "how do I reset my VPN token", "threshold": 0.0, "top_n": 2}
    first = httpx.post(url + "/search", json=ask, headers=key(ALICE), timeout=60).json()
    second = httpx.post(url + "/search", json=ask, headers=key(BOB), timeout=60).json()  # same groups: a cache hit
    assert "cached" not in first and "cached" not in second
    assert [r["chunk_id"] for r in first["results"]] == [r["chunk_id"] for r in second["results"]]
    admin = httpx.post(url + "/search", json=ask | {"groups": ["hr"]}, headers=key(ADMIN), timeout=60).json()
    assert admin["cached"] is True  # admins (here viewing as hr) may see it


def test_the_cli_json_says_cached_only_for_the_operator(served, tmp_path, monkeypatch):
    s = served.settings
    monkeypatch.setenv("KB_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("KB_INDEX_DIR", str(s.index_dir))
    monkeypatch.setenv("KB_EMBEDDER", s.embedder)
    monkeypatch.setenv("KB_RERANKER", s.reranker)
    get_settings.cache_clear()
    queries = tmp_path / "q.txt"
    queries.write_text("annual leave\nannual leave\n")
    try:
        as_hr = CliRunner().invoke(kb, ["search", "--queries", str(queries), "--groups", "hr", "--json"])
        operator = CliRunner().invoke(kb, ["search", "--queries", str(queries), "--json"])
    finally:
        get_settings.cache_clear()
    assert as_hr.exit_code == 0 and operator.exit_code == 0, as_hr.output + operator.output
    assert all("cached" not in json.loads(line) for line in as_hr.stdout.splitlines())
    assert [json.loads(line)["cached"] for line in operator.stdout.splitlines()] == [False, True]


# ---- 12: what /health, /info and /metrics tell whom ----------------------------------------------------------------
def test_health_says_only_the_state(keyed):
    url, _ = keyed
    assert httpx.get(url + "/health").json() == {"status": "ready"}


def test_info_keeps_counts_and_paths_for_admins(keyed):
    url, served = keyed
    other = httpx.get(url + "/info", headers=key(ALICE)).json()
    admin = httpx.get(url + "/info", headers=key(ADMIN)).json()
    assert other["embedder"] == {"name": served.service.embedder.name}
    assert other["reranker"] == {"name": served.service.reranker.name}
    assert other["limits"]["max_json_mb"] == 1.0 and other["caller_groups"] == ["hr"]
    for secret in ("index", "cache", "vocabulary", "warnings", "reranker_error"):
        assert secret not in other, secret
    assert str(served.settings.index_dir) not in json.dumps(other)
    assert admin["index"]["chunks"] == len(served.service.index.chunks) and admin["index"]["root"]
    assert admin["reranker"]["path"] and "problems" in admin["vocabulary"]


def test_metrics_for_admins_or_the_metrics_token(keyed):
    url, _ = keyed
    assert httpx.get(url + "/metrics").status_code == 401
    assert httpx.get(url + "/metrics", headers=key(ALICE)).status_code == 403
    assert "kb_index_chunks" in httpx.get(url + "/metrics", headers=key(ADMIN)).text
    scrape = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    assert "kb_index_chunks" in httpx.get(url + "/metrics", headers=scrape).text
    for path in ("/info", "/documents"):  # the metrics token opens nothing else
        assert httpx.get(url + path, headers=scrape).status_code == 401
    assert httpx.post(url + "/search", json={"query": "vpn"}, headers=scrape).status_code == 401
