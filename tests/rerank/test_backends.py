"""CPU backends on real tiny cross-encoders: the ONNX export scores like PyTorch, is cached next to the weights and
made again when they change; int8 is served only when it keeps the top-10 order on the check set."""

from __future__ import annotations

import json
import warnings

import pytest

from rerank.engines.cross_encoder import EXPORTED_CPU_BATCH, CrossEncoderReranker
from rerank.errors import RerankerParameterError
from rerank.types import RerankerOptions
from rerank.validation.agreement import check_set, compare, top_k_order
from rerank.validation.onnx_export import EXPORT_FOLDER, FP32_FILE, INT8_FILE, MANIFEST
from tests.tiny_models import build_tiny_cross_encoder, fit_to_separate

pytest.importorskip("onnxruntime")

QUERY = "How many days of annual leave do new employees get?"
TEXTS = ["Employees are entitled to 20 days of paid annual leave.",
         "VPN tokens are reset in the self-service portal. " * 30,  # longer than max_length: scored in windows
         "年假通过人力资源系统申请，须经直属领导批准。", "Meal allowances are paid monthly.", "x",
         "<p>Annual leave requests go through the <b>HR portal</b>.</p>"]


def _engine(path, **kw):
    return CrossEncoderReranker(str(path), RerankerOptions(device="cpu", max_length=64, **kw)).load()


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["bert", "xlmr"])
def test_onnx_scores_equal_torch_and_the_export_is_cached(arch, tmp_path):
    model = build_tiny_cross_encoder(tmp_path / arch, arch=arch, seed=4, max_position=128)
    torch_scores = _engine(model).score(QUERY, TEXTS)
    onnx = _engine(model, backend="onnx")
    onnx_scores = onnx.score(QUERY, TEXTS)
    assert onnx.backend == "onnx" and onnx.device == "cpu" and onnx.dtype == "float32"
    assert onnx.info().batch_size == EXPORTED_CPU_BATCH == 2  # fused CPU kernels: fewer rows pad less
    for (raw_t, s_t), (raw_o, s_o) in zip(torch_scores, onnx_scores):
        assert raw_o == pytest.approx(raw_t, abs=1e-4) and s_o == pytest.approx(s_t, abs=1e-5)
    assert top_k_order([r for r, _ in onnx_scores], 10) == top_k_order([r for r, _ in torch_scores], 10)

    folder = model / EXPORT_FOLDER
    manifest = json.loads((folder / MANIFEST).read_text())
    assert (folder / FP32_FILE).is_file() and manifest["parity"]["max_raw_diff"] < 1e-3
    assert onnx.info().details["export_dir"] == str(folder) and onnx.info().quantized is False
    mtime = (folder / FP32_FILE).stat().st_mtime_ns
    again = _engine(model, backend="onnx")  # a second process: loads the cached export
    assert (folder / FP32_FILE).stat().st_mtime_ns == mtime
    assert again.score(QUERY, TEXTS) == onnx_scores


def test_export_is_made_again_when_the_weights_change(tmp_path):
    model = build_tiny_cross_encoder(tmp_path / "m", arch="bert", seed=1, max_position=128)
    before = _engine(model, backend="onnx").score(QUERY, TEXTS)
    build_tiny_cross_encoder(model, arch="bert", seed=2, max_position=128)  # fine-tuned again: new weights
    after = _engine(model, backend="onnx").score(QUERY, TEXTS)
    expected = _engine(model).score(QUERY, TEXTS)
    assert after != before
    assert [r for r, _ in after] == pytest.approx([r for r, _ in expected], abs=1e-4)


def _onnx_scores(file, tokenizer, names):
    from rerank.engines.exported import OnnxScorer
    from rerank.validation.onnx_export import onnx_scores

    pairs, _ = check_set()
    return onnx_scores(OnnxScorer(file, tokenizer, names, 64), pairs)


def test_int8_is_refused_when_it_changes_the_top10_order(tmp_path):
    model = build_tiny_cross_encoder(tmp_path / "random", arch="xlmr", seed=1, max_position=128)
    with pytest.warns(RuntimeWarning, match="int8 model refused"):  # exact_top=0: no float32 re-scoring of ties
        engine = _engine(model, backend="onnx", quantize=True, exact_top=0)
    info = engine.info()
    folder = model / EXPORT_FOLDER
    # the recorded agreement is what the two files really do on the check set
    names = json.loads((folder / MANIFEST).read_text())["inputs"]
    _, groups = check_set()
    measured = compare(_onnx_scores(folder / FP32_FILE, engine.tokenizer, names),
                       _onnx_scores(folder / INT8_FILE, engine.tokenizer, names), groups)
    assert info.agreement == pytest.approx(measured.to_dict())
    assert not measured.top_k_identical and info.quantized is False
    assert f"{measured.queries_with_changed_top_k}/4 queries" in info.warning
    # what is served is the float32 model
    torch_scores = _engine(model).score(QUERY, TEXTS)
    assert [r for r, _ in engine.score(QUERY, TEXTS)] == pytest.approx([r for r, _ in torch_scores], abs=1e-4)


@pytest.mark.slow
def test_int8_is_served_when_it_keeps_the_order(tmp_path):
    model = build_tiny_cross_encoder(tmp_path / "trained", arch="bert", seed=0, max_position=128,
                                     hidden_size=64, num_heads=4)
    assert fit_to_separate(model) < 0.05
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no refusal warning
        # this tiny model's int8 copy shifts scores by about 0.12 on the check set (onnxruntime 1.32)
        engine = _engine(model, backend="onnx", quantize=True, quantize_max_shift=0.25)
    info = engine.info()
    assert info.quantized is True and info.warning is None
    assert info.agreement["top_k_identical"] and info.agreement["max_score_diff"] <= 0.25
    pairs, groups = check_set()
    fp32 = _engine(model)
    for g in sorted(set(groups)):
        query = pairs[groups.index(g)][0]
        passages = [p for (q, p), gg in zip(pairs, groups) if gg == g]
        ref = [s for _, s in fp32.score(query, passages)]
        got = [s for _, s in engine.score(query, passages)]
        assert top_k_order(got, 10) == top_k_order(ref, 10)
        # dynamic int8 scales follow each batch's values, so the shift varies a little with batching
        assert max(abs(a - b) for a, b in zip(ref, got)) <= engine.options.quantize_max_shift


def test_openvino_scores_equal_torch(tmp_path):
    pytest.importorskip("openvino")
    model = build_tiny_cross_encoder(tmp_path / "ov", arch="xlmr", seed=3, max_position=128)
    expected = [r for r, _ in _engine(model).score(QUERY, TEXTS)]
    engine = _engine(model, backend="openvino")
    assert engine.backend == "openvino" and engine.info().details["inference_precision"] == "f32"
    assert engine.info().batch_size == EXPORTED_CPU_BATCH
    assert [r for r, _ in engine.score(QUERY, TEXTS)] == pytest.approx(expected, abs=1e-4)


def test_bad_backend_settings_name_themselves(tiny_bert, tmp_path):
    with pytest.raises(RerankerParameterError, match="backend='tensorrt'.*torch, onnx, openvino"):
        CrossEncoderReranker(str(tiny_bert), RerankerOptions(backend="tensorrt"))
    with pytest.raises(RerankerParameterError, match="threads=0"):
        CrossEncoderReranker(str(tiny_bert), RerankerOptions(threads=0))
    with pytest.raises(RerankerParameterError, match="dtype='float16'.*backend=onnx"):
        CrossEncoderReranker(str(tiny_bert), RerankerOptions(device="cpu", dtype="float16", backend="onnx", max_length=64)).load()
    with pytest.raises(RerankerParameterError, match="device='cuda'.*backend=onnx"):
        CrossEncoderReranker(str(tiny_bert), RerankerOptions(device="cuda", backend="onnx", max_length=64)).load()


def test_factory_and_settings_pass_the_backend(tmp_path, monkeypatch):
    from app.settings import Settings
    from rerank.engines.factory import create_reranker

    monkeypatch.setenv("KB_RERANK_BACKEND", "onnx")
    monkeypatch.setenv("KB_RERANK_QUANTIZE", "true")
    s = Settings(_env_file=None)
    assert (s.rerank_backend, s.rerank_quantize) == ("onnx", True)
    model = build_tiny_cross_encoder(tmp_path / "f", arch="bert", seed=5, max_position=128)
    engine = create_reranker(str(model), RerankerOptions(device="cpu", max_length=64, backend=s.rerank_backend, quantize=s.rerank_quantize, threads=1))
    assert (engine.options.backend, engine.options.quantize, engine.options.threads) == ("onnx", True, 1)
    monkeypatch.setenv("KB_RERANK_BACKEND", "tensorrt")
    with pytest.raises(ValueError, match="rerank_backend"):
        Settings(_env_file=None)
