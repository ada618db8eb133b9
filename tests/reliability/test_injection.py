"""Injection: the API answers JSON (never HTML) and returns document text as data; upload names cannot escape the
upload folder whatever bytes they hold; no model is loaded through pickle or with remote code unless allowed."""

from __future__ import annotations

import ast
import json
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rerank.types import RerankerOptions
from tests.app.api.conftest import make_service

REPO = Path(__file__).resolve().parents[2]
XSS = "Never paste <script>alert('kb')</script> or <img src=x onerror=alert(1)> into the wiki & co."
KEYS = {"admin": ["*"], "hr": ["hr"]}


@pytest.fixture(scope="module")
def served(tmp_path_factory, embedder, tiny_reranker):
    """Its own corpus (the client uploads to it), served with API keys."""
    return make_service(tmp_path_factory.mktemp("inject"), embedder, tiny_reranker, api_keys=KEYS)


@pytest.fixture(scope="module")
def client(served):
    with TestClient(served.app(), raise_server_exceptions=False) as c:
        c.headers["X-API-Key"] = "admin"
        assert c.post("/ingest", files=[("files", ("wiki.txt", f"Wiki rules\n\n{XSS}\n".encode(), "text/plain"))]
                      ).status_code == 200
        yield c


def _calls(client) -> list[tuple[str, str, dict]]:
    doc = client.get("/documents").json()[0]["doc_id"]
    up = {"files": [("files", ("x.md", b"# X\n\nparking rules", "text/markdown"))]}
    return [
        ("GET", "/health", {}), ("GET", "/info", {}), ("GET", "/documents", {}),
        ("POST", "/search", {"json": {"query": "paste script tags into the wiki", "threshold": 0.0,
                                      "include_hidden": True}}),
        ("POST", "/search", {"json": {"query": ""}}),  # 400
        ("POST", "/search", {"json": {"query": "<script>alert(1)</script>", "top_k": 0}}),  # 422 echoing a field
        ("POST", "/search", {"json": {"query": "x", "groups": ["<b>nope</b>"]}, "headers": {"X-API-Key": "hr"}}),
        ("POST", "/search", {"json": {"query": "x"}, "headers": {"X-API-Key": "<script>"}}),  # 401
        ("POST", "/rerank", {"json": {"query": "<i>q</i>", "texts": [XSS], "return_text": True}}),
        ("POST", "/v1/rerank", {"json": {"query": "q", "documents": [XSS], "return_documents": True}}),
        ("POST", "/v2/rerank", {"json": {"query": "q", "documents": [XSS]}}),
        ("POST", "/rerank", {"json": {"query": "q", "texts": ["x"] * 2000}}),  # 413
        ("POST", "/ingest", up), ("POST", "/ingest", {**up, "headers": {"X-API-Key": "hr"}}),  # 403
        ("DELETE", "/documents/<svg onload=alert(1)>", {}),  # 404 echoing the id
        ("DELETE", f"/documents/{doc}", {"headers": {"X-API-Key": "hr"}}),
        ("GET", "/no/such/<path>", {}), ("PUT", "/search", {}),  # 404, 405
        ("POST", "/search", {"content": b"<html><body>not json</body></html>",
                             "headers": {"content-type": "text/html"}}),
    ]


def test_every_answer_is_json_and_echoes_input_as_data(client):
    for method, path, kw in _calls(client):
        r = client.request(method, path, **kw)
        assert r.status_code < 500, (method, path, r.status_code, r.text[:200])
        assert r.headers["content-type"].startswith("application/json"), (method, path, r.headers["content-type"])
        json.loads(r.text)  # a JSON document, whatever it holds


def test_only_the_docs_are_html_and_metrics_are_text(client):
    assert client.get("/docs").headers["content-type"].startswith("text/html")
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
    assert client.get("/metrics", headers={"X-API-Key": ""}).status_code == 401  # a key, like every other route


def test_chunk_text_comes_back_verbatim_as_a_json_string(client):
    res = client.post("/search", json={"query": "paste script tags into the wiki", "threshold": 0.0,
                                       "top_n": 100, "include_hidden": True}).json()
    texts = [x["text"] for x in res["results"] + res["below_threshold"]]
    assert XSS in texts or any(XSS in t for t in texts)  # not stripped, not escaped, not interpreted: data
    rr = client.post("/v1/rerank", json={"query": "q", "documents": [XSS], "return_documents": True}).json()
    assert rr["results"][0]["document"]["text"] == XSS


def _multipart(filename: bytes, data: bytes = b"# Note\n\nThe canteen opens at noon.\n") -> tuple[bytes, str]:
    """A multipart body with the file name's bytes exactly as given (clients would percent-encode some)."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\n".encode() + b'Content-Disposition: form-data; name="files"; filename="' + filename
            + b'"\r\nContent-Type: text/markdown\r\n\r\n' + data + f"\r\n--{boundary}--\r\n".encode())
    return body, f"multipart/form-data; boundary={boundary}"


HOSTILE_NAMES = [
    b"../../escape.md", b"..\\..\\escape.md", b"/etc/escape.md", b"%2e%2e%2fescape.md", b"a\x00b.md",
    b"escape.md\x00.txt", "evil\u202edm.exe".encode(), "..\uff0f..\uff0fescape.md".encode(),
    "\u2024\u2024/escape.md".encode(), b".\\escape.md", b"C:escape.md", "e\u0301scape.md".encode(),
    b"\r\nX-Injected: 1.md", "x\u200b.md".encode(), b"CON.md", ("x" * 300 + ".md").encode(),
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_upload_names_cannot_escape_the_upload_folder(served, client, name):
    uploads = Path(served.settings.upload_dir).resolve() / "public"  # files uploaded without access groups
    body, ctype = _multipart(name)
    r = client.post("/ingest", content=body, headers={"content-type": ctype})
    assert r.status_code in (200, 400, 422), (r.status_code, r.text[:200])
    assert r.headers["content-type"].startswith("application/json")
    for p in uploads.rglob("*"):
        assert p.parent == uploads and p.is_file(), p  # flat: no folder was created or reached through
        assert "\x00" not in p.name and "/" not in p.name and not p.name.startswith(".")
    # this test's own folder, and the folder `../../` would reach (not other tests' folders beside it)
    escaped = [p for p in uploads.parent.parent.rglob("*scape*") if p.parent != uploads]
    escaped += [p for p in uploads.parent.parent.parent.glob("*scape*") if p.is_file()]
    escaped += [p for p in (Path("/etc/escape.md"), Path.cwd() / "escape.md", REPO / "escape.md") if p.exists()]
    assert escaped == []
    if r.status_code == 400:
        assert r.json()["error_type"] == "bad_request" and "name" in r.json()["error"]


# ---- models: no pickle, no remote code unless allowed ----------------------------------------------------------
SOURCES = ["app", "ingest", "retrieval", "rerank", "benchmarks", "scripts"]


def _calls_in_sources():
    for folder in SOURCES:
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    yield path.relative_to(REPO), node


def _name(func: ast.expr) -> str:
    return ast.unparse(func)


def test_no_code_path_unpickles_or_trusts_remote_code_by_itself():
    """Static: `torch.load` only with weights_only=True; no pickle/joblib/dill loads; no `allow_pickle=True`;
    `trust_remote_code` is never the literal True (it comes from the user's `allow_remote_code`)."""
    found = []
    for path, call in _calls_in_sources():
        name = _name(call.func)
        kw = {k.arg: k.value for k in call.keywords if k.arg}
        if name.endswith("torch.load") or name == "load" and "weights_only" in kw:
            wo = kw.get("weights_only")
            if not (isinstance(wo, ast.Constant) and wo.value is True):
                found.append(f"{path}:{call.lineno} {name} without weights_only=True")
        if name.split(".")[-1] in ("load", "loads", "Unpickler") and name.split(".")[0] in ("pickle", "joblib",
                                                                                             "dill", "cloudpickle"):
            found.append(f"{path}:{call.lineno} {name}")
        for key in ("allow_pickle", "trust_remote_code"):
            if isinstance(kw.get(key), ast.Constant) and kw[key].value is True:
                found.append(f"{path}:{call.lineno} {name}({key}=True)")
    assert found == []


class _Payload:
    """Unpickling this runs code: it writes the sentinel file named at creation."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (exec, (f"open({self.sentinel!r}, 'w').write('pwned')",))


def _tiny_folder(dest: Path) -> Path:
    from tests.tiny_models import build_tiny_cross_encoder

    return build_tiny_cross_encoder(dest, arch="bert", seed=5)


def test_a_pickled_weight_file_that_runs_code_is_refused(tmp_path):
    import torch

    from rerank.engines.factory import create_reranker
    from rerank.errors import RerankerLoadError

    folder = _tiny_folder(tmp_path / "pickled")
    sentinel = tmp_path / "PWNED"
    for f in folder.glob("*.safetensors"):
        f.unlink()
    torch.save({"bert.embeddings.word_embeddings.weight": _Payload(sentinel)}, folder / "pytorch_model.bin")
    with pytest.raises(RerankerLoadError) as err:
        create_reranker(str(folder), RerankerOptions(device="cpu")).load()
    assert not sentinel.exists(), "loading the model ran code from its pickle"
    assert str(folder) in str(err.value) and "kb models check" in str(err.value)


def test_a_model_folder_demanding_remote_code_is_refused_by_default(tmp_path, embedder):
    """A config with `auto_map` asks transformers to import Python files shipped with the model. By default that
    code never runs: the reranker is refused, and the search service says why and serves recall-only results."""
    from app.components import make_search
    from app.settings import Settings

    folder = _tiny_folder(tmp_path / "remote")
    sentinel = tmp_path / "PWNED"
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="kb-evil-bert", auto_map={
        "AutoConfig": "configuration_evil.EvilConfig",
        "AutoModelForSequenceClassification": "modeling_evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    code = f"open({str(sentinel)!r}, 'w').write('pwned')\n"
    (folder / "configuration_evil.py").write_text(
        code + "from transformers import BertConfig\n\nclass EvilConfig(BertConfig):\n    model_type = 'kb-evil-bert'\n")
    (folder / "modeling_evil.py").write_text(code + "from transformers import BertForSequenceClassification as EvilModel\n")

    svc = make_search(Settings(index_dir=tmp_path / "index", embedder=embedder.name, reranker=str(folder)), embedder,
                      None)
    assert svc.reranker is None and not sentinel.exists()
    said = svc.reranker_error
    assert str(folder) in said and "custom code" in said and "trust_remote_code" in said, said
    assert "recall-only" in said

    from retrieval.embedder import Embedder
    from retrieval.models import ModelNotAvailable

    with pytest.raises((ValueError, OSError, ModelNotAvailable)):
        Embedder(str(folder)).load()  # sentence-transformers with trust_remote_code=False
    assert not sentinel.exists()
