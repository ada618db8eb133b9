"""Through real HTTP: metadata filters on /search (and the 422 that lists the known keys), GET /filters within the
caller's groups, and synonyms and a user dictionary that a running API picks up when they are saved in the shared
database (as the Vocabulary page and `kb vocabulary set` save them)."""

from __future__ import annotations

import time

import httpx
import pytest

from app.components import vocabulary_store
from tests.app.api.conftest import live_server, make_service

KEYS = {"hr-key": ["hr"], "staff-key": [], "admin-key": ["*"]}
EXTRA = {
    "holiday.md": "---\ndepartment: hr\nupdated: 2024-05-01\n---\n# Annual leave rules\n\n"
                  "Annual leave must be booked two weeks ahead in the HR portal.\n",
    "m-and-a.md": "---\nacl: [hr]\ndepartment: corp-dev\nproject: falcon\n---\n# Falcon\n\nProject falcon timeline.\n",
    "remote.md": "---\ndepartment: it\n---\n# 远程办公\n\n远程办公需要使用公司电脑并连接VPN。\n",
}


@pytest.fixture(scope="module")
def api(tmp_path_factory, embedder, tiny_reranker):
    root = tmp_path_factory.mktemp("vocab-api")
    (root / "kb").mkdir()
    for name, text in EXTRA.items():
        (root / "kb" / name).write_text(text, encoding="utf-8")
    served = make_service(root, embedder, tiny_reranker, api_keys=KEYS, synonyms=root / "synonyms.txt",
                          user_dict=root / "userdict.txt", vocabulary_reload_s=0.2)
    with live_server(served.app()) as url:
        yield url, root, served.settings


def search(url, key="admin-key", **body):
    body = {"threshold": 0.0, "top_n": 20, "mode": "lexical", **body}
    return httpx.post(url + "/search", json=body, headers={"X-API-Key": key}, timeout=30)


def sources(response):
    return {r["source"].rsplit("/", 1)[-1] for r in response.json()["results"]}


def wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the running API did not pick up the change"
        time.sleep(0.1)


def test_filters_restrict_results_and_bad_ones_are_422(api):
    url, _, _ = api
    everything = sources(search(url, query="leave"))
    assert {"holiday.md", "leave.md"} <= everything
    hr = search(url, query="leave", filters={"department": "hr"})
    assert hr.status_code == 200 and sources(hr) == {"holiday.md"}
    assert hr.json()["params"]["filters"] == {"department": "hr"}
    assert sources(search(url, query="leave", filters={"format": ["md"], "updated": ">=2024-01-01"})) == {
        "holiday.md"} | ({"leave.md"} & everything)  # leave.md states no date: its file's (today) counts
    unknown = search(url, query="leave", filters={"dept": "hr"})
    assert unknown.status_code == 422 and unknown.json()["error_type"] == "validation_error"
    assert "unknown filter key 'dept'" in unknown.json()["error"] and "department" in unknown.json()["error"]
    bad_date = search(url, query="leave", filters={"updated": ">=May 2024"})
    assert bad_date.status_code == 422 and "YYYY-MM-DD" in bad_date.json()["error"]
    assert search(url, query="leave", filters={"format": []}).status_code == 422


def test_filter_keys_and_values_never_reveal_documents_outside_the_callers_groups(api):
    url, _, _ = api

    def choices(key):
        r = httpx.get(url + "/filters", headers={"X-API-Key": key}, timeout=10)
        assert r.status_code == 200
        return r.json()

    staff, hr = choices("staff-key"), choices("hr-key")
    assert "project" not in staff["keys"] and "corp-dev" not in staff["values"].get("department", [])
    assert "project" in hr["keys"] and "corp-dev" in hr["values"]["department"]
    refused = search(url, key="staff-key", query="falcon", filters={"project": "falcon"})
    assert refused.status_code == 422 and "falcon" not in refused.json()["error"]
    assert httpx.get(url + "/filters", timeout=10).status_code == 401


@pytest.mark.slow
def test_synonyms_and_user_dictionary_reload_while_serving(api):
    url, _, settings = api
    store = vocabulary_store(settings)
    before = search(url, query="holiday")
    assert "holiday.md" not in sources(before) and before.json()["also_searched"] == []
    assert "remote.md" not in sources(search(url, query="WFH"))

    store.save("synonyms", "holiday, annual leave\nthis line has one term\nWFH, 远程办公\n", "admin")
    wait_for(lambda: search(url, query="holiday").json()["also_searched"] == ["annual leave"])
    assert {"holiday.md", "leave.md"} <= sources(search(url, query="holiday"))  # found through the synonym
    wfh = search(url, query="WFH")
    assert wfh.json()["also_searched"] == ["远程办公"] and sources(wfh) == {"remote.md"}  # English → Chinese

    def info(key="admin-key"):
        return httpx.get(url + "/info", headers={"X-API-Key": key}, timeout=10).json()

    def vocabulary(key="admin-key"):
        return info(key)["vocabulary"]

    assert vocabulary()["synonyms"]["sets"] == 2
    assert any(p.startswith("synonyms:2:") and "one term" in p for p in vocabulary()["problems"])  # skipped, said
    assert vocabulary()["synonyms"]["version"] == 1 and vocabulary()["user_dict"]["version"] is None
    assert "vocabulary" not in info("staff-key")  # contents are for admins

    version = info()["index"]["version"]
    store.save("user_dict", "飞书审批\nbad line with spaces\n", "admin")
    wait_for(lambda: vocabulary()["user_dict"]["words"] == 1)
    assert vocabulary()["user_dict"]["fingerprint"] != ""
    assert any(p.startswith("user_dict:2:") for p in vocabulary()["problems"])
    assert info()["index"]["version"] == version  # BM25 redone in memory, same version
    assert sources(search(url, query="VPN", mode="lexical")) >= {"vpn.md"}  # still serving
