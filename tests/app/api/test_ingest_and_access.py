"""Uploads, deletes and the query cache over HTTP; API keys mapped to access groups."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.app.api.conftest import make_service

NEW_DOC = b"# Parking\n\nStaff park in garage P2; visitors register their car plate at reception.\n"


@pytest.fixture
def fresh(tmp_path, embedder, tiny_reranker):
    """A service of its own: these tests change the index."""
    svc = make_service(tmp_path, embedder, tiny_reranker)
    with TestClient(svc.app()) as c:
        yield svc, c


def sources(client) -> set[str]:
    return {d["source"].rsplit("/", 1)[-1] for d in client.get("/documents").json()}


def test_upload_is_searchable_at_once_and_the_cache_is_invalidated(fresh):
    svc, c = fresh
    q = {"query": "where do visitors park their car", "top_k": 10, "threshold": 0.0}
    before = c.post("/search", json=q).json()
    assert c.post("/search", json=q).json()["cached"] is True
    r = c.post("/ingest", files=[("files", ("parking.md", io.BytesIO(NEW_DOC), "text/markdown"))])
    assert r.status_code == 200, r.text
    assert r.json()["added"] == ["parking.md"] and r.json()["index_version"] != before["index_version"]
    after = c.post("/search", json=q).json()
    assert after["cached"] is False and after["index_version"] == r.json()["index_version"]
    assert "garage P2" in after["results"][0]["text"] or any("garage P2" in x["text"] for x in after["results"])
    assert "parking.md" in sources(c)
    again = c.post("/ingest", files=[("files", ("parking.md", io.BytesIO(NEW_DOC), "text/markdown"))]).json()
    assert again["unchanged"] == 1 and again["added"] == []


def test_delete_document_removes_it_and_its_upload(fresh):
    svc, c = fresh
    c.post("/ingest", files=[("files", ("parking.md", io.BytesIO(NEW_DOC), "text/markdown"))])
    doc = next(d for d in c.get("/documents").json() if d["source"].endswith("parking.md"))
    r = c.delete(f"/documents/{doc['doc_id']}")
    assert r.status_code == 200 and r.json()["deleted"] == doc["doc_id"]
    assert "parking.md" not in sources(c)
    assert not (svc.settings.upload_dir / "public" / "parking.md").exists()
    res = c.post("/search", json={"query": "garage P2 visitors", "top_k": 10, "threshold": 0.0}).json()
    assert all("garage P2" not in x["text"] for x in res["results"])
    assert c.delete(f"/documents/{doc['doc_id']}").status_code == 404


def test_bad_uploads_are_refused_with_reasons_and_not_kept(fresh):
    svc, c = fresh
    before = sources(c)
    r = c.post("/ingest", files=[("files", ("broken.pdf", io.BytesIO(b"%PDF-1.7 not really"), "application/pdf"))])
    assert r.status_code == 422 and "broken.pdf" in r.json()["error"]
    r = c.post("/ingest", files=[("files", ("tool.exe", io.BytesIO(b"MZ\x90\x00"), "application/octet-stream"))])
    assert r.status_code == 422 and "unsupported file type '.exe'" in r.json()["error"]
    mixed = c.post("/ingest", files=[("files", ("broken.pdf", io.BytesIO(b"%PDF-1.7 no"), "application/pdf")),
                                     ("files", ("parking.md", io.BytesIO(NEW_DOC), "text/markdown"))])
    assert mixed.status_code == 200 and mixed.json()["added"] == ["parking.md"]
    assert [s["file"] for s in mixed.json()["skipped"]] == ["broken.pdf"] and mixed.json()["skipped"][0]["reason"]
    assert sources(c) == before | {"parking.md"}
    assert sorted(p.name for p in (svc.settings.upload_dir / "public").iterdir()) == ["parking.md"]


@pytest.mark.parametrize("name", ["../../escape.md", "..\\..\\escape.md", "/etc/escape.md", "sub/dir/escape.md"])
def test_upload_names_cannot_escape_the_upload_folder(fresh, name, tmp_path):
    svc, c = fresh
    r = c.post("/ingest", files=[("files", (name, io.BytesIO(NEW_DOC), "text/markdown"))])
    assert r.status_code == 200 and r.json()["added"] == ["escape.md"]
    public = svc.settings.upload_dir / "public"  # files without access groups
    assert (public / "escape.md").is_file()
    assert [p.name for p in public.iterdir()] == ["escape.md"]  # no sub/dir/
    assert [p for p in tmp_path.rglob("escape.md") if p.parent != public] == []
    assert not (tmp_path.parent / "escape.md").exists() and not Path("/etc/escape.md").exists()


@pytest.mark.parametrize("name", ["..", ".hidden.md", "x.md.meta.json"])
def test_unusable_upload_names(fresh, name):
    _, c = fresh
    r = c.post("/ingest", files=[("files", (name, io.BytesIO(NEW_DOC), "text/markdown"))])
    assert r.status_code == 400 and r.json()["error_type"] == "bad_request"


def test_upload_with_groups_is_only_visible_to_them(fresh):
    _, c = fresh
    r = c.post("/ingest", data={"groups": "finance"},
               files=[("files", ("budget.md", io.BytesIO(b"# Budget\n\nThe 2027 travel budget is 40k.\n"),
                                 "text/markdown"))])
    assert r.status_code == 200
    q = {"query": "travel budget 2027", "top_k": 20, "top_n": 20, "threshold": 0.0}
    assert any("40k" in x["text"] for x in c.post("/search", json={**q, "groups": ["finance"]}).json()["results"])
    assert not any("40k" in x["text"] for x in c.post("/search", json={**q, "groups": ["hr"]}).json()["results"])


KEYS = {"hr-key": ["hr"], "it-key": ["it-admins"], "admin-key": ["*"]}


@pytest.fixture
def keyed(tmp_path, embedder, tiny_reranker):
    svc = make_service(tmp_path, embedder, tiny_reranker, api_keys=KEYS)
    with TestClient(svc.app()) as c:
        yield c


def texts(resp) -> str:
    return " ".join(x["text"] for x in resp.json()["results"])


def test_api_keys_map_to_groups(keyed):
    c = keyed
    q = {"query": "band B3 salary VPN gateway firewall reset", "top_k": 50, "top_n": 50, "threshold": 0.0}
    assert c.post("/search", json=q).status_code == 401
    assert c.post("/search", json=q, headers={"X-API-Key": "wrong"}).status_code == 401
    assert c.get("/health").status_code == 200  # probes need no key
    hr = c.post("/search", json=q, headers={"X-API-Key": "hr-key"})
    it = c.post("/search", json=q, headers={"Authorization": "Bearer it-key"})
    admin = c.post("/search", json=q, headers={"X-API-Key": "admin-key"})
    assert "Band B3" in texts(hr) and "firewall" not in texts(hr)
    assert "firewall" in texts(it) and "Band B3" not in texts(it)
    assert "firewall" in texts(admin) and "Band B3" in texts(admin)
    assert "VPN token" in texts(hr) and "VPN token" in texts(it)  # public documents are everyone's
    widen = c.post("/search", json={**q, "groups": ["it-admins"]}, headers={"X-API-Key": "hr-key"})
    assert widen.status_code == 403 and "it-admins" in widen.json()["error"]
    hr_docs = {d["title"] for d in c.get("/documents", headers={"X-API-Key": "hr-key"}).json()}
    assert "Salary bands" in hr_docs and "Firewall runbook" not in hr_docs


def test_only_admin_keys_change_the_index(keyed):
    c = keyed
    up = [("files", ("parking.md", io.BytesIO(NEW_DOC), "text/markdown"))]
    r = c.post("/ingest", files=up, headers={"X-API-Key": "hr-key"})
    assert r.status_code == 403 and "'*'" in r.json()["error"]
    doc = c.get("/documents", headers={"X-API-Key": "admin-key"}).json()[0]["doc_id"]
    assert c.delete(f"/documents/{doc}", headers={"X-API-Key": "hr-key"}).status_code == 403
    up = [("files", ("parking.md", io.BytesIO(NEW_DOC), "text/markdown"))]
    assert c.post("/ingest", files=up, headers={"X-API-Key": "admin-key"}).status_code == 200


@pytest.mark.parametrize("name, expected", [("../../x.md", "x.md"), ("C:\\docs\\y.pdf", "y.pdf"),
                                            ("a/b/政策.docx", "政策.docx"), ("bad\x07name.md", None),
                                            ("line\nbreak.md", None), ("", None), ("x" * 300 + ".md", None)])
def test_safe_name(name, expected):
    from app.services.library import safe_name

    if expected is None:
        with pytest.raises(ValueError, match="name|sidecar"):
            safe_name(name)
    else:
        assert safe_name(name) == expected


def test_searches_keep_answering_while_an_upload_lands(tmp_path, embedder, tiny_reranker):
    """The served search is swapped whole when the new index version is ready: searches running meanwhile answer
    from the old version or the new one, never fail, and never see a version go back."""
    import threading

    import httpx

    from tests.app.api.conftest import live_server

    served = make_service(tmp_path, embedder, tiny_reranker, cache_size=0)
    docs = [(f"note-{i}.md", f"# Note {i}\n\nThe canteen on floor {i} opens at noon.\n".encode()) for i in range(30)]
    answers: list[tuple[int, str, float, float]] = []  # status, version, when asked, when answered
    done = threading.Event()
    with live_server(served.app()) as url:
        def ask() -> None:
            with httpx.Client(base_url=url, timeout=60) as c:
                while not done.is_set():
                    asked = time.monotonic()
                    r = c.post("/search", json={"query": "when does the canteen open", "threshold": 0.0})
                    answers.append((r.status_code, r.json().get("index_version", ""), asked, time.monotonic()))

        readers = [threading.Thread(target=ask) for _ in range(2)]
        for t in readers:
            t.start()
        r = httpx.post(url + "/ingest", files=[("files", d) for d in docs], timeout=120)
        after = httpx.post(url + "/search", json={"query": "canteen floor 7", "threshold": 0.0}, timeout=60).json()
        listed = {d["source"].rsplit("/", 1)[-1] for d in httpx.get(url + "/documents", timeout=60).json()}
        done.set()
        for t in readers:
            t.join()
    assert r.status_code == 200 and len(r.json()["added"]) == len(docs)
    assert answers and {a[0] for a in answers} == {200}
    new = r.json()["index_version"]
    # once new, never old again: no search asked after a search was answered from the new version is answered from
    # an older one (answers arrive from two threads, so a search asked before the switch may be answered after it)
    first_new = min((answered for _, v, _, answered in answers if v == new), default=float("inf"))
    assert all(v == new for _, v, asked, _ in answers if asked > first_new)
    assert after["index_version"] == r.json()["index_version"] and {n for n, _ in docs} <= listed
