"""Weight files of a model folder and whether their tensors match what the config builds (strict: names and shapes).

Transformers quietly re-initialises a tensor that is missing from the file (a folder holding a bare encoder has
no trained classifier head) — random scores that look real. This module catches that before a model serves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"


class WeightsError(RuntimeError):
    """A weight file is missing or unreadable. `file` names it; the message says how to fix it."""

    kind = "validation"  # app.errors maps it to an HTTP status and an exit code

    def __init__(self, file: str, message: str):
        self.file = file
        super().__init__(message)


def find_weight_files(folder: str | Path) -> list[Path]:
    """The weight files of `folder`: one safetensors or bin file, or the shards its index lists. [] if none."""
    folder = Path(folder)
    for index_name in (SAFETENSORS_INDEX, BIN_INDEX):
        index = folder / index_name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            except (ValueError, KeyError, OSError) as exc:
                raise WeightsError(index_name, f"{index} is not a valid shard index ({exc}); save the model "
                                               "again with model.save_pretrained(PATH)") from exc
            missing = [s for s in shards if not (folder / s).is_file()]
            if missing:
                raise WeightsError(missing[0], f"{index_name} lists {len(missing)} shard(s) that are missing, e.g. "
                                               f"{missing[0]}; copy every shard into {folder}")
            return [folder / s for s in shards]
    for name in (SAFETENSORS, BIN):
        if (folder / name).is_file():
            return [folder / name]
    return []


def file_tensor_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape across `files`. Safetensors: headers only (cheap). Bin: loaded with weights_only."""
    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        try:
            if path.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(path), "pt") as f:
                    for key in f.keys():
                        shapes[key] = tuple(f.get_slice(key).get_shape())
            else:
                import torch

                state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
                shapes.update({k: tuple(v.shape) for k, v in state.items()})
        except WeightsError:
            raise
        except Exception as exc:  # safetensors' SafetensorError, pickle errors, OSError on a truncated file
            raise WeightsError(path.name, f"{path} cannot be read ({exc.__class__.__name__}: {str(exc)[:160]}); "
                                          "the file is corrupted or incomplete: copy it again or re-export it "
                                          "with model.save_pretrained(PATH)") from exc
    return shapes


def expected_tensor_shapes(config) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape that a sequence-classification model built from `config` holds (built on `meta`)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@dataclass
class TensorMismatch:
    missing: list[str] = field(default_factory=list)  # the config needs it, the file lacks it
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model
    wrong_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # name, file, model

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape)

    def describe(self, limit: int = 3) -> str:
        parts = []
        if self.wrong_shape:
            shown = ", ".join(f"{n} file {list(f)} vs config {list(m)}" for n, f, m in self.wrong_shape[:limit])
            parts.append(f"{len(self.wrong_shape)} tensor(s) with a shape the config does not give ({shown})")
        if self.missing:
            parts.append(f"{len(self.missing)} tensor(s) missing from the file ({', '.join(self.missing[:limit])})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected tensor(s) ({', '.join(self.unexpected[:limit])})")
        return "; ".join(parts) or "tensors match the config"


def compare_shapes(found: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]) -> TensorMismatch:
    out = TensorMismatch()
    out.missing = sorted(k for k in expected if k not in found)
    out.unexpected = sorted(k for k in found if k not in expected)
    out.wrong_shape = sorted((k, found[k], expected[k]) for k in expected if k in found and found[k] != expected[k])
    return out
