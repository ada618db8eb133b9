"""Where a cross-encoder's forward pass runs. Every scorer has `tokenizer`, `backend`, `predict(pairs) -> list[float]`
(raw logits of one batch, input order) and `describe()`; the engine batches, windows and aggregates around it.

- `TorchScorer` (here): sentence-transformers' `CrossEncoder` (SDPA attention, inference mode, padding to the
  longest pair of the batch). The only backend for CUDA (FP16 there); on a CPU also bfloat16.
- `OnnxScorer`, `OpenVinoScorer` (`rerank.engines.exported`): the model exported once to ONNX, on the CPU.

Which one serves by default is measured, not assumed: ONNX Runtime float32 was slower than PyTorch on one CPU and
faster on others (docs/PERFORMANCE.md), so backend auto times both once per model and machine
(`rerank.engines.exported.choose_cpu_backend`); int8 changes scores, so it stays a choice, never a surprise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

CPU_ONLY = ("onnx", "openvino")


class Scorer(Protocol):
    backend: str
    tokenizer: Any

    def predict(self, pairs: list[tuple[str, str]]) -> list[float]: ...
    def describe(self) -> dict[str, Any]: ...


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# where the CPU's model name and feature flags are read (Linux); tests point it at a file of their own
CPUINFO = Path("/proc/cpuinfo")
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def _cpuinfo_field(name: str) -> str | None:
    try:
        for line in CPUINFO.read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip() if ":" in line else ""
    except OSError:
        pass
    return None


def load_average() -> list[float] | None:
    """The machine's 1/5/15-minute load averages now (None where the system has none): kept with timings, since a
    busy machine slows PyTorch's OpenMP threads far more than ONNX Runtime's, which sleep when idle."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (`CPUINFO`); None where it cannot be read (not Linux)."""
    return _cpuinfo_field("model name")


def native_bf16_flags() -> list[str]:
    """The flags of `NATIVE_BF16_FLAGS` this CPU has (read from `CPUINFO`); empty where none or unreadable."""
    flags = set((_cpuinfo_field("flags") or "").split())
    return [f for f in NATIVE_BF16_FLAGS if f in flags]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX-BF16 or AVX512-BF16, read from /proc/cpuinfo): there
    oneDNN runs bfloat16 matrix products several times faster than float32; elsewhere bfloat16 is emulated, slower."""
    return bool(native_bf16_flags())


class TorchScorer:
    """sentence-transformers `CrossEncoder` with the identity activation (raw logits)."""

    backend = "torch"

    def __init__(self, path: str, device: str, dtype: str, max_length: int, allow_remote_code: bool,
                 threads: int | None = None):
        import torch
        from sentence_transformers import CrossEncoder

        if threads is not None:  # process-wide in PyTorch; only when asked for
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        self.cross_encoder = CrossEncoder(path, device=device, max_length=max_length,
                                          activation_fn=torch.nn.Identity(), trust_remote_code=allow_remote_code,
                                          local_files_only=True, model_kwargs={"dtype": getattr(torch, dtype)})
        self.tokenizer = self.cross_encoder.tokenizer

    def predict(self, pairs: list[tuple[str, str]]) -> list[float]:
        import torch

        scores = self.cross_encoder.predict(pairs, batch_size=len(pairs), activation_fn=torch.nn.Identity(),
                                            show_progress_bar=False, convert_to_numpy=True)
        return [float(s) for s in scores.reshape(-1).tolist()]

    def to_cpu(self) -> None:
        import torch

        self.cross_encoder.to(device="cpu", dtype=torch.float32)

    @property
    def dtype(self) -> str:
        """The weights' dtype now: float32, float16 or bfloat16."""
        return str(self.cross_encoder.model.dtype).removeprefix("torch.")

    def reduced_copy(self, dtype: str) -> TorchScorer:
        """A copy of this scorer with its weights cast to `dtype` (float32 → bfloat16 on a CPU); this one stays."""
        import copy

        import torch

        clone = copy.deepcopy(self)
        clone.cross_encoder.model.to(dtype=getattr(torch, dtype))
        return clone

    def describe(self) -> dict[str, Any]:
        model = self.cross_encoder.model
        return {"backend": self.backend, "threads": self.threads,
                "attention": getattr(model.config, "_attn_implementation", None)}
