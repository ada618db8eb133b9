"""The reranker's vocabulary: what reranking returns (`Scored`: raw logit, its sigmoid, band, rank), how a reranker
is loaded (`RerankerOptions`) and what it reports about itself (`RerankerInfo`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from retrieval.device import DeviceChoice
from retrieval.types import Hit

Band = Literal["strong", "review", "weak"]
STRONG_ABOVE = 0.7
REVIEW_FROM = 0.5


def sigmoid(x: float) -> float:
    """Numerically stable logistic function (no overflow for large |x|)."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def band_of(score: float) -> Band:
    """strong > 0.7, review 0.5–0.7, weak < 0.5 (DESIGN.md)."""
    if score > STRONG_ABOVE:
        return "strong"
    return "review" if score >= REVIEW_FROM else "weak"


@dataclass(frozen=True)
class Scored:
    """One candidate after reranking. `index` is its position in the input; `hit` is None in the playground.
    A search served without a reranker gives its hits in recall order with `raw_score`, `score` and `band` None:
    a retrieval score is never passed off as a reranker score."""

    index: int
    text: str
    raw_score: float | None
    score: float | None
    band: Band | None
    rank: int
    hit: Hit | None = None


@dataclass(frozen=True)
class RerankerOptions:
    """How a reranker is loaded and run, as one value: built once from the settings (`app.components`) and handed
    to whichever engine the model name picks. Every field is checked here, so a bad value is refused with the
    setting that fixes it before any model is read.

    `batch_size` None lets the engine choose (8 pairs on a CPU, 32 on a GPU; 16 for an LLM reranker).
    `backend` "auto": on a GPU torch; on a CPU the faster of torch and ONNX Runtime float32 as measured once on
    this machine (cached with the export), both exact (`rerank.engines.exported.choose_cpu_backend`), and, with
    `dtype` "auto", exact_top > 0 and a CPU with AMX-BF16 or AVX512-BF16, bfloat16 whose top-N near-ties that
    float32 backend re-scores, where the load measured it faster (`rerank.engines.auto`).
    `exact_top`, `exact_max_share`, `quantize_max_shift` and `quantize_policy` are the reduced-precision policy
    (`rerank.exact`, `rerank.engines.precision`). `api_key` goes to a remote (TEI) reranker only and is never shown.
    """

    device: str = "auto"
    dtype: str = "auto"
    batch_size: int | None = None
    max_length: int = 512
    long_passage: str = "max"
    backend: str = "torch"
    quantize: bool = False
    threads: int | None = None
    exact_top: int = 10
    exact_max_share: float = 0.5  # rerank.exact.MAX_SHARE; 1.0: the reduced pass serves whatever re-scoring costs
    quantize_max_shift: float = 0.05
    quantize_policy: str = "refuse"
    models_dir: str = "models"
    allow_remote_code: bool = False
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from rerank import params
        from rerank.errors import RerankerParameterError

        params.check_device(self.device)
        params.check_dtype(self.dtype)
        if self.batch_size is not None:
            params.check_batch_size(self.batch_size)
        params.check_max_length(self.max_length)
        params.check_long_passage(self.long_passage)
        params.check_backend(self.backend)
        if not isinstance(self.quantize, bool):
            raise RerankerParameterError("quantize", self.quantize, "true or false",
                                         "set KB_RERANK_QUANTIZE=true to use int8 with --backend onnx")
        params.check_threads(self.threads)
        params.check_exact_top(self.exact_top)
        params.check_exact_max_share(self.exact_max_share)
        shift = self.quantize_max_shift
        if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not 0.0 <= shift <= 1.0:
            raise RerankerParameterError("quantize_max_shift", shift, "a score shift from 0.0 to 1.0",
                                         "leave it at 0.05")
        if self.quantize_policy not in ("refuse", "warn"):
            raise RerankerParameterError("quantize_policy", self.quantize_policy, "refuse or warn",
                                         "refuse (default) serves float32 when a reduced copy fails its check")
        object.__setattr__(self, "models_dir", str(self.models_dir))

    def replace(self, **changes: Any) -> RerankerOptions:
        """A copy with `changes` (None values are ignored, so optional CLI flags can be passed straight on)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class RerankerInfo:
    """What a reranker is and how it runs: the same fields for every engine (None where one does not apply),
    for the CLI, the API's /info and the app's Status page. `details` holds what only one engine knows (the
    remote server, the export folder, the attention kernel, ...)."""

    name: str
    kind: str  # cross-encoder | llm-reranker | remote
    loaded: bool
    device: str | None = None
    dtype: str | None = None
    device_choice: DeviceChoice | None = None  # made at load, with its reason
    backend: str | None = None  # torch | onnx | openvino | http
    path: str | None = None
    origin: str | None = None
    architecture: str | None = None
    num_labels: int | None = None
    max_length: int | None = None
    model_max_length: int | None = None
    batch_size: int | None = None
    effective_batch_size: int | None = None  # after CUDA OOM halvings or a server's batch limit
    long_passage: str | None = None
    threads: int | None = None
    load_ms: float | None = None
    fallback: str | None = None  # why it left the GPU (CUDA out of memory at batch size 1)
    oom_halvings: int = 0
    quantized: bool = False  # int8 serves
    exact_top: int = 0  # near-ties of the top N re-scored in float32 (0: no re-scoring)
    exact_margin: float | None = None
    exact_rescored: dict[str, int] | None = None  # {calls, candidates, rescored} so far
    agreement: dict[str, Any] | None = None  # the reduced copy against float32 on the check set
    # the last call's path (the reduced copy, or float32 directly where re-scoring would cost more) and why
    exact_choice: dict[str, Any] | None = None
    backend_choice: dict[str, Any] | None = None  # with backend auto: which backend, why, and what was measured
    warning: str | None = None  # a reduced copy refused or used against its check, emulated bfloat16, ...
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
