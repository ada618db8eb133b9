"""Concurrent score() calls on one reranker: no tokenizer errors, same scores as serial."""
from concurrent.futures import ThreadPoolExecutor

import pytest

from rerank.engines.cross_encoder import CrossEncoderReranker
from rerank.types import RerankerOptions
from tests.tiny_models import build_tiny_cross_encoder

pytestmark = pytest.mark.slow  # many threads scoring at once: several seconds on 2 cores


def test_concurrent_scores_equal_serial(tmp_path):
    model = CrossEncoderReranker(str(build_tiny_cross_encoder(tmp_path / "m", arch="xlmr", seed=1)), RerankerOptions(device="cpu", max_length=64)).load()
    texts = [f"passage {i} about VPN tokens and annual leave " * (1 + i % 7) for i in range(40)]
    serial = [model.score(f"query {q}", texts) for q in range(8)]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda q: model.score(f"query {q}", texts), range(8)))
    assert parallel == serial
