"""`kb bestbets add | list | remove` on a real index and database, and what `kb search` and `kb analytics` say of best
bets: a pinned passage is printed first for the operator and for `--groups` that may read it, never for others;
bad arguments exit 2 naming the option; every change is in the audit log."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.identity import Caller
from app.services.events import EventLog
from app.services.request import SearchRequest
from tests.conftest import index_docs

DOCS = {
    "vpn.md": "# VPN token\n\nTo reset a forgotten VPN token, open the self-service portal and choose Reset.\n",
    "salary.md": "---\nacl: [hr]\n---\n# Salary bands\n\nBand B3 pays between 60k and 80k a year.\n",
}


@pytest.fixture(scope="module")
def home(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("bestbets-cli")
    index_docs(root, embedder, DOCS)
    return root


@pytest.fixture
def kb(home, tmp_path, monkeypatch):
    """`kb ARGS...` against the module's index and a database and audit log of this test's own."""
    from app.settings import get_settings

    for name, value in {"KB_CONFIG": str(tmp_path / "none.toml"), "KB_INDEX_DIR": str(home / "index"),
                        "KB_EMBEDDER": "packaged:all-MiniLM-L6-v2", "KB_RERANKER": "none",
                        "KB_RECALL_MODE": "lexical", "KB_DATABASE_URL": f"sqlite:///{tmp_path / 'kb.db'}",
                        "KB_AUDIT_LOG": str(tmp_path / "audit.jsonl")}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield lambda *args: CliRunner().invoke(app, list(args))
    get_settings.cache_clear()


def last_json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def salary(home) -> tuple[str, str]:
    """(doc_id, chunk_id) of salary.md (the settings point at the module's index: the `kb` fixture)."""
    from app.components import read_index
    from app.settings import get_settings

    index = read_index(get_settings())
    c = next(c for c in index.chunks.values() if index.documents[c.doc_id].source.endswith("salary.md"))
    return c.doc_id, c.chunk_id


def test_add_list_search_and_remove(kb, home, tmp_path):
    doc_id, chunk_id = salary(home)
    added = last_json(kb("bestbets", "add", "salary", "pay band", "--chunk", chunk_id, "--label", "recommended by HR",
                         "--json"))
    assert added["doc_id"] == doc_id and added["phrases"] == ["salary", "pay band"] and added["match"] == "contains"
    listed = last_json(kb("bestbets", "list", "--json"))
    assert [(b["bet_id"], b["title"], b["in_index"]) for b in listed["best_bets"]] == [
        (added["bet_id"], "Salary bands", True)]
    table = kb("bestbets", "list")
    assert table.exit_code == 0 and added["bet_id"] in table.stdout and "Salary" in table.stdout

    for groups in ((), ("--groups", "hr")):
        res = last_json(kb("search", "what is my salary", "--json", "--threshold", "0", *groups))
        assert [b["chunk_id"] for b in res["best_bets"]] == [chunk_id]
        assert chunk_id not in [r["chunk_id"] for r in res["results"]]
    staff = last_json(kb("search", "what is my salary", "--json", "--threshold", "0", "--groups", "it"))
    assert staff["best_bets"] == [] and "Band B3" not in json.dumps(staff)
    shown = kb("search", "what is my salary", "--threshold", "0")
    assert shown.exit_code == 0 and "★ recommended by HR" in shown.stdout

    removed = kb("bestbets", "remove", added["bet_id"])
    assert removed.exit_code == 0 and f"best bet {added['bet_id']} removed" in removed.stdout
    assert last_json(kb("search", "what is my salary", "--json", "--threshold", "0"))["best_bets"] == []
    actions = [(e["action"], e["bet_id"]) for e in map(json.loads, (tmp_path / "audit.jsonl").read_text().splitlines())]
    assert actions == [("add best bet", added["bet_id"]), ("remove best bet", added["bet_id"])]


@pytest.mark.parametrize("args, said", [
    (("salary", "--doc", "no-such-doc"), "doc_id 'no-such-doc' is not in the index"),
    (("salary",), "give doc_id"),
    (("salary", "--doc", "DOC", "--match", "fuzzy"), "match must be one of exact, contains, synonyms"),
    (("   ", "--doc", "DOC"), "phrases"),
    (("salary", "--doc", "DOC", "--label", "x" * 81), "label must have at most 80"),
])
def test_bad_arguments_exit_2_naming_what_to_fix(kb, home, tmp_path, args, said):
    doc_id, _ = salary(home)
    result = kb("bestbets", "add", *(doc_id if a == "DOC" else a for a in args))
    assert result.exit_code == 2 and said in result.output, result.output
    assert last_json(kb("bestbets", "list", "--json"))["best_bets"] == []
    gone = kb("bestbets", "remove", "bb-nope")
    assert gone.exit_code == 2 and "no best bet 'bb-nope'" in gone.output


@pytest.mark.slow
def test_kb_analytics_counts_each_best_bet_with_its_thumbs(kb, home, tmp_path, embedder):
    from app.components import make_search, open_index
    from app.settings import get_settings

    doc_id, chunk_id = salary(home)
    bet = last_json(kb("bestbets", "add", "salary", "--doc", doc_id, "--label", "HR", "--json"))
    s = get_settings()
    events = EventLog(s.database_url, b"k" * 32).open()
    try:
        service = make_search(s, embedder, open_index(s, embedder), events=events)
        hana = Caller.member_of(["hr"], who="hana@example.com", via="oidc")
        res = service.search(SearchRequest.of("salary", threshold=0.0), hana)
        events.record_feedback(hana, res.query_id, res.pinned[0].chunk.chunk_id, True)
    finally:
        events.close()
    report = last_json(kb("analytics", "--json"))
    assert [(b["bet_id"], b["shown"], b["up"], b["down"]) for b in report["best_bets"]] == [(bet["bet_id"], 1, 1, 0)]
    table = kb("analytics")
    assert table.exit_code == 0 and "best bets" in table.stdout and bet["bet_id"] in table.stdout
