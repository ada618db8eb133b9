"""The `scale` profile of docker-compose.yml (not run in CI: no Docker here): it parses, it leaves the default stack
alone, and what it sets up is the design of docs/SCALING.md, checked through the real code: the environment its kb
services get makes `app.components` open the shared corpus in its own Milvus and its own PostgreSQL; two API
replicas with no index volume sit behind the load balancer its config file names; Milvus and PostgreSQL are not
published on the host and take passwords that have no default."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from sqlalchemy.engine import make_url

from app import components
from app.settings import Settings
from rerank.engines.remote import is_remote, rerank_url
from retrieval.analyzer import Analyzer
from retrieval.shared import SharedOpener

ROOT = Path(__file__).resolve().parents[2]
SCALE = {"etcd", "minio", "milvus", "postgres", "reranker", "api-1", "api-2", "lb", "app", "worker"}
SECRETS = {"MILVUS_ROOT_PASSWORD": "m1lvus-secret", "POSTGRES_PASSWORD": "pg-secret"}
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def compose_text() -> str:
    return (ROOT / "docker-compose.yml").read_text()


def services() -> dict[str, dict]:
    return yaml.safe_load(compose_text())["services"]


def interpolate(value: str, shell: dict[str, str]) -> str:
    """Compose's interpolation of `${VAR}`, `${VAR:-default}` and `$$` (as much of it as this file uses)."""
    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return shell.get(m.group(1)) or (m.group(2) or "")
    return _VAR.sub(one, value)


def environment(service: dict, shell: dict[str, str]) -> dict[str, str]:
    """The variables a container of `service` gets, with `shell` as the caller's environment (a name given without
    a value is passed from the shell when set there)."""
    env = service.get("environment", {})
    pairs = env.items() if isinstance(env, dict) else (
        (e.split("=", 1)[0].strip(), e.split("=", 1)[1] if "=" in e else None) for e in env)
    out = {}
    for name, value in pairs:
        if value is None:
            if name in shell:
                out[name] = shell[name]
        else:
            out[name] = interpolate(str(value), shell)
    return out


def kb_services(svcs: dict[str, dict], profile: str = "scale") -> dict[str, dict]:
    return {n: s for n, s in svcs.items() if s.get("profiles") == [profile] and s.get("command", [""])[0] == "kb"}


def settings_of(service: dict, monkeypatch, tmp_path, shell: dict[str, str] = SECRETS) -> Settings:
    """The settings `kb` builds inside a container of `service` (its KB_* variables and nothing else)."""
    import os

    for name in [n for n in os.environ if n.upper().startswith("KB_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KB_CONFIG", str(tmp_path / "none.toml"))
    for name, value in environment(service, shell).items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


def test_scale_profile_services_and_the_default_stack():
    svcs = services()
    assert {n for n, s in svcs.items() if s.get("profiles") == ["scale"]} == SCALE
    assert not svcs["api"].get("profiles") and not svcs["ui"].get("profiles")  # `up` without the profile
    assert all(d.get("required") is False for d in svcs["api"]["depends_on"].values())  # ...still starts
    kb = kb_services(svcs)
    assert {n: s["command"][1] for n, s in kb.items()} == {"api-1": "serve", "api-2": "serve", "app": "ui",
                                                           "worker": "watch"}
    for name, service in kb.items():  # they start once their shared state answers
        assert service["depends_on"]["milvus"]["condition"] == "service_healthy", name
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy", name
    assert svcs["worker"]["command"][2] == "/docs" and any(v.endswith(":/docs:ro") for v in svcs["worker"]["volumes"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"pip install \.'\[[^\]]*milvus[^\]]*\]'", dockerfile)  # the image talks to Milvus...
    assert re.search(r"pip install \.'\[[^\]]*postgres[^\]]*\]'", dockerfile)  # ...and to PostgreSQL


def test_the_kb_services_open_the_shared_corpus_in_the_compose_milvus_and_postgres(monkeypatch, tmp_path):
    svcs = services()
    postgres = [n for n, s in svcs.items() if str(s.get("image", "")).split(":")[0] == "postgres"]
    assert postgres == ["postgres"]
    for name, service in kb_services(svcs).items():
        s = settings_of(service, monkeypatch, tmp_path)
        opener = components.index_opener(s, analyzer=Analyzer())  # the analyzer given: no vocabulary read
        assert isinstance(opener, SharedOpener), name
        assert opener.milvus.uri == "http://milvus:19530", name
        milvus = urlparse(opener.milvus.uri)
        assert milvus.hostname in svcs and svcs[milvus.hostname]["image"].startswith("milvusdb/milvus:")
        assert opener.milvus.token == f"root:{SECRETS['MILVUS_ROOT_PASSWORD']}", name
        db = make_url(components.database_url(s))
        assert (db.get_backend_name(), db.get_driver_name()) == ("postgresql", "psycopg"), name
        assert db.host == "postgres" and (db.port or 5432) == 5432, name
        env = svcs["postgres"]["environment"]
        assert (db.username, db.database) == (env["POSTGRES_USER"], env["POSTGRES_DB"]), name
        assert db.password == SECRETS["POSTGRES_PASSWORD"], name
        assert opener.database_url == components.database_url(s)  # the catalog lives there too
        assert s.events_url == components.database_url(s)  # and the events store


def test_the_header_documents_the_reranker_uri_its_own_service_serves():
    text = compose_text()
    svcs = services()
    uri = re.search(r"\bKB_RERANKER=(\S+)", text).group(1)
    assert is_remote(uri)
    tei = urlparse(rerank_url(uri))
    assert tei.hostname == "reranker" and tei.port == 80  # TEI listens on 80 inside its container
    assert svcs["reranker"]["command"][:2] == ["--model-id", "BAAI/bge-reranker-v2-m3"]
    assert svcs["reranker"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_the_load_balancer_round_robins_over_the_api_replicas_and_checks_health():
    svcs = services()
    lb = svcs["lb"]
    assert lb["image"].split(":")[0] in {"nginx", "haproxy", "traefik"}  # a standard image
    assert lb.get("ports") and set(lb["depends_on"]) == {"api-1", "api-2"}
    conf_mount = next(v for v in lb["volumes"] if v.split(":")[1].startswith("/etc/nginx/"))
    conf = (ROOT / conf_mount.split(":")[0]).read_text()
    conf = re.sub(r"#.*", "", conf)
    upstream = re.search(r"upstream\s+(\w+)\s*\{([^}]*)\}", conf)
    assert upstream and re.search(rf"proxy_pass\s+http://{upstream.group(1)}\s*;", conf)
    body = upstream.group(2)
    assert not re.search(r"\b(ip_hash|hash|least_conn|random)\b", body)  # round-robin: nginx's default
    servers = dict(re.findall(r"server\s+([\w.-]+):(\d+)", body))
    replicas = {n: s for n, s in kb_services(svcs).items() if s["command"][1] == "serve"}
    assert set(servers) == set(replicas) == {"api-1", "api-2"}
    for name, service in replicas.items():
        cmd = service["command"]
        assert servers[name] == cmd[cmd.index("--port") + 1]
        assert f"{servers[name]}/health" in " ".join(service["healthcheck"]["test"])  # the probe of docs/API.md
        assert not service.get("ports"), f"{name} is reached through the load balancer only"
    assert "/health" in " ".join(lb["healthcheck"]["test"])
    # a 503 of one replica (Milvus away) reaches the client with its reason, not nginx's "no live upstreams"
    assert "http_503" not in conf


def test_replicas_hold_models_only_no_shared_index_volume(monkeypatch, tmp_path):
    svcs = services()
    default_volumes = {v.split(":")[0] for v in svcs["api"]["volumes"]}
    assert "kb-data" in default_volumes  # the one-machine stack keeps its index volume
    for name, service in kb_services(svcs).items():
        index_dir = settings_of(service, monkeypatch, tmp_path).index_dir
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            assert source != "kb-data", f"{name} mounts the one-machine index volume"
            assert not (Path(target) == index_dir or Path(target) in index_dir.parents), \
                f"{name} mounts {source} over its index folder {index_dir}"
            if name.startswith("api-"):  # what replicas mount: the models (weights cache, read-only folders)
                assert source == "hf-cache" or volume.endswith(":ro"), f"{name} mounts {volume}"


def test_milvus_tag_is_2_5_11_or_later():
    image = services()["milvus"]["image"]
    m = re.fullmatch(r"milvusdb/milvus:v(\d+)\.(\d+)\.(\d+)", image)
    assert m, f"pin a release tag, not {image!r}"
    assert tuple(int(x) for x in m.groups()) >= (2, 5, 11)  # the BM25 function as kb uses it


@pytest.mark.parametrize("name, port", [("milvus", 19530), ("postgres", 5432), ("etcd", 2379), ("minio", 9000)])
def test_shared_state_is_not_published_on_the_host(name, port):
    svcs = services()
    assert "ports" not in svcs[name]
    assert not any(str(port) in str(p) for s in svcs.values() for p in s.get("ports", ()))


def test_milvus_is_reachable_only_inside_and_needs_a_password():
    """The chunks' access groups live in Milvus's rows and recall trusts its filter first: Milvus is not published
    on the host, runs with authentication on, and gets no default root password (it refuses to start without
    MILVUS_ROOT_PASSWORD); every kb service gets KB_MILVUS_TOKEN."""
    text = compose_text()
    svcs = services()
    milvus = svcs["milvus"]
    assert "ports" not in milvus and not any("19530" in str(p) for s in svcs.values() for p in s.get("ports", ()))
    assert milvus["environment"]["COMMON_SECURITY_AUTHORIZATIONENABLED"] == "true"
    assert milvus["environment"]["COMMON_SECURITY_DEFAULTROOTPASSWORD"] == "${MILVUS_ROOT_PASSWORD:-}"
    assert "test -n" in milvus["command"][-1] and "$$COMMON_SECURITY_DEFAULTROOTPASSWORD" in milvus["command"][-1]
    for name in ("api", "ui", *kb_services(svcs)):
        assert "KB_MILVUS_TOKEN" in svcs[name]["environment"], name
    assert "KB_MILVUS_TOKEN=root:$MILVUS_ROOT_PASSWORD" in text  # the header says how to set both


def test_postgres_needs_a_password_with_no_default(monkeypatch, tmp_path):
    """The shared database holds the published revision, the document records with their access groups and the
    serving reranker: no password default anywhere, and PostgreSQL refuses to start without one."""
    text = compose_text()
    svcs = services()
    postgres = svcs["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD:-}"
    assert "POSTGRES_HOST_AUTH_METHOD" not in str(postgres)  # no `trust`
    start = " ".join(postgres["entrypoint"])
    assert "test -n" in start and "$$POSTGRES_PASSWORD" in start and "exec docker-entrypoint.sh postgres" in start
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.split(":")[1] == "/var/lib/postgresql/data" for v in postgres["volumes"])  # survives restarts
    for var in ("MILVUS_ROOT_PASSWORD", "POSTGRES_PASSWORD"):  # every use of the secrets: no default
        uses = re.findall(rf"\$\{{{var}(?::?-([^}}]*))?\}}", text)
        assert uses and all(d == "" for d in uses), f"{var} has a default"
    # unset, the kb services get empty passwords (and the servers would not have started): nothing to guess
    for name, service in kb_services(svcs).items():
        s = settings_of(service, monkeypatch, tmp_path, shell={})
        assert not make_url(components.database_url(s)).password, name
        assert s.milvus_token == "root:", name
