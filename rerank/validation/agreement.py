"""Do two scorers rank the same way? Score shift and top-k order, per query, for a faster copy of a model.

Used when an exported or quantised model is made (`rerank.validation.onnx_export`), by the reduced-precision
policy (`rerank.engines.precision`) and by `kb bench rerank`. `CHECK_SET` is a small built-in set of HR/IT
questions, each with a dozen candidate passages (relevant, related and unrelated, Chinese and English), so that
"top-10 order identical" means something.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rerank.types import sigmoid

_PASSAGES_EN = [
    "Employees are entitled to 20 days of paid annual leave per calendar year.",
    "Annual leave requests are submitted in the HR portal and approved by the line manager.",
    "Unused annual leave can be carried over until the end of March of the following year.",
    "New hires accrue leave from their first day; during probation at most five days can be taken.",
    "Sick leave longer than three days requires a doctor's certificate.",
    "Parental leave is sixteen weeks at full pay for the primary carer.",
    "Passwords expire every 90 days and can be reset in the self-service portal.",
    "A lost VPN token must be reported to the IT service desk the same day.",
    "Travel expenses are reimbursed within five working days of submitting the receipts.",
    "Laptops are replaced every four years or when the service desk declares them beyond repair.",
    "Customer data may not be copied to personal devices or private cloud storage.",
    "The canteen serves lunch from 11:30 to 14:00 on working days.",
]
_PASSAGES_ZH = [
    "员工每年享有十五天带薪年假，通过人力资源系统申请，须经直属领导批准。",
    "未休完的年假可以顺延至次年三月底，逾期作废。",
    "试用期员工离职应提前三日通知公司，转正后须提前三十日书面通知。",
    "病假超过三天的，应当提交医院出具的病假证明。",
    "产假为九十八天，难产的增加十五天。",
    "密码每九十天必须更换一次，可在自助服务平台重置。",
    "笔记本电脑丢失后应立即报告信息技术部并远程锁定。",
    "差旅费用须在返回后五个工作日内提交发票报销。",
    "加班工资按照不低于工资的百分之一百五十支付。",
    "客户数据不得拷贝到个人设备或私人网盘。",
    "公司食堂工作日中午十一点半至两点供应午餐。",
    "远程办公须使用公司虚拟专用网络接入内网。",
]
CHECK_QUERIES = [
    ("How many days of annual leave do I get and how do I apply?", _PASSAGES_EN),
    ("How do I reset my password or report a lost VPN token?", _PASSAGES_EN),
    ("年假有多少天，怎么申请？", _PASSAGES_ZH),
    ("试用期员工离职要提前几天通知？", _PASSAGES_ZH),
]


def check_set() -> tuple[list[tuple[str, str]], list[int]]:
    """The built-in (query, passage) pairs and the query index of each pair (its group)."""
    pairs, groups = [], []
    for g, (query, passages) in enumerate(CHECK_QUERIES):
        pairs += [(query, p) for p in passages]
        groups += [g] * len(passages)
    return pairs, groups


@dataclass(frozen=True)
class Agreement:
    """How far `candidate` raw scores are from `reference` ones on the same pairs."""

    pairs: int
    queries: int
    top_k: int
    max_raw_diff: float  # largest |Δ logit|
    max_score_diff: float  # largest |Δ sigmoid(logit)|, on the 0..1 scale thresholds and bands use
    top_k_identical: bool  # every query's top-k (order included) is the same
    queries_with_changed_top_k: int

    def acceptable(self, max_score_shift: float) -> bool:
        return self.top_k_identical and self.max_score_diff <= max_score_shift

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def top_k_order(scores: Sequence[float], k: int) -> list[int]:
    """Indices of the k best scores, best first; ties keep input order."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]


def compare(reference: Sequence[float], candidate: Sequence[float], groups: Sequence[Hashable] | None = None,
            top_k: int = 10) -> Agreement:
    """Score shift and per-query top-k order of `candidate` against `reference` (raw logits, same pairs)."""
    if len(reference) != len(candidate):
        raise ValueError(f"reference and candidate differ in size: {len(reference)} != {len(candidate)}")
    if not reference:
        raise ValueError("no scores to compare")
    if groups is None:
        groups = [0] * len(reference)
    by_group: dict[Hashable, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by_group[g].append(i)
    changed = 0
    for idx in by_group.values():
        ref = [reference[i] for i in idx]
        cand = [candidate[i] for i in idx]
        changed += top_k_order(ref, top_k) != top_k_order(cand, top_k)
    return Agreement(
        pairs=len(reference), queries=len(by_group), top_k=top_k,
        max_raw_diff=max(abs(a - b) for a, b in zip(reference, candidate)),
        max_score_diff=max(abs(sigmoid(a) - sigmoid(b)) for a, b in zip(reference, candidate)),
        top_k_identical=changed == 0, queries_with_changed_top_k=changed)
