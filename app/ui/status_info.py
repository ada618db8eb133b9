"""Small facts for the Status page: precision names, the hardware table, the size of the index on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retrieval.device import DeviceChoice

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


def exact_note(reranker_info: dict[str, Any]) -> str:
    """For a bfloat16 / int8 reranker: how many candidates its float32 re-scoring of near-ties took over so far."""
    r = reranker_info
    if not r.get("exact_top"):
        return ""
    done = r.get("exact_rescored") or {}
    return (f"; {'int8' if r.get('quantized') else r.get('dtype')} with float32 re-scoring of top-{r['exact_top']} "
            f"near-ties ({done.get('rescored', 0)} of {done.get('candidates', 0)} candidates so far)")
