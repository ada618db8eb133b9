"""`kb models parity`: the same pairs on CPU float32 and GPU float16; the largest score difference and rank changes.

On a machine without CUDA nothing is compared: the report says the GPU is absent and the command exits cleanly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rerank.types import RerankerOptions
from rerank.validation.metrics import mean_kendall_by_group, ranks_within

SAMPLE_PAIRS = [
    ("How many days of annual leave do employees get?", "Employees are entitled to 20 days of paid annual leave."),
    ("How many days of annual leave do employees get?", "The VPN must be used when working from outside the office."),
    ("How many days of annual leave do employees get?", "Annual leave requests go through the HR portal."),
    ("How do I reset my password?", "Passwords are reset at the IT service desk or via the self-service portal."),
    ("How do I reset my password?", "Meal allowances are paid monthly with the salary."),
    ("年假有多少天？", "员工每年享有十五天带薪年假，通过人力资源系统申请。"),
    ("年假有多少天？", "笔记本电脑丢失后应立即报告信息技术部。"),
    ("年假有多少天？", "出差费用须在五个工作日内报销。"),
]


@dataclass
class ParityReport:
    reranker: str
    gpu_available: bool
    message: str
    n_pairs: int = 0
    gpu: dict[str, Any] | None = None
    max_raw_diff: float | None = None
    max_score_diff: float | None = None
    rank_changes: int | None = None
    kendall_tau: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_pairs(file: str | Path) -> list[tuple[str, str]]:
    """JSONL of {"query", "passage"} (a "label" is ignored), or a TSV of query<TAB>passage."""
    import json

    from rerank.errors import RerankerParameterError

    path = Path(file)
    if not path.is_file():
        raise RerankerParameterError("pairs", str(file), "an existing JSONL (query, passage) or TSV file",
                                     "pass --pairs FILE, or leave it out to use the built-in sample pairs")
    pairs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            if line.lstrip().startswith("{"):
                obj = json.loads(line)
                pairs.append((str(obj["query"]), str(obj["passage"])))
            else:
                query, passage = line.split("\t", 1)
                pairs.append((query, passage))
        except (ValueError, KeyError) as exc:
            raise RerankerParameterError("pairs", f"{path}:{n}", 'a JSON object with "query" and "passage", or '
                                         "query<TAB>passage", f"fix line {n}") from exc
    return pairs


def _score(reranker, pairs: list[tuple[str, str]]) -> list[float]:
    raws = [0.0] * len(pairs)
    by_query: dict[str, list[int]] = {}
    for i, (q, _) in enumerate(pairs):
        by_query.setdefault(q, []).append(i)
    for q, idx in by_query.items():
        for i, (raw, _) in zip(idx, reranker.score(q, [pairs[i][1] for i in idx]), strict=True):
            raws[i] = raw
    return raws


def parity(reranker: str, pairs: list[tuple[str, str]] | None = None, options: RerankerOptions | None = None,
           gpu_dtype: str = "float16") -> ParityReport:
    """The same pairs scored by `reranker` on the CPU in float32 and on the GPU in `gpu_dtype` (other knobs from
    `options`)."""
    import torch

    from rerank.engines.cross_encoder import CrossEncoderReranker
    from rerank.types import sigmoid

    pairs = list(pairs) if pairs is not None else list(SAMPLE_PAIRS)
    if not torch.cuda.is_available():
        return ParityReport(reranker, False, "no CUDA GPU here (torch.cuda.is_available() is False): nothing to "
                            "compare; CPU float32 is what serves on this machine", len(pairs))
    options = options if options is not None else RerankerOptions()
    cpu = _score(CrossEncoderReranker(reranker, options.replace(device="cpu", dtype="float32")).load(), pairs)
    gpu_engine = CrossEncoderReranker(reranker, options.replace(device="cuda", dtype=gpu_dtype)).load()
    gpu = _score(gpu_engine, pairs)
    groups = [q for q, _ in pairs]
    return ParityReport(
        reranker, True, f"CPU float32 vs {gpu_engine.device} {gpu_dtype}", len(pairs),
        gpu=gpu_engine.device_choice.to_dict(),
        max_raw_diff=max(abs(a - b) for a, b in zip(cpu, gpu, strict=True)),
        max_score_diff=max(abs(sigmoid(a) - sigmoid(b)) for a, b in zip(cpu, gpu, strict=True)),
        rank_changes=sum(a != b for a, b in zip(ranks_within(groups, cpu), ranks_within(groups, gpu), strict=True)),
        kendall_tau=mean_kendall_by_group(groups, cpu, gpu))
