"""Metadata filters on real ingested files (front-matter, sidecars, formats, folders, dates): applied inside recall
like the access groups, so K is filled with matching chunks; bad filters are clear errors that never reveal the
fields of documents the caller may not read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.services.library import sync
from retrieval.filters import FilterError, from_mapping, known_keys, parse, value_choices
from retrieval.index import KnowledgeIndex
from retrieval.recall import recall

FILES = {
    "hr/leave.md": "---\ndepartment: hr\nupdated: 2024-03-01\ntags: [leave, benefits]\n---\n# Annual leave\n\n"
                   "Employees get annual leave of fifteen days. Leave requests go through the HR portal.",
    "hr/probation.md": "---\ndepartment: hr\nupdated: 2022-06-30\n---\n# Probation\n\n"
                       "During probation an employee may resign with three days notice. Leave during probation is "
                       "unpaid.",
    "it/vpn.html": "<html><head><title>VPN</title></head><body><p>To reset a VPN token open the self-service "
                   "portal. Leave the old token plugged in.</p></body></html>",
    "it/laptop.txt": "Laptop policy. New employees receive a laptop. Return it when you leave the company.",
    "legal/merger.md": "---\ndepartment: legal\nproject: falcon\nacl: [legal]\n---\n# Merger\n\n"
                       "Leave no trace of project falcon in email.",
}
SIDECARS = {"it/vpn.html": {"department": "it", "owner": "service desk", "updated": "2025-01-15"}}


@pytest.fixture(scope="module")
def index(embedder, tmp_path_factory):
    docs = tmp_path_factory.mktemp("docs")
    for rel, text in FILES.items():
        path = docs / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for rel, meta in SIDECARS.items():
        (docs / (rel + ".meta.json")).write_text(json.dumps(meta), encoding="utf-8")
    old = docs / "it/laptop.txt"  # no date of its own: its file's date counts
    os.utime(old, (1_500_000_000, 1_500_000_000))  # 2017-07-14
    root = tmp_path_factory.mktemp("index")
    report = sync([docs], root, embedder)
    assert not report.skipped, report.skipped
    return KnowledgeIndex.open(root, embedder.info(), {})


def names(res, index):
    """The file names of the documents the hits come from."""
    return {Path(index.documents[h.chunk.doc_id].source).name for h in res.hits}


def test_fields_come_from_front_matter_and_sidecars(index):
    by_name = {Path(r.source).name: r for r in index.documents.values()}
    assert by_name["leave.md"].fields == {"department": "hr", "tags": ["leave", "benefits"]}
    assert by_name["leave.md"].updated == "2024-03-01"
    assert by_name["vpn.html"].fields == {"department": "it", "owner": "service desk"}
    assert by_name["vpn.html"].updated == "2025-01-15"
    assert by_name["laptop.txt"].fields == {} and by_name["laptop.txt"].updated is None
    assert "acl" not in by_name["merger.md"].fields and by_name["merger.md"].acl == ["legal"]


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_filters_apply_inside_recall_in_every_mode(index, embedder, mode):
    unfiltered = names(recall(index, embedder, "leave", 50, mode), index)
    assert {"vpn.html", "laptop.txt"} <= unfiltered
    hr = recall(index, embedder, "leave", 50, mode, filters=parse(["department=hr"]))
    assert names(hr, index) == {"leave.md", "probation.md"}
    either = recall(index, embedder, "leave", 50, mode, filters=parse(["department=hr", "department=it"]))
    assert names(either, index) == {"leave.md", "probation.md", "vpn.html"}  # a key repeated: any of its values
    assert names(recall(index, embedder, "leave", 50, mode, filters=parse(["format=txt"])), index) == {"laptop.txt"}


def test_k_is_filled_with_matching_chunks(index, embedder):
    # Unfiltered, the top 2 for "VPN token" are not both HR; filtered, both places go to HR documents.
    assert names(recall(index, embedder, "VPN token", 2, "hybrid"), index) != {"leave.md", "probation.md"}
    res = recall(index, embedder, "VPN token", 2, "hybrid", filters=parse(["department=hr"]))
    assert len(res.hits) == 2 and names(res, index) == {"leave.md", "probation.md"}


def test_path_title_format_and_dates(index, embedder):
    def found(*items):
        return names(recall(index, embedder, "leave", 50, "lexical", filters=parse(items)), index)

    assert found("path=hr") == {"leave.md", "probation.md"}
    assert found("path=it/vpn.html") == {"vpn.html"}
    assert found("path=r/leave.md") == set()  # whole folder names, not parts of them
    assert found("format=html") == {"vpn.html"}
    assert found("title=ANNUAL") == {"leave.md"}
    assert found("updated>=2024-01-01") == {"leave.md", "vpn.html", "merger.md"}  # merger.md: its file's date
    assert found("updated<2023-01-01") == {"probation.md", "laptop.txt"}  # the file's date when none is stated
    assert found("updated=2024-03-01") == {"leave.md"}
    assert found("department!=hr") == {"vpn.html", "laptop.txt", "merger.md"}
    assert found("tags=benefits") == {"leave.md"}
    assert found("owner=Service Desk") == {"vpn.html"}  # any case


def test_groups_still_apply_under_a_filter(index, embedder):
    outsider = recall(index, embedder, "leave no trace", 50, "hybrid", groups=[],
                      filters=from_mapping({"department": ["legal", "hr"]}))
    assert names(outsider, index) == {"leave.md", "probation.md"}
    assert names(recall(index, embedder, "leave no trace", 50, "hybrid", groups=["legal"],
                        filters=from_mapping({"department": "legal"})), index) == {"merger.md"}


def test_no_match_is_an_empty_result_with_a_note(index, embedder):
    res = recall(index, embedder, "leave", 10, "hybrid", filters=parse(["department=finance"]))
    assert res.hits == [] and "no document" in res.note


def test_an_unknown_key_lists_the_known_ones_without_revealing_others(index, embedder):
    with pytest.raises(FilterError, match="unknown filter key 'dept'.*department.*format.*path.*title.*updated"):
        recall(index, embedder, "leave", 10, filters=parse(["dept=hr"]))
    # `project` is a field of a legal-only document: to anyone else it does not exist
    with pytest.raises(FilterError) as refused:
        recall(index, embedder, "leave", 10, groups=["hr"], filters=parse(["project=falcon"]))
    assert "project" in str(refused.value) and "falcon" not in str(refused.value).split("knows:")[1]
    assert "project" not in known_keys(index.visible_documents(["hr"]).values())
    assert "project" in known_keys(index.visible_documents(["legal"]).values())
    assert recall(index, embedder, "falcon", 10, groups=["legal"], filters=parse(["project=falcon"])).hits


@pytest.mark.parametrize("bad, message", [
    ("department", "not KEY=VALUE"),
    ("department=", "not KEY=VALUE"),
    ("department>=hr", "only `updated` can be compared"),
    ("updated>=last week", "YYYY-MM-DD"),
    ("updated>=2024-13-01", "YYYY-MM-DD"),
])
def test_bad_filters_say_how_to_write_them(bad, message):
    with pytest.raises(FilterError, match=message):
        parse([bad])


def test_api_shape_and_its_errors():
    f = from_mapping({"format": ["pdf", "docx"], "department": "hr", "updated": ">=2024-01-01"})
    assert f.to_dict() == {"format": ["pdf", "docx"], "department": "hr", "updated": ">=2024-01-01"}
    with pytest.raises(FilterError, match="filters.format"):
        from_mapping({"format": []})
    with pytest.raises(FilterError, match="filters.owner"):
        from_mapping({"owner": 3})


def test_value_choices_are_those_present_in_visible_documents(index):
    everyone = value_choices(index.visible_documents([]).values())
    assert everyone["department"] == ["hr", "it"] and "legal" not in everyone["department"]
    assert everyone["format"] == ["html", "md", "txt"]
    assert "legal" in value_choices(index.documents.values())["department"]
