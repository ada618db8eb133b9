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
    assert milvus.hostname in services and milvus.port == 19530
    assert is_remote(settings.reranker)
    tei = urlparse(rerank_url(settings.reranker))
    assert tei.hostname == "reranker" and tei.port == 80  # TEI listens on 80 inside its container
    assert services["reranker"]["command"][:2] == ["--model-id", "BAAI/bge-reranker-v2-m3"]
    assert services["reranker"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "[milvus]" in (ROOT / "Dockerfile").read_text()  # the image can talk to Milvus


def test_milvus_is_reachable_only_inside_and_needs_a_password():
    """The chunks' access groups live in Milvus's rows and recall trusts its filter first: Milvus is not published
    on the host, runs with authentication on, and gets no default root password (it refuses to start without
    MILVUS_ROOT_PASSWORD); the API and the app get KB_MILVUS_TOKEN."""
    text = (ROOT / "docker-compose.yml").read_text()
    services = yaml.safe_load(text)["services"]
    milvus = services["milvus"]
    assert "ports" not in milvus and not any("19530" in str(p) for s in services.values() for p in s.get("ports", ()))
    assert milvus["environment"]["COMMON_SECURITY_AUTHORIZATIONENABLED"] == "true"
    assert milvus["environment"]["COMMON_SECURITY_DEFAULTROOTPASSWORD"] == "${MILVUS_ROOT_PASSWORD:-}"
    assert "test -n" in milvus["command"][-1] and "$$COMMON_SECURITY_DEFAULTROOTPASSWORD" in milvus["command"][-1]
    for name in ("api", "ui"):
        assert "KB_MILVUS_TOKEN" in services[name]["environment"]
    assert "KB_MILVUS_TOKEN=root:$MILVUS_ROOT_PASSWORD" in text  # the header says how to set both
