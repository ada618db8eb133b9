"""`kb models check`: every validation failure names the file and the fix, on real (broken) model folders."""

from __future__ import annotations

import json

import pytest

from rerank.types import RerankerOptions
from rerank.validation.check import check_model


def _status(report):
    return {i.name: i.status for i in report.items}


def _only_failure(report, name):
    failures = report.failures
    assert [f.name for f in failures] == [name], [(f.name, f.message) for f in failures]
    item = failures[0]
    assert item.file and item.fix
    return item


def test_valid_models_pass(tiny_model):
    report = check_model(tiny_model, options=RerankerOptions(device="cpu", max_length=64))
    assert report.ok, report.to_dict()
    assert set(_status(report).values()) == {"ok"}
    assert report.smoke_score is not None


def test_missing_config(tiny_bert, copy_model):
    folder = copy_model(tiny_bert)
    (folder / "config.json").unlink()
    report = check_model(folder)
    item = _only_failure(report, "config")
    assert item.file.endswith("config.json") and "save_pretrained" in item.fix
    assert _status(report)["smoke_score"] == "skipped" and not report.ok


def test_wrong_num_labels(tiny_bert, copy_model):
    folder = copy_model(tiny_bert)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["id2label"] = {"0": "LABEL_0", "1": "LABEL_1"}
    cfg["label2id"] = {"LABEL_0": 0, "LABEL_1": 1}
    (folder / "config.json").write_text(json.dumps(cfg))
    item = _only_failure(check_model(folder), "num_labels")
    assert "2" in item.message and "num_labels=1" in item.fix and item.file.endswith("config.json")


def test_not_a_sequence_classifier(tiny_bert, copy_model):
    folder = copy_model(tiny_bert)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = ["BertModel"]
    (folder / "config.json").write_text(json.dumps(cfg))
    item = _only_failure(check_model(folder), "architecture")
    assert "BertModel" in item.message


def test_missing_tokenizer(tiny_xlmr, copy_model):
    folder = copy_model(tiny_xlmr)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "sentencepiece.bpe.model"):
        (folder / name).unlink(missing_ok=True)
    report = check_model(folder)
    item = _only_failure(report, "tokenizer_files")
    assert "tokenizer" in item.file and "save_pretrained" in item.fix
    assert _status(report)["tokenizer_load"] == "skipped"


def test_unloadable_tokenizer(tiny_bert, copy_model):
    folder = copy_model(tiny_bert)
    (folder / "tokenizer.json").write_text("{ this is not json")
    item = _only_failure(check_model(folder), "tokenizer_load")
    assert item.file.endswith("tokenizer.json")


def test_missing_weights(tiny_bert, copy_model):
    folder = copy_model(tiny_bert)
    (folder / "model.safetensors").unlink()
    report = check_model(folder)
    item = _only_failure(report, "weights_file")
    assert item.file.endswith("model.safetensors")
    assert _status(report)["weights_match"] == "skipped"


def test_mismatched_tensor_shapes(tiny_bert, copy_model):
    folder = copy_model(tiny_bert)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["hidden_size"], cfg["intermediate_size"] = 64, 128
    (folder / "config.json").write_text(json.dumps(cfg))
    item = _only_failure(check_model(folder), "weights_match")
    assert "shape" in item.message and "[32]" in item.message and "[64]" in item.message
    assert item.file.endswith("model.safetensors")


def test_missing_classifier_tensors(tiny_bert, copy_model):
    from safetensors.torch import load_file, save_file

    folder = copy_model(tiny_bert)
    state = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in state.items() if not k.startswith("classifier")}, folder / "model.safetensors")
    item = _only_failure(check_model(folder), "weights_match")
    assert "missing" in item.message and "classifier.weight" in item.message


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupted_weights(tiny_xlmr, copy_model, damage):
    folder = copy_model(tiny_xlmr)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00garbage" * 100)
    item = _only_failure(check_model(folder), "weights_match")
    assert "corrupted" in item.message and item.file.endswith("model.safetensors")


def test_nan_weights_fail_the_smoke_score(tiny_bert, copy_model):
    import torch
    from safetensors.torch import load_file, save_file

    folder = copy_model(tiny_bert)
    state = load_file(folder / "model.safetensors")
    state["classifier.bias"] = torch.tensor([float("nan")])
    save_file(state, folder / "model.safetensors")
    item = _only_failure(check_model(folder), "smoke_score")
    assert "nan" in item.message.lower()


def test_not_a_folder(tmp_path):
    item = _only_failure(check_model(tmp_path / "missing"), "folder")
    assert "missing" in item.file


def _golden(tmp_path, rows):
    path = tmp_path / "golden.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    return path


GOLDEN = [
    {"query": "annual leave days", "passage": "Employees get 20 days of annual leave.", "label": 1},
    {"query": "annual leave days", "passage": "The VPN must be used remotely.", "label": 0},
    {"query": "annual leave days", "passage": "Meal allowances are paid monthly.", "label": 0},
    {"query": "reset password", "passage": "Passwords are reset at the service desk.", "label": 1},
    {"query": "reset password", "passage": "Annual leave goes through the HR portal.", "label": 0},
    {"query": "年假", "passage": "员工每年享有十五天带薪年假。", "label": 1},
    {"query": "年假", "passage": "笔记本电脑丢失后应立即报告。", "label": 0},
]


def test_golden_same_model_shows_no_shift(tiny_bert, tmp_path):
    report = check_model(tiny_bert, golden=_golden(tmp_path, GOLDEN), current=str(tiny_bert), options=RerankerOptions(max_length=64))
    g = report.golden
    assert g.n_pairs == 7 and g.n_queries == 3
    assert g.candidate_agreement == g.current_agreement and 0.0 <= g.candidate_agreement <= 1.0
    assert g.kendall_tau == pytest.approx(1.0) and g.rank_changes == 0
    assert g.max_score_shift == pytest.approx(0.0, abs=1e-6) and g.verdict == "pass"


def test_golden_against_another_model(tiny_bert, tiny_xlmr, tmp_path):
    g = check_model(tiny_xlmr, golden=_golden(tmp_path, GOLDEN), current=str(tiny_bert), options=RerankerOptions(max_length=64)).golden
    assert g.max_score_shift > 0 and g.mean_score_shift > 0
    assert g.verdict in ("pass", "regression")
    assert (g.verdict == "regression") == (g.candidate_agreement < g.current_agreement - g.tolerance)


def test_golden_without_baseline(tiny_bert, tmp_path):
    g = check_model(tiny_bert, golden=_golden(tmp_path, GOLDEN), current="none", options=RerankerOptions(max_length=64)).golden
    assert g.verdict == "no-baseline" and g.current_error


def test_golden_bad_line_names_the_line(tiny_bert, tmp_path):
    from rerank.errors import RerankerParameterError

    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps(GOLDEN[0]) + "\n" + '{"query": "x"}\n')
    with pytest.raises(RerankerParameterError, match=r"g.jsonl:2"):
        check_model(tiny_bert, golden=path, current="none", options=RerankerOptions(max_length=64))
