"""`kb models list`: model folders under models/ and cached hub models, with their kind and which one is active.

Versions live side by side (models/reranker_zh_v1, models/reranker_zh_v2); the active one is the `reranker`
setting, so rolling back is one change (KB_RERANKER=models/reranker_zh_v1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rerank.kinds import architecture, model_kind, num_labels, read_config


@dataclass(frozen=True)
class ModelEntry:
    name: str  # how to refer to it in --reranker / --embedder
    path: str
    origin: str  # "models_dir" | "hf_cache"
    kind: str  # cross-encoder | llm-reranker | embedder | other | no-config
    architecture: str | None
    num_labels: int | None
    size_mb: float
    active_as: str | None  # "reranker" / "embedder" when a setting names it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _size_mb(folder: Path) -> float:
    total = 0
    for f in folder.rglob("*"):
        try:
            if f.is_file():
                total += f.stat().st_size  # follows HF cache symlinks to the blobs
        except OSError:
            continue
    return round(total / 2**20, 1)


def _active_role(name: str, path: Path, active: dict[str, str | None], models_dir: Path) -> str | None:
    for role, value in active.items():
        if not value:
            continue
        if value == name or value == f"{models_dir}/{name}":
            return role
        try:
            if Path(value).expanduser().resolve() == path.resolve():
                return role
        except OSError:
            continue
    return None


def _entry(name: str, folder: Path, origin: str, active: dict[str, str | None], models_dir: Path) -> ModelEntry:
    config = read_config(folder)
    return ModelEntry(name, str(folder), origin, model_kind(folder, name), architecture(config), num_labels(config),
                      _size_mb(folder), _active_role(name, folder, active, models_dir))


def list_models(models_dir: str | Path = "models", active: dict[str, str | None] | None = None,
                hf_cache: str | Path | None = None, include_cache: bool = True) -> list[ModelEntry]:
    """Folders under `models_dir` (sorted by name) then hub models in the HF cache (latest snapshot of each).

    `active` maps a role to the configured name, e.g. {"reranker": settings.reranker, "embedder": ...}.
    `hf_cache` defaults to the hub's cache (HF_HUB_CACHE / HF_HOME).
    """
    active = active or {}
    models_dir = Path(models_dir)
    entries: list[ModelEntry] = []
    if models_dir.is_dir():
        for folder in sorted(p for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            entries.append(_entry(folder.name, folder, "models_dir", active, models_dir))
    if include_cache:
        entries.extend(_cached(hf_cache, active, models_dir))
    return entries


def _cached(hf_cache: str | Path | None, active: dict[str, str | None], models_dir: Path) -> list[ModelEntry]:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(hf_cache)
    except CacheNotFound:
        return []
    out = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        latest = max(repo.revisions, key=lambda r: r.last_modified)
        folder = Path(latest.snapshot_path)
        entry = _entry(repo.repo_id, folder, "hf_cache", active, models_dir)
        if entry.kind in ("cross-encoder", "embedder", "llm-reranker"):
            out.append(entry)
    return out
