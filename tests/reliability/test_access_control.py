"""Access control, property-style: whatever the query, the caller's key, the recall mode and the vector index
(FAISS flat, HNSW, HNSW with the group filter inside the graph search), no answer of the real API carries a chunk,
a count or a word of a document outside the caller's groups.

Ground truth is the generated corpus itself (which document has which `acl`, and which made-up code words only it
contains), never the index's own bookkeeping. Hypothesis draws the cases (derandomized: the same cases every run)
and shrinks any failure to a minimal query.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.api import create_app
from app.services.library import sync
from app.settings import Settings
from ingest.identity import doc_id_for, source_of
from tests.app.api.conftest import live_server
from tests.conftest import search_service

from .conftest import policy_text

GROUPS = ["hr", "it", "finance", "legal", "exec"]
KEYS = {"key-hr": ["hr"], "key-it": ["it"], "key-fin-legal": ["finance", "legal"], "key-public": ["nobody"],
        "key-admin": ["*"]}
SEED = 9


@dataclass(frozen=True)
class Truth:
    acl: dict[str, list[str]]  # doc_id → groups ([] = public)
    secrets: dict[str, str]  # code word → the doc_id that alone contains it

    def visible(self, groups: list[str] | None) -> set[str]:
        return {d for d, acl in self.acl.items() if groups is None or not acl or set(acl) & set(groups)}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, embedder):
    """48 documents, about a third public, the rest in one or two random groups, each restricted one holding two
    code words found nowhere else; ingested once into an index that every store variant opens."""
    root = tmp_path_factory.mktemp("acl")
    rng = random.Random(SEED)
    acl, secrets = {}, {}
    for i in range(48):
        groups = [] if rng.random() < 0.3 else sorted(rng.sample(GROUPS, rng.choice([1, 1, 2])))
        words = [f"zx{''.join(rng.choices(string.ascii_lowercase, k=6))}q" for _ in range(2)] if groups else []
        front = f"---\nacl: [{', '.join(groups)}]\n---\n" if groups else ""
        tail = f"\n\nReference codes {words[0]} and {words[1]} apply.\n" if words else ""
        path = root / "kb" / f"doc{i:02d}.md"
        path.parent.mkdir(exist_ok=True)
        path.write_text(front + policy_text(rng, f"Policy {i}", 1, 42) + tail, encoding="utf-8")
        doc_id = doc_id_for(source_of(path))
        acl[doc_id] = groups
        secrets.update({w: doc_id for w in words})
    sync([root / "kb"], root / "index", embedder)
    return root, Truth(acl, secrets)


VARIANTS = {"flat": 50_000, "hnsw": 1, "hnsw-filtered": 1}


@pytest.fixture(scope="module", params=list(VARIANTS))
def api(request, corpus, embedder, tiny_reranker):
    """The corpus served by a real uvicorn with API keys; `hnsw-filtered` forces the group filter into the HNSW
    graph search (FAISS IDSelector) instead of the exact search over the allowed subset used below 50k rows."""
    root, _ = corpus
    settings = Settings(index_dir=root / "index", embedder=embedder.name, reranker=str(tiny_reranker),
                        upload_dir=root / "uploads", api_keys=KEYS, ann_threshold=VARIANTS[request.param],
                        max_per_doc=None, merge_adjacent=False, cache_size=64)
    svc = search_service(settings, embedder)
    assert svc.index.dense.kind == ("flat" if request.param == "flat" else "hnsw")
    with pytest.MonkeyPatch.context() as mp:
        if request.param == "hnsw-filtered":
            mp.setattr("retrieval.stores.faiss.EXACT_SUBSET_MAX", 0)
        with live_server(create_app(settings, svc, background=False)) as url:
            yield request.param, url, svc


def _effective(key: str, narrowed: list[str] | None) -> list[str] | None:
    if narrowed is not None:
        return narrowed
    return None if "*" in KEYS[key] else KEYS[key]


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_query_surfaces_another_groups_chunk(api, corpus, embedder, data):
    variant, url, svc = api
    _, truth = corpus
    key = data.draw(st.sampled_from(sorted(KEYS)), label="key")
    held = GROUPS if "*" in KEYS[key] else KEYS[key]
    narrowed = data.draw(st.none() | st.lists(st.sampled_from(held), min_size=1, unique=True), label="groups")
    groups = _effective(key, narrowed)
    visible = truth.visible(groups)
    hidden_words = sorted(w for w, d in truth.secrets.items() if d not in visible)
    common = ["leave", "salary", "vpn", "password", "budget", "policy", "reference", "codes"]
    kind = data.draw(st.sampled_from(["secret-only", "mixed", "common"]), label="kind")
    if kind == "secret-only" and hidden_words:  # words found only in documents this caller may not see
        words = data.draw(st.lists(st.sampled_from(hidden_words), min_size=1, max_size=3), label="words")
    else:
        words = data.draw(st.lists(st.sampled_from(common + sorted(truth.secrets)), min_size=1, max_size=5),
                          label="words")
        kind = "mixed" if kind == "secret-only" else kind
    mode = data.draw(st.sampled_from(["hybrid", "dense", "lexical"]), label="mode")
    body = {"query": " ".join(words), "mode": mode, "top_k": data.draw(st.integers(1, 60), label="top_k"),
            "top_n": 100, "threshold": data.draw(st.sampled_from([0.0, 0.3, 0.5, 0.9]), label="threshold"),
            "include_hidden": True}
    if narrowed is not None:
        body["groups"] = narrowed

    r = httpx.post(url + "/search", json=body, headers={"X-API-Key": key}, timeout=60)
    assert r.status_code == 200, r.text
    answer = r.json()
    returned = answer["results"] + answer["below_threshold"]
    assert {x["doc_id"] for x in returned} <= visible, "a chunk of a document outside the caller's groups"
    text = " ".join(x["text"] + " " + x["title"] for x in returned)
    assert not [w for w in hidden_words if w in text]
    assert answer["hidden"] == len(answer["below_threshold"])
    if kind == "secret-only" and mode == "lexical":  # BM25 finds those words in no visible chunk: nothing, no count
        assert returned == [] and answer["hidden"] == 0
    if mode == "dense" and variant == "flat":
        # Exactly the top K an index holding only the visible documents would recall (cosine over their vectors).
        dense = svc.index.dense
        rows = [i for i, d in enumerate(dense.doc_ids) if d in visible]
        sims = dense.vectors[rows] @ embedder.embed_queries([body["query"]])[0]
        k = min(body["top_k"], len(rows))
        kth = np.sort(sims)[::-1][k - 1] if k else np.inf
        got = {x["chunk_id"] for x in returned}
        assert len(got) == k
        by_id = {dense.chunk_ids[i]: s for i, s in zip(rows, sims)}
        assert all(by_id[c] >= kth - 1e-5 for c in got)


def test_widening_beyond_the_key_is_refused(api):
    _, url, _ = api
    r = httpx.post(url + "/search", json={"query": "salary", "groups": ["hr", "exec"]},
                   headers={"X-API-Key": "key-hr"}, timeout=60)
    assert r.status_code == 403 and r.json()["error_type"] == "forbidden" and "results" not in r.json()


def test_document_listing_shows_exactly_the_callers_documents(api, corpus):
    _, url, _ = api
    _, truth = corpus
    for key, groups in KEYS.items():
        listed = httpx.get(url + "/documents", headers={"X-API-Key": key}, timeout=60).json()
        assert {d["doc_id"] for d in listed} == truth.visible(None if "*" in groups else groups), key
    assert httpx.get(url + "/documents", timeout=60).status_code == 401
