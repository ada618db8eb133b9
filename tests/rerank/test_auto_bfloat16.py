"""Issue 31: backend auto, with no dtype set, also weighs bfloat16 + exact re-scoring on a CPU that multiplies
bfloat16 in hardware, and serves it only where it measured it faster than the float32 backend at the same top
order. The CPU's flags are read from a cpuinfo file the tests write (`rerank.engines.scorers.CPUINFO`), so both
kinds of machine are tested on any machine. No test depends on a timing or on what a random model ranks: the
choice is checked against the figures it recorded, the crowded model is crowded by construction
(`squeeze_logits`), and the serving path is reached by asking for no gain at all (`rerank.engines.auto.MIN_GAIN`).
"""

from __future__ import annotations

import shutil

import pytest

from rerank.engines import auto, scorers
from rerank.engines.auto import pick_bfloat16, why_not_bfloat16
from rerank.engines.cross_encoder import CrossEncoderReranker
from rerank.types import RerankerOptions
from rerank.validation.agreement import CHECK_QUERIES
from tests.tiny_models import build_tiny_cross_encoder, squeeze_logits

pytest.importorskip("onnxruntime")  # backend auto times ONNX Runtime first wherever it is installed

FLAGS = "fpu sse2 avx2 avx512f avx512_vnni"


def _cpu(tmp_path, monkeypatch, *extra: str) -> None:
    """This process reads a CPU with `FLAGS` plus `extra` flags."""
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {' '.join((FLAGS, *extra))}\n")
    monkeypatch.setattr(scorers, "CPUINFO", info)


def _auto(path, **kw):
    options = RerankerOptions(device="cpu", max_length=64, backend="auto", **kw)
    return CrossEncoderReranker(str(path), options).load()


@pytest.fixture
def model(tmp_path, tiny_bert):
    return shutil.copytree(tiny_bert, tmp_path / "model")  # its ONNX export goes beside it, not in the shared one


# ---- reading the CPU and deciding (no model) -------------------------------------------------------------------------
def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path, monkeypatch):
    _cpu(tmp_path, monkeypatch)
    assert scorers.native_bf16_flags() == [] and not scorers.cpu_has_native_bf16()
    assert scorers.cpu_model() == "Test CPU"
    _cpu(tmp_path, monkeypatch, "amx_tile", "amx_bf16")
    assert scorers.native_bf16_flags() == ["amx_bf16"] and scorers.cpu_has_native_bf16()
    _cpu(tmp_path, monkeypatch, "avx512_bf16")
    assert scorers.native_bf16_flags() == ["avx512_bf16"]
    monkeypatch.setattr(scorers, "CPUINFO", tmp_path / "missing")
    assert scorers.native_bf16_flags() == [] and scorers.cpu_model() is None


def test_bfloat16_is_tried_only_with_nothing_set_exact_re_scoring_and_native_bfloat16():
    assert why_not_bfloat16("auto", 10, False, ["amx_bf16"]) is None
    assert "no AMX-BF16 or AVX512-BF16" in why_not_bfloat16("auto", 10, False, [])
    assert "dtype float32 was set" in why_not_bfloat16("float32", 10, False, ["amx_bf16"])
    assert "exact_top 0" in why_not_bfloat16("auto", 0, False, ["amx_bf16"])
    assert "int8" in why_not_bfloat16("auto", 10, True, ["amx_bf16"])


FIGURES = {"float32_backend": "onnx", "speed_ratio": 0.35, "rescored_share": 0.14, "pairs": 12,
           "candidates_per_query": 24, "margin": 0.026, "top": 10}


def test_pick_bfloat16_weighs_its_pass_and_its_re_scoring_against_float32():
    serves, reason = pick_bfloat16(FIGURES, 0.5)  # a trained model: 0.35 + 0.14 of ONNX Runtime's time
    assert serves and "0.35×" in reason and "14% of 24" in reason and "expected 0.49×" in reason
    assert "ONNX Runtime float32 re-scores" in reason
    crowded, why = pick_bfloat16({**FIGURES, "rescored_share": 1.0}, 0.5)  # random weights: every candidate
    assert not crowded and "above the limit 50%" in why and "ONNX Runtime float32 serves alone" in why
    slow, why = pick_bfloat16({**FIGURES, "speed_ratio": 0.8, "rescored_share": 0.3}, 0.5)  # no AMX-sized gain
    assert not slow and "above the limit 20%" in why  # the break-even 1 − 0.8
    slow, why = pick_bfloat16({**FIGURES, "speed_ratio": 0.8, "rescored_share": 0.18}, 0.5)
    assert not slow and "expected 0.98×" in why and "needs ≤ 0.95×" in why  # within the noise
    assert not pick_bfloat16({**FIGURES, "rescored_share": 0.45}, 0.4)[0]  # above the set share, whatever it costs


# ---- the engine ----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_without_native_bfloat16_auto_never_tries_it(tmp_path, monkeypatch, model):
    _cpu(tmp_path, monkeypatch)
    engine = _auto(model)
    choice = engine.info().backend_choice
    assert choice["bfloat16"] == {"tried": False, "flags": [], "reason": why_not_bfloat16("auto", 10, False, [])}
    assert engine.backend in ("torch", "onnx", "openvino") and engine.dtype == "float32"
    assert engine.info().exact_choice is None
    assert "dtype" not in choice and choice["backend"] == engine.backend


@pytest.mark.slow
def test_a_set_dtype_keeps_auto_to_float32_even_with_native_bfloat16(tmp_path, monkeypatch, model):
    _cpu(tmp_path, monkeypatch, "amx_bf16")
    engine = _auto(model, dtype="float32")
    assert engine.info().backend_choice["bfloat16"]["tried"] is False and engine.dtype == "float32"


@pytest.mark.slow
def test_a_crowded_model_falls_back_to_float32_by_measurement(tmp_path, monkeypatch):
    _cpu(tmp_path, monkeypatch, "amx_bf16")
    crowded = squeeze_logits(build_tiny_cross_encoder(tmp_path / "crowded", arch="xlmr", seed=1, max_position=128))
    engine = _auto(crowded)
    trial = engine.info().backend_choice["bfloat16"]
    measured = trial["measured"]
    # bfloat16 rounds every logit to one value: every candidate a near-tie, whatever this machine's speed
    assert trial["tried"] and not trial["serves"] and measured["rescored_share"] == 1.0
    assert measured["candidates_per_query"] == 24 and measured["pairs"] == len(CHECK_QUERIES) * 3
    assert measured["speed_ratio"] > 0 and measured["float32_backend"] == engine.backend
    assert trial["reason"] == pick_bfloat16(measured, 0.5)[1] and "above the limit" in trial["reason"]
    assert engine.dtype == "float32" and engine.info().exact_choice is None
    assert trial["reason"] in engine.info().backend_choice["reason"]
    assert trial["reason"] in engine.info().device_choice.reason


@pytest.mark.slow
def test_with_native_bfloat16_auto_measures_and_serves_what_it_measured(tmp_path, monkeypatch, model):
    _cpu(tmp_path, monkeypatch, "avx512_bf16")
    engine = _auto(model)
    choice = engine.info().backend_choice
    trial = choice["bfloat16"]
    assert trial["tried"] and trial["flags"] == ["avx512_bf16"]
    measured = trial["measured"]
    for key in ("speed_ratio", "float32_s", "bfloat16_s", "rescored_share", "rescored_per_query", "margin",
                "expected_cost", "agreement"):
        assert key in measured
    assert (trial["serves"], trial["reason"]) == pick_bfloat16(measured, 0.5)
    assert engine.dtype == ("bfloat16" if trial["serves"] else "float32")
    again = _auto(model).info().backend_choice["bfloat16"]  # kept with the export: not timed again
    assert again["measured"] == measured and again["serves"] == trial["serves"]
    # another exact top N marks other near-ties: measured afresh
    assert _auto(model, exact_top=5).info().backend_choice["bfloat16"]["measured"]["top"] == 5


@pytest.mark.slow
def test_bfloat16_chosen_serves_with_the_float32_backend_re_scoring(tmp_path, monkeypatch, model):
    _cpu(tmp_path, monkeypatch, "amx_bf16")
    monkeypatch.setattr(auto, "MIN_GAIN", 0.0)  # any speed will do: the serving path runs on any machine
    engine = _auto(model, exact_max_share=1.0)
    info = engine.info()
    choice = info.backend_choice
    assert choice["bfloat16"]["serves"] and choice["dtype"] == "bfloat16" and choice["backend"] == "torch"
    assert engine.backend == "torch" and engine.dtype == "bfloat16" and info.details["cpu_bf16_native"]
    f32 = choice["float32_backend"]
    assert f32 in ("torch", "onnx", "openvino") and info.details["float32_backend"] == f32
    assert "bfloat16 serves" in info.device_choice.reason
    assert info.exact_margin == choice["bfloat16"]["measured"]["margin"]
    query, passages = CHECK_QUERIES[0]
    engine.score(query, passages)
    done = engine.info().exact_rescored
    assert done["calls"] + done["direct_calls"] == 1 and engine.info().exact_choice["path"] == "bfloat16"
    # the candidates it re-scored carry the float32 backend's scores
    float32 = CrossEncoderReranker(str(model), RerankerOptions(device="cpu", max_length=64)).load()
    exact = [raw for raw, _ in float32.score(query, passages)]
    got = [raw for raw, _ in engine.score(query, passages)]
    rescored = engine.info().exact_rescored["rescored"] - done["rescored"]
    assert sum(abs(g - e) <= 1e-4 for g, e in zip(got, exact)) >= rescored
