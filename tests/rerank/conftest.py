"""Session-scoped tiny cross-encoders (random weights, real BERT / XLM-RoBERTa architectures and tokenizers)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from rerank.types import RerankerOptions
from tests.tiny_models import build_tiny_cross_encoder  # noqa: E402


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("models") / "tiny_bert", arch="bert", seed=0,
                                    max_position=128)


@pytest.fixture(scope="session")
def tiny_xlmr(tmp_path_factory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("models") / "tiny_xlmr", arch="xlmr", seed=1,
                                    max_position=128)


@pytest.fixture(scope="session", params=["bert", "xlmr"])
def tiny_model(request, tiny_bert, tiny_xlmr) -> Path:
    return tiny_bert if request.param == "bert" else tiny_xlmr


@pytest.fixture(scope="session")
def bert_engine(tiny_bert):
    from rerank.engines.cross_encoder import CrossEncoderReranker

    return CrossEncoderReranker(str(tiny_bert), RerankerOptions(device="cpu", max_length=64)).load()


@pytest.fixture(scope="session")
def xlmr_engine(tiny_xlmr):
    from rerank.engines.cross_encoder import CrossEncoderReranker

    return CrossEncoderReranker(str(tiny_xlmr), RerankerOptions(device="cpu", max_length=64)).load()


@pytest.fixture
def copy_model(tmp_path):
    """Copy a model folder so a test can break it."""
    import shutil

    def _copy(src: Path, name: str = "broken") -> Path:
        dest = tmp_path / name
        shutil.copytree(src, dest)
        return dest

    return _copy
