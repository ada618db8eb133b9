"""Small facts for the Status page: precision names, the hardware table, the size of the index on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rerank.types import RerankerInfo
from retrieval.coverage import SCRIPT_NAMES
from retrieval.device import DeviceChoice
from retrieval.embedder import PROBE

SECRET_SETTINGS = ("api_keys", "reranker_api_key", "milvus_token")  # never shown, not even to admins

_PRECISION = {"float16": "FP16", "float32": "FP32", "bfloat16": "BF16"}


def precision(dtype: str | None) -> str | None:
    """float16 -> FP16, float32 -> FP32, bfloat16 -> BF16 (None stays None)."""
    return None if dtype is None else _PRECISION.get(dtype, dtype)


def device_rows(choice: DeviceChoice) -> list[dict[str, str]]:
    gpu = (f"{choice.gpu_name}, {choice.gpu_memory_gb:g} GiB, compute {choice.compute_capability}"
           if choice.gpu_name else "none in use")
    return [{"Item": "device", "Value": choice.device}, {"Item": "GPU", "Value": gpu},
            {"Item": "precision", "Value": f"{precision(choice.dtype)} ({choice.dtype})"},
            {"Item": "CUDA available to torch", "Value": "yes" if choice.cuda_available else "no"},
            {"Item": "nvidia-smi found", "Value": "yes" if choice.nvidia_smi else "no"},
            {"Item": "why", "Value": choice.reason}]


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = n / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def exact_note(r: RerankerInfo) -> str:
    """For a bfloat16 / int8 reranker: how many candidates its float32 re-scoring of near-ties took over so far,
    and how many calls float32 scored directly (where re-scoring would have cost more)."""
    if not r.exact_top:
        return ""
    done = r.exact_rescored or {}
    return (f"; {'int8' if r.quantized else r.dtype} with float32 re-scoring of top-{r.exact_top} "
            f"near-ties ({done.get('rescored', 0)} of {done.get('candidates', 0)} candidates so far; "
            f"{done.get('direct_calls', 0)} calls scored by float32 directly)")


def scoring_rows(r: RerankerInfo, budget_ms: int | None, budget_set: bool) -> list[dict[str, str]]:
    """How the reranker scores, for the Status page: the backend and why, the path of the last call under exact
    re-scoring and why, and the latency budget a search gets when it sets none."""
    rows = [{"Item": "backend", "Value": r.backend or "—",
             "Why": (r.backend_choice or {}).get("reason") or "set (KB_RERANK_BACKEND)"}]
    if r.exact_choice:
        rows.append({"Item": "last call", "Value": r.exact_choice["path"], "Why": r.exact_choice["reason"]})
    why = ("set (KB_RERANK_BUDGET_MS)" if budget_set else
           "the CPU default (KB_RERANK_BUDGET_MS=0 reranks every candidate)" if budget_ms else
           "none by default off a CPU")
    rows.append({"Item": "latency budget", "Value": f"{budget_ms} ms (at least top-N reranked)" if budget_ms else
                 "none: every candidate reranked", "Why": why})
    return rows


def cannot_read(scripts: list[str] | None) -> str:
    """"; cannot read Chinese" for a model whose tokenizer loses those scripts (empty when it reads them all)."""
    return f"; cannot read {', '.join(scripts)}" if scripts else ""


def reranker_unreadable(reranker: Any) -> list[str]:
    """The scripts of usual HR/IT text the reranker's tokenizer cannot represent (empty when it reads them, or
    when that cannot be told, e.g. a remote reranker)."""
    check = getattr(reranker, "coverage", None)
    cov = check(PROBE) if check is not None else None
    return [SCRIPT_NAMES[s] for s in cov.unreadable()] if cov is not None else []


def settings_rows(s: Any) -> list[dict[str, str]]:
    """Every setting and its value for the Status page; secrets (API keys, tokens, the sign-in secrets) are shown
    as set or not, never their value."""
    rows = []
    for key, value in s.model_dump().items():
        if key in SECRET_SETTINGS:
            value = "(set)" if value else "(not set)"
        elif key == "auth":
            value = {k: ("(set)" if v else "(not set)") if "secret" in k else v for k, v in value.items()}
        rows.append({"Setting": key, "Value": str(value)})
    return rows
