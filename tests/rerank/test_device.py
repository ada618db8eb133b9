"""Device and dtype selection as the engine makes it, on a machine without CUDA."""

from __future__ import annotations

import pytest
import torch

from rerank.engines.cross_encoder import CrossEncoderReranker
from rerank.types import RerankerOptions

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only path")


@no_cuda
def test_auto_picks_cpu_float32_and_says_why(tiny_bert):
    engine = CrossEncoderReranker(str(tiny_bert), RerankerOptions(max_length=64)).load()
    choice = engine.device_choice
    assert (choice.device, choice.dtype, choice.cuda_available) == ("cpu", "float32", False)
    assert "no CUDA" in choice.reason or "torch has no CUDA" in choice.reason
    assert next(engine.cross_encoder.model.parameters()).dtype == torch.float32


@no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_requested_but_absent_is_a_clear_error(tiny_bert, device):
    engine = CrossEncoderReranker(str(tiny_bert), RerankerOptions(device=device, max_length=64))
    with pytest.raises(ValueError, match=r"device=.*cuda.*--device cpu"):
        engine.load()
    assert not engine.loaded


def test_dtype_override_on_cpu(tiny_bert):
    engine = CrossEncoderReranker(str(tiny_bert), RerankerOptions(device="cpu", dtype="bfloat16", max_length=64)).load()
    assert engine.dtype == "bfloat16" and "bfloat16 requested" in engine.device_choice.reason
    assert next(engine.cross_encoder.model.parameters()).dtype == torch.bfloat16
    ref = CrossEncoderReranker(str(tiny_bert), RerankerOptions(device="cpu", max_length=64)).load()
    q, texts = "annual leave", ["Employees get 20 days of annual leave.", "VPN rules."]
    for (a, _), (b, _) in zip(engine.score(q, texts), ref.score(q, texts), strict=True):
        assert a == pytest.approx(b, abs=0.1)  # bfloat16 keeps ~3 significant digits
