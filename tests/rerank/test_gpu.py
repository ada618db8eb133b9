"""GPU behaviour: FP16 vs FP32 parity and the OOM back-off. Skipped cleanly without CUDA."""

from __future__ import annotations

import pytest
import torch

from rerank.engines.cross_encoder import CrossEncoderReranker
from rerank.types import RerankerOptions

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (torch.cuda.is_available())")]

QUERY = "How many days of annual leave do employees get?"
TEXTS = ["Employees are entitled to 20 days of paid annual leave.", "The VPN must be used remotely.",
         "员工每年享有十五天带薪年假。", "Meal allowances are paid monthly.", "Passwords are reset every 90 days."]


def test_auto_picks_gpu_float16(tiny_xlmr):
    engine = CrossEncoderReranker(str(tiny_xlmr), RerankerOptions(max_length=64)).load()
    assert engine.device.startswith("cuda") and engine.dtype == "float16"
    assert engine.device_choice.gpu_name and engine.device_choice.compute_capability
    assert next(engine.cross_encoder.model.parameters()).dtype == torch.float16


def test_fp16_gpu_matches_fp32_cpu(tiny_model):
    from rerank.validation.parity import parity

    report = parity(str(tiny_model), [(QUERY, t) for t in TEXTS], max_length=64)
    assert report.gpu_available and report.max_raw_diff < 0.05
    cpu = CrossEncoderReranker(str(tiny_model), RerankerOptions(device="cpu", max_length=64)).load().score(QUERY, TEXTS)
    gpu = CrossEncoderReranker(str(tiny_model), RerankerOptions(device="cuda", max_length=64)).load().score(QUERY, TEXTS)
    assert max(abs(a[0] - b[0]) for a, b in zip(cpu, gpu, strict=True)) < 0.05


def _fill_gpu(leave_bytes: int) -> list[torch.Tensor]:
    blocks = []
    free, _ = torch.cuda.mem_get_info()
    while free > leave_bytes + 2**20:
        size = min(free - leave_bytes, 2**30)
        try:
            blocks.append(torch.empty(size, dtype=torch.uint8, device="cuda"))
        except torch.OutOfMemoryError:
            break
        free, _ = torch.cuda.mem_get_info()
    return blocks


def _long_texts(n: int) -> list[str]:
    return [f"{TEXTS[i % len(TEXTS)]} " * 40 for i in range(n)]


def test_oom_halves_the_batch_and_still_scores(tmp_path):
    from tests.tiny_models import build_tiny_cross_encoder

    path = build_tiny_cross_encoder(tmp_path / "wide", arch="xlmr", hidden_size=512, num_heads=8, max_position=512)
    texts = _long_texts(1024)
    ref = CrossEncoderReranker(str(path), RerankerOptions(device="cpu", max_length=512, batch_size=64)).load().score(QUERY, texts[:8])
    engine = CrossEncoderReranker(str(path), RerankerOptions(device="cuda", dtype="float16", max_length=512, batch_size=1024)).load()
    blocks = _fill_gpu(leave_bytes=256 * 2**20)  # 1024 pairs × 512 tokens × 512 hidden do not fit in 256 MiB
    try:
        scores = engine.score(QUERY, texts)
    finally:
        del blocks
        torch.cuda.empty_cache()
    info = engine.info()
    assert info.oom_halvings > 0 and info.effective_batch_size < 1024
    assert info.fallback is None and engine.device.startswith("cuda")
    assert max(abs(a[0] - b[0]) for a, b in zip(scores[:8], ref, strict=True)) < 0.05


def test_oom_at_batch_one_falls_back_to_cpu(tmp_path):
    from tests.tiny_models import build_tiny_cross_encoder

    path = build_tiny_cross_encoder(tmp_path / "wide", arch="xlmr", hidden_size=512, num_heads=8, max_position=512)
    engine = CrossEncoderReranker(str(path), RerankerOptions(device="cuda", max_length=512, batch_size=8)).load()
    blocks = _fill_gpu(leave_bytes=0)
    try:
        with pytest.warns(RuntimeWarning, match="fell back to CPU"):
            scores = engine.score(QUERY, _long_texts(4))
    finally:
        del blocks
        torch.cuda.empty_cache()
    assert engine.device == "cpu" and engine.dtype == "float32" and engine.info().fallback
    assert all(s == s for _, s in scores)
