"""Export a cross-encoder to ONNX once, check it against PyTorch, cache it; optionally an int8 copy, checked too.

Layout (`export_dir`): a folder `kb-onnx/` next to the weights when the model is a local folder we may write to,
else `<models_dir>/kb-onnx/<name>/` (a hub download in the Hugging Face cache is left untouched):

    model.onnx (+ model.onnx.data for models over 2 GB)   float32, dynamic batch and sequence axes
    model_qint8.onnx                                      int8 dynamic quantisation (made on first request)
    kb_export.json                                        what it was made from, the checks it passed, and (for
                                                          backend auto) torch against ONNX Runtime timed per machine

The manifest holds a fingerprint of the source (config, tokenizer and weight files: size and mtime): when the
weights change, the export is stale and made again. Nothing is published before its check passed: an export is
written to a temporary folder and renamed into place.

Checks, on the built-in check set (`rerank.validation.agreement.CHECK_SET`, batches with padding):
- float32 export against PyTorch: |Δ logit| must stay under `PARITY_TOLERANCE`, else RerankerLoadError.
- int8 against the float32 export: max |Δ score| and top-10 order per query are recorded in the manifest; the
  engine uses the int8 model only when the order is identical and the shift small (`Agreement.acceptable`).

The checks run the files through the runtime that serves them, which the engine hands over (`open_scorer`:
`rerank.engines.exported` opens an `OnnxScorer`); this module imports no engine, so the engine may import it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.files import atomic_write
from rerank.errors import RerankerLoadError
from rerank.validation.agreement import Agreement, check_set, compare

log = logging.getLogger(__name__)

EXPORT_FOLDER = "kb-onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model_qint8.onnx"
MANIFEST = "kb_export.json"
FORMAT = 1
PARITY_TOLERANCE = 1e-3  # |Δ logit| between PyTorch float32 and the ONNX float32 export
_PROTOBUF_LIMIT = 2 * 1024**3 - 1
_SOURCE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "sentencepiece.bpe.model", "vocab.txt")
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

# (ONNX file, its input names) -> a scorer of that file: `.predict(pairs)` gives raw logits
OpenScorer = Callable[[Path, Sequence[str]], Any]


def export_dir(model_path: str | Path, origin: str | None, name: str, models_dir: str | Path) -> Path:
    """Where the exported files of this model live (see the module docstring)."""
    folder = Path(model_path)
    if origin in ("folder", "models_dir") and os.access(folder, os.W_OK):
        return folder / EXPORT_FOLDER
    safe = "".join(c if c.isalnum() or c in "._-" else "--" for c in name.strip("/"))
    return Path(models_dir) / EXPORT_FOLDER / safe


def source_fingerprint(model_path: str | Path) -> dict[str, list[int]]:
    """Size and mtime of the files an export is made from; a different fingerprint means a stale export."""
    from rerank.validation.weights import find_weight_files

    folder = Path(model_path)
    files = [folder / f for f in _SOURCE_FILES if (folder / f).is_file()] + list(find_weight_files(folder))
    out = {}
    for f in files:
        st = f.stat()
        out[f.name] = [st.st_size, st.st_mtime_ns]
    return out


@dataclass(frozen=True)
class Exported:
    folder: Path
    manifest: dict[str, Any]

    @property
    def fp32_file(self) -> Path:
        return self.folder / FP32_FILE

    @property
    def int8_file(self) -> Path:
        return self.folder / INT8_FILE

    @property
    def input_names(self) -> list[str]:
        return list(self.manifest["inputs"])

    @property
    def int8_agreement(self) -> Agreement | None:
        got = self.manifest.get("int8")
        return Agreement(**got["agreement"]) if got else None


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    atomic_write(folder / MANIFEST, json.dumps(manifest, indent=1))


def onnx_scores(scorer, pairs, batch_size: int = 16) -> list[float]:
    """Raw logits of `pairs` from `scorer` (an ONNX file opened by the runtime that serves it), in batches."""
    out: list[float] = []
    for start in range(0, len(pairs), batch_size):
        out += scorer.predict(pairs[start:start + batch_size])
    return out


def _torch_scores(model, tokenizer, pairs, names, max_length: int, batch_size: int = 16) -> list[float]:
    import torch

    out: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start:start + batch_size]
            enc = tokenizer([q for q, _ in batch], [t for _, t in batch], padding=True, truncation="longest_first",
                            max_length=max_length, return_tensors="pt")
            logits = model(**{n: enc[n] for n in names}).logits
            out += [float(x) for x in logits.float().reshape(-1)]
    return out


def ensure_exported(model_path: str | Path, folder: Path, tokenizer, max_length: int = 512,
                    allow_remote_code: bool = False, *, open_scorer: OpenScorer) -> Exported:
    """The float32 ONNX export of the model at `model_path` in `folder`, made (and checked, the file opened with
    `open_scorer`) if missing or stale.

    Raises RerankerLoadError when the export fails or disagrees with PyTorch beyond PARITY_TOLERANCE.
    """
    fingerprint = source_fingerprint(model_path)
    manifest = read_manifest(folder)
    if (manifest and manifest.get("format") == FORMAT and manifest.get("source") == fingerprint
            and (folder / FP32_FILE).is_file()):
        return Exported(folder, manifest)
    log.warning("exporting %s to ONNX in %s (once; a large model takes minutes and its size again on disk)",
                model_path, folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    try:
        manifest = _export(Path(model_path), tmp, tokenizer, max_length, allow_remote_code, open_scorer)
        manifest["source"] = fingerprint
        _write_manifest(tmp, manifest)
        if folder.exists():  # stale (or foreign, unreadable) export made by us: replace it whole
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Exported(folder, manifest)


def _export(model_path: Path, out: Path, tokenizer, max_length: int, allow_remote_code: bool,
            open_scorer: OpenScorer) -> dict[str, Any]:
    import warnings

    import onnx
    import torch
    from transformers import AutoModelForSequenceClassification

    started = time.perf_counter()
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path, dtype=torch.float32, local_files_only=True, trust_remote_code=allow_remote_code).eval()
    names = [n for n in _INPUTS if n in tokenizer.model_input_names]
    sample = tokenizer(["annual leave", "how do I reset my VPN token?"],
                       ["Employees get twenty days.", "Open the self-service portal and choose Reset token."],
                       padding=True, return_tensors="pt")
    raw = out / "raw"
    raw.mkdir()
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # tracer warnings about Python-level shape checks; parity checks below
            torch.onnx.export(model, (), str(raw / FP32_FILE), kwargs={n: sample[n] for n in names},
                              input_names=names, output_names=["logits"],
                              dynamic_axes={**axes, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
        graph = onnx.load(str(raw / FP32_FILE))  # legacy export of >2 GB models: one file per tensor; gather them
        big = sum(t.ByteSize() for t in graph.graph.initializer) > _PROTOBUF_LIMIT // 2
        onnx.save(graph, str(out / FP32_FILE), save_as_external_data=big, all_tensors_to_one_file=True,
                  location=FP32_FILE + ".data")
        del graph
    except Exception as exc:
        raise RerankerLoadError(f"ONNX export of {model_path} failed ({exc.__class__.__name__}: {str(exc)[:300]}); "
                                "use --backend torch") from exc
    finally:
        shutil.rmtree(raw, ignore_errors=True)
    export_s = time.perf_counter() - started
    pairs, groups = check_set()
    reference = _torch_scores(model, tokenizer, pairs, names, max_length)
    del model
    exported = onnx_scores(open_scorer(out / FP32_FILE, names), pairs)
    parity = compare(reference, exported, groups)
    if not parity.max_raw_diff <= PARITY_TOLERANCE:
        raise RerankerLoadError(f"the ONNX export of {model_path} disagrees with PyTorch (max |Δ logit| "
                                f"{parity.max_raw_diff:.2e} > {PARITY_TOLERANCE}); use --backend torch")
    import onnxruntime

    return {"format": FORMAT, "inputs": names, "opset": 17, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "export_s": round(export_s, 1), "parity": parity.to_dict(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def recorded_speed(exported: Exported, machine: str) -> dict[str, Any] | None:
    """The torch-against-ONNX Runtime timing recorded for `machine` (a CPU and thread count), or None."""
    return (exported.manifest.get("speed") or {}).get(machine)


def record_speed(exported: Exported, machine: str, figures: dict[str, Any]) -> Exported:
    """`exported` with `figures` (the timing of `rerank.engines.exported.time_backends`) recorded for `machine` in
    its manifest, so later loads on this machine choose without timing again; the export is remade, and the timing
    with it, when the weights change."""
    manifest = {**exported.manifest, "speed": {**(exported.manifest.get("speed") or {}), machine: figures}}
    _write_manifest(exported.folder, manifest)
    return Exported(exported.folder, manifest)


def ensure_quantized(exported: Exported, *, open_scorer: OpenScorer) -> Exported:
    """Add the int8 dynamic-quantised copy (and its agreement with float32 on the check set, both files opened with
    `open_scorer`) if missing."""
    if exported.manifest.get("int8") and exported.int8_file.is_file():
        return exported
    from onnxruntime.quantization import QuantType, quantize_dynamic

    started = time.perf_counter()
    tmp = exported.folder / (INT8_FILE + ".tmp")
    try:
        # per-channel weight scales: closer to float32 than one scale per tensor, at the same speed
        quantize_dynamic(str(exported.fp32_file), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        pairs, groups = check_set()
        names = exported.input_names
        reference = onnx_scores(open_scorer(exported.fp32_file, names), pairs)
        agreement = compare(reference, onnx_scores(open_scorer(tmp, names), pairs), groups)
        os.replace(tmp, exported.int8_file)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise RerankerLoadError(f"int8 quantisation of {exported.fp32_file} failed ({exc.__class__.__name__}: "
                                f"{str(exc)[:300]}); leave quantize off") from exc
    manifest = {**exported.manifest, "int8": {"method": "onnxruntime quantize_dynamic, QInt8 weights, per channel",
                                              "quantize_s": round(time.perf_counter() - started, 1),
                                              "agreement": agreement.to_dict()}}
    _write_manifest(exported.folder, manifest)
    return Exported(exported.folder, manifest)
