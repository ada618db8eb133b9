"""What kind of model a folder holds, from its config.json (and file names); no weights are read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LLM_NAME_HINTS = ("gemma", "minicpm")
_ROBERTA_LIKE = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert")


def read_config(folder: str | Path) -> dict[str, Any] | None:
    """config.json as a dict, or None when absent or not valid JSON."""
    path = Path(folder) / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def architecture(config: dict[str, Any] | None) -> str | None:
    archs = (config or {}).get("architectures") or []
    return str(archs[0]) if archs else None


def num_labels(config: dict[str, Any] | None) -> int | None:
    config = config or {}
    if isinstance(config.get("id2label"), dict):
        return len(config["id2label"])
    value = config.get("num_labels")
    return int(value) if isinstance(value, int) else None


def is_llm_reranker(name: str, config: dict[str, Any] | None) -> bool:
    """A decoder LLM reranker (bge-reranker-v2-gemma, bge-reranker-v2-minicpm-layerwise): causal-LM config, or
    the name says gemma/minicpm when there is no config to read."""
    arch = architecture(config)
    if arch is not None:
        return arch.endswith("ForCausalLM")
    return any(hint in name.lower() for hint in LLM_NAME_HINTS)


def is_layerwise(name: str, config: dict[str, Any] | None) -> bool:
    text = (name + " " + (architecture(config) or "") + " " + str((config or {}).get("model_type", ""))).lower()
    return "layerwise" in text or "minicpm" in text


def model_kind(folder: str | Path, name: str = "") -> str:
    """cross-encoder | llm-reranker | embedder | other | no-config."""
    folder = Path(folder)
    config = read_config(folder)
    if config is None:
        return "no-config"
    arch = architecture(config) or ""
    if (folder / "modules.json").is_file() or (folder / "config_sentence_transformers.json").is_file():
        if not arch.endswith("ForSequenceClassification"):
            return "embedder"
    if arch.endswith("ForSequenceClassification"):
        return "cross-encoder"
    if arch.endswith("ForCausalLM") and "rerank" in (name or folder.name).lower():
        return "llm-reranker"
    return "other"


def position_limit(config: dict[str, Any] | None) -> int | None:
    """The longest input (tokens, specials included) the position embeddings allow; RoBERTa-style models reserve
    pad_token_id + 1 positions (bge-reranker-v2-m3: 8194 positions → 8192 tokens)."""
    config = config or {}
    n = config.get("max_position_embeddings")
    if not isinstance(n, int):
        return None
    if config.get("model_type") in _ROBERTA_LIKE:
        n -= int(config.get("pad_token_id", 1) or 1) + 1
    return n
