"""Device and dtype choice for any model (embedder or reranker), made once at load time and reported.

GPU → float16, CPU → float32, unless the user overrides either. The reason is kept so that the CLI, the API's
`/info` and the app can say what was chosen and why.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from typing import Any

DTYPES = ("auto", "float32", "float16", "bfloat16")  # the one list: settings, rerank options, CLI


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cpu" or "cuda:N"
    dtype: str  # "float32" | "float16" | "bfloat16"
    reason: str
    nvidia_smi: bool = False
    cuda_available: bool = False
    gpu_name: str | None = None
    gpu_memory_gb: float | None = None
    compute_capability: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)


def choose_device(device: str = "auto", dtype: str = "auto") -> DeviceChoice:
    """Pick device and dtype. `device`: auto | cpu | cuda | cuda:N; `dtype`: auto | float32 | float16 | bfloat16.

    Raises ValueError naming the parameter when a value is unknown or CUDA is requested but absent.
    """
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    if not (device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {device!r}")
    smi = shutil.which("nvidia-smi") is not None
    cuda = torch.cuda.is_available()
    info: dict[str, Any] = {"nvidia_smi": smi, "cuda_available": cuda}
    if device.startswith("cuda") and not cuda:
        raise ValueError(f"device={device!r} but torch.cuda.is_available() is False "
                         f"(nvidia-smi {'found' if smi else 'not found'}); use --device cpu or install a CUDA torch")
    if device == "auto":
        device = "cuda:0" if cuda else "cpu"
        why = "CUDA available" if cuda else ("nvidia-smi found but torch has no CUDA" if smi else "no CUDA device")
    else:
        device = "cuda:0" if device == "cuda" else device
        why = "requested"
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(int(device.split(":")[1]))
        info.update(gpu_name=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                    compute_capability=f"{props.major}.{props.minor}")
    if dtype == "auto":
        dtype = "float16" if device.startswith("cuda") else "float32"
        why += f"; {dtype} is the default on {'GPU' if device.startswith('cuda') else 'CPU'}"
    else:
        why += f"; dtype {dtype} requested"
        if device == "cpu" and dtype == "float16":
            why += " (slow and less exact on CPU)"
    return DeviceChoice(device=device, dtype=dtype, reason=why, **info)
