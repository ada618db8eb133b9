"""The `scale` profile of docker-compose.yml (not run in CI): it parses, it leaves the default stack alone, and the
URIs it documents point at its own services and are names the settings and the reranker factory accept."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import yaml

from app.settings import Settings
from rerank.engines.remote import is_remote, rerank_url

ROOT = Path(__file__).resolve().parents[2]
SCALE = {"etcd", "minio", "milvus", "reranker"}


def test_scale_profile_services_and_documented_uris():
    text = (ROOT / "docker-compose.yml").read_text()
    services = yaml.safe_load(text)["services"]
    assert {n for n, s in services.items() if s.get("profiles") == ["scale"]} == SCALE
    assert not services["api"].get("profiles") and not services["ui"].get("profiles")  # `up` without the profile
    assert all(d.get("required") is False for d in services["api"]["depends_on"].values())  # ...still starts

    env: dict[str, str] = {}
    for name, value in re.findall(r"\b(KB_[A-Z_]+)=(\S+)", text):
        env.setdefault(name, value)  # the header's `export` line comes first
    from app.components import store_factory

    settings = Settings(vector_store=env["KB_VECTOR_STORE"], milvus_uri=env["KB_MILVUS_URI"],
                        reranker=env["KB_RERANKER"], _env_file=None)
    assert store_factory(settings).config.uri == "http://milvus:19530"
    milvus = urlparse(settings.milvus_uri)
    assert milvus.hostname in services and f"{milvus.port}:{milvus.port}" in services["milvus"]["ports"]
    assert is_remote(settings.reranker)
    tei = urlparse(rerank_url(settings.reranker))
    assert tei.hostname == "reranker" and tei.port == 80  # TEI listens on 80 inside its container
    assert services["reranker"]["command"][:2] == ["--model-id", "BAAI/bge-reranker-v2-m3"]
    assert services["reranker"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "[milvus]" in (ROOT / "Dockerfile").read_text()  # the image can talk to Milvus
