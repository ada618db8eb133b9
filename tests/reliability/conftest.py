"""Reliability fixtures: generated corpora, `kb` child processes, and the index consistency check.

Nothing here is committed as data: every corpus, hostile file and index is generated under `tmp_path`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from retrieval.index import KnowledgeIndex

WORDS = ("employee leave policy vpn token reset laptop salary band probation notice days manager approval badge "
         "office travel expense claim contract holiday remote work password security incident training budget "
         "parking canteen helpdesk printer wifi overtime payroll pension insurance onboarding offboarding").split()


def policy_text(rng: random.Random, title: str, paragraphs: int = 4, words: int = 60) -> str:
    """A Markdown policy page: a heading and a few paragraphs of sentences drawn from `WORDS`."""
    body = []
    for _ in range(paragraphs):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(words // 6)).capitalize() + "." for _ in range(6)]
        body.append(" ".join(sentences))
    return f"# {title}\n\n" + "\n\n".join(body) + "\n"


def write_corpus(folder: Path, names: range | list[int], seed: int, tag: str = "", paragraphs: int = 1,
                 words: int = 48) -> list[Path]:
    """`doc<NNN>.md` for each number in `names`; the same (seed, tag, number) always gives the same text."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in names:
        rng = random.Random(f"{seed}-{tag}-{i}")
        path = folder / f"doc{i:03d}.md"
        path.write_text(policy_text(rng, f"Policy {i} {tag}".strip(), paragraphs, words), encoding="utf-8")
        paths.append(path)
    return paths


def index_state(root: Path) -> dict:
    """Open the index at `root` as any reader would, check that it is one whole version, and return what it holds.

    Whole means: the manifest's counts are the real ones, every chunk's document is present and every document
    has exactly the chunks it claims, and the dense and lexical legs index exactly the same chunks.
    """
    manifest = KnowledgeIndex.read_manifest(root)
    assert manifest is not None, f"{root} has no live version"
    index = KnowledgeIndex.open(root, manifest["embedder"], {}, create=False)
    docs, chunks = index.documents, index.chunks
    assert manifest["counts"] == {"documents": len(docs), "chunks": len(chunks)}
    per_doc: dict[str, int] = {}
    for c in chunks.values():
        assert c.doc_id in docs, f"chunk {c.chunk_id} belongs to no document"
        per_doc[c.doc_id] = per_doc.get(c.doc_id, 0) + 1
    assert {d: r.n_chunks for d, r in docs.items() if r.n_chunks} == per_doc
    assert index.dense.count() == len(chunks) == len(index.lexical.chunk_ids)
    assert set(index.dense.chunk_ids) == set(chunks) == set(index.lexical.chunk_ids)
    return {"documents": {d: r.content_hash for d, r in docs.items()}, "chunks": set(chunks),
            "version": index.version}


def last_json_line(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.fixture
def kb_env(tmp_path) -> dict[str, str]:
    """Environment for a `kb` child: MiniLM, no reranker, no config file, no network."""
    return {"KB_CONFIG": str(tmp_path / "no-kb.toml"), "KB_EMBEDDER": "packaged:all-MiniLM-L6-v2",
            "KB_RERANKER": "none", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "KB_INDEX_DIR": str(tmp_path / "index")}


@pytest.fixture(scope="session")
def tiny_reranker(tmp_path_factory) -> Path:
    """A tiny BERT cross-encoder folder (random weights, real architecture), loaded like a user's model."""
    from tests.tiny_models import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("models") / "tiny_reranker", arch="bert", seed=3)
