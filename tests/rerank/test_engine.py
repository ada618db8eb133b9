from __future__ import annotations

import math

import pytest

from rerank.engines.cross_encoder import CrossEncoderReranker
from rerank.errors import RerankerLoadError, RerankerParameterError
from rerank.types import RerankerOptions, sigmoid

QUERY = "How many days of annual leave do employees get?"
TEXTS = [
    "Employees are entitled to 20 days of paid annual leave.",
    "员工每年享有十五天带薪年假，通过人力资源系统申请。",
    "The VPN must be used when working from outside the office.",
    "Passwords are reset every 90 days.",
    "Meal allowances are paid monthly.",
    "Annual leave requests go through the HR portal.",
]


def test_scores_are_python_floats_with_sigmoid_relation(tiny_model):
    engine = CrossEncoderReranker(str(tiny_model), RerankerOptions(device="cpu", max_length=64)).load()
    scores = engine.score(QUERY, TEXTS)
    assert len(scores) == len(TEXTS)
    for raw, score in scores:
        assert type(raw) is float and type(score) is float
        assert math.isfinite(raw)
        assert score == pytest.approx(sigmoid(raw), abs=1e-12)
    assert len({round(raw, 6) for raw, _ in scores}) > 1, "random weights should still spread the logits"


def test_raw_score_is_the_model_logit(bert_engine):
    import torch

    tok, model = bert_engine.tokenizer, bert_engine.cross_encoder.model
    enc = tok([QUERY], [TEXTS[0]], return_tensors="pt")
    with torch.inference_mode():
        logit = model(**enc).logits[0, 0].item()
    assert bert_engine.score(QUERY, [TEXTS[0]])[0][0] == pytest.approx(logit, abs=1e-5)


def test_order_preserved(xlmr_engine):
    forward = xlmr_engine.score(QUERY, TEXTS)
    backward = xlmr_engine.score(QUERY, TEXTS[::-1])
    for a, b in zip(forward, backward[::-1], strict=True):
        assert a[0] == pytest.approx(b[0], abs=1e-5)
    singles = [xlmr_engine.score(QUERY, [t])[0][0] for t in TEXTS]
    assert [r for r, _ in forward] == pytest.approx(singles, abs=1e-5)


def test_batching_invariance(tiny_model):
    many = [t + f" ({i})" * (i % 5) for i, t in enumerate(TEXTS * 6)]
    one = CrossEncoderReranker(str(tiny_model), RerankerOptions(device="cpu", batch_size=1, max_length=64)).load()
    big = CrossEncoderReranker(str(tiny_model), RerankerOptions(device="cpu", batch_size=32, max_length=64)).load()
    a, b = one.score(QUERY, many), big.score(QUERY, many)
    assert max(abs(x[0] - y[0]) for x, y in zip(a, b, strict=True)) < 1e-5
    assert max(abs(x[1] - y[1]) for x, y in zip(a, b, strict=True)) < 1e-5


def test_batch_size_defaults_to_the_device_and_a_setting_wins(tiny_model):
    from rerank.engines.cross_encoder import CPU_BATCH

    default = CrossEncoderReranker(str(tiny_model), RerankerOptions(device="cpu", max_length=64))
    assert default.load().info().batch_size == CPU_BATCH == 8  # small CPU batches pad less
    assert default.info().effective_batch_size == CPU_BATCH
    chosen = CrossEncoderReranker(str(tiny_model), RerankerOptions(device="cpu", batch_size=24, max_length=64)).load()
    assert chosen.info().batch_size == 24


def test_html_is_cleaned_before_scoring(bert_engine):
    plain = bert_engine.score(QUERY, ["Employees get 20 days of annual leave."])[0]
    html = bert_engine.score(QUERY, ["<p>Employees get <b>20 days</b> of annual&nbsp;leave.</p>"])[0]
    assert html[0] == pytest.approx(plain[0], abs=1e-5)


def test_empty_and_bad_inputs(bert_engine):
    assert bert_engine.score(QUERY, []) == []
    with pytest.raises(RerankerParameterError, match="query"):
        bert_engine.score("   ", ["x"])
    with pytest.raises(TypeError, match="sequence of strings"):
        bert_engine.score(QUERY, "one string")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        bert_engine.score(QUERY, ["ok", 3])


@pytest.mark.parametrize("kwargs, parameter", [
    ({"batch_size": 0}, "batch_size"), ({"batch_size": 5000}, "batch_size"), ({"batch_size": True}, "batch_size"),
    ({"max_length": 8}, "max_length"), ({"max_length": 10_000}, "max_length"),
    ({"long_passage": "median"}, "long_passage"), ({"device": "gpu"}, "device"), ({"dtype": "fp16"}, "dtype"),
])
def test_parameter_errors_name_parameter_value_range_and_fix(tiny_bert, kwargs, parameter):
    with pytest.raises(RerankerParameterError) as info:
        CrossEncoderReranker(str(tiny_bert), RerankerOptions(**kwargs))
    err = info.value
    assert err.parameter == parameter and err.value == next(iter(kwargs.values()))
    assert parameter in str(err) and repr(err.value) in str(err) and err.fix in str(err)


def test_max_length_beyond_model_positions(tiny_bert):
    engine = CrossEncoderReranker(str(tiny_bert), RerankerOptions(device="cpu", max_length=1024))  # tiny model: 128 positions
    with pytest.raises(RerankerParameterError, match=r"at most 128 tokens"):
        engine.load()
    assert not engine.loaded


def test_missing_model_is_a_load_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine = CrossEncoderReranker("no-such-org/no-such-reranker", RerankerOptions(models_dir=tmp_path))
    with pytest.raises(RerankerLoadError, match="no-such-org/no-such-reranker"):
        engine.load()
    with pytest.raises(RerankerLoadError, match="does not exist"):
        CrossEncoderReranker(str(tmp_path / "nope" / "x")).load()


def test_models_dir_name_resolves_like_a_user_folder(tiny_bert, tmp_path):
    import shutil

    shutil.copytree(tiny_bert, tmp_path / "reranker_zh_v2")
    engine = CrossEncoderReranker("reranker_zh_v2", RerankerOptions(device="cpu", models_dir=tmp_path, max_length=64)).load()
    assert engine.info().origin == "models_dir"
    ref = CrossEncoderReranker(str(tiny_bert), RerankerOptions(device="cpu", max_length=64)).load()
    got = [x for pair in engine.score(QUERY, TEXTS[:2]) for x in pair]
    want = [x for pair in ref.score(QUERY, TEXTS[:2]) for x in pair]
    assert got == pytest.approx(want, abs=1e-5)


def test_info_describes_model_and_device(bert_engine):
    info = bert_engine.info()
    assert info.loaded and info.kind == "cross-encoder"
    assert info.architecture == "BertForSequenceClassification" and info.num_labels == 1
    assert info.device == "cpu" and info.dtype == "float32"
    assert info.device_choice.reason and info.fallback is None
    assert info.model_max_length == 128 and info.max_length == 64


def test_bare_encoder_without_head_is_refused(tiny_bert, copy_model):
    """A folder whose weights lack the classifier would score with a random head: refuse it at load."""
    from safetensors.torch import load_file, save_file

    folder = copy_model(tiny_bert)
    state = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in state.items() if not k.startswith("classifier")}, folder / "model.safetensors")
    with pytest.raises(RerankerLoadError, match="classifier"):
        CrossEncoderReranker(str(folder), RerankerOptions(device="cpu", max_length=64)).load()


def test_factory_picks_engine_and_the_pool_shares_instances_until_released(tiny_bert):
    from rerank.engines.factory import create_reranker, is_disabled
    from rerank.engines.llm import LLMReranker
    from rerank.engines.pool import ModelPool
    from rerank.protocol import Reranker

    assert isinstance(create_reranker(str(tiny_bert)), CrossEncoderReranker)
    assert isinstance(create_reranker("BAAI/bge-reranker-v2-gemma"), LLMReranker)
    assert isinstance(create_reranker("BAAI/bge-reranker-v2-minicpm-layerwise"), LLMReranker)
    assert is_disabled("none") and is_disabled("None") and is_disabled(None) and not is_disabled("x")
    pool, options = ModelPool(), RerankerOptions(device="cpu", max_length=64)
    a = pool.get(str(tiny_bert), options)
    b = pool.get(str(tiny_bert), options)
    assert a is b and a.loaded and isinstance(a, Reranker) and pool.loaded() == [str(tiny_bert)]
    assert ModelPool().get(str(tiny_bert), options) is not a  # another pool holds its own
    pool.release(str(tiny_bert), options)
    assert pool.loaded() == [] and pool.get(str(tiny_bert), options) is not a  # released: loaded again


def test_llm_reranker_chosen_by_causal_lm_config(tmp_path):
    import json

    from rerank.engines.factory import create_reranker
    from rerank.engines.llm import LLMReranker

    folder = tmp_path / "my_llm_reranker"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["GemmaForCausalLM"], "model_type": "gemma"}))
    assert isinstance(create_reranker(str(folder)), LLMReranker)
    layerwise = LLMReranker("BAAI/bge-reranker-v2-minicpm-layerwise", RerankerOptions(models_dir=tmp_path))
    with pytest.raises(RerankerLoadError, match="allow_remote_code"):
        layerwise.load()
